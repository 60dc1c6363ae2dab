# The guest's state for the snapshot and the run directory: addresses, routes, OVS
# bridges and ports, iptables of the host and of every router namespace.
echo '# addresses'; ip -br -4 addr | awk '{print $1, $3, $4, $5}' | sort
echo '# routes'; ip -4 route
echo '# ovs'
for b in $(ovs-vsctl list-br 2>/dev/null); do echo "$b: $(ovs-vsctl list-ports "$b" | sort | tr '\n' ' ')"; done
echo '# iptables (host)'; iptables-save -t nat; iptables-save -t filter
for ns in $(ip netns list | awk '/^qrouter-/{print $1}'); do
    echo "# iptables ($ns)"; ip netns exec "$ns" iptables-save -t nat
    echo "# addresses ($ns)"; ip netns exec "$ns" ip -br -4 addr | awk '{print $1, $3, $4}' | sort
done
