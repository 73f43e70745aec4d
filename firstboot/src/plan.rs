//! What an apply writes: an [`ApplyPlan`], made from the checked [`Config`], the tree as it is
//! now, and the instance's secrets, before anything is changed. Each target is a file with
//! its content, mode and owner, a symbolic link, or a removal, and names what must be
//! restarted when it changes ([`Effect`]).
//!
//! What is configured (each part only when the tree has the software):
//!
//! | part | files |
//! |------|-------|
//! | host name | `/etc/hostname`, the `127.0.1.1` line of `/etc/hosts` (see [`crate::plan::hostname`]) |
//! | certificate | `/etc/ssl/<dns_name>.crt` (0644), `/etc/ssl/private/<dns_name>.key` (0640 root:ssl-cert): the user's, or self-signed for every served name (see [`crate::plan::tls`]); Let's Encrypt: self-signed until the ACME client replaces it |
//! | nginx | `/etc/nginx/sites-available/appliance.conf` and its link in `sites-enabled`; the Jitsi package's site for the placeholder domain removed; ACME webroot `/var/www/acme` |
//! | Rocket.Chat | `/etc/systemd/system/rocketchat.service.d/appliance.conf` (ROOT_URL, the port; no credentials: systemd shows `Environment=` values to any local user) and its `EnvironmentFile=` `/etc/appliance/rocketchat.env` (0600 root: MongoDB URLs, the administrator and the Rocket.Chat Cloud registration token `REG_TOKEN` from the user-data); with an external `mongo_url`, [`EXTERNAL_MONGODB`], which keeps the local mongod and the replica-set unit stopped (their units' condition) |
//! | ufw | `/etc/ufw/user.rules` and `user6.rules`: ROOT_URL's port opened unless already open; the port firstboot opened before closed (see [`crate::plan::ufw`]) |
//! | prosody | `conf.avail/<dns_name>.cfg.lua` with its `conf.d` link, and `certs/<dns_name>.{crt,key}` (a copy of the appliance's certificate) |
//! | Jitsi (each part when its `/etc/jitsi/{meet,jicofo,videobridge}` exists) | prosody's Jitsi host file instead of the plain one; `certs/auth.<dns_name>.{crt,key}` (self-signed) trusted through `/usr/local/share/ca-certificates`; the `focus` and `jvb` accounts and focus's roster; `/etc/jitsi/meet/<dns_name>-config.js`; jicofo's `jicofo.conf`, `config`, `sip-communicator.properties`; the videobridge's `jvb.conf`, `config`, `sip-communicator.properties` |
//! | TURN (when coturn is installed) | `/etc/turnserver.conf` (0640 root:turnserver): the secret prosody's `external_services` share, the certificate nginx serves |
//! | debconf (with Jitsi) | the Jitsi packages' answers in `/var/cache/debconf/{config,passwords}.dat` (see [`crate::plan::debconf`]) |
//! | firstboot | `/etc/appliance/config.yaml` (0600), `/var/lib/appliance/secrets.json` (0600), `/var/lib/appliance/state.json` (0600); in IP mode the login message [`IP_MODE_MOTD`] |
//!
//! Files named after an old domain (the placeholder `jitsi.appliance.invalid` the image was
//! built with, or the DNS name of the last apply) are removed; of prosody's data for an old
//! host, the accounts firstboot manages go and the directories stay.
//!
//! **Ports.** nginx terminates TLS on ROOT_URL's port and proxies to Rocket.Chat on
//! 127.0.0.1: port 3000, or 3001 when ROOT_URL itself uses 3000 (the default), since nginx
//! listening on every address's port 3000 and Rocket.Chat on 127.0.0.1:3000 would collide.
//! An `https://` ROOT_URL on another port answers plain HTTP sent to it with a redirect
//! (nginx's code 497). A ROOT_URL port that a service of the appliance listens on (prosody's,
//! the videobridge's, jicofo's, MongoDB's) is refused with the other values (root_url.rs). When Jitsi is
//! not installed, `https://<dns_name>/` redirects to ROOT_URL. No HSTS header: with the
//! default self-signed certificate it would leave browsers no way past the warning.
//!
//! **Let's Encrypt** (the ACME client is [`crate::acme`]): `letsencrypt` serves a self-signed
//! certificate for every served name and records `acme: {email, directory, status:
//! "pending"}` in the state. The client answers HTTP-01 from [`ACME_WEBROOT`] (served on port
//! 80 for every served name), installs what it obtains as the same `/etc/ssl/<dns_name>.crt`
//! and `.key` and prosody's copy ([`nginx_certificate`], [`prosody_certificate`]), and updates
//! the record. A later apply on the same instance keeps the certificate in place while it is
//! valid and covers the served names (renewing it is the client's job), and with it the
//! record; a new one starts again from `pending`. Back in `self-signed` mode, a certificate the
//! CA issued is not kept, since nothing would renew it.

pub mod debconf;
pub mod hostname;
pub mod prosody;
pub mod tls;
pub mod ufw;

use std::collections::BTreeSet;
use std::fmt;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

use self::hostname::{hosts_with, static_hostname};
use self::tls::{epoch_seconds, CertAndKey};
use self::ufw::Family;
use crate::input::config::{CertificateMode, Config};
use crate::input::mongo_url::MongoUrl;
use crate::input::root_url::Scheme;
use crate::input::userdata::CONFIG_FILE;
use crate::render::Templates;
use crate::secrets::{Random, Secrets, SECRETS_FILE};
use crate::state::{AcmeState, CertificateState, State, STATE_FILE};
use crate::tree::{Current, Tree};
use crate::txn::services::Step;

