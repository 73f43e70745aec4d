//! Trees holding the appliance's files as the image has them before firstboot runs: the
//! Debian 12 test image (nginx, prosody, ufw), or the appliance with Jitsi Meet installed for
//! the placeholder domain, its files in the shape the jitsi packages' postinst scripts leave
//! them. Plus running `apply` on them, in process or as the binary.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::UNIX_EPOCH;

use firstboot::apply::{self, ApplyError, Options, Outcome};
use firstboot::hooks::TestHooks;
use firstboot::txn::services::{Recorder, ServiceManager};

/// The domain the image's Jitsi packages are configured for.
pub const PLACEHOLDER: &str = "jitsi.appliance.invalid";
/// The seed of the tests' secrets.
pub const SEED: &str = "firstboot-tests";
/// The tests' clock: 2030-01-01 00:00 UTC.
pub const NOW: u64 = 1_893_456_000;

/// Which software the tree has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The Debian 12 test image: nginx, prosody, ufw; no Jitsi, no Rocket.Chat unit.
    Debian,
    /// The appliance: Jitsi Meet (placeholder domain), Rocket.Chat, nginx, prosody, ufw.
    Jitsi,
}

/// A temporary tree.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(flavor: Flavor) -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        fixture.base();
        if flavor == Flavor::Jitsi {
            fixture.jitsi();
        }
        fixture.set_instance("i-0001");
        fixture
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    pub fn write(&self, path: &str, content: &str) {
        self.write_mode(path, content, 0o644);
    }

    pub fn write_mode(&self, path: &str, content: &str, mode: u32) {
        let full = self.path(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content).unwrap();
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn link(&self, path: &str, target: &str) {
        let full = self.path(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        symlink(target, full).unwrap();
    }

    pub fn mkdir(&self, path: &str, mode: u32) {
        let full = self.path(path);
        std::fs::create_dir_all(&full).unwrap();
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    pub fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.path(path)).is_ok()
    }

    pub fn mode(&self, path: &str) -> u32 {
        std::fs::symlink_metadata(self.path(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    pub fn set_user_data(&self, text: &str) {
        self.write("/var/lib/cloud/instance/user-data.txt", text);
    }

    pub fn set_instance(&self, id: &str) {
        self.write("/var/lib/cloud/data/instance-id", &format!("{id}\n"));
    }

    fn base(&self) {
        self.write("/etc/hostname", "appliance\n");
        self.write(
            "/etc/hosts",
            "127.0.0.1\tlocalhost\n127.0.1.1\tappliance\n\n\
             # The following lines are desirable for IPv6 capable hosts\n\
             ::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n",
        );
        self.write(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\n\
             prosody:x:106:111:Prosody XMPP Server,,,:/var/lib/prosody:/usr/sbin/nologin\n\
             jicofo:x:107:112::/usr/share/jicofo:/bin/bash\n\
             jvb:x:108:112::/usr/share/jitsi-videobridge:/bin/bash\n",
        );
        self.write(
            "/etc/group",
            "root:x:0:\nssl-cert:x:110:prosody,turnserver\nprosody:x:111:\njitsi:x:112:\nturnserver:x:113:\n",
        );
        self.mkdir("/etc/ssl/private", 0o710);
        self.mkdir("/etc/ssl/certs", 0o755);
        // nginx as Debian installs it.
        self.write(
            "/etc/nginx/nginx.conf",
            "include /etc/nginx/sites-enabled/*;\n",
        );
        self.write(
            "/etc/nginx/sites-available/default",
            "server { listen 80 default_server; }\n",
        );
        self.link(
            "/etc/nginx/sites-enabled/default",
            "/etc/nginx/sites-available/default",
        );
        self.mkdir("/var/www/html", 0o755);
        // prosody as Debian installs it.
        self.write_mode(
            "/etc/prosody/prosody.cfg.lua",
            "admins = { }\nVirtualHost \"localhost\"\nInclude \"conf.d/*.cfg.lua\"\n",
            0o640,
        );
        self.write(
            "/etc/prosody/conf.avail/localhost.cfg.lua",
            "VirtualHost \"localhost\"\n",
        );
        self.write(
            "/etc/prosody/conf.avail/example.com.cfg.lua.dist",
            "-- example\n",
        );
        self.mkdir("/etc/prosody/conf.d", 0o755);
        self.mkdir("/etc/prosody/certs", 0o755);
        self.mkdir("/var/lib/prosody", 0o750);
        // ufw's rules as `ufw allow` writes them for the image (22, 80, 443, 3000, media).
        self.write_mode(
            "/etc/ufw/user.rules",
            include_str!("../data/ufw/user.rules"),
            0o640,
        );
        self.write_mode(
            "/etc/ufw/user6.rules",
            include_str!("../data/ufw/user6.rules"),
            0o640,
        );
        self.write("/etc/ufw/ufw.conf", "ENABLED=yes\nLOGLEVEL=low\n");
        for unit in ["nginx.service", "prosody.service", "ufw.service"] {
            self.write(&format!("/lib/systemd/system/{unit}"), "[Unit]\n");
        }
        for command in ["nginx", "ufw", "update-ca-certificates"] {
            self.write_mode(&format!("/usr/sbin/{command}"), "#!/bin/sh\n", 0o755);
        }
        // The templates, as the firstboot overlay installs them.
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../overlays/firstboot/files/etc/appliance/templates");
        for entry in std::fs::read_dir(shipped).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            self.write(&format!("/etc/appliance/templates/{name}"), &text);
        }
    }

    /// Jitsi Meet installed for the placeholder domain.
    fn jitsi(&self) {
        self.jitsi_web();
        self.jitsi_prosody();
        self.jitsi_services();
        self.jitsi_debconf();
    }

    /// The units, coturn, and jitsi-meet-web-config's files for the placeholder.
    fn jitsi_web(&self) {
        let d = PLACEHOLDER;
        for unit in [
            "jicofo.service",
            "jitsi-videobridge2.service",
            "rocketchat.service",
        ] {
            self.write(&format!("/lib/systemd/system/{unit}"), "[Unit]\n");
        }
        // coturn (Ubuntu's package) with the jitsi overlay's unit.
        self.write("/etc/turnserver.conf", "# coturn's example configuration\n");
        self.write("/etc/systemd/system/coturn.service", "[Unit]\n");
        // jitsi-meet-web-config.
        self.write(
            &format!("/etc/jitsi/meet/{d}-config.js"),
            &format!("var config = {{ hosts: {{ domain: '{d}', muc: 'conference.{d}' }} }};\n"),
        );
        self.write(
            &format!("/etc/jitsi/meet/{d}.crt"),
            "placeholder certificate\n",
        );
        self.write_mode(
            &format!("/etc/jitsi/meet/{d}.key"),
            "placeholder key\n",
            0o600,
        );
        self.write(
            &format!("/etc/nginx/sites-available/{d}.conf"),
            &format!("server {{ listen 443 ssl; server_name {d}; }}\n"),
        );
        self.link(
            &format!("/etc/nginx/sites-enabled/{d}.conf"),
            &format!("/etc/nginx/sites-available/{d}.conf"),
        );
    }

    /// jitsi-meet-prosody's configuration, certificates and accounts for the placeholder.
    fn jitsi_prosody(&self) {
        let d = PLACEHOLDER;
        let auth = format!("auth.{d}");
        // jitsi-meet-prosody.
        self.write_mode(
            &format!("/etc/prosody/conf.avail/{d}.cfg.lua"),
            &format!(
                "external_service_secret = \"OldTurnSecret\";\nVirtualHost \"{d}\"\n\
                 VirtualHost \"{auth}\"\n    authentication = \"internal_hashed\"\n"
            ),
            0o644,
        );
        self.link(
            &format!("/etc/prosody/conf.d/{d}.cfg.lua"),
            &format!("/etc/prosody/conf.avail/{d}.cfg.lua"),
        );
        for host in [d.to_owned(), auth.clone()] {
            for ext in ["crt", "key", "cnf"] {
                self.write(&format!("/var/lib/prosody/{host}.{ext}"), "placeholder\n");
            }
            for ext in ["crt", "key"] {
                self.link(
                    &format!("/etc/prosody/certs/{host}.{ext}"),
                    &format!("/var/lib/prosody/{host}.{ext}"),
                );
            }
        }
        self.link(
            &format!("/usr/local/share/ca-certificates/{auth}.crt"),
            &format!("/var/lib/prosody/{auth}.crt"),
        );
        let data = "/var/lib/prosody/auth%2ejitsi%2eappliance%2einvalid";
        for file in ["accounts/focus.dat", "accounts/jvb.dat", "roster/focus.dat"] {
            self.write_mode(&format!("{data}/{file}"), "return {};\n", 0o640);
        }
    }

    /// jicofo's and the videobridge's configuration for the placeholder.
    fn jitsi_services(&self) {
        let d = PLACEHOLDER;
        let auth = format!("auth.{d}");
        // jicofo.
        self.write_mode(
            "/etc/jitsi/jicofo/jicofo.conf",
            &format!(
                "jicofo {{\n  xmpp: {{\n    client: {{\n      client-proxy: focus.{d}\n      \
                 xmpp-domain: {d}\n      domain: {auth}\n      username: focus\n      \
                 password: \"OldFocusPassword\"\n    }}\n  }}\n}}\n"
            ),
            0o640,
        );
        self.write_mode(
            "/etc/jitsi/jicofo/config",
            &format!("JICOFO_HOST=localhost\nJICOFO_HOSTNAME={d}\n"),
            0o640,
        );
        self.write_mode(
            "/etc/jitsi/jicofo/sip-communicator.properties",
            &format!("org.jitsi.jicofo.BRIDGE_MUC=JvbBrewery@internal.{auth}\n"),
            0o640,
        );
        self.write(
            "/etc/jitsi/jicofo/logging.properties",
            "handlers = java.util.logging.ConsoleHandler\n",
        );
        // jitsi-videobridge2.
        self.write_mode(
            "/etc/jitsi/videobridge/jvb.conf",
            "videobridge {\n  http-servers {\n    public {\n      port = 9090\n    }\n  }\n}\n",
            0o640,
        );
        self.write_mode(
            "/etc/jitsi/videobridge/config",
            &format!("JVB_HOSTNAME={d}\nJVB_SECRET=OldJvbSecret\n"),
            0o640,
        );
        self.write_mode(
            "/etc/jitsi/videobridge/sip-communicator.properties",
            &format!(
                "org.jitsi.videobridge.xmpp.user.shard.DOMAIN={auth}\n\
                 org.jitsi.videobridge.xmpp.user.shard.PASSWORD=OldJvbSecret\n\
                 org.jitsi.videobridge.xmpp.user.shard.MUC_JIDS=JvbBrewery@internal.{auth}\n\
                 org.jitsi.videobridge.xmpp.user.shard.MUC_NICKNAME=00000000-0000-4000-8000-000000000000\n"
            ),
            0o640,
        );
        self.write(
            "/etc/jitsi/videobridge/logging.properties",
            "handlers = java.util.logging.ConsoleHandler\n",
        );
    }

    /// The Jitsi packages' debconf answers for the placeholder.
    fn jitsi_debconf(&self) {
        let d = PLACEHOLDER;
        // debconf's answers, the secrets blanked by the build.
        self.write(
            "/var/cache/debconf/config.dat",
            &format!(
                "Name: jicofo/jicofo-authuser\nTemplate: jicofo/jicofo-authuser\nValue: focus\n\
                 Owners: jicofo, jitsi-meet-prosody\nFlags: seen\n\n\
                 Name: jitsi-meet-prosody/jvb-hostname\nTemplate: jitsi-meet-prosody/jvb-hostname\n\
                 Value: {d}\nOwners: jitsi-meet-prosody\n\n\
                 Name: jitsi-meet/jvb-hostname\nTemplate: jitsi-meet/jvb-hostname\n\
                 Value: {d}\nOwners: jitsi-meet-web-config\n\n\
                 Name: jitsi-videobridge/jvb-hostname\nTemplate: jitsi-videobridge/jvb-hostname\n\
                 Value: {d}\nOwners: jicofo, jitsi-meet-prosody, jitsi-meet-web-config, jitsi-videobridge2\n\
                 Flags: seen\n\n\
                 Name: ufw/enable\nTemplate: ufw/enable\nValue: false\nOwners: ufw\n"
            ),
        );
        self.write_mode(
            "/var/cache/debconf/passwords.dat",
            "Name: jicofo/jicofo-authpassword\nTemplate: jicofo/jicofo-authpassword\n\
             Owners: jicofo, jitsi-meet-prosody\nFlags: seen\n\n\
             Name: jitsi-videobridge/jvbsecret\nTemplate: jitsi-videobridge/jvbsecret\n\
             Owners: jitsi-meet-prosody, jitsi-videobridge2\nFlags: seen\n",
            0o600,
        );
    }

    /// The test hooks of an in-process run: seeded secrets, the tests' clock.
    pub fn hooks() -> TestHooks {
        TestHooks {
            seed: Some(SEED.into()),
            now: Some(UNIX_EPOCH + std::time::Duration::from_secs(NOW)),
            ..TestHooks::default()
        }
    }

    /// `apply` (or `reconfigure`) in process, with `services` recording the steps.
    pub fn apply_with(
        &self,
        reconfigure: bool,
        services: Option<&mut dyn ServiceManager>,
    ) -> Result<Outcome, ApplyError> {
        let options = Options {
            root: self.root().to_path_buf(),
            reconfigure,
            hooks: Fixture::hooks(),
        };
        apply::run(&options, services)
    }

    /// `apply` in process; the recorded steps as lines.
    pub fn apply(&self) -> (Outcome, Vec<String>) {
        let mut recorder = Recorder::new();
        let outcome = self
            .apply_with(false, Some(&mut recorder))
            .unwrap_or_else(|e| panic!("apply: {e}"));
        (outcome, recorder.lines())
    }

    /// `reconfigure` in process; the recorded steps as lines.
    pub fn reconfigure(&self) -> (Outcome, Vec<String>) {
        let mut recorder = Recorder::new();
        let outcome = self
            .apply_with(true, Some(&mut recorder))
            .unwrap_or_else(|e| panic!("reconfigure: {e}"));
        (outcome, recorder.lines())
    }

    /// The binary, with the tests' hooks and `env` on top.
    pub fn run_binary(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_appliance-firstboot"));
        command
            .args(args)
            .arg("--root")
            .arg(self.root())
            .env("APPLIANCE_FIRSTBOOT_TEST_SEED", SEED)
            .env("APPLIANCE_FIRSTBOOT_TEST_NOW", NOW.to_string())
            .env_remove("APPLIANCE_FIRSTBOOT_FAILPOINT")
            .env_remove("APPLIANCE_FIRSTBOOT_FAKE_SERVICES")
            .env_remove("APPLIANCE_FIRSTBOOT_FAKE_FAIL");
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    /// Every path under the root (relative, sorted), with what is there: a file's mode and
    /// content, a link's target. `skip` leaves paths out.
    pub fn snapshot(&self, skip: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        walk(self.root(), self.root(), &mut out);
        out.retain(|(path, _)| !skip(path));
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let to = std::fs::read_link(&path).unwrap();
            out.push((rel, format!("-> {}", to.display())));
        } else if meta.is_dir() {
            out.push((rel.clone(), format!("dir {mode:04o}")));
            walk(root, &path, out);
        } else {
            let content = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            out.push((rel, format!("{mode:04o}\n{content}")));
        }
    }
}

/// Asserts two snapshots are equal, naming only the paths that differ.
pub fn assert_same(left: &[(String, String)], right: &[(String, String)]) {
    let l: std::collections::BTreeMap<_, _> = left.iter().cloned().collect();
    let r: std::collections::BTreeMap<_, _> = right.iter().cloned().collect();
    let mut diffs = Vec::new();
    for path in l
        .keys()
        .chain(r.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (l.get(path), r.get(path)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => diffs.push(format!("{path}: differs\n  {a:?}\n  {b:?}")),
            (Some(_), None) => diffs.push(format!("{path}: only left")),
            (None, _) => diffs.push(format!("{path}: only right")),
        }
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}
