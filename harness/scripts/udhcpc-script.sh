#!/bin/sh
# udhcpc's script for the neutron cloud's instances: applies the lease from
# Neutron's dnsmasq (address, router, MTU) and records it, as JSON, in
# $HARNESS_LEASE for the result.
case "$1" in
    deconfig)
        ip addr flush dev "$interface" 2>/dev/null
        ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
        for r in $router; do
            ip route replace default via "$r" dev "$interface"
            break
        done
        printf '{"ip": "%s", "prefix": %s, "router": "%s", "mtu": %s, "server": "%s", "lease_s": %s}\n' \
            "$ip" "${mask:-24}" "${router%% *}" "${mtu:-0}" "$serverid" "${lease:-0}" > "${HARNESS_LEASE:-/dev/null}"
        ;;
esac
exit 0