/// The domain Jitsi's packages are installed for when the image is built.
pub const PLACEHOLDER_DOMAIN: &str = "jitsi.appliance.invalid";
/// The nginx site firstboot writes.
pub const NGINX_SITE: &str = "/etc/nginx/sites-available/appliance.conf";
const NGINX_SITE_LINK: &str = "/etc/nginx/sites-enabled/appliance.conf";
/// The ACME HTTP-01 webroot.
pub const ACME_WEBROOT: &str = "/var/www/acme";
/// The Rocket.Chat drop-in.
pub const ROCKETCHAT_DROPIN: &str = "/etc/systemd/system/rocketchat.service.d/appliance.conf";
/// Rocket.Chat's credentials, read by the drop-in's `EnvironmentFile=` (never `Environment=`,
/// which systemd shows to every local user).
pub const ROCKETCHAT_ENV: &str = "/etc/appliance/rocketchat.env";
/// The login message of IP mode (see [`crate::input::config`]), relative to the root: in the
/// directory whose files the image's update-motd script prints at every login.
pub const IP_MODE_MOTD: &str = "var/lib/appliance/motd.d/50-appliance-ip-mode";
const IP_MODE_MOTD_DIR: &str = "/var/lib/appliance/motd.d";
/// Left when Rocket.Chat uses an external MongoDB: the local mongod and
/// appliance-mongo-rs.service have `ConditionPathExists=!` on it (the mongodb overlay).
pub const EXTERNAL_MONGODB: &str = "/etc/appliance/external-mongodb";
/// coturn's configuration (the jitsi overlay installs coturn and its unit).
pub const TURNSERVER_CONF: &str = "/etc/turnserver.conf";
/// The local replica set when no mongo_url is given.
pub const LOCAL_MONGO_URL: &str = "mongodb://127.0.0.1:27017/rocketchat?replicaSet=rs01";
const LOCAL_OPLOG_URL: &str = "mongodb://127.0.0.1:27017/local?replicaSet=rs01";
/// Rocket.Chat's port on 127.0.0.1 (see the module doc).
pub const ROCKETCHAT_PORT: u16 = 3000;
const ROCKETCHAT_PORT_ALT: u16 = 3001;

const PROSODY_UNIT: &str = "prosody.service";
const JICOFO_UNIT: &str = "jicofo.service";
const JVB_UNIT: &str = "jitsi-videobridge2.service";
const ROCKETCHAT_UNIT: &str = "rocketchat.service";
const NGINX_UNIT: &str = "nginx.service";
const COTURN_UNIT: &str = "coturn.service";
/// The units a run may restart.
const UNITS: [&str; 6] = [
    PROSODY_UNIT,
    JICOFO_UNIT,
    JVB_UNIT,
    ROCKETCHAT_UNIT,
    NGINX_UNIT,
    COTURN_UNIT,
];

/// What a changed target requires.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Effect {
    Hostname,
    Nginx,
    RocketChat,
    Ufw,
    CaTrust,
    Prosody,
    Jicofo,
    Videobridge,
    Turn,
}

/// A regular file's content and attributes.
#[derive(Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl fmt::Debug for FileSpec {
    /// Without the content, which may be a key or a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FileSpec {{ {} bytes, mode {:04o}, {}:{} }}",
            self.content.len(),
            self.mode,
            self.uid,
            self.gid
        )
    }
}

/// What to do at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    File(FileSpec),
    Symlink(String),
    Remove,
}

/// One path the apply sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Absolute, as on the appliance.
    pub path: String,
    pub action: Action,
    pub effects: Vec<Effect>,
}

impl Target {
    /// Whether the tree already has what this target sets.
    pub fn is_satisfied(&self, tree: &Tree) -> Result<bool> {
        let current = tree
            .current(&self.path)
            .with_context(|| format!("reading {}", self.path))?;
        Ok(match (&self.action, current) {
            (Action::Remove, Current::Absent) => true,
            (Action::Symlink(want), Current::Symlink(have)) => have.as_os_str() == want.as_str(),
            (
                Action::File(want),
                Current::File {
                    content,
                    mode,
                    uid,
                    gid,
                },
            ) => want.content == content && want.mode == mode && want.uid == uid && want.gid == gid,
            _ => false,
        })
    }
}

/// A directory that must exist (made, never removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What an apply does.
#[derive(Debug, Clone)]
pub struct ApplyPlan {
    pub targets: Vec<Target>,
    pub dirs: Vec<DirSpec>,
    /// The state recorded by the apply (also among the targets, last).
    pub state: State,
    /// The host name set.
    pub hostname: String,
    /// The units and commands the tree has.
    pub installed: Installed,
}

/// Which services and commands the tree has, for the steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    pub units: BTreeSet<String>,
    pub nginx: bool,
    pub ufw: bool,
    pub update_ca_certificates: bool,
}

impl Installed {
    /// What `tree` has.
    pub fn detect(tree: &Tree) -> Installed {
        Installed {
            units: UNITS
                .into_iter()
                .filter(|u| tree.has_unit(u))
                .map(str::to_owned)
                .collect(),
            nginx: tree.has_command("nginx"),
            ufw: tree.has_command("ufw"),
            update_ca_certificates: tree.has_command("update-ca-certificates"),
        }
    }
}

impl ApplyPlan {
    /// The steps for the targets that change, in order (see [`crate::txn::services`]).
    pub fn steps(&self, changed: &BTreeSet<Effect>) -> Vec<Step> {
        steps(changed, &self.installed, &self.hostname)
    }
}

