//! The one error type of reading and checking the configuration. Each value is one line that
//! names where the problem is (a file, a MIME part or a key path such as
//! `appliance.certificate.cert`) and what is wrong; every problem found is reported, not just
//! the first. Text that came from the user is quoted with escapes, so a message never spans
//! lines, and secrets (password, private key, MongoDB credentials, registration token) are never
//! quoted.

use std::fmt;

use crate::input::cert::CertError;
use crate::input::mongo_url::MongoUrlError;
use crate::input::names::{DnsNameError, EmailError};
use crate::input::root_url::RootUrlError;
use crate::input::text::cut;
pub use crate::input::text::shown;

/// Where a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The `appliance:` mapping of the user-data's cloud-config.
    UserData,
    /// A top-level cloud-config key (`fqdn`, `hostname`).
    CloudConfig,
    /// /etc/appliance/config.yaml, where the keys are at the top level.
    ConfigFile,
}

/// A key path as the user wrote it: `appliance.admin.email`, `fqdn`,
/// `config.yaml:certificate.key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPath {
    pub origin: Origin,
    pub keys: Vec<String>,
}

impl KeyPath {
    pub fn new(origin: Origin, key: &str) -> KeyPath {
        KeyPath {
            origin,
            keys: vec![key.to_owned()],
        }
    }

    /// The root of a source: `appliance` or `config.yaml`.
    pub fn root(origin: Origin) -> KeyPath {
        KeyPath {
            origin,
            keys: Vec::new(),
        }
    }

    pub fn child(&self, key: &str) -> KeyPath {
        let mut keys = self.keys.clone();
        keys.push(key.to_owned());
        KeyPath {
            origin: self.origin,
            keys,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self
            .keys
            .iter()
            .map(|k| shown(k).escape_debug().to_string())
            .collect::<Vec<_>>()
            .join(".");
        match (self.origin, keys.is_empty()) {
            (Origin::UserData, true) => f.write_str("appliance"),
            (Origin::UserData, false) => write!(f, "appliance.{keys}"),
            (Origin::CloudConfig, _) => f.write_str(&keys),
            (Origin::ConfigFile, true) => f.write_str("config.yaml"),
            (Origin::ConfigFile, false) => write!(f, "config.yaml:{keys}"),
        }
    }
}

/// One problem with the configuration, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    // Reading. `input` is `user-data`, `user-data part N` or `config.yaml`.
    #[error("{file}: {error}")]
    Io { file: String, error: String },
    #[error("{input}: larger than {limit} bytes{}", if *.decompressed { " once decompressed" } else { "" })]
    TooLarge {
        input: String,
        limit: usize,
        decompressed: bool,
    },
    #[error("{input}: not valid gzip: {error}")]
    Gzip { input: String, error: String },
    #[error("user-data: not valid MIME: {0}")]
    Mime(String),
    #[error("{input}: not UTF-8 text")]
    NotUtf8 { input: String },
    #[error("{input}: YAML: {error}")]
    Yaml { input: String, error: String },
    #[error("{input}: the document is {found}, not a mapping of keys")]
    NotMapping { input: String, found: &'static str },
    #[error("instance id: {0}")]
    InstanceId(String),

    // Checking.
    #[error("{path}: unknown key (known: {known})")]
    UnknownKey { path: KeyPath, known: &'static str },
    #[error("{path}: must be {expected}, not {found}{}", if matches!(*.found, "a number" | "a boolean") { " (quote it)" } else { "" })]
    WrongType {
        path: KeyPath,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{path}: is empty")]
    Empty { path: KeyPath },
    #[error("{path}: missing{hint}")]
    Missing { path: KeyPath, hint: &'static str },
    #[error("{path}: missing, and no address to serve on instead (IP mode): {why}")]
    NoAddress { path: KeyPath, why: String },
    #[error("{path}: Let's Encrypt issues no certificates for IP addresses, and no DNS name is given (IP mode): set dns_name to a name of this machine, or leave certificate out for a self-signed one")]
    LetsEncryptIpMode { path: KeyPath },
    #[error("{path}: holds a control character{}", if *.pem { " other than a line break" } else { " or line break" })]
    ControlCharacter { path: KeyPath, pem: bool },
    #[error("{path}: {value:?} is not a valid DNS name: {error}")]
    DnsName {
        path: KeyPath,
        value: String,
        error: DnsNameError,
    },
    #[error("{path}: too long for prosody: its directory for auth.NAME, with each '.' and '-' written as 3 characters, takes {bytes} bytes (at most 255)")]
    TooLongForProsody { path: KeyPath, bytes: usize },
    #[error("{path}: {error}")]
    RootUrl { path: KeyPath, error: RootUrlError },
    #[error("{path}: {value:?} is not a valid e-mail address: {error}")]
    Email {
        path: KeyPath,
        value: String,
        error: EmailError,
    },
    #[error("{path}: {error}")]
    MongoUrl { path: KeyPath, error: MongoUrlError },
    #[error("{path}: {error}")]
    Certificate { path: KeyPath, error: CertError },
    #[error(
        "{path}: {value:?} is not an ACME directory: give production, staging or an https:// URL"
    )]
    AcmeDirectory { path: KeyPath, value: String },
    #[error(
        "{path}: must not hold a user name or password (they would be sent to the CA and stored)"
    )]
    AcmeDirectoryCredentials { path: KeyPath },
    #[error("{path}: give either cert and key, or letsencrypt, not both")]
    CertificateModes { path: KeyPath },
    #[error("{path}: must be at least {min} characters long")]
    PasswordTooShort { path: KeyPath, min: usize },
    #[error("{path}: may hold only letters, digits, '.', '_' and '-'")]
    Username { path: KeyPath },
    #[error("{path}: longer than {max} characters (a Rocket.Chat Cloud registration token)")]
    RegistrationTokenTooLong { path: KeyPath, max: usize },
    #[error("{path}: may hold only printable ASCII characters without spaces, quotes or backslashes (a Rocket.Chat Cloud registration token)")]
    RegistrationTokenCharacters { path: KeyPath },
}

