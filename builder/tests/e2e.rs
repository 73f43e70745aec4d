//! The appliance's acceptance suite (issue 6), the scenarios not yet moved to the product
//! (S2, S5 and S6 run on it: product.rs; issue 15): profiles/debian12-test.toml is built once,
//! and each scenario boots it under QEMU (TCG unless KVM is proven to work) from its own disk (a
//! qcow2 overlay on the built image) with its own NoCloud seed made by `appliance seed`, and
//! checks the result from outside the VM:
//!
//! - through ports forwarded to 127.0.0.1: what nginx serves (`openssl s_client`, `curl`),
//!   what Rocket.Chat's stand-in says it was started with (systemd gave it the drop-in's
//!   environment), the SSH host keys (`ssh-keyscan`);
//! - through what the guest itself reports on its serial console (the test-report overlay:
//!   `APPLIANCE-REPORT key value` lines read from the guest's files and services, never
//!   from anything the test wrote).
//!
//! The test image carries stand-ins for what Debian does not package (Rocket.Chat, Jitsi
//! Meet's programs: overlays/test-standins) and pebble (overlays/test-acme), so firstboot runs
//! its whole path: Jitsi renamed and re-keyed, Rocket.Chat's drop-in, nginx, prosody, ufw.
//!
//! Figures: every boot appends a line to `target/tmp/e2e-figures.tsv` (scenario, boot, seconds
//! from QEMU's start to the oneshot's line on the console, the oneshot's own run time from
//! systemd, that of a oneshot running /bin/true in the same guest, and on a boot with nothing
//! to do that of the same run again with a warm page cache), which scripts/test prints;
//! BENCHMARKS.md records them.

mod common;

use appliance::qemu::Firmware;
use common::guest::*;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const DNS: &str = "meet.example.test";
const CHAT: &str = "chat.example.test";

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

/// The rules ufw must have: the debian12-test profile's `ufw_allow`, as the plan resolves it.
fn profile_rules() -> Vec<String> {
    let dir = scratch("e2e-plan");
    let rules = ufw_allow(&debian12_profile(dir.path(), "[disk]\nboot = [\"bios\"]\n"));
    // The appliance's own profile has the same: what this image shows holds for it too.
    let appliance = ufw_allow(&repo().join("profiles/rocketchat-jitsi-bionic.toml"));
    assert_eq!(
        rules, appliance,
        "the test image's ufw rules are not the appliance's"
    );
    rules
}

/// A CA and leaves made with openssl (not with our code).
struct Pki {
    dir: tempfile::TempDir,
}

/// A certificate chain and its key, as PEM.
struct Issued {
    chain: String,
    key: String,
    /// The leaf alone.
    leaf: String,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: scratch("e2e-pki"),
        };
        pki.sh(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
             -subj /CN=appliance-e2e-ca -keyout ca.key -out ca.crt 2>/dev/null",
        );
        pki
    }

    fn sh(&self, script: &str) {
        run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(self.dir.path()),
        );
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A leaf for `names` (the first is the subject), signed by the CA.
    fn issue(&self, tag: &str, names: &[&str]) -> Issued {
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        self.sh(&format!(
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN={cn} \
             -keyout {tag}.key -out {tag}.csr 2>/dev/null && \
             printf 'subjectAltName={san}\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' >{tag}.ext && \
             openssl x509 -req -in {tag}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 20 \
             -extfile {tag}.ext -out {tag}.crt 2>/dev/null",
            cn = names[0],
            san = san.join(",")
        ));
        let leaf = self.read(&format!("{tag}.crt"));
        Issued {
            chain: leaf.clone() + &self.read("ca.crt"),
            key: self.read(&format!("{tag}.key")),
            leaf,
        }
    }
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

/// The `certificate:` lines for a chain and key.
fn certificate(issued: &Issued) -> String {
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("      {l}\n")).collect() };
    format!(
        "  certificate:\n    cert: |\n{}    key: |\n{}",
        indent(&issued.chain),
        indent(&issued.key)
    )
}

/// What the Debian 12 image's stand-ins answer (overlays/test-standins).
trait StandInPages {
    /// Asserts Jitsi Meet (its stand-in page) is served at https://DNS/, verified with `ca`.
    fn assert_jitsi_served(&self, ca: &Path);
}