/// The steps for `changed` effects (see [`crate::txn::services`] for the order).
pub fn steps(changed: &BTreeSet<Effect>, installed: &Installed, hostname: &str) -> Vec<Step> {
    let has = |e: Effect| changed.contains(&e);
    let unit = |u: &str| installed.units.contains(u);
    let mut steps = Vec::new();
    if has(Effect::Nginx) && installed.nginx {
        steps.push(Step::NginxTest);
    }
    if has(Effect::Hostname) {
        steps.push(Step::SetHostname(hostname.to_owned()));
    }
    if has(Effect::RocketChat) {
        steps.push(Step::DaemonReload);
    }
    if has(Effect::Ufw) && installed.ufw {
        steps.push(Step::UfwReload);
    }
    if has(Effect::CaTrust) && installed.update_ca_certificates {
        steps.push(Step::UpdateCaCertificates);
    }
    let restarts = [
        (PROSODY_UNIT, has(Effect::Prosody)),
        (JICOFO_UNIT, has(Effect::Jicofo) || has(Effect::CaTrust)),
        (JVB_UNIT, has(Effect::Videobridge)),
        (ROCKETCHAT_UNIT, has(Effect::RocketChat)),
        (COTURN_UNIT, has(Effect::Turn)),
    ];
    for (name, wanted) in restarts {
        if wanted && unit(name) {
            steps.push(Step::TryRestart(name.to_owned()));
        }
    }
    if has(Effect::Nginx) && unit(NGINX_UNIT) {
        steps.push(Step::ReloadNginx);
    }
    steps
}

/// What the plan is made from.
pub struct PlanInput<'a> {
    pub config: &'a Config,
    /// The effective configuration's text (config.yaml) and its SHA-256.
    pub effective_yaml: &'a str,
    pub config_sha256: &'a str,
    pub instance_id: &'a str,
    /// The state of the last successful apply.
    pub previous: Option<&'a State>,
    pub secrets: &'a Secrets,
    pub now: SystemTime,
}

/// Makes the plan. Nothing is written; the tree is only read.
pub fn plan(
    input: &PlanInput<'_>,
    tree: &Tree,
    templates: &Templates,
    random: &mut Random,
) -> Result<ApplyPlan> {
    Planner {
        input,
        tree,
        templates,
        random,
        targets: Vec::new(),
        dirs: Vec::new(),
    }
    .plan()
}

struct Planner<'a, 'b> {
    input: &'a PlanInput<'a>,
    tree: &'a Tree,
    templates: &'a Templates,
    random: &'b mut Random,
    targets: Vec<Target>,
    dirs: Vec<DirSpec>,
}

/// Which parts of Jitsi the tree has.
#[derive(Debug, Clone, Copy)]
struct Jitsi {
    meet: bool,
    jicofo: bool,
    videobridge: bool,
}

impl Jitsi {
    fn any(self) -> bool {
        self.meet || self.jicofo || self.videobridge
    }
}

/// What every part of the plan reads: the served name, which services the tree has and the
/// names the last apply (or the image) used.
struct Facts {
    dns: String,
    jitsi: Jitsi,
    prosody: bool,
    nginx: bool,
    old_domains: Vec<String>,
    same_instance: bool,
}

/// The certificate nginx serves, and whether it is the one in place.
struct Served {
    cert: CertAndKey,
    kept: bool,
    cert_file: String,
    key_file: String,
}

impl Planner<'_, '_> {
    fn plan(mut self) -> Result<ApplyPlan> {
        let facts = self.facts();
        let hostname = self.hostname(&facts)?;
        let served = self.tls(&facts)?;
        let url = &self.input.config.root_url;
        let rocketchat_port = if url.port == ROCKETCHAT_PORT {
            ROCKETCHAT_PORT_ALT
        } else {
            ROCKETCHAT_PORT
        };
        let data = self.template_data(
            &facts.dns,
            &served.cert_file,
            &served.key_file,
            rocketchat_port,
            facts.jitsi,
        );
        self.rocketchat(&data)?;
        if facts.nginx {
            self.nginx(&facts, &data)?;
        }
        let ufw_port = self.ufw(url.port)?;
        if facts.prosody {
            let (dns, old) = (&facts.dns, &facts.old_domains);
            self.prosody(
                dns,
                &data,
                &served.cert,
                facts.jitsi,
                facts.same_instance,
                old,
            )?;
        }
        self.jitsi(&facts, &data)?;
        if facts.jitsi.any() {
            self.debconf(&facts.dns)?;
        }
        self.own_files()?;
        let state = self.state(&facts, served, rocketchat_port, ufw_port);
        self.file(
            &format!("/{STATE_FILE}"),
            &state.to_json(),
            0o600,
            0,
            0,
            &[],
        );

        let installed = Installed::detect(self.tree);
        Ok(ApplyPlan {
            targets: one_per_path(self.targets)?,
            dirs: self.dirs,
            state,
            hostname,
            installed,
        })
    }

    fn facts(&self) -> Facts {
        let tree = self.tree;
        let dns = self.input.config.dns_name.as_str().to_owned();
        Facts {
            jitsi: Jitsi {
                meet: tree.is_dir("/etc/jitsi/meet"),
                jicofo: tree.is_dir("/etc/jitsi/jicofo"),
                videobridge: tree.is_dir("/etc/jitsi/videobridge"),
            },
            prosody: tree.is_dir("/etc/prosody"),
            nginx: tree.is_dir("/etc/nginx"),
            old_domains: self.old_domains(&dns),
            same_instance: self
                .input
                .previous
                .is_some_and(|s| s.instance_id == self.input.instance_id),
            dns,
        }
    }

    /// Host name: in IP mode with nothing naming the machine, left as it is (then "").
    fn hostname(&mut self, facts: &Facts) -> Result<String> {
        let config = self.input.config;
        let Some(name) = &config.host_name else {
            return Ok(String::new());
        };
        let hostname = static_hostname(name).to_owned();
        self.edit(
            "/etc/hostname",
            format!("{hostname}\n"),
            0o644,
            &[Effect::Hostname],
        )?;
        let mut names = vec![name.as_str()];
        if config.dns_name.address().is_none() {
            names.insert(0, &facts.dns);
        }
        let hosts = self.tree.read("/etc/hosts")?.unwrap_or_default();
        let hosts = hosts_with(&String::from_utf8_lossy(&hosts), &names);
        self.edit("/etc/hosts", hosts, 0o644, &[])?;
        Ok(hostname)
    }

