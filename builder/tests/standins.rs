//! The stand-ins of the vendor payloads (tests/standins/, README there): what they serve is
//! what the build's own helpers and apt accept, and they behave as the appliance relies on.
//!
//! - the repositories, keys and tarball that tests/standins/make-standins makes, served by
//!   tests/standins/serve.py on 127.0.0.1: apt (the host's, with -o options) verifies them and
//!   offers every pin of the profile, and refuses a tampered index or another key; the
//!   overlays' own `apt-key-pinned` and `fetch-pinned` accept the keys and the Rocket.Chat
//!   tarball through the profile's URLs rewritten by --mirror rules (the build's mechanism);
//! - in Ubuntu 18.04 (tests/standins/make-bionic-tree, an overlay mount of it per test): apt
//!   installs the Jitsi, Prosody and MongoDB stand-ins at the pinned versions with the jitsi
//!   overlay's debconf answers, and their maintainer scripts write exactly the files
//!   overlays/jitsi's jitsi-domain-files lists (the check provision.sh makes), with the
//!   accounts' secrets matching the components' configuration and Java trusting auth.<d>;
//! - the Rocket.Chat stand-in on the real Node.js and npm of the profile's pins (from the npm
//!   registry, checked by the profile's SHA-256), `npm install` from the registry, against
//!   Ubuntu 18.04's real mongod as replica set rs01: the appliance's own rocketchat-jitsi
//!   script sets the Jitsi settings through it, and the settings land in MongoDB; the same
//!   stand-in answering as Rocket.Chat 9.0.1 (Cloud registration, Marketplace, apps API): the
//!   script's "app" integration installs and sets the pinned Jitsi app only for a workspace
//!   registered by REG_TOKEN.

mod common;

use common::repo;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const DOMAIN: &str = "jitsi.appliance.invalid";

fn profile_path() -> PathBuf {
    repo().join("profiles/rocketchat-jitsi-bionic.toml")
}

