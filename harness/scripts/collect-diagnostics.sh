# Everything a person needs to understand a run without rerunning it, collected
# from the guest before teardown. Each section starts with "=== FILE ===" and the
# harness writes it to FILE under the run's state/ directory.
section() { echo "=== $1 ==="; }
for ns in "" $(ip netns list 2>/dev/null | awk '{print $1}'); do
    tag=${ns:-host}
    run() { if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi; }
    section "$tag/addresses.json"; run ip -j addr 2>&1
    section "$tag/routes.json"; run ip -j route show table all 2>&1
    section "$tag/rules.json"; run ip -j rule 2>&1
    section "$tag/iptables-save.txt"; run iptables-save -c 2>&1
    section "$tag/conntrack.txt"; run conntrack -L 2>&1
done
section "ovs/ovs-vsctl-show.txt"; ovs-vsctl --timeout=5 show 2>&1
for b in $(ovs-vsctl --timeout=5 list-br 2>/dev/null); do
    section "ovs/dump-flows-$b.txt"; ovs-ofctl dump-flows "$b" 2>&1
done
# cloud-init's own record of its stages (what `cloud-init status --long` reads; the
# command itself costs 5 s of Python imports under TCG).
section "cloud-init/status.json"; cat /run/cloud-init/status.json 2>&1
section "cloud-init/result.json"; cat /run/cloud-init/result.json 2>&1
section "cloud-init/cloud-init.log"; cat /var/log/cloud-init.log 2>&1
section "cloud-init/cloud-init-output.log"; cat /var/log/cloud-init-output.log 2>&1
section "journal.txt"; journalctl -b --no-pager -o short-monotonic 2>&1 | tail -n 20000
if [ -d /etc/neutron ] && systemctl --quiet is-active devstack@q-svc 2>/dev/null; then
    # The neutron cloud: its configuration, each service's log, dnsmasq's leases.
    for f in neutron.conf plugins/ml2/ml2_conf.ini l3_agent.ini dhcp_agent.ini; do
        section "neutron/etc/$f"; cat "/etc/neutron/$f" 2>&1
    done
    for u in q-svc q-agt q-dhcp q-l3; do
        section "neutron/$u.log"; journalctl -u "devstack@$u" --no-pager -o short-monotonic 2>&1 | tail -n 5000
    done
    for l in /var/lib/neutron/dhcp/*/leases /var/lib/neutron/dhcp/*/host; do
        [ -e "$l" ] && { section "neutron/dhcp/${l#/var/lib/neutron/dhcp/}"; cat "$l"; }
    done
    section "neutron/dhcp-leases-instances.txt"; cat /run/harness-dhcp-*.lease 2>&1
fi
if [ -d /opt/stack/logs ]; then
    section "devstack/stack.sh.log"; cat /opt/stack/logs/stack.sh.log 2>&1
    section "devstack/stack.sh.log.summary"; cat /opt/stack/logs/stack.sh.log.summary 2>&1
    section "devstack/systemctl-devstack.txt"; systemctl --no-pager list-units 'devstack@*' 2>&1
fi
true
