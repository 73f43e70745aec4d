//! The appliance's configuration, checked: [`validate`] turns [`Settings`] into a [`Config`]
//! or into every problem found, before anything on the machine is changed.
//!
//! Keys (under `appliance:` in user-data, at the top of config.yaml):
//! - `dns_name`: a fully qualified DNS name (see [`crate::input::names`]); else cloud-config `fqdn`,
//!   else `hostname` when it is not a single label. Absent: **IP mode**, below.
//! - `root_url`: Rocket.Chat's URL (see [`crate::input::root_url`]); default `https://<dns_name>:3000/`.
//! - `certificate`: `{cert, key}` (PEM chain leaf first, and its key; see [`crate::input::cert`]),
//!   or `{letsencrypt: {email, directory}}`; absent or `{}`: a self-signed certificate.
//!   `directory` is the CA's ACME directory: `production` (the default: Let's Encrypt),
//!   `staging` (Let's Encrypt's staging CA, for trials: untrusted certificates, generous
//!   limits) or an `https://` URL of another RFC 8555 CA that needs no account binding.
//! - `admin`: `{username, password, email}`, all three or none (`{}` is none). The password
//!   has at least [`MIN_PASSWORD_LEN`] characters: it guards a server on the Internet and
//!   travels in cloud metadata; the username is what Rocket.Chat accepts by default (letters,
//!   digits, `.`, `_`, `-`).
//! - `mongo_url`: an external replica set (see [`crate::input::mongo_url`]); absent: the local one.
//! - `rocketchat_registration_token`: a Rocket.Chat Cloud registration token (Cloud console >
//!   Workspaces > Register self-managed); giving it is consent to register the workspace with
//!   Rocket.Chat Cloud. A secret ([`Secret`]): shown by no message or summary, written only to
//!   config.yaml and to Rocket.Chat's root-only environment file as `REG_TOKEN` (Rocket.Chat
//!   registers the workspace with it at its start when not registered yet:
//!   apps/meteor/app/cloud/server/index.ts). 1 to [`MAX_REGISTRATION_TOKEN_LEN`] printable
//!   ASCII characters without spaces, quotes or backslashes.
//!
//! Every value is a string (a number or boolean is refused with a hint to quote it, so that
//! YAML's guesses cannot turn `0755` or `on` into something else), not empty, without control
//! characters or line breaks; the PEM texts may hold line breaks. Unknown keys are refused, so
//! a typo does not silently leave a default in place.
//!
//! **IP mode.** With no DNS name the appliance is served on the machine's IPv4 address (see
//! [`crate::input::address`] for which one), as the install guide it automates allows: the address
//! stands where the name would (`https://203.0.113.7/` for Jitsi Meet, ROOT_URL
//! `https://203.0.113.7:3000/` unless given, a self-signed certificate with the address as an
//! IP subjectAltName). Let's Encrypt is refused: it issues no certificates for addresses. A
//! given certificate must cover the address. The address is part of the effective
//! configuration (a comment of config.yaml, so also of its hash): a new address at the next
//! boot, as when a cloud VM is stopped and started, is applied like a new configuration.
//! Setting `dns_name` in config.yaml and running `reconfigure` moves the machine to the name.
//! Without an address either (no public IPv4 in the instance data, no default route), the
//! configuration is refused with why.
//!
//! **Host name** ([`Config::host_name`]), as cloud-init would set it (the image keeps
//! cloud-init from setting it, `preserve_hostname`, so that it stays what firstboot sets):
//! the user-data's `fqdn`, else its `hostname` (a single label is fine), else the DNS name,
//! else meta-data's `local-hostname`; in IP mode with none of them, the host name is left as
//! it is. An invalid `local-hostname` (the cloud's, not the user's) is passed over.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::input::address::{IpAddress, Machine};
use crate::input::cert::{CertificateChain, PrivateKeyPem};
use crate::input::error::{shown, ConfigError, KeyPath, Origin};
use crate::input::mongo_url::MongoUrl;
use crate::input::names::{host_name, DnsName, Email};
use crate::input::root_url::RootUrl;
use crate::input::userdata::{kind, Precedence, Settings, Sources};

