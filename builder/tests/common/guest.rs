//! The acceptance scenarios' guest machinery (product.rs; written for any image): one
//! scenario's disk on the built image, its seeds, its boots with ports forwarded to 127.0.0.1,
//! the guest's reports, and what is read from outside (certificates with openssl, pages with
//! curl, SSH host keys, ufw's rules).

use super::*;
use appliance::qemu::{Firmware, Forward};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A built image and how its scenarios boot it.
#[derive(Clone, Debug)]
pub struct Image {
    pub path: PathBuf,
    pub firmware: Firmware,
    pub memory_mib: u32,
    /// How long each wait on the serial console may take.
    pub wait: Duration,
}

pub fn ufw_allow(profile: &Path) -> Vec<String> {
    plan_variable(profile, "ufw_allow")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The value of the variable `name` as `appliance plan` resolves it for `profile`.
pub fn plan_variable(profile: &Path, name: &str) -> String {
    let plan: serde_json::Value = serde_json::from_str(&stdout(&run_ok(
        appliance().arg("plan").arg(profile).arg("--json"),
    )))
    .unwrap();
    plan["variables"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{} sets no {name}", profile.display()))
        .to_owned()
}

/// User-data for `appliance:` holding `dns_name` and the lines `rest` (already indented).
pub fn user_data(dns_name: &str, rest: &str) -> String {
    format!("#cloud-config\nappliance:\n  dns_name: {dns_name}\n{rest}")
}

/// The guest's reports on a console, in order: (key, value) of each `APPLIANCE-REPORT key value`
/// line.
pub fn report_lines(console: &str) -> impl Iterator<Item = (&str, &str)> {
    console.lines().filter_map(|line| {
        let (_, rest) = line
            .trim_end_matches('\r')
            .split_once("APPLIANCE-REPORT ")?;
        Some(rest.split_once(' ').unwrap_or((rest, "")))
    })
}

/// What the guest reported in one boot: every value of each key, in order.
#[derive(Debug, Default)]
pub struct Reports(pub BTreeMap<String, Vec<String>>);

impl Reports {
    pub fn parse(console: &str) -> Reports {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in report_lines(console) {
            map.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Reports(map)
    }

    /// The (last) value of `key`; empty when it was not reported.
    pub fn get(&self, key: &str) -> String {
        self.0
            .get(key)
            .and_then(|v| v.last().cloned())
            .unwrap_or_default()
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.get(key).cloned().unwrap_or_default()
    }

    /// The `id-*` values: what two machines must not share.
    pub fn identities(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("id-"))
            .map(|(k, v)| (k.clone(), v.last().cloned().unwrap_or_default()))
            .collect()
    }
}

/// One scenario's disk: a qcow2 overlay on the built image, kept across its boots.
pub struct Guest {
    pub image: Image,
    /// The scenario (and which machine of it), for the figures.
    pub label: String,
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    pub boots: u32,
}

/// A running boot of a guest.
pub struct Boot {
    pub vm: TestVm,
    /// Guest port → the port on 127.0.0.1 forwarded to it.
    pub ports: BTreeMap<u16, u16>,
    pub reports: Reports,
    pub console: String,
}

/// The ports every boot forwards.
pub const PORTS: [u16; 5] = [22, 80, 443, 3000, 8443];

impl Guest {
    pub fn new(image: &Image, label: &str) -> Guest {
        let dir = scratch(&format!("e2e-s{label}"));
        let disk = dir.path().join("disk.qcow2");
        run_ok(
            tool("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                .arg(&image.path)
                .arg(&disk),
        );
        Guest {
            image: image.clone(),
            label: label.to_owned(),
            dir,
            disk,
            boots: 0,
        }
    }

    /// A NoCloud seed for `user_data` and the instance id `instance`.
    pub fn seed(&self, user_data: &str, instance: &str) -> PathBuf {
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
    pub fn boot(&mut self, seed: &Path) -> Boot {
        self.boot_with(Some(seed))
    }

    /// Boots with `seed`, or with no seed at all (a disk imported into a hypervisor: cloud-init
    /// finds no datasource), and waits for the guest's report; records the figures.
    pub fn boot_with(&mut self, seed: Option<&Path>) -> Boot {
        self.boots += 1;
        let ports: BTreeMap<u16, u16> = PORTS.iter().map(|&g| (g, free_port())).collect();
        let forwards = ports
            .iter()
            .map(|(&guest, &host)| Forward { host, guest })
            .collect();
        let started = Instant::now();
        let mut vm = TestVm::start_sized(
            &self.disk,
            self.image.firmware,
            self.image.memory_mib,
            seed.map(Path::to_path_buf),
            forwards,
        );
        vm.wait = self.image.wait;
        // The oneshot's last line on the console: applied, up to date, or why not. Its error
        // as the journal forwards it ("[  12.3] appliance-firstboot[486]: error: ..."): GRUB's
        // own "error: can't find command `serial'." comes first on the product's console.
        let configured = vm.wait_for_any(&[
            " for instance ",
            "up to date: instance ",
            "error: nothing was changed",
            "]: error: ",
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
pub fn record_figure(scenario: &str, boot: u32, configured_s: f64, reports: &Reports, line: &str) {
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
    pub fn port(&self, guest: u16) -> u16 {
        self.ports[&guest]
    }

    /// The certificates nginx presents on guest port `port` for the SNI `name`, leaf first
    /// (retried while nginx starts).
    pub fn served_chain(&self, port: u16, name: &str) -> Vec<String> {
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
    pub fn curl(&self, port: u16, name: &str, path: &str, tls: bool, ca: Option<&Path>) -> Curl {
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

    /// The SSH host keys the guest presents (key type and blob), read with ssh-keyscan.
    pub fn ssh_host_keys(&self) -> BTreeSet<String> {
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
    pub fn wait_for(&mut self, needle: &str) -> String {
        let line = self.vm.wait_for(needle);
        self.console = self.vm.console();
        line
    }
}

pub struct Curl {
    pub status: u16,
    pub location: String,
    pub body: String,
}

pub fn pem_blocks(text: &str) -> Vec<String> {
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
pub fn x509(pem: &str, args: &[&str]) -> String {
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
pub fn san_names(pem: &str) -> BTreeSet<String> {
    x509(pem, &["-ext", "subjectAltName"])
        .split([',', '\n'])
        .filter_map(|s| s.trim().strip_prefix("DNS:").map(str::to_owned))
        .collect()
}

pub fn fingerprint(pem: &str) -> String {
    x509(pem, &["-fingerprint", "-sha256"]).trim().to_owned()
}

/// ufw's rules as `ufw status verbose` lists them: "TO ACTION FROM", whitespace squeezed.
pub fn ufw_rules(status: &[String]) -> BTreeSet<String> {
    status
        .iter()
        .skip_while(|l| !l.starts_with("--"))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// The rules `allowed` make, for IPv4 and IPv6.
pub fn expected_rules(allowed: &[String]) -> BTreeSet<String> {
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
pub fn assert_services_run(boot: &Boot, firstboot_result: &str) {
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

/// A CA and leaves made with openssl (not with our code).
pub struct Pki {
    dir: tempfile::TempDir,
}

/// A certificate chain and its key, as PEM.
pub struct Issued {
    pub chain: String,
    pub key: String,
    /// The leaf alone.
    pub leaf: String,
}

impl Pki {
    pub fn new() -> Pki {
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

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A leaf for `names` (the first is the subject), signed by the CA.
    pub fn issue(&self, tag: &str, names: &[&str]) -> Issued {
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

/// The `certificate:` lines for a chain and key.
pub fn certificate(issued: &Issued) -> String {
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("      {l}\n")).collect() };
    format!(
        "  certificate:\n    cert: |\n{}    key: |\n{}",
        indent(&issued.chain),
        indent(&issued.key)
    )
}
