//! The product itself (issue 15, point 4): profiles/rocketchat-jitsi-bionic.toml built with
//! `scripts/build-standin-product` (the vendor payloads stood in, everything else the real
//! thing: tests/standins/README.md), with one overlay added, `test-report` (the guest's own
//! report on its serial console), and booted under OVMF with Secure Boot enforcing (bionic's
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
//! Acceptance scenarios moved here from e2e.rs (issue 15), with the same guest machinery
//! (common/guest.rs): S2 (self-signed certificate) and S6 (clones share no identity or
//! secret). S5 stays in e2e.rs for now: on the product it failed on the report's own file list
//! (sorted in the locale cloud-init sets at the first boot; now in C).
//!
//! The profile's [base] is product_base.rs's, so the debootstrapped base is shared through the
//! cache. Every test's name starts with `product_`.

mod common;

use appliance::qemu::Firmware;
use common::guest::*;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DNS: &str = "meet.product.test";
const CHAT: &str = "chat.product.test";

/// The product profile with `test-report` added (and only qcow2 made), in `dir`.
fn test_profile(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(repo().join("profiles/rocketchat-jitsi-bionic.toml")).unwrap();
    let mut out = String::new();
    let mut replaced = 0;
    for line in text.lines() {
        if line.starts_with("name = ") {
            out.push_str("name = \"product-test\"\n");
            out.push_str(&format!(
                "overlays_dir = \"{}\"\n",
                repo().join("overlays").display()
            ));
            replaced += 1;
        } else if let Some(list) = line.strip_prefix("overlays = [") {
            out.push_str(&format!(
                "overlays = [{}, \"test-report\"]\n",
                list.trim_end_matches(']')
            ));
            replaced += 1;
        } else if line.starts_with("formats = ") {
            out.push_str("formats = [\"qcow2\"]\n");
            replaced += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(
        replaced, 3,
        "the product profile's name, overlays or formats line moved"
    );
    let path = dir.join("product-test.toml");
    std::fs::write(&path, out).unwrap();
    path
}

/// The built qcow2 (once for this file's tests).
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = scratch("product").keep();
        let profile = test_profile(&dir);
        let out = dir.join("out");
        let mut cmd = tool("bash");
        cmd.arg(repo().join("scripts/build-standin-product"))
            .arg(&profile)
            .arg(&out)
            .env("APPLIANCE", env!("CARGO_BIN_EXE_appliance"));
        let start = Instant::now();
        run_ok(&mut cmd);
        eprintln!("product: built in {:.0?}", start.elapsed());
        out.join("product-test.qcow2")
    })
}

/// The built image as the acceptance scenarios boot it: under OVMF with Secure Boot
/// enforcing, with the memory `appliance boot` gives, and waits long enough for TCG on a
/// loaded machine (a first boot reports in about 160 s on an idle one).
fn machine() -> &'static Image {
    static MACHINE: OnceLock<Image> = OnceLock::new();
    MACHINE.get_or_init(|| Image {
        path: image().to_path_buf(),
        firmware: Firmware::Uefi { secure_boot: true },
        memory_mib: appliance::qemu::DEFAULT_MEMORY_MIB,
        cpu: None,
        wait: Duration::from_secs(1200),
    })
}

/// The rules ufw must have: the product profile's `ufw_allow`, as the plan resolves it.
fn profile_rules() -> Vec<String> {
    ufw_allow(&repo().join("profiles/rocketchat-jitsi-bionic.toml"))
}

/// The image's root file system (once for this file's tests).
fn root() -> &'static ImageReader {
    static ROOT: OnceLock<ImageReader> = OnceLock::new();
    ROOT.get_or_init(|| ImageReader::open(image()))
}

#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_image_is_ubuntu_18_04_and_its_firstboot_needs_glibc_2_27() {
    let os = root().debugfs("cat /usr/lib/os-release");
    assert!(os.lines().any(|l| l == "ID=ubuntu"), "{os}");
    assert!(os.lines().any(|l| l == "VERSION_ID=\"18.04\""), "{os}");
    root().assert_firstboot_needs_at_most_glibc_2_27();
}

