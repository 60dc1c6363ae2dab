# The counters a packet trace compares (devstack-harness, docs/design.md "Where a
# packet died"): run before and after the probe is sent again, the differences
# say which interface and which netfilter chain saw it. Reads only; changes nothing.
#
#   trace-counters.sh all        the root namespace and every named one (the guest)
#   trace-counters.sh self NAME  only the namespace it runs in, labelled NAME (the host's)
#
# Output, one fact per line, after a `ns NAME` line per namespace ("" is the root):
#   if DEV RX_PACKETS TX_PACKETS OPERSTATE MTU
#   sysctl KEY VALUE                    ip_forward, rp_filter of all and of each device
#   policy TABLE CHAIN POLICY PACKETS   a built-in chain's policy and what fell to it
#   rule TABLE CHAIN PACKETS RULE       every rule with its counter (iptables-save -c)
#   ct ENTRY                            conntrack's entries (/proc/net/nf_conntrack)
#   neigh ENTRY                         the neighbour table (ip -4 neigh)
#   addr DEV ADDRESS/PREFIX             the namespace's addresses
set -u

one() {
    echo "ns $1"
    # `read` rather than `cat`: no process per value (a TCG guest forks slowly).
    local d rx tx state mtu v
    for d in /sys/class/net/*; do
        [ -e "$d/statistics/rx_packets" ] || continue
        read -r rx <"$d/statistics/rx_packets"; read -r tx <"$d/statistics/tx_packets"
        read -r state <"$d/operstate"; read -r mtu <"$d/mtu"
        echo "if ${d##*/} $rx $tx $state $mtu"
    done
    read -r v </proc/sys/net/ipv4/ip_forward
    echo "sysctl ip_forward $v"
    for d in /proc/sys/net/ipv4/conf/*; do
        read -r v <"$d/rp_filter"
        echo "sysctl rp_filter.${d##*/} $v"
    done
    iptables-save -c 2>/dev/null | awk '
        /^\*/ { table = substr($0, 2) }
        /^:/ { split($3, c, /[\[:\]]/); print "policy", table, substr($1, 2), $2, c[2] }
        /^\[/ { split($1, c, /[\[:\]]/); rule = $0; sub(/^\[[0-9]+:[0-9]+\] /, "", rule); print "rule", table, $3, c[2], rule }'
    [ -r /proc/net/nf_conntrack ] && sed 's/^/ct /' /proc/net/nf_conntrack
    ip -4 neigh show | sed 's/^/neigh /'
    ip -4 -o addr show | awk '{print "addr", $2, $4}'
    return 0
}

case "${1:-}" in
    all)
        one ""
        for ns in $(ip netns list | awk '{print $1}'); do
            ip netns exec "$ns" bash "$0" self "$ns"
        done
        ;;
    self) one "${2:-}" ;;
    *) echo "usage: $0 all | self NAME" >&2; exit 2 ;;
esac
