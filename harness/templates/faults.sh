#!/bin/bash
# The faults of a scenario ([faults]), rendered by devstack-harness: switched on
# after the host recipe was applied and the cloud built, as they happen to a host
# that worked (docs/repro.md names the report behind each).
#
#   harness-faults apply    switch them on, noting what was there before
#   harness-faults revert   put back what apply found (a VM shared by scenarios)
set -euo pipefail

OVS_BRIDGE={{ plan.world.ovs_bridge }}
# The management NIC: the user-mode one QEMU gives for SSH; it forwards nothing
# (restrict=on), so traffic routed there goes nowhere.
MGMT_NET=10.0.2.0/24
MGMT_GW=10.0.2.2
STATE=/run/devstack-harness/faults.state

FORWARD_POLICY_DROP={{ plan.faults.forward_policy_drop }}
IP_FORWARD_OFF={{ plan.faults.ip_forward_off }}
OVS_BRIDGE_NO_ADDRESS={{ plan.faults.ovs_bridge_no_address }}
OVS_BRIDGE_DOWN={{ plan.faults.ovs_bridge_down }}
DEFAULT_ROUTE_VIA_MGMT={{ plan.faults.default_route_via_mgmt }}
RP_FILTER_STRICT={{ plan.faults.rp_filter_strict }}
INSTANCE_MTU={% if plan.faults.instance_mtu %}{{ plan.faults.instance_mtu }}{% endif %}

# The instance's namespace and its one interface (both clouds plug the
# instance into a namespace named instance-RUN).
instance_if() {
    local ns
    ns=$(ip netns list | awk '$1 ~ /^instance-/ {print $1; exit}')
    [ -n "$ns" ] || { echo "no instance namespace (instance-*)" >&2; return 1; }
    echo "$ns $(ip -n "$ns" -o link show | awk -F': ' '$2 != "lo" {sub(/@.*/, "", $2); print $2; exit}')"
}

apply() {
    mkdir -p "$(dirname "$STATE")"
    {
        echo "forward_policy=$(iptables -w -S FORWARD | awk '$1 == "-P" {print $3}')"
        echo "ip_forward=$(sysctl -n net.ipv4.ip_forward)"
        echo "bridge_up=$(ip -o link show dev "$OVS_BRIDGE" | grep -q '[<,]UP[,>]' && echo true || echo false)"
        echo "bridge_addrs=$(ip -4 -o addr show dev "$OVS_BRIDGE" | awk '{printf "%s,", $4}')"
        echo "default_route=$(ip -4 route show default | head -n 1)"
        echo "rp_filter=$(sysctl -n net.ipv4.conf.all.rp_filter)"
        if [ -n "$INSTANCE_MTU" ]; then
            local ns dev
            read -r ns dev < <(instance_if)
            echo "instance_mtu=$ns $dev $(ip netns exec "$ns" cat "/sys/class/net/$dev/mtu")"
        fi
    } >"$STATE"
    if $FORWARD_POLICY_DROP; then
        iptables -w -P FORWARD DROP
    fi
    if $IP_FORWARD_OFF; then
        sysctl -qw net.ipv4.ip_forward=0
    fi
    if $OVS_BRIDGE_NO_ADDRESS; then
        ip -4 addr flush dev "$OVS_BRIDGE"
    fi
    if $OVS_BRIDGE_DOWN; then
        ip link set "$OVS_BRIDGE" down
    fi
    if $DEFAULT_ROUTE_VIA_MGMT; then
        local mgmt
        mgmt=$(ip -4 -o addr show to "$MGMT_NET" | awk '{print $2; exit}')
        [ -n "$mgmt" ] || { echo "no management NIC in $MGMT_NET" >&2; exit 1; }
        ip route replace default via "$MGMT_GW" dev "$mgmt"
    fi
    if $RP_FILTER_STRICT; then
        # The effective value is the larger of `all` and the device's own.
        sysctl -qw net.ipv4.conf.all.rp_filter=1
    fi
    if [ -n "$INSTANCE_MTU" ]; then
        local ns dev
        read -r ns dev < <(instance_if)
        ip -n "$ns" link set dev "$dev" mtu "$INSTANCE_MTU"
    fi
}

revert() {
    [ -e "$STATE" ] || return 0
    local v
    v() { sed -n "s/^$1=//p" "$STATE"; }
    iptables -w -P FORWARD "$(v forward_policy)"
    sysctl -qw net.ipv4.ip_forward="$(v ip_forward)"
    if [ "$(v bridge_up)" = true ]; then ip link set "$OVS_BRIDGE" up; fi
    local a
    for a in $(v bridge_addrs | tr ',' ' '); do
        ip addr replace "$a" dev "$OVS_BRIDGE"
    done
    local route
    route=$(v default_route)
    # shellcheck disable=SC2086 # the route as `ip route` printed it
    if [ -n "$route" ]; then ip route replace $route; fi
    sysctl -qw net.ipv4.conf.all.rp_filter="$(v rp_filter)"
    local mtu
    mtu=$(v instance_mtu)
    # shellcheck disable=SC2086 # namespace, device, MTU
    if [ -n "$mtu" ]; then set -- $mtu; ip -n "$1" link set dev "$2" mtu "$3"; fi
    rm -f "$STATE"
}

case "${1:-}" in
    apply) apply ;;
    revert) revert ;;
    *) echo "usage: $0 apply|revert" >&2; exit 2 ;;
esac
