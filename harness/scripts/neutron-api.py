#!/usr/bin/python3
"""The neutron cloud's calls to Neutron's API, in the guest (no Keystone: the
server runs with auth_strategy = noauth, so each request says who it is in
X-Project-Id and X-Roles, as Keystone's middleware would). Standard library
only: the openstack client takes a minute to import under TCG.

Every command prints one JSON object on stdout; errors go to stderr, exit 1.

  neutron-api.py wait-agents TIMEOUT [N]      API up, L3 and DHCP agents and N OVS agents alive
  neutron-api.py initial-networks SPEC.json   DevStack's create_neutron_initial_network
  neutron-api.py instance NAME NET SG.json [HOST]   a port for a fake instance, bound to HOST
  neutron-api.py fip-create PORT EXT_NET      a floating IP on the instance's port
  neutron-api.py fip-associate | fip-disassociate   the instance's floating IP
  neutron-api.py wait-port PORT STATUS TIMEOUT
  neutron-api.py set-rules SG.json UNIT TIMEOUT   the instance's port in a group of these rules,
                                              in force in the OVS agent UNIT
"""
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

API = "http://127.0.0.1:9696/v2.0"
# DevStack's "demo" project owns the tenant network and router, "admin" the
# external network; both are just ids without Keystone.
ADMIN = {"X-Project-Id": "admin", "X-Tenant-Id": "admin", "X-Roles": "admin,member,reader", "X-User-Id": "admin"}
DEMO = {"X-Project-Id": "demo", "X-Tenant-Id": "demo", "X-Roles": "member,reader", "X-User-Id": "demo"}


