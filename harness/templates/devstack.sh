#!/bin/bash
# The devstack cloud of scenario {{ plan.name }}, rendered by devstack-harness: the
# real DevStack ({{ plan.devstack.git_base }}, branch {{ plan.devstack.branch }}) built from the
# scenario's local.conf, then one instance with a floating IP made with the
# openstack CLI, as a user would make it.
#
#   harness-devstack dns               name resolution through the guest's gateway (the edge's uplink)
#   harness-devstack preflight         can the guest reach DevStack's sources?
#   harness-devstack prepare           mirrors, the stack user, the DevStack clone, local.conf
#   harness-devstack stack             stack.sh as the stack user (the whole log on stdout)
#   harness-devstack instance          keypair, security group, server, floating IP; prints JSON
#   harness-devstack fip-disassociate | fip-associate
#   harness-devstack probe KIND TARGET [PORT] TIMEOUT
#                                      the probe, run inside the instance over SSH
set -euo pipefail

GIT_BASE={{ plan.devstack.git_base }}
BRANCH={{ plan.devstack.branch }}
STACK_HOME=/opt/stack
DEVSTACK=$STACK_HOME/devstack
LOG_DIR=$STACK_HOME/logs
STATE_DIR=/var/lib/devstack-harness
NAME={{ v.name }}
INSTANCE_USER={{ plan.devstack.instance_user }}
KEY=$STATE_DIR/instance_ed25519
KNOWN_HOSTS=$STATE_DIR/instance_known_hosts
PROBE=/usr/local/share/devstack-harness/probe.sh

say() { echo "harness-devstack: $*" >&2; }

# The openstack CLI as DevStack's demo user in the demo project (openrc's defaults).
os() {
    sudo -u stack -H -- bash -c 'source "$0/openrc" demo demo >/dev/null && exec openstack "$@"' "$DEVSTACK" "$@"
}

dns() {
    if command -v resolvectl >/dev/null; then
        resolvectl dns {{ plan.world.guest_nic }} {{ plan.world.guest_gateway }}
    else
        echo "nameserver {{ plan.world.guest_gateway }}" >/etc/resolv.conf
    fi
}

preflight() {
    if ! timeout 20 git ls-remote --heads "$GIT_BASE/openstack/devstack.git" "$BRANCH" >/dev/null 2>&1; then
        say "cannot reach $GIT_BASE/openstack/devstack.git (branch $BRANCH) from the guest"
        exit 69
    fi
}

prepare() {
{%- if plan.devstack.apt_mirror %}
    # The scenario's apt mirror in place of the image's archive URLs.
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        sed -i -E 's#https?://(archive|security)\.ubuntu\.com/ubuntu/?#{{ plan.devstack.apt_mirror }}#g; s#https?://deb\.debian\.org/debian/?#{{ plan.devstack.apt_mirror }}#g' "$f"
    done
{%- endif %}
{%- if plan.devstack.pip_index_url %}
    printf '[global]\nindex-url = %s\n' '{{ plan.devstack.pip_index_url }}' >/etc/pip.conf
{%- endif %}
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq git sudo python3 >/dev/null
    # What DevStack's tools/create-stack-user.sh does.
    id stack >/dev/null 2>&1 || useradd -s /bin/bash -d "$STACK_HOME" -m stack
    chmod +x "$STACK_HOME"
    echo "stack ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/stack
    chmod 0440 /etc/sudoers.d/stack
    if [ ! -d "$DEVSTACK/.git" ]; then
        sudo -u stack -H git clone --depth 1 --branch "$BRANCH" "$GIT_BASE/openstack/devstack.git" "$DEVSTACK"
    fi
    install -o stack -g stack -m 0644 /etc/devstack-harness/local.conf "$DEVSTACK/local.conf"
    install -d -o stack -g stack "$LOG_DIR"
    sudo -u stack -H git -C "$DEVSTACK" log -1 --format='harness-devstack: DevStack %H %s' >&2
}

stack_sh() {
    # VERBOSE (DevStack's default) puts the whole trace on stdout; the harness
    # keeps it in the run directory and reads the echo_summary lines for progress.
    sudo -u stack -H -- bash -c 'cd "$0" && LOGFILE="$1/stack.sh.log" exec ./stack.sh' "$DEVSTACK" "$LOG_DIR"
}

# A JSON field of the openstack CLI's output.
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }

