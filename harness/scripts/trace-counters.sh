# The counters a packet trace compares (devstack-harness, docs/design.md "Where a
# packet died"): run before and after the probe is sent again, the differences
# say which interface and which netfilter chain saw it. Reads only; changes nothing.
#
#   trace-counters.sh all        the root namespace and every named one (the guest)
#   trace-counters.sh self NAME  only the namespace it runs in, labelled NAME (the host's)
#   trace-counters.sh watch all PROTO PORTS | watch self NAME PROTO PORTS
#       count the probe's packets per device from now on, then print the counters
#   trace-counters.sh unwatch all | unwatch self NAME
#       print the counters, then stop counting
#
# Interface counters count every frame, ARP and IPv6 included; a trace counts the
# probe's own IPv4 packets instead: `watch` puts a chain of counting rules (no
# target: they change no packet's fate) first in mangle PREROUTING (-i DEV) and
# POSTROUTING (-o DEV) of each namespace, one rule per device and direction,
# `req` matching the request (ICMP echo request; TCP or UDP to one of PORTS) and
# `rep` the reply; `unwatch` takes them out again.
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

watch_one() { # PROTO PORTS
    local proto=$1 ports=$2 req rep d dev
    unwatch_one
    case $proto in
        icmp) req="-p icmp --icmp-type echo-request"; rep="-p icmp --icmp-type echo-reply" ;;
        *) req="-p $proto -m multiport --dports $ports"; rep="-p $proto -m multiport --sports $ports" ;;
    esac
    {
        echo "*mangle"
        echo ":harness-trace-in - [0:0]"
        echo ":harness-trace-out - [0:0]"
        echo "-I PREROUTING 1 -j harness-trace-in"
        echo "-I POSTROUTING 1 -j harness-trace-out"
        for d in /sys/class/net/*; do
            dev=${d##*/}
            [ "$dev" = lo ] && continue
            echo "-A harness-trace-in -i $dev $req -m comment --comment req"
            echo "-A harness-trace-in -i $dev $rep -m comment --comment rep"
            echo "-A harness-trace-out -o $dev $req -m comment --comment req"
            echo "-A harness-trace-out -o $dev $rep -m comment --comment rep"
        done
        echo "COMMIT"
    } | iptables-restore -w --noflush
}

unwatch_one() {
    # One transaction: when the chains are not there it fails and changes nothing.
    printf '%s\n' '*mangle' '-D PREROUTING -j harness-trace-in' '-D POSTROUTING -j harness-trace-out' \
        '-F harness-trace-in' '-F harness-trace-out' '-X harness-trace-in' '-X harness-trace-out' 'COMMIT' |
        iptables-restore -w --noflush 2>/dev/null || true
}

case "${1:-}" in
    watch | unwatch)
        verb=$1 where=${2:-}
        if [ "$where" = all ]; then
            shift 2
            name=""
        else
            name=${3:-}
            shift 3
        fi
        [ "$verb" = unwatch ] && one "$name"
        "${verb}_one" "$@"
        [ "$verb" = watch ] && one "$name"
        if [ "$where" = all ]; then
            for ns in $(ip netns list | awk '{print $1}'); do
                ip netns exec "$ns" bash "$0" "$verb" self "$ns" "$@"
            done
        fi
        ;;
    all)
        one ""
        for ns in $(ip netns list | awk '{print $1}'); do
            ip netns exec "$ns" bash "$0" self "$ns"
        done
        ;;
    self) one "${2:-}" ;;
    *) echo "usage: $0 all | self NAME | watch all|self PROTO PORTS | unwatch all|self" >&2; exit 2 ;;
esac
