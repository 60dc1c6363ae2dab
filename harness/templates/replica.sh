#!/bin/bash
# The replica cloud of scenario {{ plan.name }}, rendered by devstack-harness: with
# real Open vSwitch and iptables, the datapath that DevStack and Neutron's ML2/OVS
# and L3 agents build for one router, one tenant network and one instance. Every
# value comes from the scenario's rendered local.conf. This is not DevStack: every
# report says "replica".
#
#   harness-replica build | after-reboot | fip-disassociate | fip-associate
#
# after-reboot: what a host's services do at boot (the OVS agent's bridges are in
# OVS's database; the L3 agent makes the router again; the instance starts
# again), without what stack.sh did at run time (host_steps, assign_gateway).
set -euo pipefail

# DevStack's values for its host steps (harness localconf neutron).
{{ v.host_env }}PHYSNET={{ v.physical_network }}
PUBLIC_GATEWAY={{ v.public_gateway }}
ROUTER_GW_IP={{ v.router_gw_ip }}
FIP={{ v.floating_ip }}
FIXED_IP={{ v.fixed_ip }}
NETWORK_GATEWAY={{ v.network_gateway }}
FIXED_LEN={{ v.fixed_prefix }}
MTU={{ v.mtu }}
ROUTER=qrouter-{{ v.router_id }}
QG=qg-{{ v.gw_port_id }}
QR=qr-{{ v.int_port_id }}
TAP=tap{{ v.vm_port_id }}
INSTANCE={{ v.instance_ns }}

nat() { ip netns exec "$ROUTER" iptables -w -t nat "$@"; }

{% include "devstack-host-steps.sh" %}

build() {
    host_steps
    agents
    assign_gateway
    fip_associate
}

after_reboot() {
    systemctl start openvswitch-switch
    agents
    fip_associate
}

agents() {
    # The OVS agent's bridge mapping ($PHYSNET:$OVS_PHYSICAL_BRIDGE): patch ports.
    ovs-vsctl --may-exist add-port "$OVS_BRIDGE" "int-$OVS_PHYSICAL_BRIDGE" \
        -- set interface "int-$OVS_PHYSICAL_BRIDGE" type=patch options:peer="phy-$OVS_PHYSICAL_BRIDGE" \
        -- set port "int-$OVS_PHYSICAL_BRIDGE" tag=1
    ovs-vsctl --may-exist add-port "$OVS_PHYSICAL_BRIDGE" "phy-$OVS_PHYSICAL_BRIDGE" \
        -- set interface "phy-$OVS_PHYSICAL_BRIDGE" type=patch options:peer="int-$OVS_PHYSICAL_BRIDGE"

    # The L3 agent: the router namespace with its gateway (qg-) and internal (qr-)
    # ports, OVS internal ports on br-int; local VLAN 1 is the external network,
    # local VLAN 2 the tenant network.
    ip netns add "$ROUTER" 2>/dev/null || true
    ip netns exec "$ROUTER" ip link set lo up
    ip netns exec "$ROUTER" sysctl -qw net.ipv4.ip_forward=1
    ovs-vsctl --may-exist add-port "$OVS_BRIDGE" "$QG" tag=1 -- set interface "$QG" type=internal
    ovs-vsctl --may-exist add-port "$OVS_BRIDGE" "$QR" tag=2 -- set interface "$QR" type=internal
    for dev in "$QG" "$QR"; do
        ip link show "$dev" >/dev/null 2>&1 && ip link set "$dev" netns "$ROUTER"
    done
    ip netns exec "$ROUTER" ip addr replace "$ROUTER_GW_IP/$CIDR_LEN" dev "$QG"
    ip netns exec "$ROUTER" ip addr replace "$NETWORK_GATEWAY/$FIXED_LEN" dev "$QR"
    ip netns exec "$ROUTER" ip link set "$QG" up
    ip netns exec "$ROUTER" ip link set "$QR" mtu "$MTU" up
    ip netns exec "$ROUTER" ip route replace default via "$PUBLIC_GATEWAY" dev "$QG"

    # The NAT chains the L3 agent writes (neutron/agent/l3/router_info.py).
    if ! nat -nL neutron-l3-agent-snat >/dev/null 2>&1; then
        for c in neutron-l3-agent-PREROUTING neutron-l3-agent-OUTPUT neutron-l3-agent-POSTROUTING \
                 neutron-postrouting-bottom neutron-l3-agent-snat neutron-l3-agent-float-snat; do
            nat -N "$c"
        done
        nat -A PREROUTING -j neutron-l3-agent-PREROUTING
        nat -A OUTPUT -j neutron-l3-agent-OUTPUT
        nat -A POSTROUTING -j neutron-l3-agent-POSTROUTING
        nat -A POSTROUTING -j neutron-postrouting-bottom
        nat -A neutron-postrouting-bottom -m comment --comment "Perform source NAT on outgoing traffic." -j neutron-l3-agent-snat
        nat -A neutron-l3-agent-snat -j neutron-l3-agent-float-snat
        nat -A neutron-l3-agent-POSTROUTING ! -o "$QG" -m conntrack ! --ctstate DNAT -j ACCEPT
        # The metadata redirect the L3 agent writes on every router (no metadata
        # proxy listens here: nothing answers 169.254.169.254, as without q-meta).
        nat -A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697
        # Per gateway: other tenant traffic leaves as the gateway address.
        nat -A neutron-l3-agent-snat -o "$QG" -j SNAT --to-source "$ROUTER_GW_IP" --random-fully
        nat -A neutron-l3-agent-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source "$ROUTER_GW_IP" --random-fully
        # The mangle mark that keeps traffic entering through the gateway (DNAT to
        # a floating IP) from that SNAT: the client's address reaches the instance.
        mangle() { ip netns exec "$ROUTER" iptables -w -t mangle "$@"; }
        mangle -N neutron-l3-agent-PREROUTING
        mangle -N neutron-l3-agent-mark
        mangle -A PREROUTING -j neutron-l3-agent-PREROUTING
        mangle -A neutron-l3-agent-PREROUTING -j neutron-l3-agent-mark
        mangle -A neutron-l3-agent-mark -i "$QG" -j MARK --set-xmark 0x2/0xffff
    fi

    # The instance: a namespace on the tenant network, MTU as on VXLAN, its fixed
    # address, a default route to the router, and a real sshd.
    ip netns add "$INSTANCE" 2>/dev/null || true
    ovs-vsctl --may-exist add-port "$OVS_BRIDGE" "$TAP" tag=2 -- set interface "$TAP" type=internal
    ip link show "$TAP" >/dev/null 2>&1 && ip link set "$TAP" netns "$INSTANCE"
    ip netns exec "$INSTANCE" ip link set lo up
    ip netns exec "$INSTANCE" ip addr replace "$FIXED_IP/$FIXED_LEN" dev "$TAP"
    ip netns exec "$INSTANCE" ip link set "$TAP" mtu "$MTU" up
    ip netns exec "$INSTANCE" ip route replace default via "$NETWORK_GATEWAY"
    if [ ! -e /run/harness-instance-sshd.pid ]; then
        mkdir -p /run/sshd
        ip netns exec "$INSTANCE" /usr/sbin/sshd -o PidFile=/run/harness-instance-sshd.pid
    fi
}