/// Let's Encrypt's production directory.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous limits).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Shortest admin password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Longest Rocket.Chat Cloud registration token accepted.
pub const MAX_REGISTRATION_TOKEN_LEN: usize = 512;

const TOP_KEYS: &[&str] = &[
    "dns_name",
    "root_url",
    "certificate",
    "admin",
    "mongo_url",
    "rocketchat_registration_token",
];
const TOP_KNOWN: &str =
    "dns_name, root_url, certificate, admin, mongo_url, rocketchat_registration_token";
const CERT_KNOWN: &str = "cert, key, letsencrypt";
const LETSENCRYPT_KNOWN: &str = "email, directory";
const ADMIN_KNOWN: &str = "username, password, email";

/// A configuration that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The name served, or in IP mode the address (see [`DnsName::address`]).
    pub dns_name: DnsName,
    /// The machine's host name, if anything names it (see the module doc).
    pub host_name: Option<String>,
    pub root_url: RootUrl,
    pub certificate: CertificateMode,
    pub admin: Option<Admin>,
    pub mongo_url: Option<MongoUrl>,
    /// Rocket.Chat Cloud's registration token (`REG_TOKEN`), when the user-data gives one.
    pub rocketchat_registration_token: Option<Secret>,
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateMode {
    /// Given in the configuration: installed as it is.
    Provided {
        chain: CertificateChain,
        key: PrivateKeyPem,
    },
    /// Made on the machine for every name served.
    SelfSigned,
    /// Self-signed first, then obtained over ACME HTTP-01 (see [`crate::acme`]) from the CA
    /// at `directory` (a URL; [`LETSENCRYPT`] by default).
    LetsEncrypt { email: Email, directory: String },
}

/// Rocket.Chat's first administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub username: String,
    pub password: Secret,
    pub email: Email,
}

/// A string that `Debug` does not show.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Config {
    /// The host names nginx serves and the certificate must cover: the DNS name, then
    /// ROOT_URL's host if it is another.
    pub fn served_names(&self) -> Vec<&DnsName> {
        let mut names = vec![&self.dns_name];
        if self.root_url.host != self.dns_name {
            names.push(&self.root_url.host);
        }
        names
    }
}

impl fmt::Display for Config {
    /// A summary for people: no password, key, MongoDB credentials or registration token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dns_name.address() {
            Some(a) if a.is_unspecified() => writeln!(
                f,
                "dns_name:    none: IP mode, on the instance's public IPv4 address (cloud \
                 metadata) or its default route's address at boot"
            )?,
            Some(a) => writeln!(f, "dns_name:    none: IP mode, on {a}")?,
            None => writeln!(f, "dns_name:    {}", self.dns_name)?,
        }
        match &self.host_name {
            Some(name) if name != self.dns_name.as_str() => writeln!(f, "host name:   {name}")?,
            _ => {}
        }
        let at_boot = self.dns_name.address().is_some_and(|a| a.is_unspecified());
        if at_boot && self.root_url == RootUrl::default_for(&self.dns_name) {
            writeln!(f, "root_url:    https://<address>:{}/", self.root_url.port)?;
        } else {
            writeln!(f, "root_url:    {}", self.root_url)?;
        }
        match &self.certificate {
            CertificateMode::Provided { chain, .. } => writeln!(
                f,
                "certificate: provided, {} certificate(s), leaf valid until {}, names {}",
                chain.len(),
                crate::input::cert::utc_date(chain.leaf_not_after),
                chain.leaf_names.join(", ")
            )?,
            CertificateMode::SelfSigned => writeln!(f, "certificate: self-signed")?,
            CertificateMode::LetsEncrypt { email, directory } => {
                let ca = match directory.as_str() {
                    LETSENCRYPT => "Let's Encrypt".to_owned(),
                    LETSENCRYPT_STAGING => "Let's Encrypt's staging CA".to_owned(),
                    other => format!("ACME at {other}"),
                };
                writeln!(f, "certificate: {ca}, account {email}")?
            }
        }
        match &self.admin {
            Some(admin) => writeln!(f, "admin:       {} <{}>", admin.username, admin.email)?,
            None => writeln!(f, "admin:       none (Rocket.Chat's setup wizard)")?,
        }
        match &self.mongo_url {
            Some(url) => write!(f, "mongo_url:   {}", url.redacted()),
            None => write!(f, "mongo_url:   local replica set"),
        }?;
        if self.rocketchat_registration_token.is_some() {
            write!(
                f,
                "\ncloud:       registers with Rocket.Chat Cloud \
                 (rocketchat_registration_token: redacted)"
            )?;
        }
        Ok(())
    }
}