/// The longest message line, in characters.
pub const MAX_LINE: usize = 300;
/// The most problem lines shown for one input.
pub const MAX_LINES: usize = 20;

/// `text` as one line a person reads: control characters escaped, at most [`MAX_LINE`]
/// characters. Every message line goes through here, whatever a value inside it was cut to.
pub fn one_line(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| {
            let escape = c.is_control();
            c.escape_debug()
                .filter(move |_| escape)
                .chain(std::iter::once(c).filter(move |_| !escape))
        })
        .take(MAX_LINE + 1)
        .collect();
    cut(&escaped, MAX_LINE - 3)
}

/// Problem lines for a person: each through [`one_line`], at most [`MAX_LINES`] of them, the
/// rest counted in the last.
pub fn bounded_lines<T: fmt::Display>(problems: impl IntoIterator<Item = T>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut more = 0usize;
    for problem in problems {
        if lines.len() < MAX_LINES - 1 {
            lines.push(one_line(&problem.to_string()));
        } else {
            more += 1;
        }
    }
    match more {
        0 => {}
        1 => lines.push("... and 1 more problem".into()),
        n => lines.push(format!("... and {n} more problems")),
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths() {
        let p = KeyPath::root(Origin::UserData)
            .child("certificate")
            .child("cert");
        assert_eq!(p.to_string(), "appliance.certificate.cert");
        assert_eq!(KeyPath::root(Origin::ConfigFile).to_string(), "config.yaml");
        let p = KeyPath::new(Origin::ConfigFile, "admin").child("email");
        assert_eq!(p.to_string(), "config.yaml:admin.email");
        assert_eq!(
            KeyPath::new(Origin::CloudConfig, "fqdn").to_string(),
            "fqdn"
        );
        let p = KeyPath::new(Origin::UserData, "a\nb");
        assert_eq!(p.to_string(), "appliance.a\\nb");
    }

    #[test]
    fn lines_are_bounded() {
        assert_eq!(one_line("a\tb\u{1b}[2J"), "a\\tb\\u{1b}[2J");
        let long = one_line(&"é".repeat(1000));
        assert_eq!(long.chars().count(), MAX_LINE);
        assert!(long.ends_with("é..."));
        assert_eq!(bounded_lines(0..MAX_LINES).len(), MAX_LINES);
        let lines = bounded_lines(0..MAX_LINES + 1);
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(lines[MAX_LINES - 1], "... and 2 more problems");
    }
}