impl StandInPages for Boot {
    fn assert_jitsi_served(&self, ca: &Path) {
        let jitsi = self.curl(443, DNS, "/", true, Some(ca));
        assert_eq!(jitsi.status, 200);
        assert!(jitsi.body.contains("jitsi-meet-stand-in"), "{}", jitsi.body);
    }
}

/// What Rocket.Chat's stand-in on the Debian 12 image answers: the environment it was
/// started with.
trait StandInSettings {
    /// The settings Rocket.Chat's stand-in answers with (`NAME=value` words).
    fn settings(&self) -> BTreeMap<String, String>;
    /// Asserts Rocket.Chat's stand-in was started with each of `want`.
    fn assert_settings(&self, want: &[(&str, &str)]);
}

impl StandInSettings for Curl {
    fn settings(&self) -> BTreeMap<String, String> {
        assert!(
            self.body.starts_with("rocketchat-stand-in "),
            "not Rocket.Chat's stand-in: {:?}",
            self.body
        );
        self.body
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn assert_settings(&self, want: &[(&str, &str)]) {
        let got = self.settings();
        for (k, v) in want {
            assert_eq!(got.get(*k).map(String::as_str), Some(*v), "{k}: {got:?}");
        }
    }
}

/// Scenario 1: the user's own certificate.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s1_own_certificate() {
    let pki = Pki::new();
    let cert = pki.issue("meet", &[DNS]);
    let mut guest = Guest::new(image(), "1");
    let seed = guest.seed(&user_data(DNS, &certificate(&cert)), "iid-s1");
    let boot = guest.boot(&seed);
    let r = &boot.reports;
    assert_services_run(&boot, "success exit=0");

    // Host name, before logins.
    assert_eq!(r.get("hostname"), DNS);
    assert!(boot.console.contains("meet login:"), "{}", boot.console);
    // nginx presents exactly the given chain, on 443 and on ROOT_URL's 3000 (the default).
    assert_eq!(boot.served_chain(443, DNS), pem_blocks(&cert.chain));
    assert_eq!(boot.served_chain(3000, DNS), pem_blocks(&cert.chain));
    // Port 80 redirects to https, path kept.
    let http = boot.curl(80, DNS, "/some/room?x=1", false, None);
    assert_eq!(
        (http.status, http.location.as_str()),
        (301, "https://meet.example.test/some/room?x=1")
    );
    // Jitsi Meet at https://DNS/, Rocket.Chat at ROOT_URL (its stand-in says what systemd
    // started it with: the drop-in's environment); both verified against the user's CA.
    boot.assert_jitsi_served(&pki.ca_file());
    let chat = boot.curl(3000, DNS, "/", true, Some(&pki.ca_file()));
    assert_eq!(chat.status, 200);
    chat.assert_settings(&[
        ("ROOT_URL", "https://meet.example.test:3000/"),
        (
            "OVERWRITE_SETTING_Site_Url",
            "https://meet.example.test:3000/",
        ),
        ("BIND_IP", "127.0.0.1"),
        ("PORT", "3001"),
    ]);
    // The drop-in as the guest has it.
    let dropin = r.all("dropin");
    for line in [
        "Environment=\"ROOT_URL=https://meet.example.test:3000/\"",
        "Environment=\"OVERWRITE_SETTING_Site_Url=https://meet.example.test:3000/\"",
    ] {
        assert!(dropin.iter().any(|l| l == line), "{line}: {dropin:?}");
    }
    // ufw: active, default deny, exactly the profile's rules.
    let ufw = r.all("ufw");
    assert_eq!(ufw.first().map(String::as_str), Some("Status: active"));
    assert!(
        ufw.iter()
            .any(|l| l.starts_with("Default: deny (incoming)")),
        "{ufw:?}"
    );
    assert_eq!(ufw_rules(&ufw), expected_rules(&profile_rules()));
    // prosody: a VirtualHost for the DNS name; its configuration checks clean; jicofo's and
    // the videobridge's renamed accounts log in with what their configuration says.
    assert_eq!(
        r.get("prosody-vhost"),
        format!("/etc/prosody/conf.d/{DNS}.cfg.lua")
    );
    assert_eq!(r.get("prosody-check"), "ok");
    assert_eq!(r.get("login-focus"), "ok");
    assert_eq!(r.get("login-jvb"), "ok");
}