/// Checks every setting; on failure returns every problem, in key order.
pub fn validate(settings: &Settings, now: SystemTime) -> Result<Config, Vec<ConfigError>> {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    let mut errors = Vec::new();
    for (key, entry) in &settings.entries {
        if !TOP_KEYS.contains(&key.as_str()) {
            errors.push(ConfigError::UnknownKey {
                path: entry.path.clone(),
                known: TOP_KNOWN,
            });
        }
    }
    let entry = |key: &str| settings.entries.get(key);

    let dns_name = match (entry("dns_name"), &settings.address) {
        (Some(e), _) => ok(&mut errors, dns_name(&e.path, &e.value)),
        (None, IpAddress::AtBoot) => Some(DnsName::for_address(std::net::Ipv4Addr::UNSPECIFIED)),
        (None, IpAddress::Found { address, .. }) => Some(DnsName::for_address(*address)),
        (None, IpAddress::NotFound(why)) => {
            errors.push(ConfigError::NoAddress {
                path: KeyPath::new(Origin::UserData, "dns_name"),
                why: why.clone(),
            });
            None
        }
    };
    let host_name = match &settings.host_name {
        // The same key standing in for dns_name: checked (and any problem said) once.
        Some(e) if entry("dns_name").is_some_and(|d| d.path == e.path) => {
            dns_name.as_ref().map(|d| Some(d.as_str().to_owned()))
        }
        Some(e) => ok(&mut errors, host_name_setting(&e.path, &e.value)).map(Some),
        None => Some(
            dns_name
                .as_ref()
                .filter(|d| d.address().is_none())
                .map(|d| d.as_str().to_owned())
                .or_else(|| {
                    settings
                        .local_hostname
                        .as_deref()
                        .and_then(|n| host_name(n).ok())
                }),
        ),
    };
    let root_url = match (entry("root_url"), &dns_name) {
        (Some(e), dns_name) => ok(&mut errors, root_url(&e.path, &e.value, dns_name.as_ref())),
        (None, Some(dns_name)) => Some(RootUrl::default_for(dns_name)),
        (None, None) => None,
    };
    let served: Vec<&DnsName> = {
        // Before launch, IP mode's address is not known: nothing to check a certificate for.
        let known = |d: &&DnsName| d.address().is_none_or(|a| !a.is_unspecified());
        let mut names: Vec<&DnsName> = dns_name.iter().filter(known).collect();
        match &root_url {
            Some(url) if Some(&url.host) != dns_name.as_ref() => names.push(&url.host),
            _ => {}
        }
        names
    };
    let certificate = match entry("certificate") {
        Some(e) => certificate(&e.path, &e.value, &served, now, &mut errors),
        None => Some(CertificateMode::SelfSigned),
    };
    let ip_mode = dns_name.as_ref().is_some_and(|d| d.address().is_some());
    if let (true, Some(CertificateMode::LetsEncrypt { .. })) = (ip_mode, &certificate) {
        let path = entry("certificate").map(|e| e.path.child("letsencrypt"));
        errors.push(ConfigError::LetsEncryptIpMode {
            path: path.unwrap_or_else(|| KeyPath::new(Origin::UserData, "certificate")),
        });
    }
    let admin = match entry("admin") {
        Some(e) => admin(&e.path, &e.value, &mut errors),
        None => Some(None),
    };
    let mongo_url = match entry("mongo_url") {
        Some(e) => ok(&mut errors, mongo_url(&e.path, &e.value)).map(Some),
        None => Some(None),
    };
    let token = match entry("rocketchat_registration_token") {
        Some(e) => ok(&mut errors, registration_token(&e.path, &e.value)).map(Some),
        None => Some(None),
    };
    // Every key was checked above, each problem recorded: a value missing here had one.
    let config = (|| {
        Some(Config {
            dns_name: dns_name?,
            host_name: host_name?,
            root_url: root_url?,
            certificate: certificate?,
            admin: admin?,
            mongo_url: mongo_url?,
            rocketchat_registration_token: token?,
        })
    })();
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(errors),
    }
}