    /// The certificate nginx serves.
    fn tls(&mut self, facts: &Facts) -> Result<Served> {
        let config = self.input.config;
        let dns = &facts.dns;
        let cert_file = format!("/etc/ssl/{dns}.crt");
        let key_file = format!("/etc/ssl/private/{dns}.key");
        let served: Vec<&str> = config.served_names().iter().map(|n| n.as_str()).collect();
        let previous_mode = self.input.previous.map(|s| s.certificate.mode.as_str());
        // Whether the certificate in place is one a CA issued over ACME.
        let acme_issued = self
            .input
            .previous
            .and_then(|s| s.certificate.acme.as_ref())
            .is_some_and(|a| a.issued_by.is_some());
        let same_instance = facts.same_instance;
        let (cert, kept) = match &config.certificate {
            CertificateMode::Provided { chain, key } => (tls::provided(chain, key), false),
            // A CA's certificate is not kept as a self-signed one: nothing would renew it.
            CertificateMode::SelfSigned => {
                let keep = same_instance
                    && (previous_mode == Some("self-signed")
                        || previous_mode == Some("letsencrypt") && !acme_issued);
                let min_days = tls::MIN_REMAINING_DAYS;
                self.cert_for(&served, &cert_file, &key_file, keep, min_days)?
            }
            // Renewing the CA's certificate is the ACME client's job (30 days ahead): it is
            // kept for as long as it is valid.
            CertificateMode::LetsEncrypt { .. } => {
                let keep = same_instance && previous_mode != Some("provided");
                self.cert_for(&served, &cert_file, &key_file, keep, 0)?
            }
        };
        self.dir("/etc/ssl/private", 0o710, 0, self.group("ssl-cert"));
        self.targets
            .extend(nginx_certificate(self.tree, dns, &cert));
        for old in &facts.old_domains {
            if old != PLACEHOLDER_DOMAIN {
                self.remove(&format!("/etc/ssl/{old}.crt"), &[Effect::Nginx]);
                self.remove(&format!("/etc/ssl/private/{old}.key"), &[Effect::Nginx]);
            }
        }
        Ok(Served {
            cert,
            kept,
            cert_file,
            key_file,
        })
    }

    /// Rocket.Chat behind nginx: its unit's drop-in, its environment, and whether the local
    /// MongoDB is its database.
    fn rocketchat(&mut self, data: &Value) -> Result<()> {
        let dropin = self.templates.render("rocketchat-dropin.conf", data)?;
        let env = self.templates.render("rocketchat.env", data)?;
        self.dir("/etc/systemd/system/rocketchat.service.d", 0o755, 0, 0);
        self.file(
            ROCKETCHAT_DROPIN,
            &dropin,
            0o600,
            0,
            0,
            &[Effect::RocketChat],
        );
        self.dir("/etc/appliance", 0o755, 0, 0);
        self.file(ROCKETCHAT_ENV, &env, 0o600, 0, 0, &[Effect::RocketChat]);
        if self.input.config.mongo_url.is_some() {
            let why =
                "Written by appliance-firstboot: Rocket.Chat uses the MongoDB of the user-data's \
                       mongo_url, so the local mongod and appliance-mongo-rs stay stopped.\n";
            self.file(EXTERNAL_MONGODB, why, 0o644, 0, 0, &[Effect::RocketChat]);
        } else {
            self.remove(EXTERNAL_MONGODB, &[Effect::RocketChat]);
        }
        Ok(())
    }

    /// nginx's site, the ACME client's web root, and the old names' sites removed.
    fn nginx(&mut self, facts: &Facts, data: &Value) -> Result<()> {
        let site = self.templates.render("nginx-site.conf", data)?;
        self.dir("/etc/nginx/sites-available", 0o755, 0, 0);
        self.dir("/etc/nginx/sites-enabled", 0o755, 0, 0);
        self.file(NGINX_SITE, &site, 0o644, 0, 0, &[Effect::Nginx]);
        self.link(NGINX_SITE_LINK, NGINX_SITE, &[Effect::Nginx]);
        self.dir(ACME_WEBROOT, 0o755, 0, 0);
        self.dir(&format!("{ACME_WEBROOT}/.well-known"), 0o755, 0, 0);
        self.dir(
            &format!("{ACME_WEBROOT}/.well-known/acme-challenge"),
            0o755,
            0,
            0,
        );
        for old in &facts.old_domains {
            for dir in ["sites-enabled", "sites-available"] {
                self.remove(&format!("/etc/nginx/{dir}/{old}.conf"), &[Effect::Nginx]);
            }
        }
        Ok(())
    }

    /// Jitsi Meet's config.js, jicofo's and the videobridge's files, and coturn (the TURN
    /// server prosody advertises, see prosody-jitsi.cfg.lua).
    fn jitsi(&mut self, facts: &Facts, data: &Value) -> Result<()> {
        let (dns, jitsi) = (&facts.dns, facts.jitsi);
        if jitsi.meet {
            let js = self.templates.render("jitsi-meet-config.js", data)?;
            self.file(
                &format!("/etc/jitsi/meet/{dns}-config.js"),
                &js,
                0o644,
                0,
                0,
                &[],
            );
            for old in &facts.old_domains {
                for file in [
                    format!("{old}-config.js"),
                    format!("{old}.crt"),
                    format!("{old}.key"),
                ] {
                    self.remove(&format!("/etc/jitsi/meet/{file}"), &[]);
                }
            }
        }
        let jitsi_group = self.group("jitsi");
        if jitsi.jicofo {
            let files = [
                "jicofo.conf",
                "jicofo-config",
                "jicofo-sip-communicator.properties",
            ];
            self.jitsi_component("jicofo", "jicofo", files, jitsi_group, Effect::Jicofo, data)?;
        }
        if jitsi.videobridge {
            let files = ["jvb.conf", "jvb-config", "jvb-sip-communicator.properties"];
            let effect = Effect::Videobridge;
            self.jitsi_component("videobridge", "jvb", files, jitsi_group, effect, data)?;
        }
        if self.tree.exists(TURNSERVER_CONF) || self.tree.has_unit(COTURN_UNIT) {
            let conf = self.templates.render("turnserver.conf", data)?;
            let gid = self.group("turnserver");
            self.file(TURNSERVER_CONF, &conf, 0o640, 0, gid, &[Effect::Turn]);
        }
        Ok(())
    }

