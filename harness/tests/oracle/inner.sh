#!/bin/bash
# The DevStack oracle's inside (run by oracle.sh in a bubblewrap sandbox: its own
# network namespace, a throwaway root, only /out written). It builds the world's
# host interfaces in the sandbox's network namespace, then runs DevStack's own code
# on the local.conf the way stack.sh runs it, up to the initial networks:
#
#   functions, lib/stack, GetDistro, extract_localrc_section, stackrc,
#   disable_negated_services, the lib/ files stack.sh sources, configure_neutron,
#   merge_config_group post-config, start_ovn_services (ML2/OVN),
#   configure_neutron_after_post_config, start_neutron, create_neutron_initial_network
#
# What is replaced, and why (nothing of DevStack's own code is changed):
#   sudo            runs the command itself: the sandbox is its own root
#   ip              the real ip, in the sandbox's namespace; changes also recorded
#   ovs-vsctl, ovn-nbctl, ovn-sbctl, ovs-appctl, iptables, arping, modprobe,
#   systemctl (also as /bin/systemctl), ...
#                   recorded, not run: no Open vSwitch or firewall of the machine's
#                   is touched (an added OVS bridge becomes a Linux bridge in the
#                   sandbox, so that DevStack's `ip` commands on it run)
#   sysctl          writes recorded, reads real
#   openstack       recorded, answered as Neutron would (stubs/openstack)
#   $DEST/neutron   an empty tree with the sample files DevStack copies (the
#                   samples carry only comments); no git, pip or package manager
#   start_neutron_service_and_check, async_*   not run (no neutron-server)
# Output in /out: etc/ (the configuration written), host.log (host commands),
# api.log and api.json (API calls and the objects they made), devstack.log, and
# result (ok, or died: the reason).
# shellcheck disable=SC1090,SC1091 # DevStack's own files, sourced from its tree
set -u
export ORACLE_OUT=/out
: >"$ORACLE_OUT/host.log"
exec >"$ORACLE_OUT/devstack.log" 2>&1

# The world's host, as the guest of a scenario has it.
/usr/bin/ip link set lo up
/usr/bin/ip link add "$WORLD_NIC" type veth peer name "$WORLD_NIC-peer"
/usr/bin/ip link set "$WORLD_NIC-peer" up
/usr/bin/ip addr add "$WORLD_NIC_ADDR" brd + dev "$WORLD_NIC"
/usr/bin/ip link set "$WORLD_NIC" up
/usr/bin/ip route add default via "$WORLD_GATEWAY" dev "$WORLD_NIC"
[ -z "${WORLD_PUBLIC_IP:-}" ] || /usr/bin/ip addr add "$WORLD_PUBLIC_IP/32" dev lo
if [ -n "${WORLD_BRIDGE:-}" ]; then
    /usr/bin/ip link add "$WORLD_BRIDGE" type bridge
    /usr/bin/ip addr add "$WORLD_BRIDGE_ADDR" brd + dev "$WORLD_BRIDGE"
    /usr/bin/ip link set "$WORLD_BRIDGE" up
fi
hostname "$WORLD_HOSTNAME"
# DevStack run as root makes its services run as "stack" (stackrc); the sandbox
# maps one uid, so "stack" is root there.
{ cat /in/passwd; echo "stack:x:0:0:stack:/opt/stack:/bin/bash"; } >/etc/passwd
{ cat /in/group; echo "stack:x:0:"; } >/etc/group
echo "127.0.0.1 localhost $WORLD_HOSTNAME" >/etc/hosts

# The harness's own host steps instead of DevStack's (ORACLE_MODE=harness): the
# variables and templates/devstack-host-steps.sh, run in the same world with the
# same recorders, so that the two logs compare command for command.
if [ "${ORACLE_MODE:-devstack}" = harness ]; then
    set -euo pipefail
    source /in/host-steps.sh
    host_steps
    assign_gateway
    echo ok >"$ORACLE_OUT/result"
    exit 0
fi

# DevStack's tree, writable (stack.sh writes .localrc.auto beside itself), and the
# empty project tree it copies samples from.
mkdir -p /opt/stack/logs /etc/neutron /etc/sudoers.d /etc/systemd/system /etc/apache2/sites-available /etc/openvswitch
cp -a /devstack /opt/stack/devstack
cp /in/local.conf /opt/stack/devstack/local.conf
N=/opt/stack/neutron
mkdir -p $N/etc/neutron/rootwrap.d $N/etc/neutron/plugins/ml2 $N/tools $N/neutron
for f in api-paste.ini rootwrap.conf policy.yaml policy.json neutron.conf.sample l3_agent.ini.sample \
    dhcp_agent.ini.sample metadata_agent.ini.sample metering_agent.ini.sample neutron_ovn_metadata_agent.ini.sample; do
    : >"$N/etc/$f"
    : >"$N/etc/neutron/$f"
