//! The appliance's acceptance suite (issue 6): profiles/debian12-test.toml is built once, and
//! each scenario boots it under QEMU (TCG unless KVM is proven to work) from its own disk (a
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

use appliance::qemu::{Firmware, Forward};
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DNS: &str = "meet.example.test";
const CHAT: &str = "chat.example.test";

/// The image, built once for all scenarios (the provisioned tree comes from the cache when
/// another test built it before).
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
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
        out.join("debian12-test.qcow2")
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

fn ufw_allow(profile: &Path) -> Vec<String> {
    let plan: serde_json::Value = serde_json::from_str(&stdout(&run_ok(
        appliance().arg("plan").arg(profile).arg("--json"),
    )))
    .unwrap();
    plan["variables"]["ufw_allow"]
        .as_str()
        .expect("the profile sets ufw_allow")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
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

/// User-data for `appliance:` holding `dns_name` and the lines `rest` (already indented).
fn user_data(dns_name: &str, rest: &str) -> String {
    format!("#cloud-config\nappliance:\n  dns_name: {dns_name}\n{rest}")
}

/// The guest's reports on a console, in order: (key, value) of each `APPLIANCE-REPORT key value`
/// line.
fn report_lines(console: &str) -> impl Iterator<Item = (&str, &str)> {
    console.lines().filter_map(|line| {
        let (_, rest) = line
            .trim_end_matches('\r')
            .split_once("APPLIANCE-REPORT ")?;
        Some(rest.split_once(' ').unwrap_or((rest, "")))
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

/// The `certificate:` lines for a chain and key.
fn certificate(issued: &Issued) -> String {
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("      {l}\n")).collect() };
    format!(
        "  certificate:\n    cert: |\n{}    key: |\n{}",
        indent(&issued.chain),
        indent(&issued.key)
    )
}

/// What the guest reported in one boot: every value of each key, in order.
#[derive(Debug, Default)]
struct Reports(BTreeMap<String, Vec<String>>);

impl Reports {
    fn parse(console: &str) -> Reports {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in report_lines(console) {
            map.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Reports(map)
    }

    /// The (last) value of `key`; empty when it was not reported.
    fn get(&self, key: &str) -> String {
        self.0
            .get(key)
            .and_then(|v| v.last().cloned())
            .unwrap_or_default()
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0.get(key).cloned().unwrap_or_default()
    }

    /// The `id-*` values: what two machines must not share.
    fn identities(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("id-"))
            .map(|(k, v)| (k.clone(), v.last().cloned().unwrap_or_default()))
            .collect()
    }
}

/// One scenario's disk: a qcow2 overlay on the built image, kept across its boots.
struct Guest {
    /// The scenario (and which machine of it), for the figures.
    label: String,
    dir: tempfile::TempDir,
    disk: PathBuf,
    boots: u32,
}

/// A running boot of a guest.
struct Boot {
    vm: TestVm,
    /// Guest port → the port on 127.0.0.1 forwarded to it.
    ports: BTreeMap<u16, u16>,
    reports: Reports,
    console: String,
}

/// The ports every boot forwards.
const PORTS: [u16; 5] = [22, 80, 443, 3000, 8443];

impl Guest {
    fn new(label: &str) -> Guest {
        let dir = scratch(&format!("e2e-s{label}"));
        let disk = dir.path().join("disk.qcow2");
        run_ok(
            tool("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                .arg(image())
                .arg(&disk),
        );
        Guest {
            label: label.to_owned(),
            dir,
            disk,
            boots: 0,
        }
    }

    /// A NoCloud seed for `user_data` and the instance id `instance`.
    fn seed(&self, user_data: &str, instance: &str) -> PathBuf {
        let ud = self.dir.path().join(format!("{instance}.user-data"));
        let md = self.dir.path().join(format!("{instance}.meta-data"));
        std::fs::write(&ud, user_data).unwrap();
        std::fs::write(&md, format!("instance-id: {instance}\n")).unwrap();
        let seed = self.dir.path().join(format!("{instance}.seed.img"));
        run_ok(
            appliance()
                .args(["seed", "--user-data"])
                .arg(&ud)
                .arg("--meta-data")
                .arg(&md)
                .arg("-o")
                .arg(&seed),
        );
        seed
    }

    /// Boots with `seed` and waits for the guest's report; records the figures.
    fn boot(&mut self, seed: &Path) -> Boot {
        self.boot_with(Some(seed))
    }

    /// Boots with `seed`, or with no seed at all (a disk imported into a hypervisor: cloud-init
    /// finds no datasource), and waits for the guest's report; records the figures.
    fn boot_with(&mut self, seed: Option<&Path>) -> Boot {
        self.boots += 1;
        let ports: BTreeMap<u16, u16> = PORTS.iter().map(|&g| (g, free_port())).collect();
        let forwards = ports
            .iter()
            .map(|(&guest, &host)| Forward { host, guest })
            .collect();
        let started = Instant::now();
        let mut vm = TestVm::start(
            &self.disk,
            Firmware::Bios,
            seed.map(Path::to_path_buf),
            forwards,
            false,
        );
        // The oneshot's last line on the console: applied, up to date, or why not.
        let configured = vm.wait_for_any(&[
            " for instance ",
            "up to date: instance ",
            "error: nothing was changed",
            "error: ",
        ]);
        let configured_s = started.elapsed().as_secs_f64();
        vm.wait_for("APPLIANCE-REPORT END");
        let console = vm.console();
        let reports = Reports::parse(&console);
        record_figure(&self.label, self.boots, configured_s, &reports, &configured);
        Boot {
            vm,
            ports,
            reports,
            console,
        }
    }
}

/// Appends one boot's figures to target/tmp/e2e-figures.tsv (and prints them): seconds from
/// QEMU's start to the oneshot's line; in milliseconds, the oneshot's own time, that of a
/// oneshot running /bin/true in the same guest (the floor), and, on a boot that found nothing
/// to do, that of the same run again with a warm page cache ("-" otherwise).
fn record_figure(scenario: &str, boot: u32, configured_s: f64, reports: &Reports, line: &str) {
    let ms = |key: &str| match reports.get(key).parse::<u64>() {
        Ok(us) => format!("{:.1}", us as f64 / 1000.0),
        Err(_) => "-".to_owned(),
    };
    let text = format!(
        "{scenario}\t{boot}\t{configured_s:.1}\t{}\t{}\t{}\t{}\n",
        ms("firstboot-us"),
        ms("true-us"),
        ms("firstboot-warm-us"),
        line.trim()
    );
    print!("e2e figure: {text}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-figures.tsv");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Boot {
    fn port(&self, guest: u16) -> u16 {
        self.ports[&guest]
    }

    /// The certificates nginx presents on guest port `port` for the SNI `name`, leaf first
    /// (retried while nginx starts).
    fn served_chain(&self, port: u16, name: &str) -> Vec<String> {
        let script = format!(
            "openssl s_client -connect 127.0.0.1:{} -servername {name} -showcerts </dev/null 2>/dev/null",
            self.port(port)
        );
        for _ in 0..30 {
            let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
            let chain = pem_blocks(&String::from_utf8_lossy(&out.stdout));
            if !chain.is_empty() {
                return chain;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        panic!("no certificate on guest port {port} for {name}");
    }

    /// `curl` of `url` on `name`, resolved to the port forwarded to the guest's `port`:
    /// (status, redirect location, body). With `ca`, the server's certificate must verify.
    fn curl(&self, port: u16, name: &str, path: &str, tls: bool, ca: Option<&Path>) -> Curl {
        let host_port = self.port(port);
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{name}:{host_port}{path}");
        let mut cmd = tool("curl");
        cmd.args(["-sS", "--max-time", "20", "--resolve"])
            .arg(format!("{name}:{host_port}:127.0.0.1"))
            .args(["-w", "\n%{http_code} %{redirect_url}"]);
        match ca {
            Some(ca) => cmd.arg("--cacert").arg(ca),
            None => cmd.arg("--insecure"),
        };
        let out = run_ok(cmd.arg(&url));
        let text = stdout(&out);
        let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
        let (code, location) = last.split_once(' ').unwrap_or((last, ""));
        Curl {
            status: code.parse().unwrap_or(0),
            location: location.to_owned(),
            body: body.to_owned(),
        }
    }

    /// Asserts Jitsi Meet (its stand-in page) is served at https://DNS/, verified with `ca`.
    fn assert_jitsi_served(&self, ca: &Path) {
        let jitsi = self.curl(443, DNS, "/", true, Some(ca));
        assert_eq!(jitsi.status, 200);
        assert!(jitsi.body.contains("jitsi-meet-stand-in"), "{}", jitsi.body);
    }

    /// The SSH host keys the guest presents (key type and blob), read with ssh-keyscan.
    fn ssh_host_keys(&self) -> BTreeSet<String> {
        for _ in 0..30 {
            let out = tool("ssh-keyscan")
                .args(["-T", "10", "-p"])
                .arg(self.port(22).to_string())
                .arg("127.0.0.1")
                .output()
                .unwrap();
            let keys: BTreeSet<String> = stdout(&out)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(' ').map(|(_, key)| key.to_owned()))
                .collect();
            if !keys.is_empty() {
                return keys;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        panic!("no SSH host keys from the guest");
    }

    /// Waits for a serial line containing `needle` (after the report).
    fn wait_for(&mut self, needle: &str) -> String {
        let line = self.vm.wait_for(needle);
        self.console = self.vm.console();
        line
    }
}

struct Curl {
    status: u16,
    location: String,
    body: String,
}

impl Curl {
    /// The settings Rocket.Chat's stand-in answers with (`NAME=value` words).
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

    /// Asserts Rocket.Chat's stand-in was started with each of `want`.
    fn assert_settings(&self, want: &[(&str, &str)]) {
        let got = self.settings();
        for (k, v) in want {
            assert_eq!(got.get(*k).map(String::as_str), Some(*v), "{k}: {got:?}");
        }
    }
}

fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line == "-----END CERTIFICATE-----" {
            blocks.extend(current.take());
        }
    }
    blocks
}

/// What openssl says of a certificate: `-subject`, `-issuer`, `-ext subjectAltName`, ...
fn x509(pem: &str, args: &[&str]) -> String {
    let dir = scratch("e2e-x509");
    let file = dir.path().join("cert.pem");
    std::fs::write(&file, pem).unwrap();
    stdout(&run_ok(
        tool("openssl")
            .args(["x509", "-noout"])
            .args(args)
            .arg("-in")
            .arg(&file),
    ))
}

/// The DNS names of a certificate's subjectAltName.
fn san_names(pem: &str) -> BTreeSet<String> {
    x509(pem, &["-ext", "subjectAltName"])
        .split([',', '\n'])
        .filter_map(|s| s.trim().strip_prefix("DNS:").map(str::to_owned))
        .collect()
}

fn fingerprint(pem: &str) -> String {
    x509(pem, &["-fingerprint", "-sha256"]).trim().to_owned()
}

/// ufw's rules as `ufw status verbose` lists them: "TO ACTION FROM", whitespace squeezed.
fn ufw_rules(status: &[String]) -> BTreeSet<String> {
    status
        .iter()
        .skip_while(|l| !l.starts_with("--"))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// The rules `allowed` make, for IPv4 and IPv6.
fn expected_rules(allowed: &[String]) -> BTreeSet<String> {
    allowed
        .iter()
        .flat_map(|r| {
            [
                format!("{r} ALLOW IN Anywhere"),
                format!("{r} (v6) ALLOW IN Anywhere (v6)"),
            ]
        })
        .collect()
}

/// Checks shared by every boot: firstboot's result, and that the services it configures run.
fn assert_services_run(boot: &Boot, firstboot_result: &str) {
    let r = &boot.reports;
    assert_eq!(r.get("firstboot"), firstboot_result, "{}", boot.console);
    for unit in [
        "nginx",
        "prosody",
        "rocketchat",
        "jicofo",
        "jitsi-videobridge2",
    ] {
        assert_eq!(r.get(&format!("active-{unit}")), "active", "{unit}: {r:?}");
    }
    assert_eq!(r.get("nginx-t"), "ok", "{r:?}");
}

/// Scenario 1: the user's own certificate.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s1_own_certificate() {
    let pki = Pki::new();
    let cert = pki.issue("meet", &[DNS]);
    let mut guest = Guest::new("1");
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

/// Scenario 2: no certificate given: self-signed, covering every name served.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s2_self_signed_certificate() {
    let mut guest = Guest::new("2");
    let seed = guest.seed(
        &user_data(DNS, &format!("  root_url: https://{CHAT}:8443/\n")),
        "iid-s2",
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
        let dir = scratch("e2e-s2");
        let ca = dir.path().join("self.pem");
        std::fs::write(&ca, leaf).unwrap();
        let reached = boot.curl(port, name, "/", true, Some(&ca));
        assert!(reached.status == 200 || reached.status == 302, "{name}");
    }
    // ROOT_URL's port is not one of the profile's: firstboot opened it (and says so).
    let mut want = expected_rules(&profile_rules());
    want.insert("8443/tcp ALLOW IN Anywhere # appliance-firstboot".into());
    want.insert("8443/tcp (v6) ALLOW IN Anywhere (v6) # appliance-firstboot".into());
    assert_eq!(ufw_rules(&boot.reports.all("ufw")), want);
}

/// Scenario 3: ROOT_URL on another host name (443 by SNI); then on the DNS name's port 3000.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s3_root_url_on_another_name_then_on_port_3000() {
    let pki = Pki::new();
    let both = pki.issue("both", &[DNS, CHAT]);
    let mut guest = Guest::new("3");
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
    let mut guest = Guest::new("4");
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

/// Scenario 5: a reboot with the same user-data rewrites nothing.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s5_reboot_with_the_same_user_data_changes_nothing() {
    let mut guest = Guest::new("5");
    let seed = guest.seed(&user_data(DNS, ""), "iid-s5");
    let first = guest.boot(&seed);
    assert_services_run(&first, "success exit=0");
    let cert = first.served_chain(443, DNS);
    let files = first.reports.get("files");
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
    assert_eq!(
        second.reports.get("files"),
        files,
        "a second boot rewrote files"
    );
    assert_eq!(second.served_chain(443, DNS), cert);
    // The oneshot's own time is a figure (BENCHMARKS.md, target under 50 ms), not asserted:
    // speed targets live in benchmarks. The report also ran it once more, warm (a second run
    // that must succeed and, as the file times above show, write nothing either).
    for key in ["firstboot-us", "firstboot-warm-us"] {
        let us: u64 = second.reports.get(key).parse().unwrap_or(0);
        assert!(us > 0, "{key}: {:?}", second.reports);
    }
}

/// Scenario 6: two machines from one image share no identity or secret.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s6_clones_share_no_identity_or_secret() {
    let ud = user_data(DNS, "");
    let mut seen = Vec::new();
    for (machine, instance) in [("6a", "iid-s6-a"), ("6b", "iid-s6-b")] {
        let mut guest = Guest::new(machine);
        let seed = guest.seed(&ud, instance);
        let boot = guest.boot(&seed);
        assert_services_run(&boot, "success exit=0");
        assert_eq!(boot.reports.get("login-focus"), "ok");
        assert_eq!(boot.reports.get("login-jvb"), "ok");
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
}

/// Scenario 7: a disk grown before the first boot: the root file system fills it.
#[test]
#[ignore = "builds profiles/debian12-test.toml and boots it under QEMU; run by scripts/test"]
fn s7_grown_disk_is_filled_by_the_root_file_system() {
    let mut guest = Guest::new("7");
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
    let mut guest = Guest::new("8");
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
    let mut guest = Guest::new("9");
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