/// Scenario 3: ROOT_URL on another host name (443 by SNI); then on the DNS name's port 3000.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s3_root_url_on_another_name_then_on_port_3000() {
    let pki = Pki::new();
    let both = pki.issue("both", &[DNS, CHAT]);
    let mut guest = Guest::new(image(), "3");
    let seed = guest.seed(
        &user_data(
            DNS,
            &format!("  root_url: https://{CHAT}/\n{}", certificate(&both)),
        ),
        "iid-s3-a",
    );
    let boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    let chat = boot.curl(443, CHAT, "/", true, Some(&pki.ca_file()));
    assert_eq!(chat.status, 200);
    chat.assert_settings(&[("ROOT_URL", "https://chat.example.test/"), ("PORT", "3000")]);
    boot.assert_jitsi_served(&pki.ca_file());
    assert_eq!(boot.served_chain(443, CHAT), pem_blocks(&both.chain));
    drop(boot);

    // The same disk as a new instance whose ROOT_URL is the DNS name's port 3000.
    let meet = pki.issue("meet", &[DNS]);
    let seed = guest.seed(
        &user_data(
            DNS,
            &format!("  root_url: https://{DNS}:3000/\n{}", certificate(&meet)),
        ),
        "iid-s3-b",
    );
    let boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    assert_eq!(boot.served_chain(3000, DNS), pem_blocks(&meet.chain));
    let chat = boot.curl(3000, DNS, "/", true, Some(&pki.ca_file()));
    assert_eq!(chat.status, 200);
    chat.assert_settings(&[
        ("ROOT_URL", "https://meet.example.test:3000/"),
        ("PORT", "3001"),
    ]);
    // Plain HTTP on the TLS port is sent to HTTPS.
    let plain = boot.curl(3000, DNS, "/x", false, None);
    assert_eq!(
        (plain.status, plain.location.as_str()),
        (301, format!("https://{DNS}:3000/x").as_str())
    );
    boot.assert_jitsi_served(&pki.ca_file());
}

/// Scenario 4: bad user-data leaves the last good configuration in force, says so on the
/// console and in `appliance-firstboot status`.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s4_bad_user_data_keeps_the_last_good_configuration() {
    let pki = Pki::new();
    let good = pki.issue("good", &[DNS]);
    let mut guest = Guest::new(image(), "4");
    let seed = guest.seed(&user_data(DNS, &certificate(&good)), "iid-s4-good");
    let boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    let served = boot.served_chain(443, DNS);
    assert_eq!(served, pem_blocks(&good.chain));
    drop(boot);

    let other = pki.issue("other", &[DNS]);
    let mismatched = Issued {
        chain: good.chain.clone(),
        key: other.key.clone(),
        leaf: good.leaf.clone(),
    };
    let bad = [
        (
            "iid-s4-name",
            user_data("bad_name.example.test", ""),
            "appliance.dns_name: \"bad_name.example.test\" is not a valid DNS name: it holds '_': only letters, digits, '-' and '.' are allowed",
        ),
        (
            "iid-s4-key",
            user_data(DNS, &certificate(&mismatched)),
            "appliance.certificate.key: does not match the leaf certificate's public key",
        ),
    ];
    for (instance, ud, error) in bad {
        let seed = guest.seed(&ud, instance);
        let boot = guest.boot(&seed);
        // The boot completes; the oneshot failed, and said why on the console.
        assert_services_run(&boot, "exit-code exit=1");
        assert!(
            boot.console
                .lines()
                // As the journal forwards it: "[  12.3] appliance-firstboot[486]: error: ...".
                .any(|l| l.trim_end().ends_with(&format!("]: error: {error}"))),
            "no error line on the console:\n{}",
            boot.console
        );
        let status = boot.reports.all("status");
        assert!(
            status.iter().any(|l| l == &format!("  error: {error}")),
            "{status:?}"
        );
        assert!(
            status
                .iter()
                .any(|l| l.starts_with("last run:     failed on ")),
            "{status:?}"
        );
        assert!(
            status.contains(&format!("dns_name:     {DNS}")),
            "{status:?}"
        );
        // The previous good configuration is in force.
        assert_eq!(boot.reports.get("hostname"), DNS);
        assert_eq!(boot.served_chain(443, DNS), served);
        let chat = boot.curl(3000, DNS, "/", true, Some(&pki.ca_file()));
        chat.assert_settings(&[("ROOT_URL", "https://meet.example.test:3000/")]);
    }
}