    /// One Jitsi service's three files in /etc/jitsi/`dir`, from the templates
    /// `<user>.conf`, `<user>-config` and `<user>-sip-communicator.properties`.
    fn jitsi_component(
        &mut self,
        dir: &str,
        user: &str,
        templates: [&str; 3],
        gid: u32,
        effect: Effect,
        data: &Value,
    ) -> Result<()> {
        let uid = self.user(user);
        let files = [
            format!("{user}.conf"),
            "config".to_owned(),
            "sip-communicator.properties".to_owned(),
        ];
        for (template, file) in templates.into_iter().zip(files) {
            let text = self.templates.render(template, data)?;
            let path = format!("/etc/jitsi/{dir}/{file}");
            self.file(&path, &text, 0o640, uid, gid, &[effect]);
        }
        Ok(())
    }

    /// firstboot's own files but the state: the login message of IP mode, the effective
    /// configuration and the secrets.
    fn own_files(&mut self) -> Result<()> {
        let config = self.input.config;
        self.dir("/etc/appliance", 0o755, 0, 0);
        self.dir("/var/lib/appliance", 0o700, 0, 0);
        // The login message says when the machine runs in IP mode and how to leave it.
        match config.dns_name.address() {
            Some(address) => {
                self.dir(IP_MODE_MOTD_DIR, 0o755, 0, 0);
                let motd = format!(
                    "This appliance has no DNS name: it runs on its IP address {address} \
                     (Jitsi Meet at https://{address}/, Rocket.Chat at {}) with a \
                     self-signed certificate.\nTo {}.\n",
                    config.root_url,
                    &crate::state::IP_MODE_HINT[3..]
                );
                self.file(&format!("/{IP_MODE_MOTD}"), &motd, 0o644, 0, 0, &[]);
            }
            None => self.remove(&format!("/{IP_MODE_MOTD}"), &[]),
        }
        let config_path = format!("/{CONFIG_FILE}");
        self.file(&config_path, self.input.effective_yaml, 0o600, 0, 0, &[]);
        let secrets_path = format!("/{SECRETS_FILE}");
        self.file(
            &secrets_path,
            &self.input.secrets.to_json(),
            0o600,
            0,
            0,
            &[],
        );
        Ok(())
    }

    /// What this apply records (see [`State`]).
    fn state(
        &self,
        facts: &Facts,
        served: Served,
        rocketchat_port: u16,
        ufw_port: Option<u16>,
    ) -> State {
        let config = self.input.config;
        State {
            instance_id: self.input.instance_id.to_owned(),
            config_sha256: self.input.config_sha256.to_owned(),
            applied_at: epoch_seconds(self.input.now),
            dns_name: facts.dns.clone(),
            root_url: config.root_url.to_string(),
            served_names: config
                .served_names()
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
            certificate: CertificateState {
                mode: match &config.certificate {
                    CertificateMode::Provided { .. } => "provided",
                    CertificateMode::SelfSigned => "self-signed",
                    CertificateMode::LetsEncrypt { .. } => "letsencrypt",
                }
                .to_owned(),
                cert_file: served.cert_file,
                key_file: served.key_file,
                not_after: served.cert.not_after,
                acme: self.acme_state(served.kept),
            },
            rocketchat_port,
            ufw_port,
            jitsi: facts.jitsi.any(),
            secrets_file: format!("/{SECRETS_FILE}"),
        }
    }

    /// The ACME client's progress stands while its certificate is kept (a certificate from
    /// another CA is replaced by the ACME client).
    fn acme_state(&self, cert_kept: bool) -> Option<AcmeState> {
        let CertificateMode::LetsEncrypt { email, directory } = &self.input.config.certificate
        else {
            return None;
        };
        let previous = self
            .input
            .previous
            .and_then(|s| s.certificate.acme.as_ref())
            .filter(|a| cert_kept && a.email == email.as_str());
        Some(match previous {
            Some(previous) => AcmeState {
                directory: Some(directory.clone()),
                ..previous.clone()
            },
            None => AcmeState::pending(email.as_str(), directory),
        })
    }

    /// The placeholder, and the last apply's DNS name if it was another.
    fn old_domains(&self, dns: &str) -> Vec<String> {
        let mut old = vec![PLACEHOLDER_DOMAIN.to_owned()];
        if let Some(previous) = self.input.previous {
            if previous.dns_name != dns && previous.dns_name != PLACEHOLDER_DOMAIN {
                old.push(previous.dns_name.clone());
            }
        }
        old
    }

    /// The certificate in place if it may be kept (then `true`): valid for `min_days` more
    /// days at least; else a new self-signed one.
    fn cert_for(
        &self,
        names: &[&str],
        cert: &str,
        key: &str,
        keep: bool,
        min_days: i64,
    ) -> Result<(CertAndKey, bool)> {
        if keep {
            if let (Some(c), Some(k)) = (self.tree.read(cert)?, self.tree.read(key)?) {
                if let Some(kept) = tls::reusable(&c, &k, names, self.input.now, min_days) {
                    return Ok((kept, true));
                }
            }
        }
        Ok((tls::self_signed(names, self.input.now)?, false))
    }

