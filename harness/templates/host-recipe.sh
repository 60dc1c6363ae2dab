#!/bin/bash
# The host network recipe of a scenario, rendered by devstack-harness (the same
# text for every scenario with the same settings: a prepared state is keyed by it).
# It is what a DevStack host on NHN Cloud has: the public IP as a /32 on lo, the
# Linux bridge {{ plan.world.provider_bridge }} as the provider network, forwarding and MASQUERADE
# for the provider range.
#
#   harness-host-recipe apply    make it so (idempotent: a second apply changes nothing)
#   harness-host-recipe verify   check it is so; exit 1 naming each difference
#   harness-host-recipe revert   undo what apply did, leaving the host as it was
#   harness-host-recipe revert-rules  undo only the iptables rules and ip_forward
#
# A part that the scenario switches off is not applied, and verify checks it is absent.
set -euo pipefail

PUBLIC_IP={{ plan.world.public_ip }}
BRIDGE={{ plan.world.provider_bridge }}
BRIDGE_ADDR={{ plan.world.provider_address }}
SRC={{ plan.host_recipe.source_range }}
# What apply found before it changed anything, so that revert can restore it.
STATE=${HARNESS_RECIPE_STATE:-/run/devstack-harness/host-recipe.state}

LO_PUBLIC_IP={{ plan.host_recipe.lo_public_ip }}
MAKE_BRIDGE={{ plan.host_recipe.bridge }}
IP_FORWARD={{ plan.host_recipe.ip_forward }}
FORWARD={{ plan.host_recipe.forward }}
MASQUERADE={{ plan.host_recipe.masquerade }}
{%- if plan.host_recipe.persist %}
# Persisted as a distribution would: the sysctl in /etc/sysctl.d, and a systemd
# unit that applies this recipe at boot, after Open vSwitch (the firewall rules,
# the addresses, the bridge); docs/repro.md, "A real reboot".
PERSISTED=/usr/local/sbin/harness-host-recipe-persisted
UNIT=/etc/systemd/system/devstack-harness-host-recipe.service
SYSCTL=/etc/sysctl.d/90-devstack-harness.conf
{%- endif %}

forward_rules=("FORWARD -s $SRC -j ACCEPT" "FORWARD -d $SRC -j ACCEPT")
nat_rule="POSTROUTING -s $SRC ! -d $SRC -j MASQUERADE"

has_rule() { # table, rule...
    local table=$1; shift
    iptables -w -t "$table" -C "$@" 2>/dev/null
}

# The device holding the bridge's address: the bridge itself, or the OVS bridge
# DevStack made it a port of (it moves the address there); empty when none.
bridge_addr_holder() {
    local dev
    for dev in "$BRIDGE" $(ovs-vsctl port-to-br "$BRIDGE" 2>/dev/null); do
        if ip -4 -o addr show dev "$dev" 2>/dev/null | grep -qw "$BRIDGE_ADDR"; then
            echo "$dev"
            return
        fi
    done
}

bridge_ok() {
    ip -o link show dev "$BRIDGE" up 2>/dev/null | grep -q . && [ -n "$(bridge_addr_holder)" ]
}

apply() {
    mkdir -p "$(dirname "$STATE")"
    if [ ! -e "$STATE" ]; then
        {
            echo "ip_forward=$(sysctl -n net.ipv4.ip_forward)"
            if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "bridge_existed=true"; else echo "bridge_existed=false"; fi
        } >"$STATE"
    fi
    if $LO_PUBLIC_IP; then
        ip addr replace "$PUBLIC_IP/32" dev lo
    fi
    if $MAKE_BRIDGE; then
        ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
        # Once DevStack has moved the address to its OVS bridge, it stays there.
        if [ -z "$(bridge_addr_holder)" ]; then
{%- if plan.host_recipe.persist %}
            # At boot, the bridge is already a port of the OVS bridge DevStack made
            # (OVS's database keeps it): the address goes where DevStack left it.
            local ovs_bridge
            ovs_bridge=$(ovs-vsctl port-to-br "$BRIDGE" 2>/dev/null || true)
            if [ -n "$ovs_bridge" ]; then
                ip addr replace "$BRIDGE_ADDR" dev "$ovs_bridge"
                ip link set "$ovs_bridge" up
            else
                ip addr replace "$BRIDGE_ADDR" dev "$BRIDGE"
            fi
{%- else %}
            ip addr replace "$BRIDGE_ADDR" dev "$BRIDGE"
{%- endif %}
        fi
        ip link set "$BRIDGE" up
    fi
    if $IP_FORWARD; then
        sysctl -qw net.ipv4.ip_forward=1
    fi
    if $FORWARD; then
        for rule in "${forward_rules[@]}"; do
            # shellcheck disable=SC2086
            has_rule filter $rule || iptables -w -A $rule
        done
    fi
    if $MASQUERADE; then
        # shellcheck disable=SC2086
        has_rule nat $nat_rule || iptables -w -t nat -A $nat_rule
    fi
{%- if plan.host_recipe.persist %}
    if $IP_FORWARD; then
        echo "net.ipv4.ip_forward = 1" >"$SYSCTL"
    fi
    if [ "$(readlink -f "$0")" != "$PERSISTED" ]; then
        cp "$0" "$PERSISTED"
    fi
    if [ ! -e "$UNIT" ]; then
        printf '%s\n' '[Unit]' 'Description=devstack-harness host recipe (persisted)' \
            'Wants=openvswitch-switch.service' 'After=openvswitch-switch.service network.target' \
            '[Service]' 'Type=oneshot' 'RemainAfterExit=yes' "ExecStart=$PERSISTED apply" \
            '[Install]' 'WantedBy=multi-user.target' >"$UNIT"
        systemctl daemon-reload
        systemctl enable --quiet devstack-harness-host-recipe.service
    fi
{%- endif %}
}