/// Scenario 7: a disk grown before the first boot: the root file system fills it.
/// Scenario 5: a reboot with the same user-data rewrites nothing. (On the product image it
/// found a file rewritten after the first report, not yet explained: it stays here until then.)
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s5_reboot_with_the_same_user_data_changes_nothing() {
    let mut guest = Guest::new(image(), "5");
    let seed = guest.seed(&user_data(DNS, ""), "iid-s5");
    let first = guest.boot(&seed);
    assert_services_run(&first, "success exit=0");
    let cert = first.served_chain(443, DNS);
    let files = first.reports.get("files");
    let mtimes: BTreeSet<String> = first.reports.all("file-mtime").into_iter().collect();
    drop(first);

    let second = guest.boot(&seed);
    assert_services_run(&second, "success exit=0");
    let log = second.reports.all("firstboot-log");
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].starts_with("up to date: instance iid-s5 "),
        "{log:?}"
    );
    // Every file firstboot writes has the same modification time (and there are as many).
    let again: BTreeSet<String> = second.reports.all("file-mtime").into_iter().collect();
    assert_eq!(
        second.reports.get("files"),
        files,
        "a second boot rewrote files: before {:?}, after {:?}",
        mtimes.difference(&again).collect::<Vec<_>>(),
        again.difference(&mtimes).collect::<Vec<_>>()
    );
    assert_eq!(second.served_chain(443, DNS), cert);
    // The oneshot's own time is a figure (BENCHMARKS.md), not asserted. The report also ran
    // it once more, warm (a second run that must succeed and write nothing either).
    for key in ["firstboot-us", "firstboot-warm-us"] {
        let us: u64 = second.reports.get(key).parse().unwrap_or(0);
        assert!(us > 0, "{key}: {:?}", second.reports);
    }
}