    fn template_data(
        &self,
        dns: &str,
        cert_file: &str,
        key_file: &str,
        rocketchat_port: u16,
        jitsi: Jitsi,
    ) -> Value {
        let config = self.input.config;
        let (mongo_url, oplog_url) = match &config.mongo_url {
            Some(url) => (url.to_string(), oplog_url(url)),
            None => (LOCAL_MONGO_URL.to_owned(), LOCAL_OPLOG_URL.to_owned()),
        };
        let url = &config.root_url;
        let secrets = self.input.secrets;
        let auth = format!("auth.{dns}");
        let tls = url.scheme == Scheme::Https;
        // Plain-HTTP names redirect to HTTPS, except ROOT_URL's host when Rocket.Chat itself is
        // served over plain HTTP on port 80.
        let plain_rocketchat = !tls && url.port == 80;
        let redirect_names: Vec<&str> = config
            .served_names()
            .iter()
            .map(|n| n.as_str())
            .filter(|n| !(plain_rocketchat && *n == url.host.as_str()))
            .collect();
        let longest = config
            .served_names()
            .iter()
            .map(|n| n.as_str().len())
            .max()
            .unwrap_or(0);
        let location = if url.path.ends_with('/') {
            url.path.clone()
        } else {
            format!("{}/", url.path)
        };
        let prefix = location.trim_end_matches('/');
        let prosody_cert = format!("/etc/prosody/certs/{dns}.crt");
        let prosody_key = format!("/etc/prosody/certs/{dns}.key");
        json!({
            "dns_name": dns,
            "auth_domain": auth,
            "cert": cert_file,
            "key": key_file,
            "secrets": {
                "focus_password": secrets.focus_password,
                "jvb_password": secrets.jvb_password,
                "turn_secret": secrets.turn_secret,
                "muc_nickname": secrets.muc_nickname,
            },
            "prosody": {
                "cert": prosody_cert,
                "key": prosody_key,
                "auth_cert": format!("/etc/prosody/certs/{auth}.crt"),
                "auth_key": format!("/etc/prosody/certs/{auth}.key"),
            },
            "nginx": {
                // Names up to the longest served one must fit nginx's hash buckets.
                "bucket_size": (longest + 32).next_power_of_two().max(64),
                "redirect_names": redirect_names,
                "acme_root": ACME_WEBROOT,
                "jitsi": jitsi.meet,
                "jitsi_config_js": format!("/etc/jitsi/meet/{dns}-config.js"),
            },
            "rocketchat": {
                "root_url": url.to_string(),
                "host": url.host.as_str(),
                "port": url.port,
                "tls": tls,
                "tls_elsewhere": tls && url.port != 443,
                "acme": plain_rocketchat,
                "location": location,
                "prefix": if prefix.is_empty() { Value::Null } else { Value::from(prefix) },
                "internal_port": rocketchat_port,
                "mongo_url": mongo_url,
                "oplog_url": oplog_url,
                "admin": config.admin.as_ref().map(|a| json!({
                    "username": a.username,
                    "password": a.password.expose(),
                    "email": a.email.as_str(),
                })),
                // REG_TOKEN: Rocket.Chat registers the workspace with Rocket.Chat Cloud with
                // it at its start when it is not registered yet
                // (RocketChat/Rocket.Chat apps/meteor/app/cloud/server/index.ts);
                // appliance-rocketchat-jitsi reads it from the same file.
                "registration_token": config
                    .rocketchat_registration_token
                    .as_ref()
                    .map(|t| t.expose()),
            },
        })
    }

