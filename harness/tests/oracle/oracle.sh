#!/bin/bash
# The DevStack oracle: what DevStack's own code does with a local.conf, run in a
# sandbox that changes nothing on this machine and sends nothing anywhere.
#
#   oracle.sh DEVSTACK_TREE LOCAL_CONF OUT_DIR
#   ORACLE_MODE=harness oracle.sh DEVSTACK_TREE HOST_STEPS_SH OUT_DIR
#
# The second form runs the harness's own host steps (HOST_STEPS_SH: the variables
# and templates/devstack-host-steps.sh) in the same world, recorded the same way.
#
# The world's host is described by WORLD_* variables (defaults: the harness's
# default world). bubblewrap gives the run its own user, mount, network, PID and
# UTS namespaces, a root of its own with /usr read-only, and OUT_DIR as /out;
# inner.sh says what it runs and what it replaces.
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 DEVSTACK_TREE LOCAL_CONF OUT_DIR" >&2
    exit 2
fi
tree=$(realpath "$1") conf=$(realpath "$2") out=$3
here=$(dirname "$(realpath "$0")")
for c in bwrap gawk; do
    command -v "$c" >/dev/null || { echo "$0: needs $c (apt-get install ${c/bwrap/bubblewrap})" >&2; exit 3; }
done
[ -f "$tree/stackrc" ] || { echo "$0: $tree is not a DevStack tree (no stackrc)" >&2; exit 2; }
mkdir -p "$out"
out=$(realpath "$out")
etc_ro=()
for f in os-release nsswitch.conf alternatives lsb-release debian_version; do
    [ -e "/etc/$f" ] && etc_ro+=(--ro-bind "/etc/$f" "/etc/$f")
done
rm -f "$out/result"
status=0
timeout 120 bwrap --unshare-all --die-with-parent --new-session \
    --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
    --symlink usr/sbin /sbin --dir /etc "${etc_ro[@]}" --proc /proc --dev /dev --tmpfs /tmp \
    --dir /var/tmp --dir /run --ro-bind "$tree" /devstack --ro-bind "$conf" /in/local.conf --ro-bind "$conf" /in/host-steps.sh --ro-bind /etc/passwd /in/passwd --ro-bind /etc/group /in/group \
    --ro-bind "$here" /oracle --bind "$out" /out \
    --ro-bind "$here/stubs/record" /usr/bin/systemctl \
    --uid 0 --gid 0 --cap-add ALL \
    --setenv PATH /oracle/stubs:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --setenv HOME /root --setenv ORACLE_MODE "${ORACLE_MODE:-devstack}" --setenv WORLD_NIC "${WORLD_NIC:-eth0}" \
    --setenv WORLD_NIC_ADDR "${WORLD_NIC_ADDR:-192.168.0.10/24}" \
    --setenv WORLD_GATEWAY "${WORLD_GATEWAY:-192.168.0.1}" \
    --setenv WORLD_PUBLIC_IP "${WORLD_PUBLIC_IP-203.0.113.10}" \
    --setenv WORLD_BRIDGE "${WORLD_BRIDGE-mybr0}" \
    --setenv WORLD_BRIDGE_ADDR "${WORLD_BRIDGE_ADDR:-192.168.100.1/24}" \
    --setenv WORLD_HOSTNAME "${WORLD_HOSTNAME:-devstack}" \
    bash /oracle/inner.sh || status=$?
# A sandbox killed (the timeout, a signal) leaves no result of its own.
[ -s "$out/result" ] || echo "died: the sandbox ended (status $status) before DevStack's code did; see $out/devstack.log" >"$out/result"
cat "$out/result"
