//! The appliance's acceptance suite (issue 6) on the Debian 12 test image: what is left of it
//! there. Every scenario but S8 runs on the product (product.rs; issue 15). S8 needs pebble,
//! which Ubuntu 18.04 does not package: overlays/test-acme apt-installs Debian's.
//! profiles/debian12-test.toml is built once and booted under QEMU (TCG unless KVM is proven
//! to work) from the scenario's own disk (a qcow2 overlay on the built image) with its own
//! NoCloud seed made by `appliance seed`; the result is checked from outside the VM (the
//! certificate nginx presents, through a port forwarded to 127.0.0.1) and from what the guest
//! itself reports on its serial console (the test-report overlay: `APPLIANCE-REPORT key value`
//! lines read from the guest's files and services, never from anything the test wrote).
//!
//! Figures: every boot appends a line to `target/tmp/e2e-figures.tsv` (common/guest.rs; the
//! product's boots too), which scripts/test prints; BENCHMARKS.md records them.

mod common;

use appliance::qemu::Firmware;
use common::guest::*;
use common::*;
use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

const DNS: &str = "meet.example.test";

/// The image, built once for all scenarios (the provisioned tree comes from the cache when
/// another test built it before).
fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = scratch("e2e-image").keep();
        debian12_profile(&dir, "[disk]\nboot = [\"bios\", \"uefi\"]\n");
        let out = dir.join("out");
        // By name, from another directory, as a user would: found through $APPLIANCE_PROFILES.
        run_ok(
            appliance()
                .args(["build", "debian12-test", "-o", "out"])
                .current_dir(&dir)
                .env("APPLIANCE_PROFILES", &dir),
        );
        Image {
            path: out.join("debian12-test.qcow2"),
            firmware: Firmware::Bios,
            memory_mib: 1024,
            // QEMU's own default model, which the suite's boot times were measured with.
            cpu: Some("qemu64".into()),
            wait: Duration::from_secs(420),
        }
    })
}

/// The ACME reports on a console, in order: each state line with the issuer line that
/// follows it (a state whose issuer line is missing is left out).
fn acme_reports(console: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut state: Option<&str> = None;
    for (key, value) in report_lines(console) {
        match key {
            "acme" => state = Some(value),
            "cert-issuer" => {
                if let Some(s) = state.take() {
                    pairs.push((s.to_owned(), value.to_owned()));
                }
            }
            _ => {}
        }
    }
    pairs
}

#[test]
fn acme_reports_pair_states_with_the_next_issuer_line() {
    let console = "\
APPLIANCE-REPORT acme failed failures=1 connect 127.0.0.1:14000\r
APPLIANCE-REPORT cert-issuer issuer=self-signed\r
[  166.1] clocksource: watchdog
APPLIANCE-REPORT acme pending failures=1
APPLIANCE-REPORT cert-iss[  170.2] clocksource: watchdog
uer issuer=spoilt
meet login: APPLIANCE-REPORT acme valid failures=0
APPLIANCE-REPORT cert-issuer issuer=Pebble
";
    let pairs = acme_reports(console);
    let pair = |s: &str, i: &str| (s.to_owned(), i.to_owned());
    assert_eq!(
        pairs,
        [
            pair(
                "failed failures=1 connect 127.0.0.1:14000",
                "issuer=self-signed"
            ),
            pair("valid failures=0", "issuer=Pebble"),
        ]
    );
}

/// Scenario 8: Let's Encrypt, from pebble on the guest's 127.0.0.1: the first attempt fails
/// (the CA is not up yet), the retry obtains the certificate, which replaces the self-signed.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s8_lets_encrypt_from_pebble_with_a_retry() {
    let mut guest = Guest::new(image(), "8");
    let seed = guest.seed(
        &user_data(
            DNS,
            "  certificate:\n    letsencrypt:\n      email: ops@example.test\n      directory: https://127.0.0.1:14000/dir\n",
        ),
        "iid-s8",
    );
    let mut boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    boot.wait_for("APPLIANCE-REPORT acme valid");
    boot.vm.wait_for_match("no issuer line naming Pebble", |l| {
        l.contains("APPLIANCE-REPORT cert-issuer ") && l.contains("Pebble")
    });
    boot.console = boot.vm.console();
    // Each ACME report is a state line then an issuer line, paired here in console order
    // (not by index: a kernel message written into the middle of a line can spoil one).
    let acme = acme_reports(&boot.console);
    let failed = acme
        .iter()
        .position(|(state, _)| state.starts_with("failed failures=1 "))
        .unwrap_or_else(|| panic!("no failed attempt first: {acme:?}"));
    let valid = acme
        .iter()
        .position(|(state, _)| state.starts_with("valid "))
        .unwrap_or_else(|| {
            // The raw lines too: a pairing problem and a missing report look alike otherwise.
            let raw: Vec<_> = report_lines(&boot.console)
                .filter(|(key, _)| *key == "acme" || *key == "cert-issuer")
                .collect();
            panic!("no valid state with its issuer: {acme:?}; report lines: {raw:?}")
        });
    assert!(failed < valid, "{acme:?}");
    assert!(
        acme[failed].0.contains("127.0.0.1:14000"),
        "the failure names the CA: {acme:?}"
    );
    // While it failed, the self-signed certificate was in place; then pebble's.
    assert!(
        acme[failed].1.contains("Appliance (self-signed)"),
        "{acme:?}"
    );
    assert!(acme[valid].1.contains("Pebble"), "{acme:?}");
    let served = boot.served_chain(443, DNS);
    assert!(
        x509(&served[0], &["-issuer"]).contains("Pebble"),
        "{served:?}"
    );
    assert_eq!(san_names(&served[0]), BTreeSet::from([DNS.to_owned()]));
}
