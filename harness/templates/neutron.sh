#!/bin/bash
# The neutron cloud of scenario {{ plan.name }}, rendered by devstack-harness:
# Neutron's own server and ML2/OVS, L3 and DHCP agents (Debian's packages), run
# the way DevStack runs them (systemd units devstack@q-svc, q-agt, q-l3, q-dhcp,
# with DevStack's command lines), configured from the scenario's local.conf (the
# files under /etc/neutron were written before this runs). Instances are plugged
# as Neutron's fullstack tests plug their fake machines: an OVS internal port
# with the port's iface-id, moved into a namespace, addressed by DHCP.
#
#   harness-neutron services | second-host | assign-gateway | plug PORT_ID MAC NS [BRIDGE] | dhcp PORT_ID NS
#                   | wait-fip FIP FIXED_IP present|absent TIMEOUT
set -euo pipefail

# DevStack's values for its host steps (harness localconf neutron).
{{ v.host_env }}# CirrOS's DHCP client, asking for the MTU option as CirrOS does.
DHCP_CLIENT=(busybox udhcpc -O mtu)

{% include "devstack-host-steps.sh" %}

unit() {
    local name=$1; shift
    systemctl reset-failed "devstack@$name" 2>/dev/null || true
    systemd-run -q --unit "devstack@$name" --description "devstack-harness: DevStack's $name" \
        -p Restart=on-failure -p KillMode=mixed "$@"
}

services() {
    # sudo (rootwrap, privsep) resolves this host's name on every call; the
    # seed's /etc/hosts names it, and a run from another seed must too.
    grep -qw "$(hostname)" /etc/hosts || echo "127.0.1.1 $(hostname)" >> /etc/hosts
    host_steps
    install -d -o neutron -g neutron /var/lib/neutron /var/lib/neutron/lock /var/log/neutron
    local cf=(--config-file /etc/neutron/neutron.conf)
    # lib/neutron: start_neutron_service_and_check, start_neutron_agents.
    unit q-svc /usr/bin/neutron-server "${cf[@]}" --config-file /etc/neutron/plugins/ml2/ml2_conf.ini
    unit q-agt /usr/bin/neutron-openvswitch-agent "${cf[@]}" --config-file /etc/neutron/plugins/ml2/ml2_conf.ini
    unit q-dhcp /usr/bin/neutron-dhcp-agent "${cf[@]}" --config-file /etc/neutron/dhcp_agent.ini
    unit q-l3 /usr/bin/neutron-l3-agent "${cf[@]}" --config-file /etc/neutron/l3_agent.ini
}

# The second host's OVS agent (ml2_conf-host2.ini: its own name, bridges, VXLAN
# endpoint), as Neutron's fullstack tests run one agent per fake host.
second_host() {
    unit q-agt-2 /usr/bin/neutron-openvswitch-agent --config-file /etc/neutron/neutron.conf \
        --config-file /etc/neutron/plugins/ml2/ml2_conf.ini --config-file /etc/neutron/plugins/ml2/ml2_conf-host2.ini
}

# A fake instance: Neutron's fullstack FakeMachine. Its port turns ACTIVE once
# the OVS agent has wired it and the DHCP agent has its host entry; then `dhcp`.
plug() {
    local port=$1 mac=$2 ns=$3 bridge=${4:-br-int} dev
    dev="tap${port:0:11}"
    ip netns add "$ns" 2>/dev/null || true
    ip netns exec "$ns" ip link set lo up
    ovs-vsctl --may-exist add-port "$bridge" "$dev" -- set Interface "$dev" type=internal \
        external_ids:iface-id="$port" external_ids:attached-mac="$mac" external_ids:iface-status=active
    if ip link show "$dev" >/dev/null 2>&1; then
        ip link set "$dev" address "$mac"
        ip link set "$dev" netns "$ns"
    fi
    ip netns exec "$ns" ip link set "$dev" up
    echo '{"device": "'"$dev"'"}'
}

# The lease (address, router, MTU) is applied by harness-udhcpc-script and kept
# in /run/harness-dhcp-$ns.lease; then a real sshd for the ingress checks.
dhcp() {
    local port=$1 ns=$2 dev lease
    dev="tap${port:0:11}"
    lease=/run/harness-dhcp-$ns.lease
    rm -f "$lease"
    HARNESS_LEASE=$lease ip netns exec "$ns" "${DHCP_CLIENT[@]}" -i "$dev" -n -q -f -t 20 -T 3 \
        -s /usr/local/sbin/harness-udhcpc-script || true
    if [ ! -s "$lease" ]; then
        echo "no DHCP lease for $dev in $ns from Neutron's dnsmasq within 60 s" >&2
        exit 1
    fi
    if [ ! -e "/run/harness-sshd-$ns.pid" ]; then
        mkdir -p /run/sshd
        ip netns exec "$ns" /usr/sbin/sshd -o PidFile="/run/harness-sshd-$ns.pid"
    fi
    cat "$lease"
}

# Wait until the L3 agent has (or no longer has) the floating IP's DNAT rule in
# the router's namespace: Neutron applies API changes asynchronously.
wait_fip() {
    local fip=$1 fixed=$2 want=$3 timeout=$4 started now rules
    started=$(date +%s)
    while :; do
        rules=$(for ns in $(ip netns list | awk '/^qrouter-/ {print $1}'); do ip netns exec "$ns" iptables-save -t nat; done 2>/dev/null)
        if grep -q -- "-d $fip/32 .*-j DNAT --to-destination $fixed" <<<"$rules"; then
            [ "$want" = present ] && break
        else
            [ "$want" = absent ] && break
        fi
        now=$(date +%s)
        if [ $((now - started)) -ge "$timeout" ]; then
            echo "the L3 agent did not make the floating IP $fip $want within $timeout s" >&2
            exit 1
        fi
        sleep 1
    done
    echo "{\"after_s\": $(($(date +%s) - started))}"
}

case "${1:-}" in
    services) services ;;
    second-host) second_host ;;
    assign-gateway) assign_gateway ;;
    plug) shift; plug "$@" ;;
    dhcp) shift; dhcp "$@" ;;
    wait-fip) shift; wait_fip "$@" ;;
    *) echo "usage: $0 services|assign-gateway|plug PORT MAC NS|dhcp PORT NS|wait-fip FIP FIXED present|absent TIMEOUT" >&2; exit 2 ;;
esac