fip_associate() {
    # Per floating IP: the address on qg-, DNAT in and out, SNAT of the fixed address.
    ip netns exec "$ROUTER" ip addr replace "$FIP/32" dev "$QG"
    nat -C neutron-l3-agent-PREROUTING -d "$FIP/32" -j DNAT --to-destination "$FIXED_IP" 2>/dev/null ||
        nat -A neutron-l3-agent-PREROUTING -d "$FIP/32" -j DNAT --to-destination "$FIXED_IP"
    nat -C neutron-l3-agent-OUTPUT -d "$FIP/32" -j DNAT --to-destination "$FIXED_IP" 2>/dev/null ||
        nat -A neutron-l3-agent-OUTPUT -d "$FIP/32" -j DNAT --to-destination "$FIXED_IP"
    nat -C neutron-l3-agent-float-snat -s "$FIXED_IP/32" -j SNAT --to-source "$FIP" --random-fully 2>/dev/null ||
        nat -A neutron-l3-agent-float-snat -s "$FIXED_IP/32" -j SNAT --to-source "$FIP" --random-fully
    # Tell the provider network the address moved (as the L3 agent does with arping).
    ip netns exec "$ROUTER" arping -U -c 1 -I "$QG" "$FIP" >/dev/null 2>&1 || true
}

fip_disassociate() {
    nat -D neutron-l3-agent-PREROUTING -d "$FIP/32" -j DNAT --to-destination "$FIXED_IP" 2>/dev/null || true
    nat -D neutron-l3-agent-OUTPUT -d "$FIP/32" -j DNAT --to-destination "$FIXED_IP" 2>/dev/null || true
    nat -D neutron-l3-agent-float-snat -s "$FIXED_IP/32" -j SNAT --to-source "$FIP" --random-fully 2>/dev/null || true
    ip netns exec "$ROUTER" ip addr del "$FIP/32" dev "$QG" 2>/dev/null || true
    ip netns exec "$ROUTER" conntrack -D -d "$FIP" >/dev/null 2>&1 || true
}

case "${1:-}" in
    build) build ;;
    after-reboot) after_reboot ;;
    fip-associate) fip_associate ;;
    fip-disassociate) fip_disassociate ;;
    *) echo "usage: $0 build|after-reboot|fip-associate|fip-disassociate" >&2; exit 2 ;;
esac
