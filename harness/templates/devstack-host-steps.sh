# DevStack's own host steps for ML2/OVS, shared by the replica and the neutron
# cloud (included by both): what stack.sh and lib/neutron do to the host around the
# agents. Needs PUBLIC_INTERFACE, OVS_PHYSICAL_BRIDGE, ASSIGN_GATEWAY,
# PUBLIC_GATEWAY and CIDR_LEN.

# stack.sh: DevStack needs forwarding and sets it at run time (not persisted).
host_steps() {
    sysctl -qw net.ipv4.ip_forward=1
    systemctl start openvswitch-switch
    # lib/neutron_plugins/ovs_base: the integration and physical bridges.
    for br in br-int "$OVS_PHYSICAL_BRIDGE"; do
        ovs-vsctl -- --may-exist add-br "$br" -- set bridge "$br" protocols=OpenFlow10,OpenFlow13,OpenFlow15
        ovs-vsctl br-set-external-id "$br" bridge-id "$br"
    done
    ovs-vsctl set Bridge "$OVS_PHYSICAL_BRIDGE" other_config:disable-in-band=true
    # _move_neutron_addresses_route PUBLIC_INTERFACE -> OVS_PHYSICAL_BRIDGE: the
    # primary address with its broadcast, the default route if it went through
    # PUBLIC_INTERFACE, the interface into the bridge, then announced.
    # (Each command's output is read whole first: with pipefail, a reader that
    # stops early can fail the pipeline by SIGPIPE.)
    local brd gw ip out
    out=$(ip -f inet a s dev "$PUBLIC_INTERFACE" scope global primary)
    brd=$(awk '/inet/ && !done { print $2, $3, $4; done = 1 }' <<<"$out")
    out=$(ip -f inet r)
    gw=$(awk "/default.+$PUBLIC_INTERFACE\s/ && !done { print \$3; done = 1 }" <<<"$out")
    if [ -n "$brd" ]; then
        # shellcheck disable=SC2086 # "ADDR brd BRD", as DevStack passes it
        ip addr del $brd dev "$PUBLIC_INTERFACE"
        # shellcheck disable=SC2086
        ip addr replace $brd dev "$OVS_PHYSICAL_BRIDGE"
    fi
    ip link set "$OVS_PHYSICAL_BRIDGE" up
    ovs-vsctl --may-exist add-port "$OVS_PHYSICAL_BRIDGE" "$PUBLIC_INTERFACE"
    if [ -n "$gw" ]; then
        ip -f inet r replace default via "$gw" dev "$OVS_PHYSICAL_BRIDGE"
    fi
    if [ -n "$brd" ]; then
        ip="${brd%%/*}"
        arping -A -c 3 -w 5 -I "$OVS_PHYSICAL_BRIDGE" "$ip" >/dev/null 2>&1 || true
    fi
    ip link set br-int up
    ip link set "$PUBLIC_INTERFACE" up
}

# _neutron_configure_router_v4: with Q_ASSIGN_GATEWAY_TO_PUBLIC_BRIDGE, the public
# subnet's gateway goes on the bridge unless it is there already.
assign_gateway() {
    local addrs
    addrs=$(ip addr show dev "$OVS_PHYSICAL_BRIDGE")
    if [ "$ASSIGN_GATEWAY" = True ] && ! grep -q " $PUBLIC_GATEWAY/" <<<"$addrs"; then
        ip addr add "$PUBLIC_GATEWAY/$CIDR_LEN" dev "$OVS_PHYSICAL_BRIDGE"
        ip link set "$OVS_PHYSICAL_BRIDGE" up
    fi
}