/// Keeps the value, or records the problem.
fn ok<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

fn dns_name(path: &KeyPath, value: &Value) -> Result<DnsName, ConfigError> {
    let text = string(path, value)?;
    let name = DnsName::parse(text).map_err(|error| ConfigError::DnsName {
        path: path.clone(),
        value: shown(text),
        error,
    })?;
    // The longest file name made from it: prosody's data directory for the Jitsi auth host.
    let bytes = crate::plan::prosody::encode(&format!("auth.{name}")).len();
    if bytes > MAX_FILE_NAME {
        return Err(ConfigError::TooLongForProsody {
            path: path.clone(),
            bytes,
        });
    }
    Ok(name)
}

/// A host name from cloud-config's `fqdn` or `hostname` (single labels allowed).
fn host_name_setting(path: &KeyPath, value: &Value) -> Result<String, ConfigError> {
    let text = string(path, value)?;
    host_name(text).map_err(|error| ConfigError::DnsName {
        path: path.clone(),
        value: shown(text),
        error,
    })
}

/// NAME_MAX of Linux file systems.
const MAX_FILE_NAME: usize = 255;

fn root_url(
    path: &KeyPath,
    value: &Value,
    dns_name: Option<&DnsName>,
) -> Result<RootUrl, ConfigError> {
    let err = |error| ConfigError::RootUrl {
        path: path.clone(),
        error,
    };
    let url = RootUrl::parse(string(path, value)?).map_err(err)?;
    if let Some(dns_name) = dns_name {
        url.check_against(dns_name).map_err(err)?;
    }
    Ok(url)
}

fn mongo_url(path: &KeyPath, value: &Value) -> Result<MongoUrl, ConfigError> {
    MongoUrl::parse(string(path, value)?).map_err(|error| ConfigError::MongoUrl {
        path: path.clone(),
        error,
    })
}

/// A Rocket.Chat Cloud registration token. Rocket.Chat takes it as it is; the characters
/// refused are those no token is made of and that a file or a shell line could read
/// otherwise. No message quotes it.
fn registration_token(path: &KeyPath, value: &Value) -> Result<Secret, ConfigError> {
    let text = string(path, value)?;
    if text.chars().count() > MAX_REGISTRATION_TOKEN_LEN {
        return Err(ConfigError::RegistrationTokenTooLong {
            path: path.clone(),
            max: MAX_REGISTRATION_TOKEN_LEN,
        });
    }
    let allowed = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '`' | '\\');
    if !text.chars().all(allowed) {
        return Err(ConfigError::RegistrationTokenCharacters { path: path.clone() });
    }
    Ok(Secret(text.to_owned()))
}

fn email(path: &KeyPath, value: &Value) -> Result<Email, ConfigError> {
    let text = string(path, value)?;
    Email::parse(text).map_err(|error| ConfigError::Email {
        path: path.clone(),
        value: shown(text),
        error,
    })
}

