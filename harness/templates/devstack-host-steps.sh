# DevStack's own host steps for ML2/OVS and ML2/OVN, shared by the replica and the
# neutron cloud (included by both): what DevStack 2025.1 does to the host around
# the agents (lib/neutron_plugins/ovs_base, openvswitch_agent, ovn_agent,
# services/l3, lib/neutron), command for command; the DevStack-oracle test records
# DevStack's own run and this one in the same sandboxed world and holds them equal.
# Reads DevStack's variables (written above it by `harness localconf neutron`'s
# host-step values): OVS_BRIDGE PUBLIC_BRIDGE OVS_PHYSICAL_BRIDGE
# PHYSICAL_NETWORK PUBLIC_INTERFACE PUBLIC_BRIDGE_MTU OVS_DATAPATH_TYPE
# Q_USE_SECGROUP FLOATING_RANGE Q_USE_PROVIDERNET_FOR_PUBLIC
# Q_ASSIGN_GATEWAY_TO_PUBLIC_BRIDGE Q_USE_PROVIDER_NETWORKING RUN_OVS_AGENT
# RUN_L3_AGENT ROUTER_GATEWAY_STEPS INITIAL_NETWORKS EXT_GW_IP CIDR_LEN, and for
# OVN: RUN_OVN OVSDB_SERVER_LOCAL_HOST OVN_SB_REMOTE TUNNEL_IP ENABLE_CHASSIS_AS_GW
# OVN_L3_CREATE_PUBLIC_NETWORK NEUTRON_CREATE_INITIAL_NETWORKS OVN_BRIDGE_MAPPINGS.

# _neutron_ovs_base_add_bridge.
ds_add_bridge() {
    if [ "$OVS_DATAPATH_TYPE" != system ]; then
        ovs-vsctl -- --may-exist add-br "$1" -- set Bridge "$1" "datapath_type=$OVS_DATAPATH_TYPE"
    else
        ovs-vsctl -- --may-exist add-br "$1"
    fi
}

# _move_neutron_addresses_route FROM TO True False inet: the primary address with
# its broadcast, the default route if it went through FROM, FROM into the bridge,
# then announced. (Each command's output is read whole first: with pipefail, a
# reader that stops early can fail the pipeline by SIGPIPE.)
ds_move_addresses() {
    local from=$1 to=$2 brd gw out
    out=$(ip -f inet r)
    gw=$(awk "/default.+$from\s/ && !done { print \$3; done = 1 }" <<<"$out")
    # A FROM that does not exist moves nothing (DevStack carries on the same way).
    out=$(ip -f inet a s dev "$from" scope global primary 2>/dev/null) || out=""
    brd=$(awk '/inet/ && !done { print $2, $3, $4; done = 1 }' <<<"$out")
    if [ -n "$brd" ]; then
        # shellcheck disable=SC2086 # "ADDR brd BRD", as DevStack passes it
        ip addr del $brd dev "$from"
        # shellcheck disable=SC2086
        ip addr replace $brd dev "$to"
        ip link set "$to" up
    fi
    ovs-vsctl --may-exist add-port "$to" "$from"
    if [ -n "$gw" ]; then
        ip -f inet r replace default via "$gw" dev "$to"
    fi
    if [ -n "$brd" ]; then
        arping -A -c 3 -w 5 -I "$to" "${brd%%/*}" >/dev/null 2>&1 || true
    fi
}

# _configure_public_network_connectivity: PUBLIC_INTERFACE taken into the
# physical bridge, or NAT for the floating range on every default-route device
# (services/l3's default_v4_route_devs).
ds_public_connectivity() {
    if [ -n "$PUBLIC_INTERFACE" ]; then
        ds_move_addresses "$PUBLIC_INTERFACE" "$OVS_PHYSICAL_BRIDGE"
    else
        local d devs out
        out=$(ip -4 route)
        devs=$(awk '/^default/ { print $5 }' <<<"$out")
        for d in $devs; do
            iptables -t nat -A POSTROUTING -o "$d" -s "$FLOATING_RANGE" -j MASQUERADE
        done
    fi
}

# ovn_base_setup_bridge.
ds_ovn_bridge() {
    if [ "$OVS_DATAPATH_TYPE" != system ]; then
        ovs-vsctl --no-wait -- --may-exist add-br "$1" -- set bridge "$1" protocols=OpenFlow13,OpenFlow15 -- set Bridge "$1" "datapath_type=$OVS_DATAPATH_TYPE"
    else
        ovs-vsctl --no-wait -- --may-exist add-br "$1" -- set bridge "$1" protocols=OpenFlow13,OpenFlow15
    fi
    ovs-vsctl --no-wait br-set-external-id "$1" bridge-id "$1"
}

