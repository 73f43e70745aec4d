//! The appliance's configuration, checked: [`validate`] turns [`Settings`] into a [`Config`]
//! or into every problem found, before anything on the machine is changed.
//!
//! Keys (under `appliance:` in user-data, at the top of config.yaml):
//! - `dns_name`: a fully qualified DNS name (see [`crate::names`]); else cloud-config `fqdn`,
//!   else `hostname`. Required.
//! - `root_url`: Rocket.Chat's URL (see [`crate::root_url`]); default `https://<dns_name>:3000/`.
//! - `certificate`: `{cert, key}` (PEM chain leaf first, and its key; see [`crate::cert`]),
//!   or `{letsencrypt: {email, directory}}`; absent or `{}`: a self-signed certificate.
//!   `directory` is the CA's ACME directory: `production` (the default: Let's Encrypt),
//!   `staging` (Let's Encrypt's staging CA, for trials: untrusted certificates, generous
//!   limits) or an `https://` URL of another RFC 8555 CA that needs no account binding.
//! - `admin`: `{username, password, email}`, all three or none (`{}` is none). The password
//!   has at least [`MIN_PASSWORD_LEN`] characters: it guards a server on the Internet and
//!   travels in cloud metadata; the username is what Rocket.Chat accepts by default (letters,
//!   digits, `.`, `_`, `-`).
//! - `mongo_url`: an external replica set (see [`crate::mongo_url`]); absent: the local one.
//!
//! Every value is a string (a number or boolean is refused with a hint to quote it, so that
//! YAML's guesses cannot turn `0755` or `on` into something else), not empty, without control
//! characters or line breaks; the PEM texts may hold line breaks. Unknown keys are refused, so
//! a typo does not silently leave a default in place.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::acme::{LETSENCRYPT, LETSENCRYPT_STAGING};
use crate::cert::{CertificateChain, PrivateKeyPem};
use crate::error::{shown, ConfigError, KeyPath, Origin};
use crate::mongo_url::MongoUrl;
use crate::names::{DnsName, Email};
use crate::root_url::RootUrl;
use crate::userdata::{kind, Settings};

/// Shortest admin password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

const TOP_KEYS: &[&str] = &["dns_name", "root_url", "certificate", "admin", "mongo_url"];
const TOP_KNOWN: &str = "dns_name, root_url, certificate, admin, mongo_url";
const CERT_KNOWN: &str = "cert, key, letsencrypt";
const LETSENCRYPT_KNOWN: &str = "email, directory";
const ADMIN_KNOWN: &str = "username, password, email";

/// A configuration that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub dns_name: DnsName,
    pub root_url: RootUrl,
    pub certificate: CertificateMode,
    pub admin: Option<Admin>,
    pub mongo_url: Option<MongoUrl>,
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
    /// at `directory` (a URL; [`crate::acme::LETSENCRYPT`] by default).
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
    /// A summary for people: no password, key or MongoDB credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dns_name:    {}", self.dns_name)?;
        writeln!(f, "root_url:    {}", self.root_url)?;
        match &self.certificate {
            CertificateMode::Provided { chain, .. } => writeln!(
                f,
                "certificate: provided, {} certificate(s), leaf valid until {}, names {}",
                chain.len(),
                crate::cert::utc_date(chain.leaf_not_after),
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
        }
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

    let dns_name = match entry("dns_name") {
        Some(e) => ok(&mut errors, dns_name(&e.path, &e.value)),
        None => {
            errors.push(ConfigError::Missing {
                path: KeyPath::new(Origin::UserData, "dns_name"),
                hint: if settings.user_data_has_cloud_config {
                    ", and there is no cloud-config fqdn or hostname to use instead"
                } else {
                    ": the user-data holds no #cloud-config"
                },
            });
            None
        }
    };
    let root_url = match (entry("root_url"), &dns_name) {
        (Some(e), dns_name) => ok(&mut errors, root_url(&e.path, &e.value, dns_name.as_ref())),
        (None, Some(dns_name)) => Some(RootUrl::default_for(dns_name)),
        (None, None) => None,
    };
    let served: Vec<&DnsName> = {
        let mut names: Vec<&DnsName> = dns_name.iter().collect();
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
    let admin = match entry("admin") {
        Some(e) => admin(&e.path, &e.value, &mut errors),
        None => Some(None),
    };
    let mongo_url = match entry("mongo_url") {
        Some(e) => ok(&mut errors, mongo_url(&e.path, &e.value)).map(Some),
        None => Some(None),
    };
    match (dns_name, root_url, certificate, admin, mongo_url) {
        (Some(dns_name), Some(root_url), Some(certificate), Some(admin), Some(mongo_url))
            if errors.is_empty() =>
        {
            Ok(Config {
                dns_name,
                root_url,
                certificate,
                admin,
                mongo_url,
            })
        }
        _ => Err(errors),
    }
}

/// Keeps the value, or records the problem.
fn ok<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

fn dns_name(path: &KeyPath, value: &Value) -> Result<DnsName, ConfigError> {
    let text = string(path, value)?;
    DnsName::parse(text).map_err(|error| ConfigError::DnsName {
        path: path.clone(),
        value: shown(text),
        error,
    })
}

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
