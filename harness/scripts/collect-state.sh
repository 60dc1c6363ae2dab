# The guest's state for the snapshot and the run directory: addresses, routes, OVS
# bridges and ports, iptables of the host and every table of every router
# namespace, the DHCP namespaces' addresses. (OVS flows and dnsmasq's leases go to
# state/ with the diagnostics: too volatile for a snapshot.)
echo '# addresses'; ip -br -4 addr | awk '{print $1, $3, $4, $5}' | sort
echo '# routes'; ip -4 route
echo '# ovs'
for b in $(ovs-vsctl list-br 2>/dev/null); do echo "$b: $(ovs-vsctl list-ports "$b" | sort | tr '\n' ' ')"; done
echo '# iptables (host)'; iptables-save -t nat; iptables-save -t filter
for ns in $(ip netns list | awk '/^qrouter-/{print $1}'); do
    echo "# iptables ($ns)"; ip netns exec "$ns" iptables-save
    echo "# addresses ($ns)"; ip netns exec "$ns" ip -br -4 addr | awk '{print $1, $3, $4}' | sort
done
for ns in $(ip netns list | awk '/^qdhcp-/{print $1}'); do
    echo "# addresses ($ns)"; ip netns exec "$ns" ip -br -4 addr | awk '{print $1, $3, $4}' | sort
done