/// The guest's reports: (key, value) of each `APPLIANCE-REPORT key value` line.
fn reports(console: &str) -> Vec<(String, String)> {
    console
        .lines()
        .filter_map(|line| {
            let (_, rest) = line
                .trim_end_matches('\r')
                .split_once("APPLIANCE-REPORT ")?;
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn all<'a>(reports: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    reports
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(reports: &'a [(String, String)], key: &str, console: &str) -> &'a str {
    all(reports, key)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no {key} report in:\n{console}"))
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
    let image = image();
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

/// MongoDB's replica set, the appliance's Rocket.Chat units, and what Rocket.Chat stored:
/// Site_Url from the drop-in's ROOT_URL, the Jitsi settings the appliance's unit set over REST.
fn assert_mongo_and_rocketchat(r: &[(String, String)], console: &str) {
    let get = |key: &str| one(r, key, console);
    assert_eq!(get("active-mongod"), "active", "{console}");
    assert_eq!(get("mongo-rs"), "127.0.0.1:27017 PRIMARY", "{console}");
    for unit in [
        "appliance-mongo-rs",
        "appliance-rocketchat-admin",
        "appliance-rocketchat-jitsi",
    ] {
        assert_eq!(
            get(&format!("result-{unit}")),
            "success active",
            "{unit}: {console}"
        );
    }
    assert_eq!(get("active-rocketchat"), "active", "{console}");
    let settings: BTreeSet<&str> = all(r, "rc-setting").into_iter().collect();
    for want in [
        format!("Site_Url=https://{DNS}:3000/"),
        "Jitsi_Enabled=true".to_owned(),
        format!("Jitsi_Domain={DNS}"),
        "Jitsi_SSL=true".to_owned(),
    ] {
        assert!(
            settings.contains(want.as_str()),
            "{want} not in {settings:?}"
        );
    }
}

/// prosody (the stand-in: Ubuntu 18.04's real Prosody 0.10) runs firstboot's configuration for
/// the name and accepts jicofo's and the videobridge's logins (STARTTLS, SASL PLAIN on
/// auth.<name>) with the passwords firstboot wrote into their configuration; the control, a
/// wrong password, is refused by prosody (not merely unanswered).
fn assert_prosody_accepts_focus_and_jvb(r: &[(String, String)], console: &str) {
    let get = |key: &str| one(r, key, console);
    assert_eq!(get("active-prosody"), "active", "{console}");
    assert_eq!(
        get("prosody-vhost"),
        format!("/etc/prosody/conf.d/{DNS}.cfg.lua")
    );
    assert_eq!(get("prosody-check"), "ok");
    assert_eq!(get("login-focus"), "ok", "focus@auth.{DNS}");
    assert_eq!(get("login-jvb"), "ok", "jvb@auth.{DNS}");
    let wrong = get("login-wrong");
    assert!(
        wrong.starts_with("failed: ") && wrong.contains("not-authorized"),
        "a wrong password was not refused by prosody: {wrong}"
    );
}

/// ufw: active, and exactly the product profile's rules (as `appliance plan` resolves them).
fn assert_ufw_has_the_profile_rules(r: &[(String, String)]) {
    let ufw = all(r, "ufw");
    assert!(ufw.contains(&"Status: active"), "{ufw:?}");
    let plan = run_ok(
        appliance()
            .arg("plan")
            .arg(repo().join("profiles/rocketchat-jitsi-bionic.toml"))
            .arg("--json"),
    );
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let allowed = v["variables"]["ufw_allow"]
        .as_str()
        .expect("the plan shows ufw_allow");
    let mut want = BTreeSet::new();
    for rule in allowed.split_whitespace() {
        want.insert(format!("{rule} ALLOW IN Anywhere"));
        want.insert(format!("{rule} (v6) ALLOW IN Anywhere (v6)"));
    }
    // The rules: the lines after `ufw status verbose`'s "--" line.
    let got: BTreeSet<String> = ufw
        .iter()
        .skip_while(|l| !l.starts_with("--"))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(got, want, "{ufw:?}");
}

#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_boots_under_secure_boot_and_configures_every_service() {
    let console = boot_to_report();
    let r = reports(&console);
    // All of them, for whoever reads a failure below.
    for (k, v) in &r {
        eprintln!("report {k} {v}");
    }
    let get = |key: &str| one(&r, key, &console);

    // bionic's own signed chain under Secure Boot enforcing.
    assert!(console.contains("Secure boot enabled"), "{console}");
    assert!(console.contains("Linux version 4.15.0-"), "{console}");
    assert_eq!(get("os"), "ubuntu 18.04");
    assert_eq!(get("firstboot"), "success exit=0", "{console}");
    assert_eq!(get("hostname"), DNS);

    // MongoDB's replica set rs01 primary; Rocket.Chat's units and stored settings.
    assert_mongo_and_rocketchat(&r, &console);

    // nginx serves Jitsi Meet's page with its configuration included for this name.
    let page = get("jitsi-page");
    assert!(
        page.contains(" config=1 ") || page.contains(" config=2 "),
        "{page}"
    );
    assert!(page.ends_with("includes-left=0"), "{page}");
    assert_eq!(get("jitsi-page-domain"), format!("domain: \"{DNS}\""));
    assert_eq!(get("nginx-t"), "ok");

    // prosody accepts focus and jvb with the secrets firstboot wrote, and refuses a wrong one.
    assert_prosody_accepts_focus_and_jvb(&r, &console);

    // OpenJDK's keystore has the auth certificate firstboot made, by its fingerprint.
    let fpr = get("auth-cert-sha256");
    assert_eq!(fpr.len(), 95, "{fpr}");
    let keystore = all(&r, "java-keystore").join("\n");
    assert!(
        keystore.contains(&format!("auth.{DNS}")) && keystore.contains(fpr),
        "auth.{DNS} ({fpr}) not trusted by Java:\n{keystore}"
    );

    // ufw: active, and exactly the profile's rules.
    assert_ufw_has_the_profile_rules(&r);
}

/// Scenario 2 (moved from e2e.rs): no certificate given: self-signed, covering every name
/// served; behind each name the service it is for (Jitsi Meet's page, Rocket.Chat at its
/// ROOT_URL on a port firstboot opened).
#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_s2_self_signed_certificate() {
    let mut guest = Guest::new(machine(), "product-2");
    let chat_url = format!("https://{CHAT}:8443/");
    let seed = guest.seed(
        &user_data(DNS, &format!("  root_url: {chat_url}\n")),
        "iid-product-s2",
    );
    let boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    for (port, name) in [(443, DNS), (8443, CHAT)] {
        let chain = boot.served_chain(port, name);
        assert_eq!(chain.len(), 1, "{name}: a self-signed certificate alone");
        let leaf = &chain[0];
        assert_eq!(
            x509(leaf, &["-subject"]).replace("subject=", ""),
            x509(leaf, &["-issuer"]).replace("issuer=", ""),
            "self-signed"
        );
        assert_eq!(
            san_names(leaf),
            BTreeSet::from([DNS.to_owned(), CHAT.to_owned()])
        );
        // It verifies as its own CA for the name asked for.
        let dir = scratch("product-s2");
        let ca = dir.path().join("self.pem");
        std::fs::write(&ca, leaf).unwrap();
        let reached = boot.curl(port, name, "/", true, Some(&ca));
        assert_eq!(reached.status, 200, "{name}: {}", reached.body);
        if port == 443 {
            // Jitsi Meet's page (the stand-in package's index.html, through nginx).
            assert!(
                reached
                    .body
                    .contains("<title>Jitsi Meet (stand-in)</title>"),
                "{}",
                reached.body
            );
        } else {
            // Rocket.Chat's page names the Site_Url it stored: ROOT_URL's.
            assert!(
                reached
                    .body
                    .contains(&format!("Rocket.Chat (stand-in) at {chat_url}")),
                "{}",
                reached.body
            );
        }
    }
    let settings = boot.reports.all("rc-setting");
    assert!(
        settings.contains(&format!("Site_Url={chat_url}")),
        "{settings:?}"
    );
    // ROOT_URL's port is not one of the profile's: firstboot opened it (and says so).
    let mut want = expected_rules(&profile_rules());
    want.insert("8443/tcp ALLOW IN Anywhere # appliance-firstboot".into());
    want.insert("8443/tcp (v6) ALLOW IN Anywhere (v6) # appliance-firstboot".into());
    assert_eq!(ufw_rules(&boot.reports.all("ufw")), want);
}

/// Scenario 6 (moved from e2e.rs): two machines from one image share no identity or secret.
/// (The product's prosody is a stand-in, not an XMPP server: the XMPP logins the Debian 12
/// image checked are not tried here; the accounts, passwords and certificates are compared.)
#[test]
#[ignore = "builds the product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn product_s6_clones_share_no_identity_or_secret() {
    let ud = user_data(DNS, "");
    let mut seen = Vec::new();
    for (machine_label, instance) in [
        ("product-6a", "iid-product-s6-a"),
        ("product-6b", "iid-product-s6-b"),
    ] {
        let mut guest = Guest::new(machine(), machine_label);
        let seed = guest.seed(&ud, instance);
        let boot = guest.boot(&seed);
        assert_services_run(&boot, "success exit=0");
        let ids = boot.reports.identities();
        let empty = "e3b0c44298fc1c14"; // the hash of nothing
        for key in [
            "id-machine-id",
            "id-focus-password",
            "id-jvb-password",
            "id-muc-nickname",
            "id-turn-secret",
            "id-ssh-host-keys",
            "id-certificate",
            "id-prosody-auth-certificate",
            "id-prosody-accounts",
        ] {
            let value = ids.get(key).cloned().unwrap_or_default();
            assert!(
                !value.is_empty() && value != empty,
                "{instance}: {key} {value:?}"
            );
        }
        seen.push((
            ids,
            boot.ssh_host_keys(),
            fingerprint(&boot.served_chain(443, DNS)[0]),
            boot.reports.get("auth-cert-sha256"),
        ));
    }
    let (a, b) = (&seen[0], &seen[1]);
    for (key, value) in &a.0 {
        assert_ne!(
            Some(value),
            b.0.get(key),
            "both machines have the same {key}"
        );
    }
    assert!(a.1.is_disjoint(&b.1), "shared SSH host keys: {:?}", a.1);
    assert_ne!(a.2, b.2, "the same self-signed certificate");
    // The auth certificate Java trusts is each machine's own.
    assert_eq!(a.3.len(), 95, "{:?}", a.3);
    assert_ne!(a.3, b.3, "the same auth certificate in Java's keystore");
}
