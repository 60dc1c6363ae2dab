#!/usr/bin/env bash
# The steps of the composite Action (action.yml at the repository's root), one
# subcommand each, so that they run (and are tested) outside GitHub too.
#
#   steps.sh kvm      let every user open /dev/kvm (the harness checks that KVM works, else TCG)
#   steps.sh keys     print the cache keys of the harness build and of the image recipes
#   steps.sh build    build the harness (or fetch the released binary of INPUT_VERSION)
#   steps.sh run      run the scenarios; writes outputs, JUnit and the job summary
#   steps.sh diff     run them with INPUT_LOCAL_CONF as it was at INPUT_DIFF_BASE (a git
#                     revision of the workspace) and as it is; the table goes to the job
#                     summary, exit 1 when a check that passed now fails
#
# Inputs come as INPUT_* variables (action.yml sets them); GitHub's own files
# (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) are used when they are set.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${HARNESS_BIN_DIR:-$here/target/release}
out() { echo "$1=$2" >>"${GITHUB_OUTPUT:-/dev/null}"; }
# Paths a user gives are relative to their workspace; the harness runs from its own tree.
abs() { (cd "${GITHUB_WORKSPACE:-$PWD}" && realpath -m -- "$1"); }
runs=${HARNESS_RUNS_DIR:-${RUNNER_TEMP:-/tmp}/harness-runs}
# The options `run` and `diff` share (appended to the array `args`), then the
# harness as root (namespaces, taps and QEMU) from its own tree, which holds
# scenarios/ and images/; its exit code in `code`.
run_harness() {
  [ -n "${GITHUB_STEP_SUMMARY:-}" ] && args+=(--summary "$GITHUB_STEP_SUMMARY")
  [ -n "${INPUT_CLOUD:-}" ] && args+=(--cloud "$INPUT_CLOUD")
  [ -n "${INPUT_IMAGE:-}" ] && args+=(--image "$INPUT_IMAGE")
  for s in ${INPUT_SCENARIOS:-}; do args+=("$(abs "$s")"); done
  set +e
  (cd "$here" && ${HARNESS_SUDO-sudo -E} env "HARNESS_RUNS_DIR=$runs" "$bin_dir/harness" "${args[@]}")
  code=$?
  set -e
  out exit-code "$code"
  out run-dir "$runs"
}

case "${1:-}" in
kvm)
  if [ -e /dev/kvm ]; then
    echo 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"' | sudo tee /etc/udev/rules.d/99-kvm4all.rules >/dev/null
    sudo udevadm control --reload-rules
    sudo udevadm trigger --name-match=kvm
  else
    echo "no /dev/kvm on this runner: the harness will use TCG (slower)"
  fi
  ;;
keys)
  out build "harness-$(uname -m)-$(cat "$here/Cargo.lock" "$here/Cargo.toml" "$here/harness/Cargo.toml" | sha256sum | cut -c1-16)-$(git -C "$here" rev-parse HEAD 2>/dev/null || echo src)"
  out images "harness-images-$(find "$here/images" -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)"
  ;;
build)
  if [ -n "${INPUT_VERSION:-}" ]; then
    # A released binary (the release workflow attaches it with its SHA256).
    base="https://github.com/${HARNESS_REPOSITORY:?}/releases/download/${INPUT_VERSION}"
    mkdir -p "$bin_dir"
    curl -fsSL -o "$bin_dir/harness" "$base/harness-x86_64-linux"
    curl -fsSL -o "$bin_dir/harness.sha256" "$base/harness-x86_64-linux.sha256"
    (cd "$bin_dir" && echo "$(cut -d' ' -f1 harness.sha256)  harness" | sha256sum -c -)
    chmod +x "$bin_dir/harness"
  elif [ ! -x "$bin_dir/harness" ] || [ -n "$(find "$here/harness" "$here/Cargo.lock" -newer "$bin_dir/harness" -type f -print -quit)" ]; then
    cargo build --release --locked --manifest-path "$here/Cargo.toml" --bin harness
  fi
  "$bin_dir/harness" --version
  ;;
run)
  junit=$(abs "${INPUT_JUNIT:-harness-junit.xml}")
  args=(run --retries "${INPUT_RETRIES:-1}" --junit "$junit")
  [ -n "${INPUT_LOCAL_CONF:-}" ] && args+=(--local-conf "$(abs "$INPUT_LOCAL_CONF")")
  run_harness
  out junit "$junit"
  echo "harness exited $code; JUnit $junit; run directories in $runs"
  ;;
diff)
  conf=${INPUT_LOCAL_CONF:?the diff mode compares a local.conf: set local-conf}
  base=${INPUT_DIFF_BASE:?the diff mode needs diff-base, a git revision of the workspace}
  # The base revision's file, read in the user's repository (the harness runs from its own).
  old="${RUNNER_TEMP:-/tmp}/harness-diff-base.local.conf"
  rel=$(cd "${GITHUB_WORKSPACE:-$PWD}" && realpath -m --relative-to="$(git rev-parse --show-toplevel)" -- "$conf")
  git -C "${GITHUB_WORKSPACE:-$PWD}" show "$base:$rel" >"$old"
  args=(diff "$old" "$(abs "$conf")")
  run_harness
  echo "harness diff exited $code ($base:$rel against the workspace's); run directories in $runs"
  ;;
*)
  echo "usage: $0 kvm|keys|build|run|diff" >&2
  exit 2
  ;;
esac
