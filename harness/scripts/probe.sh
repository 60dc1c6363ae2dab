#!/bin/sh
# One reachability probe for an instance that has only busybox (CirrOS), printed
# as one JSON line like probe.py's: {"outcome": ..., "detail": ...}. The devstack
# cloud runs it inside the instance over SSH.
#
#   probe.sh icmp TARGET TIMEOUT [SIZE]
#   probe.sh tcp|udp|http TARGET PORT TIMEOUT

out() {
    detail=$(printf '%s' "$2" | tr '\n\r\t' '   ' | sed 's/\\/\\\\/g; s/"/\\"/g' | cut -c1-300)
    printf '{"outcome": "%s", "detail": "%s"}\n' "$1" "$detail"
    exit 0
}

now() { cut -d. -f1 /proc/uptime; }

kind=$1
target=$2
if [ "$kind" = icmp ]; then
    timeout=${3%.*}
    # busybox's ping takes a size but cannot set Don't Fragment.
    size=${4:-56}
else
    port=$3
    timeout=${4%.*}
fi
deadline=$(($(now) + ${timeout:-5}))
last=""
while [ "$(now)" -lt "$deadline" ]; do
    case $kind in
        icmp)
            if last=$(ping -c 1 -W 1 -s "$size" "$target" 2>&1); then
                out reachable "$(echo "$last" | grep 'time=' | head -n1)"
            fi
            ;;
        tcp)
            # The responder writes the peer's address at once and closes.
            if last=$(nc -w 3 "$target" "$port" </dev/null 2>&1) && [ -n "$last" ]; then
                out reachable "$last"
            fi
            ;;
        udp)
            if ! nc --help 2>&1 | grep -q -- ' -u'; then
                out unreachable "this instance's nc cannot send UDP (it has no -u)"
            fi
            if last=$(echo probe | nc -u -w 2 "$target" "$port" 2>&1) && [ -n "$last" ]; then
                out reachable "$last"
            fi
            ;;
        http)
            if last=$(wget -q -T 3 -O - "http://$target:$port/" 2>&1); then
                out reachable "$last"
            fi
            ;;
        *) out unreachable "unknown probe kind $kind" ;;
    esac
    sleep 1
done
out unreachable "nothing within ${timeout}s ($(echo "$last" | tail -n1))"
