//! The product itself (issue 15, point 4): profiles/rocketchat-jitsi-bionic.toml built with
//! `scripts/build-standin-product` (the vendor payloads stood in, everything else the real
//! thing: tests/standins/README.md), with two test overlays added, `test-report` (the guest's own
//! report on its serial console) and `test-acme` (S8's ACME CA), and booted under OVMF with Secure Boot enforcing (bionic's
//! own signed shim, GRUB and kernel) with a NoCloud seed. Checked from outside the VM (debugfs,
//! objdump) and from the guest's report:
//!
//! - the OS in the image is Ubuntu 18.04, and the firstboot binary needs nothing newer than
//!   glibc 2.27;
//! - appliance-firstboot applied the user-data; the replica set is initiated and its member
//!   primary; Rocket.Chat stored Site_Url from the drop-in's ROOT_URL and the six Jitsi
//!   settings the appliance's own unit sets over REST;
//! - nginx serves Jitsi Meet's page with its configuration included (server-side include);
//! - OpenJDK 11's keystore trusts the auth certificate firstboot made for the name;
//! - ufw 0.36 has exactly the profile's rules.
//!
//! The acceptance scenarios, moved here from e2e.rs (issue 15), with the same guest machinery
//! (common/guest.rs): S1 to S9. To spend fewer boots, S1 and S7 share one boot, and S3, S5 and
//! S4 are one disk's five boots, each scenario's steps in its own function. S8's CA is pebble
//! in the guest (the `test-acme` overlay, added here as `test-report` is: the build host's
//! Debian pebble with the host's loader and C library, since Ubuntu 18.04 packages none). The product's prosody stand-in is Ubuntu 18.04's real
//! Prosody 0.10: jicofo's and the videobridge's logins are tried (S1, S6, S9 and the boot test).
//!
//! The profile's [base] is product_base.rs's, so the debootstrapped base is shared through the
//! cache. Every test's name starts with `product_`.

mod common;

use appliance::qemu::Firmware;
use common::guest::*;
use common::product::*;
use common::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// This file's product: Ubuntu 18.04.
const P: &Product = &BIONIC;

#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_image_is_ubuntu_18_04_and_its_firstboot_needs_glibc_2_27() {
    P.assert_image_os();
    P.root().assert_firstboot_needs_at_most_glibc_2_27();
}

/// Boots the image under OVMF with Secure Boot enforcing with a NoCloud seed naming [`DNS`],
/// until the guest's report ends; returns the serial console's text.
fn boot_to_report() -> String {
    let dir = scratch("product-boot");
    let ud = dir.path().join("user-data");
    std::fs::write(
        &ud,
        format!("#cloud-config\nappliance:\n  dns_name: {DNS}\n"),
    )
    .unwrap();
    let log = dir.path().join("serial.log");
    // Built first, so that the time printed below is the boot's alone.
    let image = P.image();
    let start = Instant::now();
    let out = appliance()
        .arg("boot")
        .arg(image)
        .args(["--uefi", "--secure-boot", "--user-data"])
        .arg(&ud)
        .args(["--timeout", "1500", "--expect", "APPLIANCE-REPORT END"])
        .arg("--serial-log")
        .arg(&log)
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    assert!(
        out.status.success(),
        "no report ({}): {}\nlast lines:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        console
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "product: reported {:.0?} after QEMU's start",
        start.elapsed()
    );
    console
}

#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_boots_under_secure_boot_and_configures_every_service() {
    let console = boot_to_report();
    let r = Reports::parse(&console);
    assert_eq!(r.get("firstboot"), "success exit=0", "{console}");
    assert_eq!(r.get("hostname"), DNS);
    // bionic's own signed chain under Secure Boot enforcing; MongoDB, Rocket.Chat, nginx,
    // prosody, Java.
    assert_product_services(P, &r, &console);
    // ufw: active, and exactly the profile's rules.
    let ufw = r.all("ufw");
    assert!(ufw.iter().any(|l| l == "Status: active"), "{ufw:?}");
    assert_eq!(ufw_rules(&ufw), expected_rules(&P.profile_rules()));
}

/// Scenario 2 (moved from e2e.rs): no certificate given: self-signed, covering every name
/// served; behind each name the service it is for (Jitsi Meet's page, Rocket.Chat at its
/// ROOT_URL on a port firstboot opened).
#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_s2_self_signed_certificate() {
    s2_self_signed_certificate(P, Firmware::Uefi { secure_boot: true });
}

/// Scenario 6 (moved from e2e.rs): two machines from one image share no identity or secret;
/// on each, jicofo and the videobridge log in to prosody with that machine's own passwords.
#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_s6_clones_share_no_identity_or_secret() {
    s6_clones_share_no_identity_or_secret(P, Firmware::Uefi { secure_boot: true });
}