verify() {
    local bad=0
    expect() { # description, wanted (true|false), command...
        local what=$1 want=$2; shift 2
        if "$@" >/dev/null 2>&1; then have=true; else have=false; fi
        if [ "$have" = "$want" ]; then
            echo "ok: $what $( $want && echo present || echo absent)"
        else
            echo "FAIL: $what expected $( $want && echo present || echo absent), found $( $have && echo present || echo absent)"
            bad=1
        fi
    }
    expect "lo address $PUBLIC_IP/32" "$LO_PUBLIC_IP" sh -c "ip -4 -o addr show dev lo | grep -qw '$PUBLIC_IP/32'"
    expect "bridge $BRIDGE up, $BRIDGE_ADDR on it (or moved to its OVS bridge)" "$MAKE_BRIDGE" bridge_ok
    expect "net.ipv4.ip_forward=1" "$IP_FORWARD" sh -c "[ \"\$(sysctl -n net.ipv4.ip_forward)\" = 1 ]"
    for rule in "${forward_rules[@]}"; do
        # shellcheck disable=SC2086 # a rule is its words
        expect "filter rule '$rule'" "$FORWARD" has_rule filter $rule
    done
    # shellcheck disable=SC2086 # a rule is its words
    expect "nat rule '$nat_rule'" "$MASQUERADE" has_rule nat $nat_rule
{%- if plan.host_recipe.persist %}
    expect "persisted: $SYSCTL" "$IP_FORWARD" test -e "$SYSCTL"
    expect "persisted: $UNIT, enabled" true systemctl is-enabled --quiet devstack-harness-host-recipe.service
{%- endif %}
    return $bad
}

# Only the rules and forwarding, for a VM shared by scenarios whose recipes differ
# in nothing else.
revert_rules() {
    if $MASQUERADE; then
        # shellcheck disable=SC2086
        while has_rule nat $nat_rule; do iptables -w -t nat -D $nat_rule; done
    fi
    if $FORWARD; then
        for rule in "${forward_rules[@]}"; do
            # shellcheck disable=SC2086
            while has_rule filter $rule; do iptables -w -D $rule; done
        done
    fi
    local ip_forward=""
    [ -e "$STATE" ] && ip_forward=$(sed -n 's/^ip_forward=//p' "$STATE")
    if $IP_FORWARD && [ -n "$ip_forward" ]; then
        sysctl -qw net.ipv4.ip_forward="$ip_forward"
    fi
{%- if plan.host_recipe.persist %}
    if [ -e "$UNIT" ]; then
        systemctl disable --quiet devstack-harness-host-recipe.service || true
        rm -f "$UNIT"
        systemctl daemon-reload
    fi
    rm -f "$SYSCTL" "$PERSISTED"
{%- endif %}
}

revert() {
    revert_rules
    local bridge_existed=false
    [ -e "$STATE" ] && bridge_existed=$(sed -n 's/^bridge_existed=//p' "$STATE")
    if $MAKE_BRIDGE; then
        if [ "$bridge_existed" = true ]; then
            ip addr del "$BRIDGE_ADDR" dev "$BRIDGE" 2>/dev/null || true
        else
            ip link del "$BRIDGE" 2>/dev/null || true
        fi
    fi
    if $LO_PUBLIC_IP; then
        ip addr del "$PUBLIC_IP/32" dev lo 2>/dev/null || true
    fi
    rm -f "$STATE"
}

case "${1:-}" in
    apply) apply ;;
    verify) verify ;;
    revert) revert ;;
    revert-rules) revert_rules ;;
    *) echo "usage: $0 apply|verify|revert|revert-rules" >&2; exit 2 ;;
esac
