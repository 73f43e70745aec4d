//! What the last successful apply did: `/var/lib/appliance/state.json`, and the effective
//! configuration it recorded in `/etc/appliance/config.yaml`.
//!
//! The state names the instance id and the SHA-256 of the effective configuration's text,
//! which is all a later boot needs to see that there is nothing to do; the rest is for
//! `status` and for the next apply: where the secrets are, which ufw port firstboot opened
//! (so that it is closed when ROOT_URL moves), the certificate's mode and expiry, and, for
//! Let's Encrypt, that the ACME order is still to be made.
//!
//! The effective configuration is YAML that [`crate::input::userdata::parse_config_file`] reads
//! back to the same [`Config`]: every value double-quoted, PEM texts as literal blocks, and
//! `root_url` left out when it is the default for the DNS name (so that editing `dns_name`
//! alone moves Rocket.Chat with it). It holds the user's private key, admin password and
//! Rocket.Chat Cloud registration token, so the file is 0600.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::input::cert::utc_date;
use crate::input::config::{CertificateMode, Config, LETSENCRYPT};
use crate::input::root_url::RootUrl;

/// The state file, relative to the root.
pub const STATE_FILE: &str = "var/lib/appliance/state.json";

/// How to leave IP mode, as `status` and the login message say it.
pub const IP_MODE_HINT: &str = "to give it a name: set dns_name in /etc/appliance/config.yaml \
     and run `appliance-firstboot reconfigure`";

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub instance_id: String,
    /// SHA-256 (hex) of the effective configuration's text.
    pub config_sha256: String,
    /// When it was applied, seconds since the epoch.
    pub applied_at: i64,
    pub dns_name: String,
    pub root_url: String,
    /// The names nginx serves and the certificate covers.
    pub served_names: Vec<String>,
    pub certificate: CertificateState,
    /// Where Rocket.Chat listens on 127.0.0.1 (nginx proxies ROOT_URL's port to it).
    pub rocketchat_port: u16,
    /// The TCP port firstboot opened in ufw, if it opened one.
    #[serde(default)]
    pub ufw_port: Option<u16>,
    /// Whether Jitsi Meet's files were configured.
    pub jitsi: bool,
    /// The file holding the generated secrets.
    pub secrets_file: String,
}

/// Where the certificate came from and until when it is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateState {
    /// `provided`, `self-signed` or `letsencrypt`.
    pub mode: String,
    pub cert_file: String,
    pub key_file: String,
    /// The leaf's notAfter, seconds since the epoch.
    pub not_after: i64,
    /// For `letsencrypt`: the account address and where the order stands (`pending`: the
    /// self-signed certificate is served until the ACME client replaces it).
    #[serde(default)]
    pub acme: Option<AcmeState>,
}

/// Where the ACME client stands (see [`crate::acme`]); the fields after `status` are its own
/// and default to empty, so that a state written before them still reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeState {
    pub email: String,
    /// The CA's directory URL the configuration asks for (absent in states written before
    /// it could be chosen: Let's Encrypt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// `pending` (no attempt yet: the self-signed certificate is served), `valid` (the
    /// certificate in place is the CA's) or `failed` (the last attempt failed; what is served
    /// is what was served before it).
    pub status: String,
    /// The directory URL of the CA that issued the certificate in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<String>,
    /// When the last attempt started, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<i64>,
    /// Why the last attempt failed (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Attempts failed in a row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// After a failure: the earliest time a scheduled run tries again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<i64>,
}

