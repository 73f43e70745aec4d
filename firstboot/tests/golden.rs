//! The rendered configuration files, compared with the checked-in files under
//! `tests/golden/<scenario>/` (a copy of the paths on the appliance). Secrets are seeded and
//! the clock fixed, so the files are the same on every run. After a deliberate change, write
//! them again with `APPLIANCE_FIRSTBOOT_UPDATE_GOLDEN=1 cargo test -p appliance-firstboot
//! --test golden` and review the diff.
//!
//! Where the tools are installed, the files are also checked by the programs that read them:
//! `nginx -t`, `luac -p` (prosody's configuration is Lua) and `node --check` (config.js).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixture::{Fixture, Flavor};
use common::*;

const UPDATE: &str = "APPLIANCE_FIRSTBOOT_UPDATE_GOLDEN";

struct Scenario {
    name: &'static str,
    flavor: Flavor,
    user_data: &'static str,
    files: &'static [&'static str],
}

const NGINX: &str = "/etc/nginx/sites-available/appliance.conf";
const DROPIN: &str = "/etc/systemd/system/rocketchat.service.d/appliance.conf";
const ENV: &str = "/etc/appliance/rocketchat.env";

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "jitsi",
        flavor: Flavor::Jitsi,
        user_data: "#cloud-config\nfqdn: meet.example.com\nappliance:\n  \
                    admin: {username: admin, password: 'p%h $HOME \"q\" \\ long', email: ops@example.com}\n",
        files: &[
            "/etc/hostname",
            "/etc/hosts",
            NGINX,
            DROPIN,
            ENV,
            "/etc/prosody/conf.avail/meet.example.com.cfg.lua",
            "/var/lib/prosody/auth%2emeet%2eexample%2ecom/roster/focus.dat",
            "/etc/jitsi/meet/meet.example.com-config.js",
            "/etc/jitsi/jicofo/jicofo.conf",
            "/etc/jitsi/jicofo/config",
            "/etc/jitsi/jicofo/sip-communicator.properties",
            "/etc/jitsi/videobridge/jvb.conf",
            "/etc/jitsi/videobridge/config",
            "/etc/jitsi/videobridge/sip-communicator.properties",
            "/etc/turnserver.conf",
            "/etc/appliance/config.yaml",
            "/var/lib/appliance/secrets.json",
            "/var/lib/appliance/state.json",
        ],
    },
    Scenario {
        name: "debian-sni-path",
        flavor: Flavor::Debian,
        user_data: "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  \
                    root_url: https://chat.example.com/chat\n  \
                    mongo_url: mongodb://rc:s%40cret@db1:27017,db2/rocketchat?replicaSet=rs0\n",
        files: &[
            NGINX,
            DROPIN,
            ENV,
            "/etc/prosody/conf.avail/meet.example.com.cfg.lua",
            "/etc/appliance/external-mongodb",
            "/etc/appliance/config.yaml",
            "/var/lib/appliance/state.json",
        ],
    },
    Scenario {
        name: "debian-http-8081",
        flavor: Flavor::Debian,
        user_data: "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  \
                    root_url: http://meet.example.com:8081/\n",
        files: &[
            NGINX,
            DROPIN,
            "/etc/ufw/user.rules",
            "/etc/ufw/user6.rules",
            "/var/lib/appliance/state.json",
        ],
    },
    Scenario {
        name: "debian-http-80",
        flavor: Flavor::Debian,
        user_data: "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  \
                    root_url: http://chat.example.com/\n",
        files: &[NGINX, DROPIN],
    },
];

fn golden_dir(scenario: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(scenario)
}

fn applied(scenario: &Scenario) -> Fixture {
    let f = Fixture::new(scenario.flavor);
    f.set_user_data(scenario.user_data);
    f.apply();
    f
}