def call(method, path, body=None, who=ADMIN, timeout=120):
    if method == "POST" and body and len(body) == 1:
        # Without Keystone, Neutron wants the owner in the body of each create.
        inner = next(iter(body.values()))
        if isinstance(inner, dict):
            inner.setdefault("project_id", who["X-Project-Id"])
    data = json.dumps(body).encode() if body is not None else None
    headers = dict(who, **{"Content-Type": "application/json", "Accept": "application/json"})
    req = urllib.request.Request(API + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            return json.loads(text) if text else {}
    except urllib.error.HTTPError as e:
        sys.exit("%s %s: HTTP %s: %s" % (method, path, e.code, e.read().decode(errors="replace")[:500]))


def find(kind, name, who=ADMIN):
    items = call("GET", "/%ss?name=%s" % (kind, name), who=who)[kind + "s"]
    return items[0] if items else None


def ensure(kind, name, body, who=ADMIN):
    """Create unless it exists: a prepared state is built once and reused."""
    found = find(kind, name, who)
    if found:
        return found
    body = dict(body, name=name)
    return call("POST", "/%ss" % kind, {kind: body}, who=who)[kind]


def out(obj):
    print(json.dumps(obj, sort_keys=True))


def wait_agents(timeout, ovs_agents="1"):
    """Until the API answers, the L3 and DHCP agents and OVS_AGENTS OVS agents
    (one per host) are alive; prints when each came alive."""
    started = time.time()
    deadline = started + float(timeout)
    seen = {}
    api_at = None
    last = "the API did not answer"
    while time.time() < deadline:
        try:
            req = urllib.request.Request(API + "/agents", headers=ADMIN)
            with urllib.request.urlopen(req, timeout=10) as r:
                agents = json.load(r)["agents"]
            if api_at is None:
                api_at = time.time() - started
            for a in agents:
                key = "%s@%s" % (a["binary"], a["host"])
                if a["alive"] and key not in seen:
                    seen[key] = round(time.time() - started, 1)
            binaries = [k.split("@")[0] for k in seen]
            missing = [b for b in ("neutron-l3-agent", "neutron-dhcp-agent") if b not in binaries]
            ovs = binaries.count("neutron-openvswitch-agent")
            if not missing and ovs >= int(ovs_agents):
                out({"api_after_s": round(api_at, 1), "agents_after_s": seen, "host": socket.gethostname()})
                return
            last = "alive: %s; missing: %s" % (sorted(seen), missing + ["OVS agents: %d of %s" % (ovs, ovs_agents)])
        except (urllib.error.URLError, OSError, ValueError) as e:
            last = "the API did not answer: %s" % e
        time.sleep(2)
    sys.exit("within %s s: %s" % (timeout, last))


def initial_networks(spec_path):
    """lib/neutron_plugins/services/l3's create_neutron_initial_network for IPv4,
    with DevStack's arguments: the subnet pool, the private subnet from it (a
    gateway only when NETWORK_GATEWAY is set), the router, the external network
    and its subnet (gateway and allocation pool only when set). Neutron does the
    address arithmetic; what it made is printed for the harness to compare."""
    s = json.load(open(spec_path))
    n = s["networks"]
    pool_id = None
    if n["subnet_pool"]:
        p = n["subnet_pool"]
        pool_id = ensure("subnetpool", p["name"], {"prefixes": [p["prefix"]], "default_prefixlen": p["default_prefixlen"],
                                                  "shared": True, "is_default": True})["id"]
    private = ensure("network", n["private_network"], {}, who=DEMO)
    body = {"network_id": private["id"], "ip_version": 4}
    if s["network_gateway"]:
        body["gateway_ip"] = s["network_gateway"]
    if pool_id:
        body["subnetpool_id"] = pool_id
    else:
        body["cidr"] = n["private_subnet"]["cidr"]
    subnet = ensure("subnet", n["private_subnet"]["name"], body, who=DEMO)
    router = ensure("router", n["router"], {}, who=DEMO)
    if not call("GET", "/ports?device_id=%s&network_id=%s" % (router["id"], private["id"]))["ports"]:
        call("PUT", "/routers/%s/add_router_interface" % router["id"], {"subnet_id": subnet["id"]}, who=DEMO)
    pn = n["public_network"]
    public_body = {"router:external": True, "is_default": True}
    if pn["network_type"]:
        public_body.update({"provider:network_type": pn["network_type"], "provider:physical_network": pn["physical_network"]})
        if pn["segmentation_id"]:
            public_body["provider:segmentation_id"] = int(pn["segmentation_id"])
    public = ensure("network", pn["name"], public_body)
    pub_subnet_body = {"network_id": public["id"], "ip_version": 4, "cidr": n["public_subnet"]["cidr"], "enable_dhcp": False}
    if s["public_network_gateway"]:
        pub_subnet_body["gateway_ip"] = s["public_network_gateway"]
    if s["floating_pool"]:
        start, end = s["floating_pool"]
        pub_subnet_body["allocation_pools"] = [{"start": start, "end": end}]
    pub_subnet = ensure("subnet", n["public_subnet"]["name"], pub_subnet_body)
    router = call("GET", "/routers/%s" % router["id"])["router"]
    if not router.get("external_gateway_info"):
        router = call("PUT", "/routers/%s" % router["id"], {"router": {"external_gateway_info": {"network_id": public["id"]}}}, who=ADMIN)["router"]
    gw = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    ports = call("GET", "/ports?device_id=%s" % router["id"])["ports"]
    qg = [p["id"] for p in ports if p["device_owner"] == "network:router_gateway"]
    qr = [p["id"] for p in ports if p["device_owner"].startswith("network:router_interface")]
    out({"router_id": router["id"], "router_gw_ip": gw, "private_network_id": private["id"], "private_subnet_id": subnet["id"],
         "public_network_id": public["id"], "gw_port_id": qg[0], "int_port_id": qr[0], "private_cidr": subnet["cidr"],
         "private_gateway": subnet["gateway_ip"], "public_gateway": pub_subnet["gateway_ip"]})


def instance(name, network_id, rules_path, host=None):
    """A port as Nova would ask for one, bound to this host's OVS agent, in a
    security group holding exactly the scenario's rules."""
    rules = json.load(open(rules_path))
    sg = find("security_group", name, who=DEMO)
    if sg:
        call("DELETE", "/security-groups/%s" % sg["id"], who=DEMO)
    sg = call("POST", "/security-groups", {"security_group": {"name": name, "description": "devstack-harness scenario rules"}}, who=DEMO)["security_group"]
    # A new group comes with egress rules for IPv4 and IPv6; keep only the scenario's.
    replace_rules(sg, rules)
    port = find("port", name, who=DEMO)
    if port:
        call("DELETE", "/ports/%s" % port["id"])
    port = call("POST", "/ports", {"port": {
        "name": name, "network_id": network_id, "security_groups": [sg["id"]], "project_id": "demo",
        "device_owner": "compute:nova", "device_id": name, "binding:host_id": host or socket.gethostname()}})["port"]
    out({"port_id": port["id"], "mac": port["mac_address"], "fixed_ip": port["fixed_ips"][0]["ip_address"],
         "security_group_id": sg["id"], "binding": port.get("binding:vif_type"), "host": port["binding:host_id"]})


def replace_rules(sg, rules):
    """The group's rules become exactly `rules` (the scenario's)."""
    for r in sg["security_group_rules"]:
        call("DELETE", "/security-group-rules/%s" % r["id"], who=DEMO)
    for r in rules:
        body = {"security_group_id": sg["id"], "direction": r["direction"], "ethertype": "IPv4"}
        for k in ("protocol", "port_range_min", "port_range_max", "remote_ip_prefix"):
            if r.get(k) is not None:
                body[k] = r[k]
        call("POST", "/security-group-rules", {"security_group_rule": body}, who=DEMO)


def set_rules(rules_path, unit, timeout):
    """Another scenario's rules for the cloud's one instance (a restored VM's run
    id is not the builder's). A new group gets every rule first and then the port
    moves to it in one update, so the OVS agent of the port (its systemd UNIT)
    never filters with half of them; then wait until that agent, in its journal
    after the move, has refreshed its firewall ("Refresh firewall rules") and
    finished that rpc_loop iteration's ports (its flows are written by then)."""
    rules = json.load(open(rules_path))
    ports = call("GET", "/ports?device_owner=compute:nova")["ports"]
    if len(ports) != 1:
        sys.exit("expected the cloud's one instance port, found %d" % len(ports))
    port = ports[0]
    sg = call("POST", "/security-groups", {"security_group": {"name": port["name"], "description": "devstack-harness scenario rules"}}, who=DEMO)["security_group"]
    replace_rules(sg, rules)
    journal = ["journalctl", "-u", unit, "-q", "-o", "cat"]
    cursor = subprocess.run(journal + ["-n", "1", "--show-cursor"], capture_output=True, text=True).stdout
    cursor = [l[len("-- cursor: "):] for l in cursor.splitlines() if l.startswith("-- cursor: ")]
    if not cursor:
        sys.exit("no journal of %s: is the OVS agent of the instance's port running?" % unit)
    started = time.time()
    call("PUT", "/ports/%s" % port["id"], {"port": {"security_groups": [sg["id"]]}})
    for old in port["security_groups"]:
        call("DELETE", "/security-groups/%s" % old, who=DEMO)
    log = ""
    while time.time() < started + float(timeout):
        log = subprocess.run(journal + ["--after-cursor", cursor[0]], capture_output=True, text=True).stdout
        refreshed = log.find("Refresh firewall rules")
        if refreshed >= 0 and "ports processed" in log[refreshed:]:
            out({"security_group_id": sg["id"], "rules": len(rules), "after_s": round(time.time() - started, 1)})
            return
        time.sleep(1)
    sys.exit("%s did not refresh its firewall within %s s of the port's move to the new group; its journal since:\n%s"
             % (unit, timeout, "\n".join(log.splitlines()[-5:])))


def fip_create(port_id, ext_net):
    """The instance's floating IP, described with the port's name so that later
    associations find it."""
    port = call("GET", "/ports/%s" % port_id)["port"]
    fips = call("GET", "/floatingips?description=%s" % port["name"])["floatingips"]
    for f in fips:
        call("DELETE", "/floatingips/%s" % f["id"])
    fip = call("POST", "/floatingips", {"floatingip": {"floating_network_id": ext_net, "port_id": port_id, "description": port["name"]}}, who=DEMO)["floatingip"]
    out({"floating_ip_id": fip["id"], "floating_ip": fip["floating_ip_address"]})


def fip_set(associate):
    """The cloud's one floating IP, to or from the port it was made for (its
    description names the port: a restored VM's run id is not the builder's)."""
    fips = call("GET", "/floatingips")["floatingips"]
    if len(fips) != 1:
        sys.exit("expected the cloud's one floating IP, found %d" % len(fips))
    fip = fips[0]
    port = find("port", fip["description"])
    body = {"port_id": port["id"] if associate else None}
    fip = call("PUT", "/floatingips/%s" % fip["id"], {"floatingip": body}, who=DEMO)["floatingip"]
    out({"floating_ip": fip["floating_ip_address"], "fixed_ip": port["fixed_ips"][0]["ip_address"], "port_id": fip["port_id"]})


def wait_port(port_id, status, timeout):
    deadline = time.time() + float(timeout)
    started = time.time()
    port = {}
    while time.time() < deadline:
        port = call("GET", "/ports/%s" % port_id)["port"]
        if port["status"] == status:
            out({"status": status, "after_s": round(time.time() - started, 1), "binding": port.get("binding:vif_type")})
            return
        time.sleep(2)
    sys.exit("port %s: expected status %s within %s s, saw %s (binding %s)" % (port_id, status, timeout, port.get("status"), port.get("binding:vif_type")))


def main(argv):
    cmds = {
        "wait-agents": wait_agents, "initial-networks": initial_networks, "instance": instance,
        "fip-create": fip_create, "wait-port": wait_port, "set-rules": set_rules,
        "fip-associate": lambda: fip_set(True), "fip-disassociate": lambda: fip_set(False),
    }
    if len(argv) < 2 or argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
