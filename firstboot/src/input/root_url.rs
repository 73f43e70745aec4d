//! Rocket.Chat's ROOT_URL: where users reach the chat.
//!
//! `https://` or `http://`, a host that is a [`DnsName`] (not an IP address: nginx picks the
//! site by SNI and by `Host`), an optional port (1–65535; the scheme's default otherwise) and a
//! path. No user name or password, query or fragment: Rocket.Chat builds every link from this
//! URL. The path may hold only letters, digits and `/ . _ ~ -`, so that it goes into nginx's
//! `location`, the systemd drop-in and Rocket.Chat's settings without any quoting; `%` escapes
//! and non-ASCII text are refused rather than decoded differently by each of them.
//!
//! Ports that the appliance already uses for something else are refused: 22 (SSH), 80 over
//! https (port 80 serves the plain-HTTP redirect and ACME challenges), 443 over http (443
//! speaks TLS), those of prosody, the Jitsi videobridge, jicofo and MongoDB, and `https://<dns_name>/` on 443 or `http://<dns_name>/` on 80, which are
//! Jitsi Meet's. The default is `https://<dns_name>:3000/`.

use std::fmt;

use crate::input::names::{DnsName, DnsNameError};

/// The scheme of ROOT_URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Https => 443,
            Scheme::Http => 80,
        }
    }
}

/// A checked ROOT_URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RootUrl {
    pub scheme: Scheme,
    pub host: DnsName,
    /// Always set: the scheme's default port when the URL names none.
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

/// Ports the appliance's own services listen on (on 127.0.0.1 or on every address: nginx
/// listening on every address collides with both). Refused whether or not the service is
/// installed, so that `check` without the machine says what `apply` on it would.
const SERVICE_PORTS: &[(&[u16], &str)] = &[
    (&[5222, 5269, 5280, 5281, 5347], "prosody listens there"),
    (&[8080, 9090], "the Jitsi videobridge listens there"),
    (&[8888], "jicofo listens there"),
    (&[27017], "MongoDB listens there"),
];

/// Rocket.Chat's port when the user gives no ROOT_URL.
pub const DEFAULT_PORT: u16 = 3000;

/// What is wrong with a would-be ROOT_URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootUrlError {
    #[error("must start with https:// or http://")]
    Scheme,
    #[error("must be ASCII without spaces or backslashes (write the host in its xn-- form)")]
    Characters,
    #[error("is not a URL: {0}")]
    Syntax(String),
    #[error("must not hold a user name or password")]
    UserInfo,
    #[error("must not have a query ('?...')")]
    Query,
    #[error("must not have a fragment ('#...')")]
    Fragment,
    #[error("its host must be a DNS name, not an IP address (nginx picks the site by name)")]
    IpHost,
    #[error("its host {host:?} is not a valid DNS name: {error}")]
    Host { host: String, error: DnsNameError },
    #[error("port 0 is not a port")]
    PortZero,
    #[error("its path may hold only letters, digits and '/', '.', '_', '~', '-', not {0:?}")]
    PathCharacter(char),
    #[error("port {port} is taken: {why}")]
    PortTaken { port: u16, why: &'static str },
    #[error("{0} is where Jitsi Meet is served: give Rocket.Chat another host name or port")]
    Jitsi(String),
}

impl RootUrl {
    /// `https://<dns_name>:3000/`.
    pub fn default_for(dns_name: &DnsName) -> RootUrl {
        RootUrl {
            scheme: Scheme::Https,
            host: dns_name.clone(),
            port: DEFAULT_PORT,
            path: "/".into(),
        }
    }