    /// Opens ROOT_URL's port in ufw (TCP, both families) unless a rule already does, and
    /// closes the port firstboot opened before if ROOT_URL moved. Returns the port firstboot
    /// has open afterwards.
    fn ufw(&mut self, port: u16) -> Result<Option<u16>> {
        // 80 and 443 are the image's own rules.
        let want = (port != 80 && port != 443).then_some(port);
        let old = self.input.previous.and_then(|s| s.ufw_port);
        let mut ours = None;
        for (file, family) in [
            ("/etc/ufw/user.rules", Family::V4),
            ("/etc/ufw/user6.rules", Family::V6),
        ] {
            let Current::File {
                content,
                mode,
                uid,
                gid,
            } = self.tree.current(file)?
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&content);
            let remove = old.filter(|o| Some(*o) != want);
            let without = ufw::edit(&text, family, None, remove).ok_or_else(|| {
                anyhow!("{file}: no '### END RULES ###' line, not ufw's rule file")
            })?;
            let edited = match want {
                Some(p) if !ufw::allows_tcp(&without, family, p) => {
                    ours = Some(p);
                    ufw::edit(&without, family, Some(p), None).expect("checked above")
                }
                Some(p) if old == Some(p) => {
                    ours = Some(p);
                    without
                }
                _ => without,
            };
            self.targets.push(Target {
                path: file.to_owned(),
                action: Action::File(FileSpec {
                    content: edited.into_bytes(),
                    mode,
                    uid,
                    gid,
                }),
                effects: vec![Effect::Ufw],
            });
        }
        Ok(ours)
    }

    fn prosody(
        &mut self,
        dns: &str,
        data: &Value,
        cert: &CertAndKey,
        jitsi: Jitsi,
        same_instance: bool,
        old_domains: &[String],
    ) -> Result<()> {
        let group = self.group("prosody");
        let user = self.user("prosody");
        let p = Effect::Prosody;
        let template = if jitsi.any() {
            "prosody-jitsi.cfg.lua"
        } else {
            "prosody-host.cfg.lua"
        };
        let conf = self.templates.render(template, data)?;
        let avail = format!("/etc/prosody/conf.avail/{dns}.cfg.lua");
        self.dir("/etc/prosody/conf.avail", 0o755, 0, 0);
        self.dir("/etc/prosody/conf.d", 0o755, 0, 0);
        self.dir("/etc/prosody/certs", 0o755, 0, 0);
        self.file(&avail, &conf, 0o640, 0, group, &[p]);
        self.link(&format!("/etc/prosody/conf.d/{dns}.cfg.lua"), &avail, &[p]);
        self.targets
            .extend(prosody_certificate(self.tree, dns, cert));
        for old in old_domains {
            self.remove(&format!("/etc/prosody/conf.d/{old}.cfg.lua"), &[p]);
            self.remove(&format!("/etc/prosody/conf.avail/{old}.cfg.lua"), &[p]);
            for host in [old.clone(), format!("auth.{old}")] {
                for ext in ["crt", "key"] {
                    self.remove(&format!("/etc/prosody/certs/{host}.{ext}"), &[p]);
                }
                for ext in ["crt", "key", "cnf"] {
                    self.remove(&format!("{}/{host}.{ext}", prosody::DATA_DIR), &[p]);
                }
            }
            self.remove(
                &format!("/usr/local/share/ca-certificates/auth.{old}.crt"),
                &[Effect::CaTrust],
            );
            let auth = format!("auth.{old}");
            for (store, user) in [
                ("accounts", "focus"),
                ("accounts", "jvb"),
                ("roster", "focus"),
            ] {
                self.remove(&prosody::data_file(&auth, store, user), &[p]);
            }
        }
        if !jitsi.any() {
            return Ok(());
        }
        // Jitsi's internal XMPP host: its own certificate, trusted by jicofo.
        let auth = format!("auth.{dns}");
        let auth_cert = format!("/etc/prosody/certs/{auth}.crt");
        let auth_key = format!("/etc/prosody/certs/{auth}.key");
        let (internal, _) = self.cert_for(
            &[&auth],
            &auth_cert,
            &auth_key,
            same_instance,
            tls::MIN_REMAINING_DAYS,
        )?;
        let trust = [p, Effect::CaTrust];
        self.file(&auth_cert, &internal.cert_pem, 0o644, 0, 0, &trust);
        self.file(&auth_key, &internal.key_pem, 0o640, 0, group, &[p]);
        self.dir("/usr/local/share/ca-certificates", 0o755, 0, 0);
        let ca = format!("/usr/local/share/ca-certificates/{auth}.crt");
        self.file(&ca, &internal.cert_pem, 0o644, 0, 0, &[Effect::CaTrust]);
        // The accounts jicofo and the videobridge log in with.
        let host_dir = format!("{}/{}", prosody::DATA_DIR, prosody::encode(&auth));
        self.dir(prosody::DATA_DIR, 0o750, user, group);
        self.dir(&host_dir, 0o750, user, group);
        self.dir(&format!("{host_dir}/accounts"), 0o750, user, group);
        self.dir(&format!("{host_dir}/roster"), 0o750, user, group);
        let secrets = self.input.secrets;
        for (name, password) in [
            ("focus", &secrets.focus_password),
            ("jvb", &secrets.jvb_password),
        ] {
            let path = prosody::data_file(&auth, "accounts", name);
            let existing = self.tree.read(&path)?;
            let record = match existing {
                Some(e) if prosody::account_matches(&String::from_utf8_lossy(&e), password) => {
                    String::from_utf8_lossy(&e).into_owned()
                }
                _ => prosody::account_record(password, self.random),
            };
            self.file(&path, &record, 0o640, user, group, &[p]);
        }
        let roster = prosody::roster_record(&format!("focus.{dns}"));
        let path = prosody::data_file(&auth, "roster", "focus");
        self.file(&path, &roster, 0o640, user, group, &[p]);
        Ok(())
    }

    /// The Jitsi packages' debconf answers (see [`crate::plan::debconf`]).
    fn debconf(&mut self, dns: &str) -> Result<()> {
        let secrets = self.input.secrets;
        let files = [
            (
                debconf::CONFIG_DAT,
                vec![
                    ("jitsi-videobridge/jvb-hostname", dns),
                    ("jitsi-meet/jvb-hostname", dns),
                    ("jitsi-meet-prosody/jvb-hostname", dns),
                    ("jicofo/jicofo-authuser", "focus"),
                ],
            ),
            (
                debconf::PASSWORDS_DAT,
                vec![
                    (
                        "jicofo/jicofo-authpassword",
                        secrets.focus_password.as_str(),
                    ),
                    ("jitsi-videobridge/jvbsecret", secrets.jvb_password.as_str()),
                ],
            ),
        ];
        for (path, values) in files {
            if let Some(text) = self.tree.read(path)? {
                let text = debconf::with_values(&String::from_utf8_lossy(&text), &values);
                self.edit(path, text, 0o600, &[])?;
            }
        }
        Ok(())
    }

    fn user(&self, name: &str) -> u32 {
        self.tree.user_id(name).unwrap_or(0)
    }

    /// The group's id, root's when the tree has no such group.
    fn group(&self, name: &str) -> u32 {
        self.tree.group_id(name).unwrap_or(0)
    }

    fn file(
        &mut self,
        path: &str,
        content: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        effects: &[Effect],
    ) {
        self.targets.push(Target {
            path: path.to_owned(),
            action: Action::File(FileSpec {
                content: content.as_bytes().to_vec(),
                mode,
                uid,
                gid,
            }),
            effects: effects.to_vec(),
        });
    }

    /// A file that may exist already: its mode and owner are kept.
    fn edit(&mut self, path: &str, content: String, mode: u32, effects: &[Effect]) -> Result<()> {
        let (mode, uid, gid) = match self.tree.current(path)? {
            Current::File { mode, uid, gid, .. } => (mode, uid, gid),
            _ => (mode, 0, 0),
        };
        self.file(path, &content, mode, uid, gid, effects);
        Ok(())
    }

    fn link(&mut self, path: &str, target: &str, effects: &[Effect]) {
        self.targets.push(Target {
            path: path.to_owned(),
            action: Action::Symlink(target.to_owned()),
            effects: effects.to_vec(),
        });
    }

    /// Removes `path` if the tree has it.
    fn remove(&mut self, path: &str, effects: &[Effect]) {
        if self.tree.exists(path) && !self.targets.iter().any(|t| t.path == path) {
            self.targets.push(Target {
                path: path.to_owned(),
                action: Action::Remove,
                effects: effects.to_vec(),
            });
        }
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) {
        if !self.dirs.iter().any(|d| d.path == path) {
            self.dirs.push(DirSpec {
                path: path.to_owned(),
                mode,
                uid,
                gid,
            });
        }
    }
}