instance() {
    install -d -m 0700 "$STATE_DIR"
    [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C "$NAME" -f "$KEY"
    os keypair show "$NAME" >/dev/null 2>&1 || os keypair create --public-key "$KEY.pub" "$NAME" >/dev/null
    if ! os security group show "$NAME" >/dev/null 2>&1; then
        os security group create "$NAME" >/dev/null
        os security group rule create --ingress --protocol icmp "$NAME" >/dev/null
{%- for port in v.tcp_ports %}
        os security group rule create --ingress --protocol tcp --dst-port {{ port }} "$NAME" >/dev/null
{%- endfor %}
{%- for port in v.udp_ports %}
        os security group rule create --ingress --protocol udp --dst-port {{ port }} "$NAME" >/dev/null
{%- endfor %}
    fi
    image=$(os image list -f value -c Name | grep -m1 '^{{ plan.devstack.instance_image }}') || {
        say "no Glance image whose name starts with {{ plan.devstack.instance_image }}"; exit 1; }
    flavor=$(os flavor list -f value -c Name | grep -m1 -x -E 'cirros256|m1.nano|m1.tiny') || {
        say "none of the flavors cirros256, m1.nano, m1.tiny exists"; exit 1; }
    if ! os server show "$NAME" >/dev/null 2>&1; then
        os server create --image "$image" --flavor "$flavor" --network private --key-name "$NAME" \
            --security-group "$NAME" --wait "$NAME" >/dev/null
    fi
    status=$(os server show "$NAME" -f json | field 'd["status"]')
    [ "$status" = ACTIVE ] || { say "server $NAME is $status, expected ACTIVE"; exit 1; }
    fip=$(os floating ip list --port "$(os port list --server "$NAME" -f value -c ID | head -n1)" -f value -c 'Floating IP Address' | head -n1)
    if [ -z "$fip" ]; then
        fip=$(os floating ip create public -f json | field 'd["floating_ip_address"]')
        os server add floating ip "$NAME" "$fip"
    fi
    vm_port=$(os port list --server "$NAME" -f json | field 'd[0]["ID"]')
    fixed=$(os port show "$vm_port" -f json | field 'd["fixed_ips"][0]["ip_address"]')
    subnet=$(os port show "$vm_port" -f json | field 'd["fixed_ips"][0]["subnet_id"]')
    gateway=$(os subnet show "$subnet" -f json | field 'd["gateway_ip"]')
    router=$(os router list -f value -c ID | head -n1)
    gw_ip=$(os router show "$router" -f json | field 'd["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]')
    gw_port=$(os port list --router "$router" --device-owner network:router_gateway -f value -c ID | head -n1)
    int_port=$(os port list --router "$router" --device-owner network:router_interface -f value -c ID | head -n1)
    # CirrOS prints its SSH host keys on the console: pin them, no trust on first use.
    for _ in $(seq 1 60); do
        keys=$(os console log show "$NAME" | sed -n '/-----BEGIN SSH HOST KEY KEYS-----/,/-----END SSH HOST KEY KEYS-----/p' | grep -E '^(ssh-|ecdsa-)' || true)
        [ -n "$keys" ] && break
        sleep 5
    done
    [ -n "$keys" ] || { say "the instance's console shows no SSH host keys after 300 s"; exit 1; }
    echo "$keys" | sed "s/^/$fixed,$fip /" >"$KNOWN_HOSTS"
    cat >"$STATE_DIR/instance.env" <<EOF
ROUTER=$router
FIXED=$fixed
FIP=$fip
EOF
    # Reachable over SSH from the router namespace (the management path to the instance).
    for _ in $(seq 1 60); do
        if ip netns exec "qrouter-$router" ssh -i "$KEY" -o UserKnownHostsFile="$KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
            -o ConnectTimeout=5 -o BatchMode=yes "$INSTANCE_USER@$fixed" true 2>/dev/null; then
            printf '{"router_id": "%s", "floating_ip": "%s", "fixed_ip": "%s", "network_gateway": "%s", "router_gw_ip": "%s", "gw_port_id": "%s", "int_port_id": "%s", "vm_port_id": "%s"}\n' \
                "$router" "$fip" "$fixed" "$gateway" "$gw_ip" "${gw_port:0:11}" "${int_port:0:11}" "${vm_port:0:11}"
            return 0
        fi
        sleep 5
    done
    say "no SSH to $INSTANCE_USER@$fixed from qrouter-$router within 300 s"
    exit 1
}

fip() {
    # shellcheck source=/dev/null
    . "$STATE_DIR/instance.env"
    os server "$1" floating ip "$NAME" "$FIP"
}

probe() {
    # shellcheck source=/dev/null
    . "$STATE_DIR/instance.env"
    ip netns exec "qrouter-$ROUTER" ssh -i "$KEY" -o UserKnownHostsFile="$KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
        -o ConnectTimeout=10 -o BatchMode=yes "$INSTANCE_USER@$FIXED" sh -s -- "$@" <"$PROBE"
}

case "${1:-}" in
    dns) dns ;;
    preflight) preflight ;;
    prepare) prepare ;;
    stack) stack_sh ;;
    instance) instance ;;
    fip-disassociate) fip remove ;;
    fip-associate) fip add ;;
    probe) shift; probe "$@" ;;
    *) echo "usage: $0 dns|preflight|prepare|stack|instance|fip-disassociate|fip-associate|probe KIND TARGET [PORT] TIMEOUT" >&2; exit 2 ;;
esac