#[test]
fn rendered_files_match_the_golden_files() {
    let update = std::env::var_os(UPDATE).is_some();
    let mut mismatches = Vec::new();
    for scenario in SCENARIOS {
        let f = applied(scenario);
        for file in scenario.files {
            let rendered = f.read(file);
            let golden = golden_dir(scenario.name).join(file.trim_start_matches('/'));
            if update {
                std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
                std::fs::write(&golden, &rendered).unwrap();
                continue;
            }
            match std::fs::read_to_string(&golden) {
                Ok(expected) if expected == rendered => {}
                Ok(_) => mismatches.push(format!("{}{file} differs", scenario.name)),
                Err(e) => mismatches.push(format!("{}: {e}", golden.display())),
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\n(set {UPDATE}=1 to write the golden files again, then review the diff)",
        mismatches.join("\n")
    );
}

/// What the expert review of issue 13 found missing, on the rendered files of the appliance
/// (Jitsi) scenario: Jitsi Meet's server-side includes, prosody's exemptions from the rate
/// limit for jicofo and the videobridge, a TURN server sharing prosody's secret; and with an
/// external MongoDB, the file that keeps the local mongod and its replica-set unit stopped.
#[test]
fn rendered_files_have_what_jitsi_and_mongodb_need() {
    let jitsi = SCENARIOS.iter().find(|s| s.name == "jitsi").unwrap();
    let f = applied(jitsi);

    // nginx: `ssi on;` and its types in the Jitsi Meet server block (index.html includes
    // config.js by SSI), not in Rocket.Chat's.
    let site = f.read(NGINX);
    let jitsi_block = site
        .split("\nserver {")
        .find(|b| b.contains("root /usr/share/jitsi-meet;"))
        .expect("no Jitsi Meet server block");
    assert!(jitsi_block.contains("\n    ssi on;\n"), "{jitsi_block}");
    assert!(
        jitsi_block.contains("\n    ssi_types application/x-javascript application/javascript;\n"),
        "{jitsi_block}"
    );
    assert_eq!(site.matches("ssi on;").count(), 1, "{site}");

    // prosody: unlimited_jids names focus and jvb of the auth host; the auth host loads
    // limits_exception.
    let lua = f.read("/etc/prosody/conf.avail/meet.example.com.cfg.lua");
    let unlimited = lua
        .split("unlimited_jids = {")
        .nth(1)
        .and_then(|r| r.split("};").next())
        .expect("no unlimited_jids");
    assert!(
        unlimited.contains("\"focus@auth.meet.example.com\""),
        "{unlimited}"
    );
    assert!(
        unlimited.contains("\"jvb@auth.meet.example.com\""),
        "{unlimited}"
    );
    let auth_host = lua
        .split("VirtualHost \"auth.meet.example.com\"")
        .nth(1)
        .and_then(|r| r.split("\nComponent ").next())
        .expect("no auth VirtualHost");
    assert!(auth_host.contains("\"limits_exception\";"), "{auth_host}");

    // TURN: coturn's configuration has this instance's secret, the one prosody hands out
    // credentials for, on the ports prosody advertises, with the served certificate.
    let secrets: serde_json::Value =
        serde_json::from_str(&f.read("/var/lib/appliance/secrets.json")).unwrap();
    let secret = secrets["turn_secret"].as_str().unwrap();
    assert!(secret.len() >= 16, "{secret}");
    assert!(
        lua.contains(&format!("external_service_secret = \"{secret}\";")),
        "{lua}"
    );
    let turn = f.read("/etc/turnserver.conf");
    let lines: Vec<&str> = turn.lines().collect();
    for want in [
        "use-auth-secret".to_string(),
        format!("static-auth-secret={secret}"),
        "realm=meet.example.com".into(),
        "listening-port=3478".into(),
        "tls-listening-port=5349".into(),
        "cert=/etc/ssl/meet.example.com.crt".into(),
        "pkey=/etc/ssl/private/meet.example.com.key".into(),
    ] {
        assert!(lines.contains(&want.as_str()), "no {want:?} in:\n{turn}");
    }
    for port in ["port = 3478", "port = 5349"] {
        assert!(lua.contains(port), "prosody does not advertise {port}");
    }
    assert_eq!(f.mode("/etc/turnserver.conf") & 0o7777, 0o640);

    // MongoDB: local here (no marker); external in debian-sni-path.
    assert!(!f.exists("/etc/appliance/external-mongodb"));
    let sni = SCENARIOS
        .iter()
        .find(|s| s.name == "debian-sni-path")
        .unwrap();
    assert!(sni.user_data.contains("mongo_url:"));
    assert!(applied(sni).exists("/etc/appliance/external-mongodb"));
}

/// Every `{{...}}` of the shipped templates is a block, or a value through an escaping helper.
#[test]
fn every_value_in_the_templates_is_escaped() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../overlays/firstboot/files/etc/appliance/templates");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{") {
            let end = rest[start..].find("}}").unwrap() + start;
            let inner = rest[start + 2..end].trim();
            let first = inner.split_whitespace().next().unwrap_or_default();
            let ok = inner.starts_with('#')
                || inner.starts_with('/')
                || inner == "else"
                || firstboot::render::HELPERS.contains(&first);
            assert!(ok, "{}: {{{{{inner}}}}} is not escaped", path.display());
            count += 1;
            rest = &rest[end + 2..];
        }
    }
    assert!(count > 50, "{count}");
}