/// The targets with each path once: a removal (of a file named after an old domain) gives way
/// to a file or link for the same path, wherever either was pushed; the new name can be an old
/// one (the placeholder itself, or `auth.X` renamed to `X`).
fn one_per_path(targets: Vec<Target>) -> Result<Vec<Target>> {
    let mut written = std::collections::HashSet::new();
    for target in targets.iter().filter(|t| t.action != Action::Remove) {
        if !written.insert(target.path.clone()) {
            bail!(
                "planning: {} is written twice (an error of the plan)",
                target.path
            );
        }
    }
    let mut removed = std::collections::HashSet::new();
    Ok(targets
        .into_iter()
        .filter(|t| {
            t.action != Action::Remove
                || (!written.contains(&t.path) && removed.insert(t.path.clone()))
        })
        .collect())
}

/// The certificate nginx serves for `dns` and its key (readable by group `ssl-cert`).
pub fn nginx_certificate(tree: &Tree, dns: &str, cert: &CertAndKey) -> [Target; 2] {
    let ssl_cert = tree.group_id("ssl-cert").unwrap_or(0);
    [
        certificate_file(
            &format!("/etc/ssl/{dns}.crt"),
            &cert.cert_pem,
            0o644,
            0,
            Effect::Nginx,
        ),
        certificate_file(
            &format!("/etc/ssl/private/{dns}.key"),
            &cert.key_pem,
            0o640,
            ssl_cert,
            Effect::Nginx,
        ),
    ]
}

/// Prosody's copy of the served certificate (prosody reads only its own directory).
pub fn prosody_certificate(tree: &Tree, dns: &str, cert: &CertAndKey) -> [Target; 2] {
    let group = tree.group_id("prosody").unwrap_or(0);
    let p = Effect::Prosody;
    [
        certificate_file(
            &format!("/etc/prosody/certs/{dns}.crt"),
            &cert.cert_pem,
            0o644,
            0,
            p,
        ),
        certificate_file(
            &format!("/etc/prosody/certs/{dns}.key"),
            &cert.key_pem,
            0o640,
            group,
            p,
        ),
    ]
}

fn certificate_file(path: &str, pem: &str, mode: u32, gid: u32, effect: Effect) -> Target {
    Target {
        path: path.to_owned(),
        action: Action::File(FileSpec {
            content: pem.as_bytes().to_vec(),
            mode,
            uid: 0,
            gid,
        }),
        effects: vec![effect],
    }
}

/// MONGO_OPLOG_URL for an external replica set: the same hosts, credentials and options,
/// database `local`; credentials keep authenticating against the database they were given
/// for (`authSource`).
pub fn oplog_url(url: &MongoUrl) -> String {
    let text = url.to_string();
    let scheme_end = text.find("://").map_or(0, |i| i + 3);
    let slash = text[scheme_end..]
        .find('/')
        .map_or(text.len(), |i| scheme_end + i);
    let (base, rest) = text.split_at(slash);
    let options = rest.split_once('?').map(|(_, o)| o).unwrap_or("");
    let mut options: Vec<String> = options
        .split('&')
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    let has_auth_source = options
        .iter()
        .any(|o| o.to_ascii_lowercase().starts_with("authsource="));
    if url.has_credentials && !has_auth_source {
        options.push(format!("authSource={}", url.database));
    }
    if options.is_empty() {
        format!("{base}/local")
    } else {
        format!("{base}/local?{}", options.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oplog_urls() {
        let o = |s: &str| oplog_url(&MongoUrl::parse(s).unwrap());
        assert_eq!(
            o("mongodb://db1,db2:27018/rocketchat?replicaSet=rs0"),
            "mongodb://db1,db2:27018/local?replicaSet=rs0"
        );
        assert_eq!(
            o("mongodb://rc:p%40ss@db1/rocketchat?replicaSet=rs0"),
            "mongodb://rc:p%40ss@db1/local?replicaSet=rs0&authSource=rocketchat"
        );
        assert_eq!(
            o("mongodb+srv://rc:x@cluster.example.com/rc?authSource=admin"),
            "mongodb+srv://rc:x@cluster.example.com/local?authSource=admin"
        );
        assert_eq!(o("mongodb://db/rc"), "mongodb://db/local");
    }

    #[test]
    fn step_order() {
        let all: BTreeSet<Effect> = [
            Effect::Hostname,
            Effect::Nginx,
            Effect::RocketChat,
            Effect::Ufw,
            Effect::CaTrust,
            Effect::Prosody,
            Effect::Jicofo,
            Effect::Videobridge,
        ]
        .into();
        let installed = Installed {
            units: UNITS.map(String::from).into(),
            nginx: true,
            ufw: true,
            update_ca_certificates: true,
        };
        let lines: Vec<String> = steps(&all, &installed, "meet.example.com")
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "nginx -t -q",
                "hostname meet.example.com",
                "systemctl daemon-reload",
                "ufw reload",
                "update-ca-certificates --fresh",
                "systemctl try-restart prosody.service",
                "systemctl try-restart jicofo.service",
                "systemctl try-restart jitsi-videobridge2.service",
                "systemctl try-restart rocketchat.service",
                "systemctl try-reload-or-restart nginx.service",
            ]
        );
        let none = Installed::default();
        assert_eq!(
            steps(&all, &none, "m.example.com"),
            [
                Step::SetHostname("m.example.com".into()),
                Step::DaemonReload
            ]
        );
    }
}