/// Scenario 7's step (moved from e2e.rs): the disk was grown by `grown` bytes before the first
/// boot: the root file system fills it.
fn assert_s7_grown_disk_is_filled(boot: &Boot, grown: u64) {
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
    // be a fraction of the disk.
    assert!(
        rootfs as f64 >= 0.9 * part as f64,
        "root file system {rootfs} in a {part}-byte partition"
    );
}

/// Scenarios 7 and 1 (moved from e2e.rs), one boot for both: a disk grown before the first
/// boot, and the user's own certificate in the user-data.
#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_s1_s7_own_certificate_on_a_grown_disk() {
    let pki = Pki::new();
    let cert = pki.issue("meet", &[DNS]);
    let mut guest = Guest::new(
        &P.machine_under(Firmware::Uefi { secure_boot: false }),
        "product-1+7",
    );
    let info: serde_json::Value = serde_json::from_str(&stdout(&run_ok(
        tool("qemu-img")
            .args(["info", "--output=json"])
            .arg(&guest.disk),
    )))
    .unwrap();
    let grown = info["virtual-size"].as_u64().unwrap() + (3 << 30);
    run_ok(
        tool("qemu-img")
            .args(["resize", "-q"])
            .arg(&guest.disk)
            .arg(grown.to_string()),
    );
    let seed = guest.seed(&user_data(DNS, &certificate(&cert)), "iid-product-s1");
    let boot = guest.boot(&seed);
    assert!(!secure_boot_said(&boot.console), "{}", boot.console);
    assert_services_run(&boot, "success exit=0");
    assert_s7_grown_disk_is_filled(&boot, grown);
    assert_s1_own_certificate(P, &boot, &pki, &cert);
}

/// Scenario 3's first step: ROOT_URL on another host name (443 by SNI), with a certificate
/// for both names.
fn s3_root_url_on_another_name(guest: &mut Guest, pki: &Pki) {
    let both = pki.issue("both", &[DNS, CHAT]);
    let seed = guest.seed(
        &user_data(
            DNS,
            &format!("  root_url: https://{CHAT}/\n{}", certificate(&both)),
        ),
        "iid-product-s3-a",
    );
    let boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    assert_chat(
        &boot,
        (443, CHAT),
        &pki.ca_file(),
        &format!("https://{CHAT}/"),
        3000,
    );
    assert_jitsi_served(&boot, DNS, &pki.ca_file());
    assert_eq!(boot.served_chain(443, CHAT), pem_blocks(&both.chain));
}

/// Scenario 3's second step: the same disk as a new instance whose ROOT_URL is the DNS name's
/// port 3000, with a certificate for the DNS name alone; returns that certificate, the seed
/// and what the boot wrote (scenario 5 boots the same seed again).
fn s3_then_on_port_3000(guest: &mut Guest, pki: &Pki) -> (Issued, PathBuf, Written) {
    let meet = pki.issue("meet", &[DNS]);
    let seed = guest.seed(
        &user_data(
            DNS,
            &format!("  root_url: https://{DNS}:3000/\n{}", certificate(&meet)),
        ),
        "iid-product-s3-b",
    );
    let boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    assert_eq!(boot.served_chain(3000, DNS), pem_blocks(&meet.chain));
    assert_eq!(boot.served_chain(443, DNS), pem_blocks(&meet.chain));
    let url = format!("https://{DNS}:3000/");
    assert_chat(&boot, (3000, DNS), &pki.ca_file(), &url, 3001);
    // Plain HTTP on the TLS port is sent to HTTPS.
    let plain = boot.curl(3000, DNS, "/x", false, None);
    assert_eq!(
        (plain.status, plain.location.as_str()),
        (301, format!("https://{DNS}:3000/x").as_str())
    );
    assert_jitsi_served(&boot, DNS, &pki.ca_file());
    let written = Written::of(&boot);
    (meet, seed, written)
}