impl AcmeState {
    /// No attempt made yet.
    pub fn pending(email: &str, directory: &str) -> AcmeState {
        AcmeState {
            email: email.to_owned(),
            directory: Some(directory.to_owned()),
            status: "pending".to_owned(),
            issued_by: None,
            last_attempt: None,
            last_error: None,
            failures: 0,
            next_attempt: None,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl State {
    /// Reads state.json's text; `None` if it is not a state (a run then starts afresh).
    pub fn parse(bytes: &[u8]) -> Option<State> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("state serializes");
        text.push('\n');
        text
    }
}

impl std::fmt::Display for State {
    /// What `status` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "instance id:  {}", self.instance_id)?;
        writeln!(f, "config hash:  sha256:{}", self.config_sha256)?;
        writeln!(f, "applied at:   {}", utc_date(self.applied_at))?;
        match self.dns_name.parse::<std::net::Ipv4Addr>() {
            Ok(address) => {
                writeln!(f, "dns_name:     none: IP mode, served on {address}")?;
                writeln!(f, "              {}", IP_MODE_HINT)?;
            }
            Err(_) => writeln!(f, "dns_name:     {}", self.dns_name)?,
        }
        writeln!(f, "root_url:     {}", self.root_url)?;
        writeln!(f, "served names: {}", self.served_names.join(", "))?;
        let c = &self.certificate;
        write!(
            f,
            "certificate:  {}, valid until {}, {}",
            c.mode,
            utc_date(c.not_after),
            c.cert_file
        )?;
        if let Some(acme) = &c.acme {
            write!(f, " (ACME account {}: {}", acme.email, acme.status)?;
            if let Some(ca) = &acme.issued_by {
                write!(f, ", issued by {ca}")?;
            }
            write!(f, ")")?;
            if let Some(error) = &acme.last_error {
                write!(
                    f,
                    "\nacme:         {} failure(s), the last on {}: {error}",
                    acme.failures,
                    utc_date(acme.last_attempt.unwrap_or_default())
                )?;
                if let Some(next) = acme.next_attempt {
                    write!(f, "; next attempt after {}", utc_date(next))?;
                }
            }
        }
        writeln!(f)?;
        writeln!(f, "rocket.chat:  127.0.0.1:{}", self.rocketchat_port)?;
        match self.ufw_port {
            Some(port) => writeln!(f, "ufw:          {port}/tcp opened by firstboot")?,
            None => writeln!(f, "ufw:          no port opened by firstboot")?,
        }
        write!(
            f,
            "jitsi:        {}",
            if self.jitsi {
                "configured"
            } else {
                "not installed"
            }
        )
    }
}

/// The effective configuration as config.yaml text (see the module doc).
pub fn effective_yaml(config: &Config) -> String {
    let mut out = String::from(
        "# The configuration appliance-firstboot applied last (user-data merged with this file).\n\
         # Edit it and run `appliance-firstboot reconfigure` to change the appliance.\n",
    );
    // IP mode's address and the host name are not settings of this file, but part of what
    // was applied: as comments they are hashed with it (a new address is a new configuration)
    // and tell the reader how to leave IP mode.
    match config.dns_name.address() {
        Some(address) => {
            let _ = writeln!(
                out,
                "# No dns_name: IP mode, served on {address}. To give it a name, set\n\
                 # dns_name: \"meet.example.com\" (a name of this machine) and run reconfigure."
            );
        }
        None => {
            let _ = writeln!(out, "dns_name: {}", quoted(config.dns_name.as_str()));
        }
    }
    if let Some(name) = config
        .host_name
        .as_ref()
        .filter(|n| *n != config.dns_name.as_str())
    {
        let _ = writeln!(
            out,
            "# host name (cloud-init's fqdn, hostname or local-hostname): {name}"
        );
    }
    if config.root_url != RootUrl::default_for(&config.dns_name) {
        let _ = writeln!(out, "root_url: {}", quoted(&config.root_url.to_string()));
    }
    match &config.certificate {
        CertificateMode::SelfSigned => out.push_str("certificate: {}\n"),
        CertificateMode::Provided { chain, key } => {
            out.push_str("certificate:\n");
            block(&mut out, "cert", &chain.to_pem());
            block(&mut out, "key", key.expose());
        }
        CertificateMode::LetsEncrypt { email, directory } => {
            let _ = writeln!(
                out,
                "certificate:\n  letsencrypt:\n    email: {}",
                quoted(email.as_str())
            );
            // Written only when not the default, so that older configurations hash the same.
            if directory != LETSENCRYPT {
                let _ = writeln!(out, "    directory: {}", quoted(directory));
            }
        }
    }
    if let Some(admin) = &config.admin {
        let _ = writeln!(
            out,
            "admin:\n  username: {}\n  password: {}\n  email: {}",
            quoted(&admin.username),
            quoted(admin.password.expose()),
            quoted(admin.email.as_str())
        );
    }
    if let Some(url) = &config.mongo_url {
        let _ = writeln!(out, "mongo_url: {}", quoted(&url.to_string()));
    }
    // Kept like the admin password: a reconfigure must give Rocket.Chat the same token, and a
    // new token is a new configuration (its hash).
    if let Some(token) = &config.rocketchat_registration_token {
        let _ = writeln!(
            out,
            "rocketchat_registration_token: {}",
            quoted(token.expose())
        );
    }
    out
}

/// SHA-256 of `text`, in hex.
pub fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A YAML double-quoted scalar. Values hold no control characters (validated), so only `\`
/// and `"` need escapes.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `  key: |` and the text's lines indented under it.
fn block(out: &mut String, key: &str, text: &str) {
    let chomp = if text.ends_with('\n') { "" } else { "-" };
    let _ = writeln!(out, "  {key}: |{chomp}");
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "    {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quoted("a\"b\\c: #d"), r#""a\"b\\c: #d""#);
        let mut out = String::new();
        block(&mut out, "k", "A\nB\n");
        assert_eq!(out, "  k: |\n    A\n    B\n");
    }
}