done
for f in ml2_conf.ini.sample openvswitch_agent.ini.sample ml2_conf.ini ovn_agent.ini.sample; do : >"$N/etc/neutron/plugins/ml2/$f"; done
: >$N/etc/neutron/rootwrap.d/l3.filters
printf '#!/bin/sh\n' >$N/tools/generate_config_file_samples.sh
chmod +x $N/tools/generate_config_file_samples.sh
# The other services' configuration directories, as their own configure steps
# would have left them for merge_config_group's post-config sections.
for p in nova glance cinder keystone placement swift octavia heat ceilometer; do mkdir -p "/etc/$p"; done

set +u  # DevStack reads unset variables everywhere
cd /opt/stack/devstack || exit 1
TOP_DIR=$PWD
# die() of DevStack's own prints its reason and exits: keep the last line.
finish() {
    local r=$?
    set +o errexit
    cp -a /etc/neutron "$ORACLE_OUT/etc" 2>/dev/null
    mkdir -p "$ORACLE_OUT/units"
    cp /etc/systemd/system/devstack@* "$ORACLE_OUT/units/" 2>/dev/null
    for v in ENABLED_SERVICES HOST_IP TUNNEL_ENDPOINT_IP Q_AGENT FIXED_RANGE NETWORK_GATEWAY FLOATING_RANGE \
        PUBLIC_NETWORK_GATEWAY IPV4_ADDRS_SAFE_TO_USE Q_DVR_MODE IP_VERSION PUBLIC_INTERFACE OVS_PHYSICAL_BRIDGE; do
        echo "$v=${!v:-}"
    done >"$ORACLE_OUT/vars"
    if [ "$r" = 0 ]; then
        echo ok
    else
        # die() of DevStack's own logs "[ERROR] file:line reason"; else the last line.
        local why
        why=$(grep -E '^\[ERROR\]' "$ORACLE_OUT/devstack.log" | tail -1)
        [ -n "$why" ] || why=$(grep -v '^awk: ' "$ORACLE_OUT/devstack.log" | tail -1)
        echo "died: $why (exit $r)"
    fi >"$ORACLE_OUT/result"
}
trap finish EXIT

# stack.sh, in its order (the parts that decide Neutron's configuration).
source "$TOP_DIR/functions"
source "$TOP_DIR/lib/stack"
GetDistro
rm -f "$TOP_DIR/.localrc.auto"
extract_localrc_section "$TOP_DIR/local.conf" "$TOP_DIR/localrc" "$TOP_DIR/.localrc.auto"
source "$TOP_DIR/stackrc"
disable_negated_services
DEST=${DEST:-/opt/stack}
# stack.sh's install_python would set it.
PYTHON=${PYTHON:-python3}
DATA_DIR=${DATA_DIR:-${DEST}/data}
mkdir -p "$DATA_DIR"
function echo_summary { echo "$@"; }
function async_runfunc { :; }
function async_wait { :; }
set -o errexit
for lib in database rpc_backend apache tls infra libraries lvm horizon keystone glance nova placement \
    cinder swift neutron ldap dstat tcpdump etcd3 os-vif; do
    [ -f "$TOP_DIR/lib/$lib" ] && source "$TOP_DIR/lib/$lib"
done
# OVN (lib/neutron_plugins/ovn_agent): the waits for ovsdb-server's socket and
# database files, which no ovsdb-server makes here, and the list of API
# extensions read from Neutron's Python package, which only feeds tempest's
# configuration, are not run.
function wait_for_sock_file { :; }
function wait_for_db_file { :; }
function filter_network_api_extensions { :; }
echo "HOST_IP=$HOST_IP" >"$ORACLE_OUT/vars"
if is_service_enabled neutron; then
    configure_neutron
fi
merge_config_group "$TOP_DIR/local.conf" post-config
# stack.sh: OVN's databases, northd and controller, then (OVN_L3_CREATE_PUBLIC_NETWORK)
# the public bridge and its connectivity.
if is_service_enabled ovn-controller ovn-controller-vtep; then
    start_ovn_services
fi
# stack.sh: Zed ran it (and made the initial networks) for q-svc only; later
# releases (2025.1, master) for q-svc or neutron-api.
if [ -f "$TOP_DIR/lib/neutron-legacy" ]; then
    neutron_api() { is_service_enabled q-svc; }
    is_service_enabled neutron-api || neutron_api_after=1
else
    neutron_api() { is_service_enabled q-svc neutron-api; }
    neutron_api_after=1
fi
if neutron_api && [ -n "${neutron_api_after:-}" ]; then
    configure_neutron_after_post_config
fi
if is_service_enabled neutron; then
    start_neutron
fi
: >"$ORACLE_OUT/networks-attempted"
if neutron_api && [[ "$NEUTRON_CREATE_INITIAL_NETWORKS" == "True" ]]; then
    if type -p neutron_plugin_create_initial_networks >/dev/null; then
        neutron_plugin_create_initial_networks
    else
        create_neutron_initial_network
    fi
fi