/// These checks are the point of the tests: a missing tool fails them (scripts/setup installs
/// nginx-light, prosody, lua5.4 and nodejs).
fn require(program: &str) {
    assert!(
        have(program),
        "{program} is not installed: run scripts/setup (it installs the tools these checks use)"
    );
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.code().is_some())
}

/// `nginx -t` on each scenario's site, with the certificate paths pointed at a test pair.
#[test]
fn nginx_accepts_the_sites() {
    require("nginx");
    let leaf = self_signed(&["meet.example.com", "chat.example.com"]);
    for scenario in SCENARIOS {
        let f = applied(scenario);
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &leaf.pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        let site = f
            .read(NGINX)
            .replace("/etc/ssl/meet.example.com.crt", cert.to_str().unwrap())
            .replace(
                "/etc/ssl/private/meet.example.com.key",
                key.to_str().unwrap(),
            );
        std::fs::write(dir.path().join("site.conf"), site).unwrap();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "pid {0}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n    \
                 access_log off;\n    include {0}/site.conf;\n}}\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let out = Command::new("nginx")
            .args(["-t", "-q", "-e", "stderr", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: nginx -t: {}",
            scenario.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `luac -p` on prosody's files and `node --check` on config.js.
#[test]
fn lua_and_javascript_parse() {
    require("luac5.4");
    require("node");
    let luac = Some("luac5.4");
    let node = true;
    let mut checked = 0;
    for scenario in SCENARIOS {
        let f = applied(scenario);
        for (path, _) in f.snapshot(&|_| false) {
            let full = f.path(&path);
            let tool: Option<Vec<&str>> = if path.starts_with("/etc/appliance/") {
                None
            } else if path.ends_with(".cfg.lua")
                || (path.starts_with("/var/lib/prosody/") && path.ends_with(".dat"))
            {
                luac.map(|l| vec![l, "-p"])
            } else if path.ends_with("-config.js") && path.starts_with("/etc/jitsi/meet/") {
                node.then(|| vec!["node", "--check"])
            } else {
                None
            };
            let Some(tool) = tool else { continue };
            if !full.is_file() || f.read(&path).starts_with("return {};") {
                continue;
            }
            let out = Command::new(tool[0])
                .args(&tool[1..])
                .arg(&full)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {path}: {}",
                scenario.name,
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    println!("checked {checked} files");
    assert!(checked > 0);
}

/// `prosodyctl check config` on each scenario's host file, included by this machine's own
/// prosody.cfg.lua (Debian's includes `conf.d/*.cfg.lua`).
#[test]
fn prosody_accepts_the_hosts() {
    require("prosodyctl");
    let main = std::fs::read_to_string("/etc/prosody/prosody.cfg.lua")
        .expect("prosody's own /etc/prosody/prosody.cfg.lua (scripts/setup installs prosody)");
    use std::os::unix::fs::PermissionsExt;
    for scenario in SCENARIOS {
        let f = applied(scenario);
        let host = f.read("/etc/prosody/conf.avail/meet.example.com.cfg.lua");
        let dir = tempfile::tempdir().unwrap();
        // prosodyctl reads the files as the prosody user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        std::fs::write(dir.path().join("conf.d/meet.example.com.cfg.lua"), host).unwrap();
        let conf = dir.path().join("prosody.cfg.lua");
        assert!(main.contains("Include \"conf.d/*.cfg.lua\""));
        std::fs::write(&conf, &main).unwrap();
        for entry in walk_files(dir.path()) {
            std::fs::set_permissions(entry, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(&conf)
            .args(["check", "config"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("All checks passed"),
            "{}: prosodyctl check config:\n{text}{}",
            scenario.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        }
        out.push(path);
    }
    out
}