fn certificate(
    path: &KeyPath,
    value: &Value,
    served: &[&DnsName],
    now: i64,
    errors: &mut Vec<ConfigError>,
) -> Option<CertificateMode> {
    let map = mapping(
        path,
        value,
        CERT_KNOWN,
        &["cert", "key", "letsencrypt"],
        errors,
    )?;
    let (cert, key, letsencrypt) = (map.get("cert"), map.get("key"), map.get("letsencrypt"));
    let field = |key: &str| path.child(key);
    if letsencrypt.is_some() && (cert.is_some() || key.is_some()) {
        errors.push(ConfigError::CertificateModes { path: path.clone() });
        return None;
    }
    if let Some(le) = letsencrypt {
        let le_path = field("letsencrypt");
        let le = mapping(
            &le_path,
            le,
            LETSENCRYPT_KNOWN,
            &["email", "directory"],
            errors,
        )?;
        let email_path = le_path.child("email");
        let email = match le.get("email") {
            Some(value) => ok(errors, email(&email_path, value)),
            None => {
                errors.push(ConfigError::Missing {
                    path: email_path,
                    hint: " (Let's Encrypt needs an account e-mail address)",
                });
                None
            }
        };
        let directory = match le.get("directory") {
            Some(value) => ok(errors, acme_directory(&le_path.child("directory"), value)),
            None => Some(LETSENCRYPT.to_owned()),
        };
        return Some(CertificateMode::LetsEncrypt {
            email: email?,
            directory: directory?,
        });
    }
    let (cert, key) = match (cert, key) {
        (None, None) => return Some(CertificateMode::SelfSigned),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            errors.push(ConfigError::Missing {
                path: field("key"),
                hint: " (cert needs its private key)",
            });
            return None;
        }
        (None, Some(_)) => {
            errors.push(ConfigError::Missing {
                path: field("cert"),
                hint: " (key needs its certificate chain)",
            });
            return None;
        }
    };
    let (cert_path, key_path) = (field("cert"), field("key"));
    let cert_error = |error| ConfigError::Certificate {
        path: cert_path.clone(),
        error,
    };
    let key_error = |error| ConfigError::Certificate {
        path: key_path.clone(),
        error,
    };
    let chain = ok(
        errors,
        pem_string(&cert_path, cert).and_then(|t| CertificateChain::parse(t).map_err(cert_error)),
    );
    let key = ok(
        errors,
        pem_string(&key_path, key).and_then(|t| PrivateKeyPem::parse(t).map_err(key_error)),
    );
    let chain = chain?;
    errors.extend(chain.problems(now, served).into_iter().map(cert_error));
    let key = key?;
    ok(errors, chain.check_key(&key).map_err(key_error))?;
    Some(CertificateMode::Provided { chain, key })
}

/// `Some(None)` for no admin, `None` when something is wrong (recorded in `errors`).
fn admin(path: &KeyPath, value: &Value, errors: &mut Vec<ConfigError>) -> Option<Option<Admin>> {
    let map = mapping(
        path,
        value,
        ADMIN_KNOWN,
        &["username", "password", "email"],
        errors,
    )?;
    if map.is_empty() {
        return Some(None);
    }
    let mut missing = false;
    let mut field = |key: &str| {
        let value = map.get(key);
        if value.is_none() {
            missing = true;
            errors.push(ConfigError::Missing {
                path: path.child(key),
                hint: " (admin needs username, password and email, or none of them)",
            });
        }
        value.map(|v| (path.child(key), v))
    };
    let (username, password, email_value) = (field("username"), field("password"), field("email"));
    let username = username.and_then(|(p, v)| {
        let name = ok(errors, string(&p, v))?;
        if name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            Some(name.to_owned())
        } else {
            errors.push(ConfigError::Username { path: p });
            None
        }
    });
    let password = password.and_then(|(p, v)| {
        let password = ok(errors, string(&p, v))?;
        if password.chars().count() < MIN_PASSWORD_LEN {
            errors.push(ConfigError::PasswordTooShort {
                path: p,
                min: MIN_PASSWORD_LEN,
            });
            return None;
        }
        Some(Secret(password.to_owned()))
    });
    let email = email_value.and_then(|(p, v)| ok(errors, email(&p, v)));
    if missing {
        return None;
    }
    Some(Some(Admin {
        username: username?,
        password: password?,
        email: email?,
    }))
}