    /// Parses and checks `text` on its own; [`RootUrl::check_against`] then checks it against
    /// the DNS name.
    pub fn parse(text: &str) -> Result<RootUrl, RootUrlError> {
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(RootUrlError::Scheme);
        }
        if !text.is_ascii() || text.contains([' ', '\\']) {
            return Err(RootUrlError::Characters);
        }
        let url = url::Url::parse(text).map_err(|e| RootUrlError::Syntax(e.to_string()))?;
        let scheme = match url.scheme() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            _ => return Err(RootUrlError::Scheme),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RootUrlError::UserInfo);
        }
        if url.query().is_some() {
            return Err(RootUrlError::Query);
        }
        if url.fragment().is_some() {
            return Err(RootUrlError::Fragment);
        }
        let host = match url.host() {
            Some(url::Host::Domain(host)) => host,
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => return Err(RootUrlError::IpHost),
            None => return Err(RootUrlError::Syntax("no host".into())),
        };
        let host = DnsName::parse(host).map_err(|error| match error {
            DnsNameError::NumericTopLevel => RootUrlError::IpHost,
            error => RootUrlError::Host {
                host: host.to_owned(),
                error,
            },
        })?;
        let port = url.port().unwrap_or(scheme.default_port());
        if port == 0 {
            return Err(RootUrlError::PortZero);
        }
        // The path as written first, so the message names the character the user typed (the
        // parser writes `{` as `%7B`), then as parsed (`%20` is refused too).
        let allowed = |c: &char, also: &str| {
            c.is_ascii_alphanumeric() || "/._~-".contains(*c) || also.contains(*c)
        };
        let after_scheme = text.split_once("://").map_or("", |(_, rest)| rest);
        let written = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
        let path = url.path();
        if let Some(c) = written
            .chars()
            .find(|c| !allowed(c, "%"))
            .or_else(|| path.chars().find(|c| !allowed(c, "")))
        {
            return Err(RootUrlError::PathCharacter(c));
        }
        Ok(RootUrl {
            scheme,
            host,
            port,
            path: path.to_owned(),
        })
    }

    /// Refuses a URL that collides with what the appliance serves at `dns_name` (module doc).
    pub fn check_against(&self, dns_name: &DnsName) -> Result<(), RootUrlError> {
        let taken = |why| {
            Err(RootUrlError::PortTaken {
                port: self.port,
                why,
            })
        };
        match (self.scheme, self.port) {
            (_, 22) => return taken("SSH listens there"),
            (Scheme::Https, 80) => return taken("it serves plain HTTP (redirects and ACME)"),
            (Scheme::Http, 443) => return taken("it serves HTTPS"),
            _ => {}
        }
        if let Some((_, what)) = SERVICE_PORTS
            .iter()
            .find(|(ports, _)| ports.contains(&self.port))
        {
            return taken(what);
        }
        if self.host == *dns_name && self.port == self.scheme.default_port() {
            return Err(RootUrlError::Jitsi(format!(
                "{}://{}/",
                self.scheme.as_str(),
                self.host
            )));
        }
        Ok(())
    }
}

impl fmt::Display for RootUrl {
    /// The URL as Rocket.Chat gets it; the default port is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good() {
        let u = RootUrl::parse("HTTPS://Chat.Example.com:8443/chat").unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.host.as_str(), "chat.example.com");
        assert_eq!((u.port, u.path.as_str()), (8443, "/chat"));
        assert_eq!(u.to_string(), "https://chat.example.com:8443/chat");
        let u = RootUrl::parse("https://chat.example.com").unwrap();
        assert_eq!((u.port, u.path.as_str()), (443, "/"));
        assert_eq!(u.to_string(), "https://chat.example.com/");
        let u = RootUrl::parse("http://chat.example.com:443x");
        assert_eq!(u, Err(RootUrlError::Syntax("invalid port number".into())));
        let dns = DnsName::parse("meet.example.com").unwrap();
        assert_eq!(
            RootUrl::default_for(&dns).to_string(),
            "https://meet.example.com:3000/"
        );
    }

    #[test]
    fn bad() {
        let err = |s: &str| RootUrl::parse(s).unwrap_err();
        assert_eq!(err("ftp://chat.example.com/"), RootUrlError::Scheme);
        assert_eq!(err("https:chat.example.com"), RootUrlError::Scheme);
        assert_eq!(
            err("https://user@chat.example.com/"),
            RootUrlError::UserInfo
        );
        assert_eq!(err("https://chat.example.com/?a"), RootUrlError::Query);
        assert_eq!(err("https://chat.example.com/#a"), RootUrlError::Fragment);
        assert_eq!(err("https://10.0.0.1/"), RootUrlError::IpHost);
        assert_eq!(err("https://[::1]/"), RootUrlError::IpHost);
        assert_eq!(err("https://chat.example.com:0/"), RootUrlError::PortZero);
        assert_eq!(
            err("https://chat.example.com/a%20b"),
            RootUrlError::PathCharacter('%')
        );
        assert_eq!(
            err("https://chat.example.com/a;b"),
            RootUrlError::PathCharacter(';')
        );
        assert_eq!(
            err("https://chat.example.com/a{b"),
            RootUrlError::PathCharacter('{')
        );
        assert_eq!(
            err("https://chat.example.com/a\\b"),
            RootUrlError::Characters
        );
    }
}
