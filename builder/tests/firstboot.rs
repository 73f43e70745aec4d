//! appliance-firstboot in the Debian 12 test image, booted under QEMU with a NoCloud seed made
//! by `appliance seed` (issue 4's acceptance): the oneshot sets the host name, nginx serves the
//! given certificate on 443 (read from the host through a forwarded port with
//! `openssl s_client`), the Rocket.Chat drop-in holds ROOT_URL, prosody has a VirtualHost for
//! the DNS name (and `prosodyctl check config` passes), and a second boot of the same disk
//! changes nothing.
//!
//! What the guest's files say comes from the test-report overlay's unit, which reads them in
//! the guest after firstboot and prints them on the serial console; the certificate is checked
//! from outside.

mod common;

use appliance::qemu::{Firmware, Forward};
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a leaf for `name`, made with openssl (not with our code): (chain PEM, key PEM,
/// leaf SHA-256 fingerprint as openssl prints it).
fn certificate(dir: &Path, name: &str) -> (String, String, String) {
    let sh = |script: &str| {
        run_ok(Command::new("sh").arg("-c").arg(script).current_dir(dir));
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=appliance-test-ca -keyout ca.key -out ca.crt 2>/dev/null",
    );
    sh(&format!(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN={name} \
         -keyout leaf.key -out leaf.csr 2>/dev/null && \
         printf 'subjectAltName=DNS:{name}\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' >ext && \
         openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 20 \
         -extfile ext -out leaf.crt 2>/dev/null"
    ));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let fp = stdout(&run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(dir.join("leaf.crt")),
    ));
    (
        read("leaf.crt") + &read("ca.crt"),
        read("leaf.key"),
        fp.trim().to_string(),
    )
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// The APPLIANCE-REPORT lines of one boot, by key.
fn reports(console: &str) -> BTreeMap<String, String> {
    console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once("APPLIANCE-REPORT "))
        .map(|(_, rest)| {
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The leaf certificate nginx presents for `name` on 127.0.0.1:`port`, as openssl's SHA-256
/// fingerprint line, retried while nginx starts.
fn served_fingerprint(port: u16, name: &str) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256"
    );
    for _ in 0..30 {
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && text.contains("Fingerprint") {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    panic!("no certificate on 127.0.0.1:{port} (forwarded to the guest's 443)");
}

fn built_image(dir: &Path) -> PathBuf {
    let profile = debian12_profile(dir, "[disk]\nboot = [\"bios\", \"uefi\"]\n");
    let out = dir.join("out");
    run_ok(
        appliance()
            .arg("build")
            .arg(&profile)
            .arg("--out")
            .arg(&out),
    );
    out.join("debian12-test.qcow2")
}

#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn firstboot_configures_the_test_image_from_user_data_once() {
    let dir = scratch("firstboot");
    let image = built_image(dir.path());
    // Two boots of one disk: a copy, so the build's artifact stays as built.
    let disk = dir.path().join("disk.qcow2");
    std::fs::copy(&image, &disk).unwrap();

    let name = "meet.example.test";
    let (chain, key, fingerprint) = certificate(dir.path(), name);
    let ud = dir.path().join("user-data");
    std::fs::write(
        &ud,
        format!(
            "#cloud-config\nappliance:\n  dns_name: {name}\n  root_url: https://{name}:3000/\n  certificate:\n    cert: |\n{}    key: |\n{}",
            indent(&chain),
            indent(&key)
        ),
    )
    .unwrap();
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["seed", "--user-data"])
            .arg(&ud)
            .arg("-o")
            .arg(dir.path().join("seed.img")),
    );

    let boot = |check_tls: bool| {
        let port = free_port();
        let mut vm = TestVm::start(
            &disk,
            Firmware::Bios,
            Some(dir.path().join("seed.img")),
            vec![Forward {
                host: port,
                guest: 443,
            }],
            false,
        );
        vm.wait_for("APPLIANCE-REPORT END");
        // Logins open after firstboot (it runs before systemd-user-sessions).
        vm.wait_for(" login:");
        let served = check_tls.then(|| served_fingerprint(port, name));
        (reports(&vm.console()), served, vm.console())
    };

    let (first, served, console) = boot(true);
    let get = |r: &BTreeMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
    assert_eq!(get(&first, "hostname"), name, "{console}");
    assert_eq!(get(&first, "firstboot"), "success exit=0", "{console}");
    assert!(
        get(&first, "firstboot-log").starts_with(&format!("applied {name} for instance ")),
        "{first:?}"
    );
    assert!(
        console.contains(&format!("{name} login:")) || console.contains("meet login:"),
        "{console}"
    );
    assert_eq!(
        served.as_deref(),
        Some(fingerprint.as_str()),
        "nginx serves another certificate"
    );
    assert_eq!(get(&first, "nginx"), "active");
    assert!(
        get(&first, "dropin").contains(&format!("ROOT_URL=https://{name}:3000/")),
        "{first:?}"
    );
    assert_eq!(
        get(&first, "prosody-vhost"),
        format!("/etc/prosody/conf.d/{name}.cfg.lua"),
        "{first:?}"
    );
    assert_eq!(get(&first, "prosody-check"), "ok", "{first:?}");
    assert_eq!(get(&first, "ufw"), "Status: active", "{first:?}");

    // The same disk and user-data again: nothing is rewritten.
    let (second, _, console) = boot(false);
    assert_eq!(get(&second, "firstboot"), "success exit=0", "{console}");
    assert!(
        get(&second, "firstboot-log").starts_with("up to date: instance "),
        "{second:?}"
    );
    assert_eq!(
        get(&second, "files"),
        get(&first, "files"),
        "a second boot changed files"
    );
}