/// An ACME directory: `production`, `staging` or an `https://` URL with a host.
fn acme_directory(path: &KeyPath, value: &Value) -> Result<String, ConfigError> {
    let text = string(path, value)?;
    match text {
        "production" => return Ok(LETSENCRYPT.to_owned()),
        "staging" => return Ok(LETSENCRYPT_STAGING.to_owned()),
        _ => {}
    }
    // Looked for in the text, before parsing, so that no message quotes them.
    let authority = text
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next());
    if authority.is_some_and(|a| a.contains('@')) {
        return Err(ConfigError::AcmeDirectoryCredentials { path: path.clone() });
    }
    match url::Url::parse(text) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => Ok(url.to_string()),
        _ => Err(ConfigError::AcmeDirectory {
            path: path.clone(),
            value: shown(text),
        }),
    }
}

/// A non-empty one-line string.
fn string<'v>(path: &KeyPath, value: &'v Value) -> Result<&'v str, ConfigError> {
    let text = any_string(path, value)?;
    if text.chars().any(char::is_control) {
        return Err(ConfigError::ControlCharacter {
            path: path.clone(),
            pem: false,
        });
    }
    Ok(text)
}

/// A non-empty string that may span lines (PEM text).
fn pem_string<'v>(path: &KeyPath, value: &'v Value) -> Result<&'v str, ConfigError> {
    let text = any_string(path, value)?;
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        return Err(ConfigError::ControlCharacter {
            path: path.clone(),
            pem: true,
        });
    }
    Ok(text)
}

fn any_string<'v>(path: &KeyPath, value: &'v Value) -> Result<&'v str, ConfigError> {
    match value {
        Value::String(s) if s.trim().is_empty() => Err(ConfigError::Empty { path: path.clone() }),
        Value::String(s) => Ok(s),
        Value::Null => Err(ConfigError::Empty { path: path.clone() }),
        other => Err(ConfigError::WrongType {
            path: path.clone(),
            expected: "a string",
            found: kind(other),
        }),
    }
}

/// A mapping; each key not among `keys` is reported, the known ones are still checked.
fn mapping<'v>(
    path: &KeyPath,
    value: &'v Value,
    known: &'static str,
    keys: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<&'v Map<String, Value>> {
    match value {
        Value::Object(map) => {
            for unknown in map.keys().filter(|k| !keys.contains(&k.as_str())) {
                errors.push(ConfigError::UnknownKey {
                    path: path.child(unknown),
                    known,
                });
            }
            Some(map)
        }
        Value::Null => {
            errors.push(ConfigError::Empty { path: path.clone() });
            None
        }
        other => {
            errors.push(ConfigError::WrongType {
                path: path.clone(),
                expected: "a mapping",
                found: kind(other),
            });
            None
        }
    }
}

// Checking the sources is the configuration's job: here, so that userdata (the reading) does
// not import config (the checking) while config imports userdata's settings.
impl Sources {
    /// Checks the settings in force under `precedence` (see [`validate`]),
    /// before launch: IP mode is on the instance's address at boot.
    pub fn validate(
        &self,
        precedence: Precedence,
        now: std::time::SystemTime,
    ) -> Result<Config, Vec<ConfigError>> {
        self.validate_on(precedence, now, &Machine::default())
    }

    /// Checks the settings in force under `precedence` on `machine` (its address for IP
    /// mode, its meta-data's host name).
    pub fn validate_on(
        &self,
        precedence: Precedence,
        now: std::time::SystemTime,
        machine: &Machine,
    ) -> Result<Config, Vec<ConfigError>> {
        let settings = Settings {
            local_hostname: machine.local_hostname.clone(),
            address: machine.address.clone(),
            ..self.settings(precedence)
        };
        validate(&settings, now)
    }
}