/// The profile's [variables] and [mirrors] as strings.
fn profile_table(section: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(profile_path()).unwrap();
    let table: toml::Table = text.parse().unwrap();
    table[section]
        .as_table()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stand-ins made and served: the server is stopped on drop.
struct Standins {
    dir: tempfile::TempDir,
    server: Child,
    base: String,
}

impl Standins {
    fn start() -> Standins {
        let dir = common::scratch("standins");
        let out = dir.path().join("standins");
        run_ok(
            Command::new("bash")
                .arg(repo().join("tests/standins/make-standins"))
                .arg(profile_path())
                .arg(&out),
        );
        let portfile = dir.path().join("port");
        let server = Command::new("python3")
            .arg(repo().join("tests/standins/serve.py"))
            .arg(out.join("www"))
            .arg(&portfile)
            .arg(dir.path().join("requests.log"))
            .spawn()
            .expect("python3 is not installed: run scripts/setup");
        let start = Instant::now();
        while !portfile.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the stand-in server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let port = std::fs::read_to_string(&portfile).unwrap();
        Standins {
            dir,
            server,
            base: format!("http://127.0.0.1:{}", port.trim()),
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("standins")
    }

    fn fingerprint(&self) -> String {
        std::fs::read_to_string(self.out().join("fingerprint"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The build's arguments, as scripts/build-standin-product passes them.
    fn args(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.out().join("args"))
            .unwrap()
            .lines()
            .map(|l| {
                let (flag, value) = l.split_once(' ').unwrap();
                (flag.to_string(), value.replace("@BASE@", &self.base))
            })
            .collect()
    }

    /// "PREFIX MIRROR" rules, as the builder writes them for appliance-mirror.
    fn mirror_rules(&self) -> String {
        let mirrors = profile_table("mirrors");
        self.args()
            .iter()
            .filter(|(f, _)| f == "--mirror")
            .map(|(_, v)| {
                let (name, url) = v.split_once('=').unwrap();
                format!("{} {url}\n", mirrors[name])
            })
            .collect()
    }

    /// apt sources for the three repositories, with the profile's URIs rewritten.
    fn sources(&self, keyring: &Path) -> String {
        let vars = profile_table("variables");
        let mirrors = profile_table("mirrors");
        let mut out = String::new();
        for (repo_var, mirror, opts) in [
            ("mongodb_repo", "mongodb", " arch=amd64"),
            ("prosody_repo", "prosody", ""),
            ("jitsi_repo", "jitsi", ""),
        ] {
            let line =
                vars[repo_var].replacen(&mirrors[mirror], &format!("{}/{}", self.base, mirror), 1);
            out.push_str(&format!(
                "deb [signed-by={}{opts}] {line}\n",
                keyring.display()
            ));
        }
        out
    }
}

impl Drop for Standins {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// apt on the host with its own state, lists and sources below `dir`.
fn host_apt(dir: &Path, sources: &str, tool: &str, args: &[&str]) -> Output {
    for d in ["state/lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("sources.list"), sources).unwrap();
    let mut cmd = Command::new(tool);
    for (k, v) in [
        ("Dir::Etc::SourceList", dir.join("sources.list")),
        ("Dir::Etc::SourceParts", PathBuf::from("/dev/null")),
        ("Dir::State", dir.join("state")),
        ("Dir::Cache", dir.join("cache")),
        ("Dir::State::status", dir.join("status")),
    ] {
        cmd.arg("-o").arg(format!("{k}={}", v.display()));
    }
    if !dir.join("status").exists() {
        std::fs::write(dir.join("status"), "").unwrap();
    }
    run(cmd.args(args))
}

/// The packages and the version the profile pins for each.
fn pinned_packages() -> Vec<(&'static str, String)> {
    let v = profile_table("variables");
    let mut out = Vec::new();
    for p in [
        "mongodb-org",
        "mongodb-org-server",
        "mongodb-org-shell",
        "mongodb-org-mongos",
        "mongodb-org-tools",
    ] {
        out.push((p, v["mongodb_version"].clone()));
    }
    out.push(("prosody", v["prosody_version"].clone()));
    out.push(("jitsi-meet", v["jitsi_meet_version"].clone()));
    for p in [
        "jitsi-meet-web",
        "jitsi-meet-web-config",
        "jitsi-meet-prosody",
    ] {
        out.push((p, v["jitsi_meet_web_version"].clone()));
    }
    out.push(("jicofo", v["jicofo_version"].clone()));
    out.push((
        "jitsi-videobridge2",
        v["jitsi_videobridge2_version"].clone(),
    ));
    out
}

/// apt with the stand-ins' `sources`: refused with another key (Debian's archive keyring), and
/// refused when a Packages index was changed after signing.
fn assert_apt_trusts_only_what_the_key_signed(
    s: &Standins,
    d: &Path,
    sources: &str,
    keyring: &Path,
) {
    // Another key (Debian's archive keyring): no repository is trusted.
    let other = host_apt(
        &d.join("apt-other"),
        &sources.replace(
            &keyring.display().to_string(),
            "/usr/share/keyrings/debian-archive-keyring.gpg",
        ),
        "apt-get",
        &["update"],
    );
    let text = String::from_utf8_lossy(&other.stderr);
    assert!(
        text.contains("NO_PUBKEY") || text.contains("not signed"),
        "{other:?}"
    );

    // A Packages index changed after signing: refused.
    let vars = profile_table("variables");
    let suite = vars["mongodb_repo"].split_whitespace().nth(1).unwrap();
    let packages = s.out().join(format!(
        "www/mongodb/dists/{suite}/multiverse/binary-amd64/Packages"
    ));
    let mut text = std::fs::read_to_string(&packages).unwrap();
    text.push_str("\nPackage: intruder\nVersion: 1\nArchitecture: amd64\n");
    std::fs::write(&packages, text).unwrap();
    std::fs::remove_file(packages.with_extension("gz")).unwrap();
    let tampered = host_apt(&d.join("apt-tampered"), sources, "apt-get", &["update"]);
    let text = String::from_utf8_lossy(&tampered.stderr);
    assert!(
        !tampered.status.success() || text.contains("Hash Sum mismatch") || text.contains("E:"),
        "a tampered index was accepted: {tampered:?}"
    );
    assert!(
        text.contains("mismatch") || text.contains("unexpected size"),
        "{tampered:?}"
    );
}

/// fetch-pinned, run by `helper`: Rocket.Chat's tarball with its signature and hash; a
/// signature by another key refused.
fn assert_fetch_pinned_checks_the_signature(
    s: &Standins,
    d: &Path,
    vars: &BTreeMap<String, String>,
    helper: &dyn Fn(&str, &[&str]) -> Output,
) {
    let sha = s
        .args()
        .into_iter()
        .find_map(|(_, v)| v.strip_prefix("rocketchat_sha256=").map(str::to_string))
        .unwrap();
    let tarball = d.join("rocket.chat.tgz");
    let out = helper(
        "fetch-pinned",
        &[
            "--signature",
            &vars["rocketchat_signature_url"],
            "--keyring",
            d.join("rocketchat_key_url.gpg").to_str().unwrap(),
            "--sha256",
            &sha,
            &vars["rocketchat_url"],
            tarball.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let listing = run_ok(Command::new("tar").arg("-tzf").arg(&tarball));
    for f in [
        "bundle/main.js",
        "bundle/.node_version.txt",
        "bundle/programs/server/package.json",
    ] {
        assert!(listing.lines().any(|l| l == f), "{f} not in {listing}");
    }
    // A signature by another key: refused.
    let out = helper(
        "fetch-pinned",
        &[
            "--signature",
            &vars["rocketchat_signature_url"],
            "--keyring",
            "/usr/share/keyrings/debian-archive-keyring.gpg",
            &vars["rocketchat_url"],
            d.join("y").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "{out:?}");
}

/// apt verifies the stand-in repositories with the test key and offers every pin; a tampered
/// index or another key is refused. The overlays' own helpers accept the keys and the
/// Rocket.Chat tarball (signature and SHA-256) through the --mirror rules.
#[test]
fn standin_repositories_are_signed_and_serve_every_pin() {
    let s = Standins::start();
    let d = s.dir.path();
    let keyring = d.join("test-key.gpg");
    run_ok(
        Command::new("gpg")
            .args(["--batch", "--yes", "--dearmor", "-o"])
            .arg(&keyring)
            .arg(s.out().join("test-key.asc")),
    );
    let apt = d.join("apt");
    let sources = s.sources(&keyring);
    let out = host_apt(&apt, &sources, "apt-get", &["update"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("W:"), "{out:?}");
    for (package, version) in pinned_packages() {
        let out = host_apt(
            &apt,
            &sources,
            "apt-cache",
            &["show", &format!("{package}={version}")],
        );
        assert!(
            out.status.success(),
            "{package}={version} is not served: {out:?}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("STAND-IN"), "{text}");
    }

    assert_apt_trusts_only_what_the_key_signed(&s, d, &sources, &keyring);
    let vars = profile_table("variables");

    // The overlays' helpers, as provision.sh runs them, through the mirror rules.
    let rules = d.join("mirrors");
    std::fs::write(&rules, s.mirror_rules()).unwrap();
    // The helpers and appliance-mirror, executable as the build installs them.
    let bin = d.join("bin");
    let lib = repo().join("overlays/appliance-common/files/usr/local/lib/appliance");
    for (from, name) in [
        (repo().join("builder/src/chroot"), "appliance-mirror"),
        (lib.clone(), "fetch-input"),
        (lib.clone(), "fetch-pinned"),
        (lib.clone(), "apt-key-pinned"),
    ] {
        write_exe(
            &bin.join(name),
            &std::fs::read_to_string(from.join(name)).unwrap(),
        );
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let helper = |name: &str, args: &[&str]| -> Output {
        run(Command::new(bin.join(name))
            .args(args)
            .env("PATH", &path)
            .env("APPLIANCE_MIRRORS", &rules)
            .env_remove("APPLIANCE_BUNDLE")
            .env_remove("APPLIANCE_FETCH"))
    };
    let fpr = s.fingerprint();
    for key_var in [
        "mongodb_key_url",
        "prosody_key_url",
        "jitsi_key_url",
        "rocketchat_key_url",
    ] {
        let ring = d.join(format!("{key_var}.gpg"));
        let out = helper(
            "apt-key-pinned",
            &["keyring", &vars[key_var], &fpr, ring.to_str().unwrap()],
        );
        assert!(out.status.success(), "{key_var}: {out:?}");
        // The real fingerprint of the profile is not the test key's: refused.
        let real = key_var.replace("_url", "_fingerprint");
        let out = helper(
            "apt-key-pinned",
            &[
                "keyring",
                &vars[key_var],
                &vars[&real],
                d.join("x").to_str().unwrap(),
            ],
        );
        assert!(
            !out.status.success(),
            "{key_var} accepted with the real fingerprint"
        );
    }
    assert_fetch_pinned_checks_the_signature(&s, d, &vars, &helper);
}

/// An overlay mount of the bionic test tree with /proc, unmounted on drop.
struct Bionic {
    dir: tempfile::TempDir,
}

impl Bionic {
    fn new() -> Bionic {
        let out = run_ok(Command::new("bash").arg(repo().join("tests/standins/make-bionic-tree")));
        let lower = PathBuf::from(out.trim());
        let dir = common::scratch("bionic");
        for d in ["upper", "work", "root"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let root = dir.path().join("root");
        run_ok(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    dir.path().join("upper").display(),
                    dir.path().join("work").display()
                ))
                .arg(&root),
        );
        run_ok(
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(root.join("proc")),
        );
        // Nothing starts in the chroot; sysctl would set the host's kernel.
        write_exe(&root.join("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n");
        std::fs::remove_file(root.join("sbin/sysctl")).unwrap();
        std::os::unix::fs::symlink("/bin/true", root.join("sbin/sysctl")).unwrap();
        Bionic { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn sh(&self, script: &str) -> Output {
        run(Command::new("chroot")
            .arg(self.root())
            .args(["/bin/sh", "-c", script])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ))
    }

    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{script} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root().join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }
}

impl Drop for Bionic {
    fn drop(&mut self) {
        let root = self.root();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(root.join("proc"))
            .status();
        let _ = Command::new("umount").arg("-l").arg(&root).status();
    }
}

fn write_exe(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The stand-in repositories as apt sources inside a chroot (the key copied in).
fn add_standin_sources(b: &Bionic, s: &Standins) {
    let ring = b.root().join("usr/share/keyrings/appliance-standins.gpg");
    run_ok(
        Command::new("gpg")
            .args(["--batch", "--yes", "--dearmor", "-o"])
            .arg(&ring)
            .arg(s.out().join("test-key.asc")),
    );
    std::fs::write(
        b.root().join("etc/apt/sources.list.d/standins.list"),
        s.sources(Path::new("/usr/share/keyrings/appliance-standins.gpg")),
    )
    .unwrap();
    b.sh_ok("apt-get update -q");
}

/// A field of a prosody account record.
fn record_field(record: &str, key: &str) -> String {
    let prefix = format!("[\"{key}\"] = ");
    record
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {record}"))
        .trim_end_matches(';')
        .trim_matches('"')
        .to_string()
}

/// Whether a prosody internal_hashed record holds `password` (SCRAM-SHA-1, computed by
/// Python's hashlib: not the stand-in's code).
fn record_holds(record: &str, password: &str) -> bool {
    let script = "import hashlib,hmac,sys\n\
        p,s,n=sys.argv[1],sys.argv[2],int(sys.argv[3])\n\
        k=hashlib.pbkdf2_hmac('sha1',p.encode(),s.encode(),n)\n\
        print(hashlib.sha1(hmac.new(k,b'Client Key',hashlib.sha1).digest()).hexdigest())";
    let got = run_ok(Command::new("python3").args([
        "-c",
        script,
        password,
        &record_field(record, "salt"),
        &record_field(record, "iteration_count"),
    ]));
    got.trim() == record_field(record, "stored_key")
}

/// The list appliance-firstboot works from, checked as provision.sh checks it: every entry
/// written, and no other file naming the domain.
fn assert_the_domain_files_are_listed(b: &Bionic) {
    let list = std::fs::read_to_string(
        repo().join("overlays/jitsi/files/usr/share/appliance/jitsi-domain-files"),
    )
    .unwrap();
    let entries: Vec<(String, String)> = list
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect();
    assert!(entries.len() > 30, "{entries:?}");
    for (kind, path) in &entries {
        let full = b.root().join(path.trim_start_matches('/'));
        let exists = full.symlink_metadata().is_ok();
        if !kind.ends_with('?') {
            assert!(exists, "{path} ({kind}) was not written by the stand-ins");
        }
        if kind == "link" {
            assert!(
                full.symlink_metadata().unwrap().file_type().is_symlink(),
                "{path} is not a link"
            );
        }
    }
    let encoded = DOMAIN.replace('.', "%2e");
    let found = b.sh_ok(&format!(
        "{{ grep -rlF '{DOMAIN}' /etc /var/lib/prosody /usr/local/share/ca-certificates || true; \
         find /etc /var/lib/prosody /usr/local/share/ca-certificates \\( -name '*{DOMAIN}*' -o -name '*{encoded}*' \\); }} | sort -u"
    ));
    for path in found.lines() {
        assert!(
            entries
                .iter()
                .any(|(_, e)| path == e || path.starts_with(&format!("{e}/"))),
            "{path} names {DOMAIN} but is not in jitsi-domain-files"
        );
    }
}

/// prosody is a real XMPP server (Ubuntu 18.04's Prosody 0.10): it checks the configuration
/// the packages wrote clean and, in a network namespace of its own, accepts focus and jvb
/// with those passwords (test-report's xmpp-login: STARTTLS, SASL PLAIN) and refuses a
/// wrong one.
fn assert_prosody_accepts_focus_and_jvb(b: &Bionic, focus_password: &str, jvb_password: &str) {
    assert!(b
        .sh_ok("prosodyctl check config")
        .contains("All checks passed"));
    let login = repo().join("overlays/test-report/files/usr/local/lib/appliance-test/xmpp-login");
    std::fs::copy(&login, b.root().join("tmp/xmpp-login")).unwrap();
    let auth_host = format!("auth.{DOMAIN}");
    let out = run_ok(
        Command::new("unshare")
            .args(["-n", "chroot"])
            .arg(b.root())
            .args(["/bin/sh", "-c"])
            .arg(format!(
                "ip link set lo up 2>/dev/null || true; install -d -o prosody /run/prosody; \
                 su -s /bin/sh prosody -c 'exec /usr/bin/prosody' & pid=$!; \
                 for _ in $(seq 50); do [ -s /run/prosody/prosody.pid ] && break; sleep 0.2; done; sleep 1; \
                 python3 /tmp/xmpp-login focus {auth_host} '{focus_password}'; \
                 python3 /tmp/xmpp-login jvb {auth_host} '{jvb_password}'; \
                 python3 /tmp/xmpp-login focus {auth_host} '{focus_password}-wrong'; \
                 kill $(cat /run/prosody/prosody.pid) 2>/dev/null; kill $pid 2>/dev/null; wait"
            )),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "ok", "focus: {out}");
    assert_eq!(lines[1], "ok", "jvb: {out}");
    assert!(
        lines[2].starts_with("failed: ") && lines[2].contains("not-authorized"),
        "{out}"
    );
}

/// The stand-in packages install in Ubuntu 18.04 at the pinned versions, as the jitsi and
/// mongodb overlays install them, and write what the appliance relies on: every file of
/// jitsi-domain-files, none more naming the domain; the secrets consistent across
/// components; auth.<d> trusted by Java; MongoDB's unit, configuration, user and shell.
#[test]
#[ignore = "debootstraps Ubuntu 18.04 (cached) and runs apt in a chroot (root); run by scripts/test"]
fn standin_packages_install_in_bionic_and_write_what_the_appliance_lists() {
    let s = Standins::start();
    let b = Bionic::new();
    add_standin_sources(&b, &s);
    let selections =
        repo().join("overlays/jitsi/files/usr/share/appliance/jitsi/debconf-selections");
    std::fs::copy(&selections, b.root().join("tmp/selections")).unwrap();
    b.sh_ok("debconf-set-selections /tmp/selections");
    let pinned: Vec<String> = pinned_packages()
        .iter()
        .map(|(p, v)| format!("{p}={v}"))
        .collect();
    b.sh_ok(&format!(
        "apt-get install -y -q --no-install-recommends {}",
        pinned.join(" ")
    ));
    for (p, v) in pinned_packages() {
        let got = b.sh_ok(&format!("dpkg-query -W -f '${{Version}}' {p}"));
        assert_eq!(got, v, "{p}");
    }

    assert_the_domain_files_are_listed(&b);
    let encoded = DOMAIN.replace('.', "%2e");

    // The secrets: jicofo's password logs in as focus, the videobridge's as jvb, the TURN
    // secret is prosody's and debconf's.
    let jicofo = b.read("/etc/jitsi/jicofo/config");
    let focus_password = jicofo
        .lines()
        .find_map(|l| l.strip_prefix("JICOFO_AUTH_PASSWORD="))
        .unwrap();
    assert!(b
        .read("/etc/jitsi/jicofo/jicofo.conf")
        .contains(&format!("password: \"{focus_password}\"")));
    let auth = format!("/var/lib/prosody/auth%2e{encoded}");
    assert!(record_holds(
        &b.read(&format!("{auth}/accounts/focus.dat")),
        focus_password
    ));
    let jvb = b.read("/etc/jitsi/videobridge/jvb.conf");
    let jvb_password = jvb
        .lines()
        .find_map(|l| l.trim().strip_prefix("PASSWORD = \""))
        .unwrap()
        .trim_end_matches('"');
    assert!(record_holds(
        &b.read(&format!("{auth}/accounts/jvb.dat")),
        jvb_password
    ));
    assert!(b
        .read(&format!("{auth}/roster/focus.dat"))
        .contains(&format!("focus.{DOMAIN}")));
    let prosody = b.read(&format!("/etc/prosody/conf.avail/{DOMAIN}.cfg.lua"));
    assert!(prosody.contains(&format!(
        "unlimited_jids = {{ \"focus@auth.{DOMAIN}\", \"jvb@auth.{DOMAIN}\" }}"
    )));
    assert!(prosody.contains("\"limits_exception\""));
    let turn = prosody
        .lines()
        .find_map(|l| l.strip_prefix("external_service_secret = \""))
        .unwrap()
        .trim_end_matches("\";");
    let config_dat = b.read("/var/cache/debconf/config.dat");
    assert!(config_dat.contains(&format!("Name: jitsi-meet-prosody/turn-secret\nTemplate: jitsi-meet-prosody/turn-secret\nValue: {turn}")), "turn secret not in debconf");
    assert!(b
        .read("/var/cache/debconf/passwords.dat")
        .contains(&format!("Value: {focus_password}")));
    assert_prosody_accepts_focus_and_jvb(&b, focus_password, jvb_password);
    // Java (OpenJDK 11's keystore, rebuilt by update-ca-certificates' hook) trusts auth.<d>.
    let keystore =
        b.sh_ok("keytool -list -keystore /etc/ssl/certs/java/cacerts -storepass changeit");
    assert!(
        keystore.contains(&format!("auth.{DOMAIN}")),
        "Java does not trust auth.{DOMAIN}"
    );
    // nginx's site has SSI for the page's config include.
    let site = b.read(&format!("/etc/nginx/sites-available/{DOMAIN}.conf"));
    assert!(site.contains("ssi on;"));
    assert!(b
        .read("/usr/share/jitsi-meet/index.html")
        .contains("<!--#include virtual=\"/config.js\" -->"));

    // MongoDB: MongoDB's unit and configuration, the user, and Ubuntu's real shell and mongod.
    assert!(b
        .read("/lib/systemd/system/mongod.service")
        .contains("ExecStart=/usr/bin/mongod --config /etc/mongod.conf"));
    b.sh_ok("getent passwd mongodb && test -d /var/lib/mongodb");
    let version = b.sh_ok("mongo --version && mongod --version");
    assert!(version.contains("v3.6"), "{version}");
}

/// A file from the npm registry at `url`, checked against `sha256`, cached by it.
fn download(url: &str, sha256: &str) -> PathBuf {
    let cache = Path::new("/var/cache/appliance/test-downloads");
    std::fs::create_dir_all(cache).unwrap();
    let file = cache.join(sha256);
    if !file.exists() {
        let part = cache.join(format!("{sha256}.part"));
        run_ok(
            Command::new("curl")
                .args(["-fsSL", "-o"])
                .arg(&part)
                .arg(url),
        );
        let got = run_ok(Command::new("sha256sum").arg(&part));
        assert!(
            got.starts_with(sha256),
            "{url}: SHA-256 {got}, not {sha256}"
        );
        std::fs::rename(&part, &file).unwrap();
    }
    file
}

/// Node.js and npm as overlays/rocketchat/provision.sh lays them out, then the stand-in
/// tarball, unpacked and installed as provision.sh does.
fn install_node_and_rocketchat(b: &Bionic, s: &Standins, vars: &BTreeMap<String, String>) {
    let root = b.root();
    let node = download(&vars["node_url"], &vars["node_sha256"]);
    let npm = download(&vars["npm_url"], &vars["npm_sha256"]);
    let node_dir = format!("/opt/node-v{}-linux-x64", vars["node_version"]);
    let nd = root.join(node_dir.trim_start_matches('/'));
    std::fs::create_dir_all(nd.join("lib/node_modules/npm")).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&node)
            .arg("-C")
            .arg(&nd)
            .args(["--strip-components=1", "--no-same-owner"]),
    );
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&npm)
            .arg("-C")
            .arg(nd.join("lib/node_modules/npm"))
            .args(["--strip-components=1", "--no-same-owner"]),
    );
    b.sh_ok(&format!(
        "ln -sfn ../lib/node_modules/npm/bin/npm-cli.js {node_dir}/bin/npm && \
         ln -sfn {node_dir}/bin/node /usr/local/bin/node && ln -sfn {node_dir}/bin/npm /usr/local/bin/npm"
    ));
    assert_eq!(
        b.sh_ok("node --version").trim(),
        format!("v{}", vars["node_version"])
    );

    // The stand-in tarball, unpacked and installed as provision.sh does.
    let tarball = s.out().join("www/rocketchat").join(
        vars["rocketchat_url"]
            .trim_start_matches(&format!("{}/", profile_table("mirrors")["rocketchat"])),
    );
    std::fs::create_dir_all(root.join("opt/rc")).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(root.join("opt/rc"))
            .arg("--no-same-owner"),
    );
    // From the registry through serve.py's pass-through, as the build's --mirror npm= has it.
    b.sh_ok(&format!(
        "cd /opt/rc/bundle/programs/server && HOME=/tmp npm_config_registry={}/npm/ \
         npm install --production --unsafe-perm=true --no-audit --no-fund",
        s.base
    ));
    assert!(root
        .join("opt/rc/bundle/programs/server/node_modules/mongodb/package.json")
        .exists());
}

/// mongod 3.6 with the overlay's configuration (on `port`), in the tree.
fn spawn_mongod(b: &Bionic, port: u16) -> Child {
    let root = b.root();
    let conf = std::fs::read_to_string(
        repo().join("overlays/mongodb/files/usr/share/appliance/mongodb/mongod.conf"),
    )
    .unwrap()
    .replace("port: 27017", &format!("port: {port}"))
    .replace("/var/lib/mongodb", "/tmp/mongodb")
    .replace("/var/log/mongodb/mongod.log", "/tmp/mongod.log");
    std::fs::write(root.join("etc/mongod-test.conf"), conf).unwrap();
    std::fs::create_dir_all(root.join("tmp/mongodb")).unwrap();
    // The configuration's timeZoneInfo needs tzdata (in Ubuntu's images; not in a minbase
    // debootstrap): mongod refuses to start without it.
    b.sh_ok("apt-get install -y -q --no-install-recommends tzdata");
    Command::new("chroot")
        .arg(&root)
        .args(["/usr/bin/mongod", "--config", "/etc/mongod-test.conf"])
        .spawn()
        .unwrap()
}

/// The stand-in server in the tree at `root`, as rocketchat.service runs it, on `rc_port`
/// with mongod on `port`; `extra` environment on top.
fn start_rocketchat(
    root: &Path,
    (port, rc_port): (u16, u16),
    extra: &[(&str, &str)],
    oplog_db: &str,
) -> Child {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .args(["/usr/local/bin/node", "/opt/rc/bundle/main.js"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("NODE_ENV", "production")
        .env("BIND_IP", "127.0.0.1")
        .env("PORT", rc_port.to_string())
        .env("ROOT_URL", "https://chat.example.com/chat/")
        .env(
            "MONGO_URL",
            format!("mongodb://127.0.0.1:{port}/rocketchat?replicaSet=rs01"),
        )
        .env(
            "MONGO_OPLOG_URL",
            format!("mongodb://127.0.0.1:{port}/{oplog_db}?replicaSet=rs01"),
        )
        .env("ADMIN_USERNAME", "boss")
        .env("ADMIN_PASS", "s3cret pass")
        .env("ADMIN_EMAIL", "boss@example.com")
        .env("OVERWRITE_SETTING_Show_Setup_Wizard", "completed")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// A wrong password: 401. The right one: a token, and /me is the administrator. A setting
/// without the second factor, or with a wrong one: refused, unchanged.
fn assert_login_and_second_factor(
    base: &str,
    curl: &dyn Fn(&[&str]) -> (String, String),
    setting: &dyn Fn(&str) -> String,
) {
    let (code, _) = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"user\":\"boss\",\"password\":\"wrong\"}",
        &format!("{base}/api/v1/login"),
    ]);
    assert_eq!(code, "401");
    let auth = login_headers(base);
    let (code, body) = curl(&["-H", &auth[0], "-H", &auth[1], &format!("{base}/api/v1/me")]);
    assert_eq!(code, "200");
    let me: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["username"], "boss");
    assert_eq!(me["emails"][0]["address"], "boss@example.com");
    // A setting without the second factor, or with a wrong one: refused, unchanged.
    let set_enabled = |second_factor: &[&str]| {
        let mut args = vec!["-H", &auth[0], "-H", &auth[1]];
        args.extend_from_slice(second_factor);
        let url = format!("{base}/api/v1/settings/Jitsi_Enabled");
        args.extend([
            "-H",
            "Content-Type: application/json",
            "-d",
            "{\"value\":true}",
        ]);
        args.push(&url);
        curl(&args)
    };
    let (code, body) = set_enabled(&[]);
    assert_eq!(code, "400");
    assert!(body.contains("totp-required"), "{body}");
    let (code, body) = set_enabled(&["-H", "x-2fa-method: password", "-H", "x-2fa-code: 00"]);
    assert_eq!(code, "400");
    assert!(body.contains("totp-invalid"), "{body}");
    assert_eq!(setting("Jitsi_Enabled"), "false");
}

/// The appliance's own script, as appliance-rocketchat-jitsi.service runs it, with `extra`
/// environment (its conf file's, REG_TOKEN); its state in `rc-jitsi.state` of the scratch dir.
fn run_rocketchat_jitsi(s: &Standins, rc_port: u16, extra: &[(&str, &str)]) -> Output {
    let state = s.dir.path().join("state.json");
    std::fs::write(&state, r#"{"dns_name":"meet.example.com","jitsi":true}"#).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg(repo().join("overlays/rocketchat/files/usr/local/lib/appliance/rocketchat-jitsi"))
        .env("APPLIANCE_FIRSTBOOT_STATE", &state)
        .env(
            "APPLIANCE_ROCKETCHAT_JITSI_STATE",
            s.dir.path().join("rc-jitsi.state"),
        )
        .env("PORT", rc_port.to_string())
        .env("ROOT_URL", "https://chat.example.com/chat/")
        .env("ADMIN_USERNAME", "boss")
        .env("ADMIN_PASS", "s3cret pass");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// The mongo shell's answer to `js` on `port`.
fn mongo_eval(b: &Bionic, port: u16, js: &str) -> Output {
    b.sh(&format!(
        "mongo --quiet --norc --port {port} admin --eval '{js}'"
    ))
}

/// mongod 3.6 of the bionic tree with the overlay's configuration on a free port, made the
/// replica set rs01; stopped when dropped.
struct Rs01 {
    port: u16,
    mongod: Child,
}

impl Rs01 {
    fn start(b: &Bionic) -> Rs01 {
        let port = common::free_port();
        let rs01 = Rs01 {
            port,
            mongod: spawn_mongod(b, port),
        };
        initiate_rs01(b, port);
        rs01
    }
}

impl Drop for Rs01 {
    fn drop(&mut self) {
        let _ = self.mongod.kill();
        let _ = self.mongod.wait();
    }
}

/// Waits for mongod on `port`, then makes it the replica set rs01 and waits for it to lead.
fn initiate_rs01(b: &Bionic, port: u16) {
    let mongo = |js: &str| mongo_eval(b, port, js);
    let start = Instant::now();
    while !mongo("db.adminCommand({ping: 1}).ok").status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "mongod did not start: {}",
            b.read("/tmp/mongod.log")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = mongo(&format!(
        "var r = rs.initiate({{_id: \"rs01\", members: [{{_id: 0, host: \"127.0.0.1:{port}\"}}]}}); \
         for (var i = 0; i < 60 && !db.isMaster().ismaster; i++) sleep(500); print(db.isMaster().ismaster)"
    ));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with("true"),
        "{out:?}"
    );
}

/// curl with `args`: (HTTP status, body).
fn curl(args: &[&str]) -> (String, String) {
    let out = run(Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

/// Waits until the stand-in Rocket.Chat (`child`) answers at `base`; fails if it exits.
fn wait_up(base: &str, child: &mut Child) {
    let start = Instant::now();
    while curl(&[&format!("{base}/api/info")]).0 != "200" {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the stand-in Rocket.Chat exited ({status}): {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Rocket.Chat did not answer"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The Rocket.Chat stand-in on the pinned Node.js and npm (the real ones from the npm
/// registry, the profile's URLs and SHA-256s), `npm install` from the registry, Ubuntu 18.04's
/// mongod as replica set rs01 on 127.0.0.1: the administrator from the environment; the
/// appliance's rocketchat-jitsi script sets the Jitsi settings (login, the password as second
/// factor), and they are in MongoDB; Site_Url comes from ROOT_URL once, and from
/// OVERWRITE_SETTING_Site_Url at every start; an oplog URL that is no replica set's `local`
/// and a Node.js of another major are refused at start.
#[test]
#[ignore = "debootstraps Ubuntu 18.04 (cached), downloads Node.js and npm modules from the npm registry (root); run by scripts/test"]
fn rocketchat_standin_answers_like_rocket_chat_on_real_node_and_mongod() {
    let s = Standins::start();
    let b = Bionic::new();
    let vars = profile_table("variables");
    let root = b.root();

    install_node_and_rocketchat(&b, &s, &vars);

    // mongod 3.6 with the overlay's configuration (another port), as replica set rs01.
    let rs01 = Rs01::start(&b);
    let port = rs01.port;
    let mongo = |js: &str| mongo_eval(&b, port, js);

    // The server, as rocketchat.service runs it.
    let rc_port = common::free_port();
    let start_rc = |extra: &[(&str, &str)], oplog_db: &str| {
        start_rocketchat(&root, (port, rc_port), extra, oplog_db)
    };
    let base = format!("http://127.0.0.1:{rc_port}/chat");
    let wait_up = |child: &mut Child| wait_up(&base, child);
    let setting = |name: &str| -> String {
        let out = mongo(&format!("printjson(db.getSiblingDB(\"rocketchat\").rocketchat_settings.findOne({{_id: \"{name}\"}}).value)"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    let mut rc = start_rc(&[], "local");
    wait_up(&mut rc);
    let (code, body) = curl(&[&format!("{base}/api/info")]);
    assert_eq!(code, "200");
    assert!(
        body.contains(&format!("\"version\":\"{}\"", vars["rocketchat_version"])),
        "{body}"
    );
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{rc_port}/api/info")]).0,
        "404",
        "served outside ROOT_URL's path"
    );
    assert_eq!(setting("Site_Url"), "\"https://chat.example.com/chat/\"");
    assert_eq!(setting("Show_Setup_Wizard"), "\"completed\"");
    assert_login_and_second_factor(&base, &curl, &setting);

    // The appliance's own script, as appliance-rocketchat-jitsi.service runs it.
    let out = run_rocketchat_jitsi(&s, rc_port, &[("ROCKETCHAT_JITSI_INTEGRATION", "settings")]);
    assert!(out.status.success(), "{out:?}");
    for (name, value) in [
        ("Jitsi_Enabled", "true"),
        ("Jitsi_Domain", "\"meet.example.com\""),
        ("Jitsi_URL_Room_Prefix", "\"RocketChat\""),
        ("Jitsi_SSL", "true"),
        ("Jitsi_Open_New_Window", "true"),
        ("Jitsi_Enable_Channels", "true"),
    ] {
        assert_eq!(setting(name), value, "{name}");
    }
    let _ = rc.kill();
    let _ = rc.wait();

    // A new ROOT_URL alone leaves Site_Url; OVERWRITE_SETTING_Site_Url sets it.
    let mut rc = start_rc(&[("ROOT_URL", "https://other.example.com/chat/")], "local");
    wait_up(&mut rc);
    assert_eq!(setting("Site_Url"), "\"https://chat.example.com/chat/\"");
    let _ = rc.kill();
    let _ = rc.wait();
    let mut rc = start_rc(
        &[(
            "OVERWRITE_SETTING_Site_Url",
            "https://new.example.com/chat/",
        )],
        "local",
    );
    wait_up(&mut rc);
    assert_eq!(setting("Site_Url"), "\"https://new.example.com/chat/\"");
    // One administrator, however many starts.
    let count = mongo("print(db.getSiblingDB(\"rocketchat\").users.count({roles: \"admin\"}))");
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "1");
    let _ = rc.kill();
    let _ = rc.wait();

    // MONGO_OPLOG_URL not naming a replica set's local database: refused at start.
    let rc = start_rc(&[], "rocketchat");
    let out = rc.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MONGO_OPLOG_URL"),
        "{out:?}"
    );
    // A bundle for another Node.js major: refused at start.
    std::fs::write(root.join("opt/rc/bundle/.node_version.txt"), "v12.22.1\n").unwrap();
    let out = start_rc(&[], "local").wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs Node.js 12.x"),
        "{out:?}"
    );
}

/// Logged in as the stand-in's administrator: the two auth headers.
fn login_headers(base: &str) -> [String; 2] {
    let (code, body) = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"user\":\"boss\",\"password\":\"s3cret pass\"}",
        &format!("{base}/api/v1/login"),
    ]);
    assert_eq!(code, "200", "{body}");
    let login: serde_json::Value = serde_json::from_str(&body).unwrap();
    [
        format!(
            "X-Auth-Token: {}",
            login["data"]["authToken"].as_str().unwrap()
        ),
        format!("X-User-Id: {}", login["data"]["userId"].as_str().unwrap()),
    ]
}

/// The stand-in's output so far (it is killed first), stdout then stderr.
fn stop_and_output(mut child: Child) -> String {
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The Rocket.Chat 9 stand-in's world: its tree, mongod and port, the pinned Jitsi app.
struct Rc9<'a> {
    b: &'a Bionic,
    s: &'a Standins,
    port: u16,
    rc_port: u16,
    base: String,
    app_id: String,
    app_version: String,
}

impl Rc9<'_> {
    /// `js` (with `r` the rocketchat database) in the mongo shell, as JSON.
    fn mongo_json(&self, js: &str) -> serde_json::Value {
        let out = mongo_eval(
            self.b,
            self.port,
            &format!("var r = db.getSiblingDB(\"rocketchat\"); print(JSON.stringify({js}))"),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim().lines().last().unwrap_or("null"))
            .unwrap_or_else(|e| panic!("{js}: {e}: {out:?}"))
    }

    fn setting(&self, name: &str) -> serde_json::Value {
        self.mongo_json(&format!(
            "r.rocketchat_settings.findOne({{_id: \"{name}\"}})"
        ))
    }

    fn app_doc(&self) -> serde_json::Value {
        self.mongo_json(&format!(
            "r.rocketchat_apps.findOne({{_id: \"{}\"}})",
            self.app_id
        ))
    }

    fn start(&self, extra: &[(&str, &str)]) -> Child {
        let mut rc = start_rocketchat(&self.b.root(), (self.port, self.rc_port), extra, "local");
        wait_up(&self.base, &mut rc);
        rc
    }

    /// curl logged in with `auth` at `path` below the base, `args` before it.
    fn api(&self, auth: &[String; 2], args: &[&str], path: &str) -> (String, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let mut all = vec!["-H", &auth[0], "-H", &auth[1]];
        all.extend_from_slice(args);
        all.push(&url);
        let (code, body) = curl(&all);
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (code, json)
    }

    fn providers(&self, auth: &[String; 2]) -> serde_json::Value {
        let (code, body) = self.api(auth, &[], "/api/v1/video-conference.providers");
        assert_eq!(code, "200", "{body}");
        body["data"].clone()
    }

    /// The script in its "app" integration at the pinned app, with REG_TOKEN `token` if any.
    fn script(&self, token: Option<&str>) -> Output {
        let mut env = vec![
            ("ROCKETCHAT_JITSI_INTEGRATION", "app"),
            ("ROCKETCHAT_JITSI_APP_ID", self.app_id.as_str()),
            ("ROCKETCHAT_JITSI_APP_VERSION", self.app_version.as_str()),
        ];
        if let Some(token) = token {
            env.push(("REG_TOKEN", token));
        }
        run_rocketchat_jitsi(self.s, self.rc_port, &env)
    }

    fn state(&self) -> PathBuf {
        self.s.dir.path().join("rc-jitsi.state")
    }
}

/// Not registered: 9.0.1 answers with no Jitsi_* settings and an empty default provider; the
/// script says so and how to opt in, installs nothing, records nothing; `POST /api/apps` is
/// refused and no provider is listed. The stand-in's output.
fn assert_unregistered_gets_no_app(w: &Rc9, version: &str) -> String {
    let rc = w.start(&[]);
    let (_, body) = curl(&[&format!("{}/api/info", w.base)]);
    assert!(
        body.contains(&format!("\"version\":\"{version}\"")),
        "{body}"
    );
    assert_eq!(
        w.mongo_json("r.rocketchat_settings.count({_id: /^Jitsi_/})"),
        0,
        "Jitsi_* settings in 9.0"
    );
    assert_eq!(w.setting("VideoConf_Default_Provider")["value"], "");
    let out = w.script(None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("not registered with Rocket.Chat Cloud")
            && stdout.contains("rocketchat_registration_token"),
        "{out:?}"
    );
    assert!(!w.state().exists(), "state written without the app");
    assert_eq!(w.mongo_json("r.rocketchat_apps.count()"), 0);
    assert_eq!(w.setting("VideoConf_Default_Provider")["value"], "");
    let auth = login_headers(&w.base);
    let install = format!(
        "{{\"appId\":\"{}\",\"marketplace\":true,\"version\":\"{}\"}}",
        w.app_id, w.app_version
    );
    let json = ["-H", "Content-Type: application/json", "-d", &install];
    let (code, body) = w.api(&auth, &json, "/api/apps");
    assert_eq!(code, "400", "{body}");
    assert_eq!(body["success"], false);
    assert!(
        body["error"].as_str().unwrap().contains("not registered"),
        "{body}"
    );
    assert_eq!(w.mongo_json("r.rocketchat_apps.count()"), 0);
    assert_eq!(w.providers(&auth), serde_json::json!([]));
    stop_and_output(rc)
}

/// After the script's run with REG_TOKEN: the pinned app installed and enabled, jitsi_domain
/// and jitsi_ssl set with the rest of each setting object kept (and untouched ones without a
/// value), jitsi the default provider and listed, the state recorded.
fn assert_the_app_is_set_up(w: &Rc9) {
    let app = w.app_doc();
    assert_eq!(app["info"]["version"], w.app_version.as_str(), "{app}");
    assert_eq!(app["status"], "manually_enabled", "{app}");
    let domain = &app["settings"]["jitsi_domain"];
    assert_eq!(domain["value"], "meet.example.com", "{domain}");
    assert_eq!(domain["type"], "string", "{domain}");
    assert_eq!(domain["packageValue"], "meet.jit.si", "{domain}");
    assert_eq!(domain["i18nLabel"], "jitsi_domain", "{domain}");
    let ssl = &app["settings"]["jitsi_ssl"];
    assert_eq!(ssl["value"], true, "{ssl}");
    assert_eq!(ssl["type"], "boolean", "{ssl}");
    assert_eq!(ssl["packageValue"], true, "{ssl}");
    let prefix = &app["settings"]["jitsi_title_prefix"];
    assert_eq!(prefix["packageValue"], "RocketChat", "{prefix}");
    assert!(prefix.get("value").is_none(), "{prefix}");
    assert_eq!(w.setting("VideoConf_Default_Provider")["value"], "jitsi");
    assert_eq!(
        w.providers(&login_headers(&w.base)),
        serde_json::json!([{"key": "jitsi", "label": "Jitsi"}])
    );
    assert_eq!(
        std::fs::read_to_string(w.state()).unwrap().trim(),
        format!("domain=meet.example.com app={}@{}", w.app_id, w.app_version)
    );
}

/// After a restart without REG_TOKEN: the app still installed, enabled, its provider listed;
/// disabled by an administrator, no provider, and the script's next run (state removed)
/// enables it again.
fn assert_the_app_survives_a_restart(w: &Rc9) {
    let rc = w.start(&[]);
    let auth = login_headers(&w.base);
    let (code, installed) = w.api(&auth, &[], "/api/apps/installed");
    assert_eq!(code, "200", "{installed}");
    assert_eq!(installed["apps"][0]["id"], w.app_id.as_str(), "{installed}");
    assert_eq!(
        installed["apps"][0]["status"], "manually_enabled",
        "{installed}"
    );
    let jitsi = serde_json::json!([{"key": "jitsi", "label": "Jitsi"}]);
    assert_eq!(w.providers(&auth), jitsi);
    let disable = [
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"status\":\"manually_disabled\"}",
    ];
    let (code, body) = w.api(&auth, &disable, &format!("/api/apps/{}/status", w.app_id));
    assert_eq!(code, "200", "{body}");
    assert_eq!(w.providers(&auth), serde_json::json!([]));
    std::fs::remove_file(w.state()).unwrap();
    let out = w.script(None);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("enabled Rocket.Chat's Jitsi app"),
        "{out:?}"
    );
    assert_eq!(w.app_doc()["status"], "manually_enabled");
    assert_eq!(w.providers(&auth), jitsi);
    let _ = stop_and_output(rc);
}

/// The same stand-in answering as Rocket.Chat 9.0.1 (the 24.04 profile's pin; on the 18.04
/// profile's Node.js 14, which its .node_version.txt then names), on Ubuntu 18.04's real
/// mongod, with the appliance's rocketchat-jitsi script in its "app" integration at the 24.04
/// profile's pinned Jitsi app: no Jitsi_* settings; without REG_TOKEN the script says the
/// workspace is not registered, installs nothing and records nothing, and the Marketplace
/// install is refused; with REG_TOKEN at Rocket.Chat's start (never logged) the script installs
/// the pinned app, enables it, sets jitsi_domain and jitsi_ssl keeping the rest of each setting
/// object, makes jitsi the default provider, which the providers list then has; the next run
/// does nothing (state), a run without state changes nothing, the app survives a restart, and
/// one an administrator disabled is enabled again by a run without state.
#[test]
#[ignore = "debootstraps Ubuntu 18.04 (cached), downloads Node.js and npm modules from the npm registry (root); run by scripts/test"]
fn rocketchat_9_standin_gets_the_jitsi_app_only_for_a_registered_workspace() {
    let s = Standins::start();
    let b = Bionic::new();
    let noble: toml::Table =
        std::fs::read_to_string(repo().join("profiles/rocketchat-jitsi-noble.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let noble_var = |k: &str| noble["variables"][k].as_str().unwrap().to_string();
    assert_eq!(noble_var("rocketchat_jitsi_integration"), "app");
    let version = noble_var("rocketchat_version");
    install_node_and_rocketchat(&b, &s, &profile_table("variables"));
    std::fs::write(
        b.root().join("opt/rc/bundle/.standin_version.txt"),
        format!("{version}\n"),
    )
    .unwrap();
    let rs01 = Rs01::start(&b);
    let port = rs01.port;
    let rc_port = common::free_port();
    let w = Rc9 {
        b: &b,
        s: &s,
        port,
        rc_port,
        base: format!("http://127.0.0.1:{rc_port}/chat"),
        app_id: noble_var("rocketchat_jitsi_app_id"),
        app_version: noble_var("rocketchat_jitsi_app_version"),
    };

    let mut log = assert_unregistered_gets_no_app(&w, &version);

    // REG_TOKEN at Rocket.Chat's start: registered; the script sets the app up.
    let token = "standin-registration-token-0123456789";
    let rc = w.start(&[("REG_TOKEN", token)]);
    let out = w.script(Some(token));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let installed = format!(
        "installed Rocket.Chat's Jitsi app ({}) {}",
        w.app_id, w.app_version
    );
    assert!(stdout.contains(&installed), "{stdout}");
    assert!(
        !format!("{out:?}").contains(token),
        "the script showed the token"
    );
    assert_the_app_is_set_up(&w);

    // The next start: recorded, nothing asked; without the state: everything in place already.
    let updated = w.app_doc()["updatedAt"].clone();
    let out = w.script(Some(token));
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("set up for meet.example.com already"),
        "{out:?}"
    );
    std::fs::remove_file(w.state()).unwrap();
    let out = w.script(Some(token));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !stdout.contains("installed") && !stdout.contains("enabled") && !stdout.contains(" set "),
        "{stdout}"
    );
    assert_eq!(w.app_doc()["updatedAt"], updated);
    assert!(w.state().exists());
    log += &stop_and_output(rc);
    assert!(log.contains("registered the workspace"), "{log}");
    assert!(
        !log.contains(token),
        "Rocket.Chat's output shows the token: {log}"
    );

    assert_the_app_survives_a_restart(&w);
}