/// Scenario 4's steps: bad user-data (an invalid name; a key that does not match the
/// certificate) leaves the last good configuration in force (`good`'s certificate for DNS,
/// Rocket.Chat at the DNS name's port 3000), says so on the console and in
/// `appliance-firstboot status`.
fn s4_bad_user_data_keeps_the_last_good_configuration(guest: &mut Guest, pki: &Pki, good: &Issued) {
    let other = pki.issue("other", &[DNS]);
    let mismatched = Issued {
        chain: good.chain.clone(),
        key: other.key.clone(),
        leaf: good.leaf.clone(),
    };
    let bad = [
        (
            "iid-product-s4-name",
            user_data("bad_name.example.test", ""),
            "appliance.dns_name: \"bad_name.example.test\" is not a valid DNS name: it holds '_': only letters, digits, '-' and '.' are allowed",
        ),
        (
            "iid-product-s4-key",
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
        assert_eq!(boot.served_chain(443, DNS), pem_blocks(&good.chain));
        let url = format!("https://{DNS}:3000/");
        assert_chat(&boot, (3000, DNS), &pki.ca_file(), &url, 3001);
    }
}

/// Scenarios 3, 5 and 4 (moved from e2e.rs) as one disk's boots, each scenario's steps named:
/// S3, ROOT_URL on another name (443 by SNI), then, as a new instance, on the DNS name's port
/// 3000; S5, a reboot with that same user-data rewrites nothing; S4, bad user-data twice
/// (an invalid name, a mismatched key), each leaving S3's last configuration in force. (Five
/// boots for the seven these scenarios took apart.)
#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_s3_s5_s4_root_url_moves_a_reboot_rewrites_nothing_bad_user_data_is_refused() {
    let pki = Pki::new();
    let mut guest = Guest::new(P.machine(), "product-3+5+4");
    s3_root_url_on_another_name(&mut guest, &pki);
    let (meet, seed, before) = s3_then_on_port_3000(&mut guest, &pki);
    s5_reboot_with_the_same_user_data(&mut guest, &seed, "iid-product-s3-b", &before);
    s4_bad_user_data_keeps_the_last_good_configuration(&mut guest, &pki, &meet);
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
/// with that certificate as its own CA, and Rocket.Chat is at `https://ADDRESS:3000/`; and
/// from the guest's report: status and motd say IP mode, prosody's configuration checks clean.
fn assert_ip_mode(boot: &Boot, address: &str) {
    let chain = boot.served_chain(443, address);
    assert_eq!(chain.len(), 1, "a self-signed certificate alone");
    assert_eq!(
        san_addresses(&chain[0]),
        BTreeSet::from([address.to_owned()])
    );
    let dir = scratch("product-s9");
    let ca = dir.path().join("self.pem");
    std::fs::write(&ca, &chain[0]).unwrap();
    assert_jitsi_served(boot, address, &ca);
    let url = format!("https://{address}:3000/");
    assert_chat(boot, (3000, address), &ca, &url, 3001);
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
}

/// Scenario 9's last step: `reconfigure` (run by the user-data's runcmd once the boot's report
/// is out) moved the machine from IP mode to the DNS name, in the same boot: the second report.
fn s9_reconfigure_to_the_name(boot: &mut Boot) {
    let line = boot.wait_for("APPLIANCE-REPORT reconfigure ");
    assert!(
        line.contains(&format!("reconfigure ok applied {DNS} ")),
        "{line}"
    );
    boot.wait_for("APPLIANCE-REPORT END again");
    let at = boot.console.find("APPLIANCE-REPORT reconfigure ").unwrap();
    boot.reports = Reports::parse(&boot.console[at..]);
    assert_services_run(boot, "success exit=0");
    assert_eq!(boot.reports.get("hostname"), "single-label");
    let status = boot.reports.all("status");
    assert!(
        status.contains(&format!("dns_name:     {DNS}")),
        "{status:?}"
    );
    // IP mode's notice is gone from the motd (the product's own notice of the first boot's
    // Rocket.Chat administrator stays until the user deletes it).
    let motd = boot.reports.all("motd").join("\n");
    assert!(
        !motd.contains("runs on its IP address") && !motd.contains("set dns_name"),
        "{motd}"
    );
    assert!(
        motd.contains("Rocket.Chat: an administrator was made"),
        "{motd}"
    );
    assert_eq!(
        boot.reports.get("prosody-vhost"),
        format!("/etc/prosody/conf.d/{DNS}.cfg.lua")
    );
    // The accounts moved to auth.<the name>: jicofo and the videobridge log in there.
    assert_xmpp_logins(&boot.reports);
    let chain = boot.served_chain(443, DNS);
    assert_eq!(san_names(&chain[0]), BTreeSet::from([DNS.to_owned()]));
    let dir = scratch("product-s9");
    let ca = dir.path().join("self.pem");
    std::fs::write(&ca, &chain[0]).unwrap();
    assert_jitsi_served(boot, DNS, &ca);
    assert_chat(
        boot,
        (3000, DNS),
        &ca,
        &format!("https://{DNS}:3000/"),
        3001,
    );
}

/// Scenario 9 (moved from e2e.rs): no DNS name. Booted with no user-data at all (no seed:
/// cloud-init finds no datasource and disables itself, as on a disk imported into a
/// hypervisor) the appliance comes up on the guest's address (IP mode), as the instance its
/// machine id names; then, as a new instance with cloud-init's `hostname: single-label`, the
/// host name is applied and it is IP mode again; in the same boot, dns_name set in
/// config.yaml and `reconfigure` move it to the name, where jicofo and the videobridge log in
/// to prosody.
#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_s9_no_dns_name_runs_on_the_address_until_given_one() {
    let mut guest = Guest::new(&P.machine_under(Firmware::Bios), "product-9");
    let boot = guest.boot_with(None);
    assert!(!secure_boot_said(&boot.console), "{}", boot.console);
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
        &format!("#cloud-config\nhostname: single-label\nruncmd:\n  - [/usr/local/sbin/appliance-test-reconfigure, {DNS}]\n"),
        "iid-product-s9-b",
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
    s9_reconfigure_to_the_name(&mut boot);
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

/// Scenario 8's first part: the first attempt failed (nothing listened on 127.0.0.1:14000)
/// while the self-signed certificate was in place; a later one is valid with pebble's.
fn assert_s8_failed_then_valid(console: &str) {
    // Each ACME report is a state line then an issuer line, paired here in console order
    // (not by index: a kernel message written into the middle of a line can spoil one).
    let acme = acme_reports(console);
    let failed = acme
        .iter()
        .position(|(state, _)| state.starts_with("failed failures=1 "))
        .unwrap_or_else(|| panic!("no failed attempt first: {acme:?}"));
    let valid = acme
        .iter()
        .position(|(state, _)| state.starts_with("valid "))
        .unwrap_or_else(|| {
            // The raw lines too: a pairing problem and a missing report look alike otherwise.
            let raw: Vec<_> = report_lines(console)
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
}

/// Scenario 8 (moved from e2e.rs): Let's Encrypt, from pebble on the guest's 127.0.0.1 (the
/// test-acme overlay): the first attempt fails (the CA is not up yet), the retry obtains the
/// certificate, which replaces the self-signed one for nginx and prosody. Then the guest
/// reports again (test-acme's report-when-acme-valid, from the user-data's runcmd, once
/// appliance-acme's run has ended): prosody, restarted with the new certificate, still accepts
/// jicofo's and the videobridge's logins, and Java still trusts the auth certificate, which
/// the ACME certificate does not replace.
#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_s8_lets_encrypt_from_pebble_with_a_retry() {
    let mut guest = Guest::new(P.machine(), "product-8");
    let seed = guest.seed(
        &format!(
            "{}runcmd:\n  - [/usr/local/lib/appliance-test/report-when-acme-valid]\n",
            user_data(
                DNS,
                "  certificate:\n    letsencrypt:\n      email: ops@example.test\n      directory: https://127.0.0.1:14000/dir\n",
            )
        ),
        "iid-product-s8",
    );
    let mut boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    // The auth certificate Java trusts, as the boot's report has it. (That report may come
    // before or after the ACME certificate: on the product, Rocket.Chat and Java take longer
    // than the failed attempt and pebble's issuance; the ACME reports say when it changed.)
    let auth = boot.reports.get("auth-cert-sha256");
    assert_eq!(auth.len(), 95, "{auth}");
    let first_end = boot.console.find("APPLIANCE-REPORT END ok").unwrap();

    boot.wait_for("APPLIANCE-REPORT acme valid");
    boot.vm.wait_for_match("no issuer line naming Pebble", |l| {
        l.contains("APPLIANCE-REPORT cert-issuer ") && l.contains("Pebble")
    });
    boot.wait_for("APPLIANCE-REPORT END acme-valid");
    assert_s8_failed_then_valid(&boot.console);
    let served = boot.served_chain(443, DNS);
    assert!(
        x509(&served[0], &["-issuer"]).contains("Pebble"),
        "{served:?}"
    );
    assert_eq!(san_names(&served[0]), BTreeSet::from([DNS.to_owned()]));
    // Jitsi Meet's page behind it (pebble's root is the guest's own: not verified here).
    let page = boot.curl(443, DNS, "/", true, None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("<title>Jitsi Meet (stand-in)</title>"),
        "{}",
        page.body
    );

    // The report after the certificate change.
    boot.reports = Reports::parse(&boot.console[first_end..]);
    assert_eq!(boot.reports.get("END"), "acme-valid");
    assert_services_run(&boot, "success exit=0");
    let r = &boot.reports;
    assert!(r.get("cert-issuer").contains("Pebble"), "{r:?}");
    assert!(r.get("prosody-cert-issuer").contains("Pebble"), "{r:?}");
    assert_eq!(r.get("prosody-check"), "ok");
    assert_xmpp_logins(r);
    assert_eq!(r.get("auth-cert-sha256"), auth);
    let keystore = r.all("java-keystore").join("\n");
    assert!(
        keystore.contains(&format!("auth.{DNS}")) && keystore.contains(&auth),
        "auth.{DNS} ({auth}) not trusted by Java after the certificate change:\n{keystore}"
    );
    assert_eq!(r.get("mongo-rs"), "127.0.0.1:27017 PRIMARY");
}