#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s7_grown_disk_is_filled_by_the_root_file_system() {
    let mut guest = Guest::new(image(), "7");
    let info: serde_json::Value = serde_json::from_str(&stdout(&run_ok(
        tool("qemu-img")
            .args(["info", "--output=json"])
            .arg(&guest.disk),
    )))
    .unwrap();
    let before = info["virtual-size"].as_u64().unwrap();
    let grown = before + (3 << 30);
    run_ok(
        tool("qemu-img")
            .arg("resize")
            .arg("-q")
            .arg(&guest.disk)
            .arg(grown.to_string()),
    );
    let seed = guest.seed(&user_data(DNS, ""), "iid-s7");
    let boot = guest.boot(&seed);
    let r = &boot.reports;
    assert_eq!(r.get("disk-bytes"), grown.to_string());
    let part: u64 = r.get("part-bytes").parse().unwrap();
    let rootfs: u64 = r.get("rootfs-bytes").parse().unwrap();
    // Partition 1 reaches the end of the disk: all but the 111 MiB before it (BIOS boot,
    // ESP, alignment) and the backup GPT.
    assert!(
        part >= grown - (112 << 20),
        "partition {part} of a {grown}-byte disk"
    );
    // The file system fills the partition (less its own metadata): without growing it would
    // be about 40% of the disk.
    assert!(
        rootfs as f64 >= 0.9 * part as f64,
        "root file system {rootfs} in a {part}-byte partition"
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

/// The IP addresses of a certificate's subjectAltName.
fn san_addresses(pem: &str) -> BTreeSet<String> {
    x509(pem, &["-ext", "subjectAltName"])
        .split([',', '\n'])
        .filter_map(|s| s.trim().strip_prefix("IP Address:").map(str::to_owned))
        .collect()
}

/// Checks of IP mode on `address`, from outside: the certificate nginx presents names the
/// address (and is self-signed), Jitsi Meet's page answers at `https://ADDRESS/` verified
/// with that certificate as its own CA, and Rocket.Chat was started with
/// `https://ADDRESS:3000/`. Returns the certificate.
fn assert_ip_mode(boot: &Boot, address: &str) -> String {
    let chain = boot.served_chain(443, address);
    assert_eq!(chain.len(), 1, "a self-signed certificate alone");
    let leaf = chain[0].clone();
    assert_eq!(san_addresses(&leaf), BTreeSet::from([address.to_owned()]));
    let dir = scratch("e2e-s9");
    let ca = dir.path().join("self.pem");
    std::fs::write(&ca, &leaf).unwrap();
    let jitsi = boot.curl(443, address, "/", true, Some(&ca));
    assert_eq!(jitsi.status, 200);
    assert!(jitsi.body.contains("jitsi-meet-stand-in"), "{}", jitsi.body);
    let url = format!("https://{address}:3000/");
    let chat = boot.curl(3000, address, "/", true, Some(&ca));
    chat.assert_settings(&[("ROOT_URL", &url), ("OVERWRITE_SETTING_Site_Url", &url)]);
    let status = boot.reports.all("status");
    assert!(
        status.contains(&format!("dns_name:     none: IP mode, served on {address}")),
        "{status:?}"
    );
    let motd = boot.reports.all("motd").join("\n");
    assert!(
        motd.contains(&format!("runs on its IP address {address} "))
            && motd.contains("set dns_name in /etc/appliance/config.yaml"),
        "{motd}"
    );
    assert_eq!(boot.reports.get("prosody-check"), "ok");
    assert_eq!(boot.reports.get("login-focus"), "ok");
    leaf
}

/// Scenario 9: no DNS name. Booted with no user-data at all (no seed: cloud-init finds no
/// datasource and disables itself, as on a disk imported into a hypervisor) the appliance
/// comes up on the guest's address (IP mode), as the instance its machine id names; then,
/// as a new instance with cloud-init's `hostname: single-label`, the host name is applied and
/// it is IP mode again; in the same boot, dns_name set in config.yaml and `reconfigure` move
/// it to the name.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s9_no_dns_name_runs_on_the_address_until_given_one() {
    let mut guest = Guest::new(image(), "9");
    let boot = guest.boot_with(None);
    assert_services_run(&boot, "success exit=0");
    let configured = boot
        .console
        .lines()
        .find(|l| l.contains(" for instance machine-"));
    assert!(configured.is_some(), "{}", boot.console);
    // Its network: the base overlay's fallback (cloud-init, disabled, wrote none).
    assert_eq!(boot.reports.get("network-fallback"), "ran=yes written");
    let address = boot.reports.get("guest-address");
    assert!(address.parse::<std::net::Ipv4Addr>().is_ok(), "{address:?}");
    assert_ip_mode(&boot, &address);
    drop(boot);

    let seed = guest.seed(
        "#cloud-config\nhostname: single-label\nruncmd:\n  - [/usr/local/sbin/appliance-test-reconfigure, meet.example.test]\n",
        "iid-s9-b",
    );
    let mut boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    // With a datasource, cloud-init's network configuration alone.
    assert_eq!(boot.reports.get("network-fallback"), "ran=no none");
    assert_eq!(boot.reports.get("hostname"), "single-label");
    assert!(
        boot.console.contains("single-label login:"),
        "{}",
        boot.console
    );
    assert_ip_mode(&boot, &address);

    // reconfigure to the name, in the same boot: then the second report.
    let line = boot.wait_for("APPLIANCE-REPORT reconfigure ");
    assert!(
        line.contains("reconfigure ok applied meet.example.test "),
        "{line}"
    );
    boot.wait_for("APPLIANCE-REPORT END again");
    let at = boot.console.find("APPLIANCE-REPORT reconfigure ").unwrap();
    boot.reports = Reports::parse(&boot.console[at..]);
    assert_services_run(&boot, "success exit=0");
    assert_eq!(boot.reports.get("hostname"), "single-label");
    let status = boot.reports.all("status");
    assert!(
        status.contains(&format!("dns_name:     {DNS}")),
        "{status:?}"
    );
    assert!(boot.reports.all("motd").is_empty(), "{:?}", boot.reports);
    assert_eq!(
        boot.reports.get("prosody-vhost"),
        format!("/etc/prosody/conf.d/{DNS}.cfg.lua")
    );
    assert_eq!(boot.reports.get("login-focus"), "ok");
    let chain = boot.served_chain(443, DNS);
    assert_eq!(san_names(&chain[0]), BTreeSet::from([DNS.to_owned()]));
    let dir = scratch("e2e-s9");
    let ca = dir.path().join("self.pem");
    std::fs::write(&ca, &chain[0]).unwrap();
    boot.assert_jitsi_served(&ca);
    let chat = boot.curl(3000, DNS, "/", true, Some(&ca));
    chat.assert_settings(&[("ROOT_URL", "https://meet.example.test:3000/")]);
}