# ML2/OVN: start_ovn_services' host part. _start_ovs points this host's Open
# vSwitch at OVN's southbound database as a chassis (a gateway chassis with
# ENABLE_CHASSIS_AS_GW), with the provider bridge mapped; then create_public_bridge
# and the public network's connectivity. The chassis' system-id is configure_ovn's
# (kept in /etc/openvswitch/system-id.conf).
ovn_host_steps() {
    local uuid
    uuid=$(cat /etc/openvswitch/system-id.conf 2>/dev/null) || uuid=""
    if [ -z "$uuid" ]; then
        uuid=$(uuidgen)
        mkdir -p /etc/openvswitch
        echo "$uuid" >/etc/openvswitch/system-id.conf
    fi
    ovs-vsctl --no-wait set-manager "ptcp:6640:$OVSDB_SERVER_LOCAL_HOST"
    ovs-vsctl --no-wait set open_vswitch . system-type=devstack
    ovs-vsctl --no-wait set open_vswitch . "external-ids:system-id=$uuid"
    ovs-vsctl --no-wait set open_vswitch . "external-ids:ovn-remote=$OVN_SB_REMOTE"
    ovs-vsctl --no-wait set open_vswitch . external-ids:ovn-bridge=br-int
    ovs-vsctl --no-wait set open_vswitch . external-ids:ovn-encap-type=geneve
    ovs-vsctl --no-wait set open_vswitch . "external-ids:ovn-encap-ip=$TUNNEL_IP"
    ovs-vsctl --no-wait set open_vswitch . "external-ids:hostname=$(hostname)"
    if [ "$ENABLE_CHASSIS_AS_GW" = True ]; then
        ovs-vsctl --no-wait set open_vswitch . external-ids:ovn-cms-options=enable-chassis-as-gw
    fi
    if [ "$Q_USE_PROVIDER_NETWORKING" = True ] || [ "$Q_USE_PROVIDERNET_FOR_PUBLIC" = True ]; then
        ds_ovn_bridge "$OVS_PHYSICAL_BRIDGE"
        ovs-vsctl set open . "external-ids:ovn-bridge-mappings=$PHYSICAL_NETWORK:$OVS_PHYSICAL_BRIDGE"
    fi
    if [ "$OVN_L3_CREATE_PUBLIC_NETWORK" = True ] && [ "$NEUTRON_CREATE_INITIAL_NETWORKS" = True ]; then
        ovs-vsctl --may-exist add-br "$PUBLIC_BRIDGE" -- set bridge "$PUBLIC_BRIDGE" protocols=OpenFlow13,OpenFlow15
        ovs-vsctl set open . "external-ids:ovn-bridge-mappings=$OVN_BRIDGE_MAPPINGS"
        ds_public_connectivity
    fi
}

# stack.sh forces forwarding on (not persisted), then configure_neutron's steps
# for the agents that run here, before any agent starts.
host_steps() {
    sysctl -w net.ipv4.ip_forward=1
    systemctl start openvswitch-switch
    if [ "$RUN_OVS_AGENT" = True ]; then
        # neutron_plugin_configure_plugin_agent: the integration bridge, the
        # kernel's bridge firewall for the iptables-era firewall hooks, the
        # physical bridge.
        ds_add_bridge "$OVS_BRIDGE"
        ovs-vsctl --no-wait br-set-external-id "$OVS_BRIDGE" bridge-id "$OVS_BRIDGE"
        if [ "$Q_USE_SECGROUP" = True ]; then
            modprobe bridge
            modprobe br_netfilter 2>/dev/null || :
            sysctl -w net.bridge.bridge-nf-call-iptables=1
            sysctl -w net.bridge.bridge-nf-call-ip6tables=1
        fi
        if [ -n "$PHYSICAL_NETWORK" ] && [ -n "$OVS_PHYSICAL_BRIDGE" ]; then
            ds_add_bridge "$OVS_PHYSICAL_BRIDGE"
        fi
    fi
    if [ "$RUN_L3_AGENT" = True ]; then
        # _neutron_ovs_base_configure_l3_agent, then
        # _configure_public_network_connectivity.
        ds_add_bridge "$PUBLIC_BRIDGE"
        ip link set mtu "$PUBLIC_BRIDGE_MTU" dev "$PUBLIC_BRIDGE"
        ovs-vsctl br-set-external-id "$PUBLIC_BRIDGE" bridge-id "$PUBLIC_BRIDGE"
        ds_public_connectivity
    fi
    # Then stack.sh's start_ovn_services, after every agent's configuration.
    if [ "$RUN_OVN" = True ]; then
        ovn_host_steps
    fi
}

# _neutron_configure_router_v4, after the router has its gateway (for the L3
# agent, or OVN with OVN_L3_CREATE_PUBLIC_NETWORK): in-band control off on the
# public bridge, and the public subnet's gateway on it unless it is there already.
assign_gateway() {
    [ "$ROUTER_GATEWAY_STEPS" = True ] && [ "$INITIAL_NETWORKS" = True ] || return 0
    ovs-vsctl set Bridge "$PUBLIC_BRIDGE" other_config:disable-in-band=true
    local addrs
    addrs=$(ip addr show dev "$PUBLIC_BRIDGE" 2>/dev/null) || addrs=""
    if ! grep -q "$EXT_GW_IP" <<<"$addrs" && { [ "$Q_USE_PROVIDERNET_FOR_PUBLIC" = False ] || [ "$Q_ASSIGN_GATEWAY_TO_PUBLIC_BRIDGE" = True ]; }; then
        ip addr add "$EXT_GW_IP/$CIDR_LEN" dev "$PUBLIC_BRIDGE"
        ip link set "$PUBLIC_BRIDGE" up
    fi
}
