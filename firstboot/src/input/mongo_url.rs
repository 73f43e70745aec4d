//! MONGO_URL of an external MongoDB replica set, when the user gives one.
//!
//! `mongodb://[user[:password]@]host[:port][,host[:port]...]/database[?options]` or
//! `mongodb+srv://[user[:password]@]host/database[?options]` (one host, no port: DNS SRV
//! records give the rest), per MongoDB's connection-string specification. Hosts are DNS names
//! (single labels allowed: private networks use them), IPv4 addresses or `[IPv6]`. The
//! database is required (Rocket.Chat keeps everything in it) and limited to letters, digits,
//! `_` and `-`, so it needs no escaping anywhere. User name and password must have `: / ? # [ ]
//! @` percent-encoded, as the specification says. The password is never shown: `Debug` and
//! [`MongoUrl::redacted`] hide it, and error messages never quote the user part.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::input::names::check_labels;

/// A checked MongoDB connection string. `Display` gives it whole, password included, for the
/// Rocket.Chat drop-in only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MongoUrl {
    text: String,
    /// `mongodb+srv://`.
    pub srv: bool,
    /// `host` or `host:port`, as written (lowercased names).
    pub hosts: Vec<String>,
    pub database: String,
    pub has_credentials: bool,
}

/// What is wrong with a would-be MONGO_URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MongoUrlError {
    #[error("must start with mongodb:// or mongodb+srv://")]
    Scheme,
    #[error("must be ASCII without spaces (percent-encode the rest)")]
    Characters,
    #[error("names no database: write mongodb://HOSTS/DATABASE")]
    NoDatabase,
    #[error(
        "its user part holds an unescaped '@', ':', '/', '?', '#', '[' or ']', or a bad '%' escape"
    )]
    UserInfo,
    #[error("its user name is empty")]
    EmptyUser,
    #[error("names no host")]
    NoHost,
    #[error("has an empty host in its host list")]
    EmptyHost,
    #[error("host {host:?} is not a DNS name or an IP address: {why}")]
    Host { host: String, why: String },
    #[error("host {0:?} has a bad port (1 to 65535)")]
    Port(String),
    #[error("mongodb+srv:// takes exactly one host name and no port")]
    Srv,
    #[error("database {0:?} may hold only letters, digits, '_' and '-', at most 63")]
    Database(String),
    #[error("option {0:?} is not name=value")]
    Option(String),
}

impl MongoUrl {
    pub fn parse(text: &str) -> Result<MongoUrl, MongoUrlError> {
        let (srv, rest) = if let Some(rest) = text.strip_prefix("mongodb+srv://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("mongodb://") {
            (false, rest)
        } else {
            return Err(MongoUrlError::Scheme);
        };
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MongoUrlError::Characters);
        }
        let (authority, path) = rest.split_once('/').ok_or(MongoUrlError::NoDatabase)?;
        let (user_info, hosts) = match authority.rsplit_once('@') {
            Some((user_info, hosts)) => (Some(user_info), hosts),
            None => (None, authority),
        };
        if let Some(user_info) = user_info {
            check_user_info(user_info)?;
        }
        if hosts.is_empty() {
            return Err(MongoUrlError::NoHost);
        }
        let hosts = hosts
            .split(',')
            .map(check_host)
            .collect::<Result<Vec<_>, _>>()?;
        if srv && (hosts.len() != 1 || hosts[0].contains(':')) {
            return Err(MongoUrlError::Srv);
        }
        let (database, options) = match path.split_once('?') {
            Some((database, options)) => (database, Some(options)),
            None => (path, None),
        };
        if database.is_empty() {
            return Err(MongoUrlError::NoDatabase);
        }
        if database.len() > 63
            || !database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(MongoUrlError::Database(database.to_owned()));
        }
        for option in options.into_iter().flat_map(|o| o.split('&')) {
            match option.split_once('=') {
                Some((name, value))
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric())
                        && !value.is_empty()
                        && !value.contains(['=', '#']) => {}
                _ => return Err(MongoUrlError::Option(option.to_owned())),
            }
        }
        Ok(MongoUrl {
            text: text.to_owned(),
            srv,
            hosts,
            database: database.to_owned(),
            has_credentials: user_info.is_some(),
        })
    }

    /// The URL with the password replaced by `****`, for showing to people.
    pub fn redacted(&self) -> String {
        match self.text.split_once('@') {
            Some((scheme_user, rest)) if self.has_credentials => {
                match scheme_user.rsplit_once(':') {
                    Some((before, pass)) if !pass.starts_with("//") => {
                        format!("{before}:****@{rest}")
                    }
                    _ => self.text.clone(),
                }
            }
            _ => self.text.clone(),
        }
    }
}

