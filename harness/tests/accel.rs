//! The accelerator probe boots a real 512-byte guest under QEMU.

use harness::accel::{self, Accel, AccelChoice};
use std::time::Duration;

fn qemu_present() -> bool {
    let ok = std::process::Command::new(accel::QEMU).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: {} is not installed (apt-get install qemu-system-x86)", accel::QEMU);
    }
    ok
}

#[tokio::test]
async fn probe_runs_under_tcg() {
    if !qemu_present() {
        return;
    }
    accel::probe(Accel::Tcg, Duration::from_secs(20)).await.expect("the probe guest runs under TCG");
}

#[tokio::test]
async fn auto_decides_and_says_why() {
    if !qemu_present() {
        return;
    }
    let d = accel::decide(AccelChoice::Auto).await.expect("auto never fails");
    assert!(!d.reason.is_empty());
    if d.accel == Accel::Tcg {
        assert!(d.reason.contains("using TCG"), "{}", d.reason);
    }
    eprintln!("decision: {:?}: {}", d.accel, d.reason);
}