fn check_user_info(user_info: &str) -> Result<(), MongoUrlError> {
    let (user, password) = match user_info.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (user_info, None),
    };
    if user.is_empty() {
        return Err(MongoUrlError::EmptyUser);
    }
    for part in std::iter::once(user).chain(password) {
        if part.contains([':', '/', '?', '#', '[', ']', '@']) || !escapes_ok(part) {
            return Err(MongoUrlError::UserInfo);
        }
    }
    Ok(())
}

/// Every `%` starts a two-hex-digit escape.
fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn check_host(entry: &str) -> Result<String, MongoUrlError> {
    if entry.is_empty() {
        return Err(MongoUrlError::EmptyHost);
    }
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(|| MongoUrlError::Host {
            host: entry.to_owned(),
            why: "no closing ']'".into(),
        })?;
        addr.parse::<Ipv6Addr>().map_err(|e| MongoUrlError::Host {
            host: entry.to_owned(),
            why: e.to_string(),
        })?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').unwrap_or("")),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        };
        let host = if host.parse::<Ipv4Addr>().is_ok() {
            host.to_owned()
        } else {
            check_labels(host).map_err(|e| MongoUrlError::Host {
                host: host.to_owned(),
                why: e.to_string(),
            })?
        };
        (host, port)
    };
    match port {
        None => Ok(host),
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('+') => Ok(format!("{host}:{p}")),
            _ => Err(MongoUrlError::Port(entry.to_owned())),
        },
    }
}

impl fmt::Display for MongoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for MongoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MongoUrl").field(&self.redacted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good() {
        let u = MongoUrl::parse("mongodb://a,B.example:27018,10.0.0.3/rocketchat?replicaSet=rs0")
            .unwrap();
        assert_eq!(u.hosts, ["a", "b.example:27018", "10.0.0.3"]);
        assert_eq!(u.database, "rocketchat");
        assert!(!u.srv && !u.has_credentials);
        let u = MongoUrl::parse("mongodb+srv://rc:s%40cret@db.example.com/rc?tls=true").unwrap();
        assert!(u.srv && u.has_credentials);
        assert_eq!(
            u.redacted(),
            "mongodb+srv://rc:****@db.example.com/rc?tls=true"
        );
        assert!(!format!("{u:?}").contains("cret"));
        let u = MongoUrl::parse("mongodb://[::1]:27017/rc").unwrap();
        assert_eq!(u.hosts, ["[::1]:27017"]);
    }

    #[test]
    fn bad() {
        let err = |s: &str| MongoUrl::parse(s).unwrap_err();
        assert_eq!(err("mysql://a/rc"), MongoUrlError::Scheme);
        assert_eq!(err("mongodb://a"), MongoUrlError::NoDatabase);
        assert_eq!(err("mongodb://a/"), MongoUrlError::NoDatabase);
        assert_eq!(
            err("mongodb://a/?replicaSet=rs0"),
            MongoUrlError::NoDatabase
        );
        assert_eq!(err("mongodb://u:p@ss@a/rc"), MongoUrlError::UserInfo);
        assert_eq!(err("mongodb://u:p%zz@a/rc"), MongoUrlError::UserInfo);
        assert_eq!(err("mongodb://:p@a/rc"), MongoUrlError::EmptyUser);
        assert_eq!(err("mongodb:///rc"), MongoUrlError::NoHost);
        assert_eq!(err("mongodb://a,,b/rc"), MongoUrlError::EmptyHost);
        assert_eq!(err("mongodb://a:0/rc"), MongoUrlError::Port("a:0".into()));
        assert_eq!(
            err("mongodb://a:99999/rc"),
            MongoUrlError::Port("a:99999".into())
        );
        assert_eq!(err("mongodb+srv://a,b/rc"), MongoUrlError::Srv);
        assert_eq!(
            err("mongodb://a/r.c"),
            MongoUrlError::Database("r.c".into())
        );
        assert_eq!(err("mongodb://a/rc?x"), MongoUrlError::Option("x".into()));
        assert_eq!(err("mongodb://a b/rc"), MongoUrlError::Characters);
        assert!(matches!(
            err("mongodb://a_b/rc"),
            MongoUrlError::Host { .. }
        ));
    }
}
