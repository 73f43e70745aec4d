//! DNS names and e-mail addresses, checked the way the appliance uses them.
//!
//! A [`DnsName`] is an RFC 1123 host name: labels of 1 to 63 letters, digits and hyphens, not
//! starting or ending with a hyphen, at most 253 characters in all. Beyond RFC 1123 the appliance
//! asks for a *fully qualified* name, at least two labels with a top-level label that is not all
//! digits: the name is served over TLS to browsers (a single label can get no public
//! certificate and is not resolvable from outside), it goes into /etc/hosts as the FQDN, and an
//! all-digit top level is what an IPv4 address looks like. One trailing dot (the DNS root) is
//! accepted and dropped; more than one is an empty label and refused. Names are lowercased.
//! Internationalised names are taken in their ASCII (`xn--`) form only, so the name written in
//! the certificate, nginx and prosody is the one the user typed.
//!
//! **IP mode.** With no DNS name given at all, the appliance is served on an IPv4 address
//! (see [`crate::input::address`]): [`DnsName::for_address`] makes the "name" every file, template
//! and certificate then uses, the address in dotted-quad form, as Jitsi Meet's own
//! quick-install does when given an address (prosody's `VirtualHost "203.0.113.7"`,
//! `auth.203.0.113.7`, `/etc/ssl/203.0.113.7.crt`). Digits and dots only, so the file names
//! derived from it stay safe. [`DnsName::parse`] never yields one (an all-digit top level is
//! refused), so [`DnsName::address`] tells the two apart.
//!
//! A **host name** ([`host_name`]) follows cloud-init's rules instead: RFC 1123 labels, and a
//! single label is fine (`hostname: bar3-4242`).

use std::fmt;

/// Longest DNS name in text form, without the trailing dot (RFC 1035 §2.3.4 less the root).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A valid, lowercased, fully qualified DNS name without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsName(String);

/// What is wrong with a would-be DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsNameError {
    #[error("it is empty")]
    Empty,
    #[error("it is not ASCII (write an internationalised name in its xn-- form)")]
    NotAscii,
    #[error("it holds {0:?}: only letters, digits, '-' and '.' are allowed")]
    BadCharacter(char),
    #[error("it has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("label {0:?} is longer than 63 characters")]
    LabelTooLong(String),
    #[error("label {0:?} is not valid punycode")]
    Punycode(String),
    #[error("label {0:?} starts or ends with a hyphen")]
    Hyphen(String),
    #[error("it is longer than 253 characters")]
    TooLong,
    #[error("it is a single label: give a fully qualified name such as meet.example.com")]
    SingleLabel,
    #[error("its last label is all digits: give a host name, not an IP address")]
    NumericTopLevel,
}

impl DnsName {
    /// Checks `text` as a fully qualified name (see the module doc).
    pub fn parse(text: &str) -> Result<DnsName, DnsNameError> {
        let name = check_labels(text)?;
        let mut labels = name.split('.');
        let last = labels.next_back().unwrap_or_default();
        if labels.next().is_none() {
            return Err(DnsNameError::SingleLabel);
        }
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DnsNameError::NumericTopLevel);
        }
        Ok(DnsName(name))
    }

    /// The served "name" in IP mode: the address itself (see the module doc).
    pub fn for_address(address: std::net::Ipv4Addr) -> DnsName {
        DnsName(address.to_string())
    }

    /// A served name as recorded (the state, a certificate's names): a DNS name, or an
    /// address in IP mode.
    pub fn served(text: &str) -> Result<DnsName, DnsNameError> {
        DnsName::parse(text).or_else(|e| {
            text.parse::<std::net::Ipv4Addr>()
                .map(DnsName::for_address)
                .map_err(|_| e)
        })
    }

    /// The address, in IP mode.
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.0.parse().ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a host name as cloud-init takes it from `fqdn`, `hostname` or meta-data's
/// `local-hostname`: RFC 1123 labels, one or more; an all-digit last label (an address) is
/// refused. Returns it lowercased, without a trailing dot.
pub fn host_name(text: &str) -> Result<String, DnsNameError> {
    let name = check_labels(text)?;
    let last = name.rsplit('.').next().unwrap_or_default();
    if name.contains('.') && last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DnsNameError::NumericTopLevel);
    }
    Ok(name)
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DnsName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// RFC 1123 label rules alone: one or more labels, no fully-qualified requirement. For hosts
/// of an external MongoDB, which may well be single names on a private network. Returns the
/// lowercased name without its trailing dot.
pub fn check_labels(text: &str) -> Result<String, DnsNameError> {
    if text.is_empty() {
        return Err(DnsNameError::Empty);
    }
    if !text.is_ascii() {
        return Err(DnsNameError::NotAscii);
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(DnsNameError::BadCharacter(c));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    for label in name.split('.') {
        if label.is_empty() {
            return Err(DnsNameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DnsNameError::LabelTooLong(crate::input::text::shown(label)));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DnsNameError::Hyphen(crate::input::text::shown(label)));
        }
        // nginx and prosody take `xn--` labels as they are, but browsers, certbot and
        // Let's Encrypt decode them and refuse one that does not decode.
        if label.len() > 4
            && label[..4].eq_ignore_ascii_case("xn--")
            && url::Host::parse(label).is_err()
        {
            return Err(DnsNameError::Punycode(label.to_owned()));
        }
    }
    if name.len() > MAX_NAME_LEN {
        return Err(DnsNameError::TooLong);
    }
    Ok(name.to_ascii_lowercase())
}

/// Whether a certificate's DNS name `pattern` covers `name`, per RFC 6125 §6.4: equal ignoring
/// case, or a wildcard that is the whole left-most label (`*.example.com`), matching exactly one
/// label. Partial-label wildcards (`w*.example.com`) and wildcards elsewhere match nothing, as
/// in browsers.
pub fn pattern_covers(pattern: &str, name: &DnsName) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    match pattern.strip_prefix("*.") {
        Some(rest) => {
            if rest.contains('*') {
                return false;
            }
            match name.as_str().split_once('.') {
                Some((_, parent)) => parent.eq_ignore_ascii_case(rest),
                None => false,
            }
        }
        None => !pattern.contains('*') && pattern.eq_ignore_ascii_case(name.as_str()),
    }
}

/// An e-mail address in the plain form that Let's Encrypt and Rocket.Chat accept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// What is wrong with a would-be e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("it has no '@'")]
    NoAt,
    #[error("its local part (before '@') is empty")]
    EmptyLocal,
    #[error("its local part (before '@') is longer than 64 characters")]
    LocalTooLong,
    #[error("its local part holds {0:?}")]
    BadLocalCharacter(char),
    #[error("its local part starts or ends with a dot, or has two in a row")]
    LocalDots,
    #[error("its domain: {0}")]
    Domain(DnsNameError),
}

impl Email {
    /// Checks `text` as `local@domain`: an unquoted local part (RFC 5322 dot-atom) and a fully
    /// qualified domain. Quoted local parts and address literals are refused; no ACME server
    /// or mail setup of the appliance needs them.
    pub fn parse(text: &str) -> Result<Email, EmailError> {
        let (local, domain) = text.rsplit_once('@').ok_or(EmailError::NoAt)?;
        if local.is_empty() {
            return Err(EmailError::EmptyLocal);
        }
        if local.len() > 64 {
            return Err(EmailError::LocalTooLong);
        }
        if let Some(c) = local
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-.".contains(*c)))
        {
            return Err(EmailError::BadLocalCharacter(c));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(EmailError::LocalDots);
        }
        let domain = DnsName::parse(domain).map_err(EmailError::Domain)?;
        Ok(Email(format!("{local}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        let ok = |s: &str| DnsName::parse(s).unwrap().to_string();
        assert_eq!(ok("Meet.Example.COM"), "meet.example.com");
        assert_eq!(ok("meet.example.com."), "meet.example.com");
        assert_eq!(ok("1meet.example.com"), "1meet.example.com");
        assert_eq!(ok("xn--bcher-kva.example"), "xn--bcher-kva.example");
        let long = format!("{}.com", vec!["a".repeat(63); 3].join("."));
        assert_eq!(ok(&long).len(), 195);
        let err = |s: &str| DnsName::parse(s).unwrap_err();
        assert_eq!(err(""), DnsNameError::Empty);
        assert_eq!(err("meet.example.com.."), DnsNameError::EmptyLabel);
        assert_eq!(err(".example.com"), DnsNameError::EmptyLabel);
        assert_eq!(err("meet"), DnsNameError::SingleLabel);
        assert_eq!(err("meet."), DnsNameError::SingleLabel);
        assert_eq!(err("10.0.0.1"), DnsNameError::NumericTopLevel);
        assert_eq!(err("a_b.example.com"), DnsNameError::BadCharacter('_'));
        assert_eq!(err("bücher.example"), DnsNameError::NotAscii);
        assert_eq!(err("-a.example.com"), DnsNameError::Hyphen("-a".into()));
        let label = "a".repeat(64);
        assert_eq!(
            err(&format!("{label}.com")),
            DnsNameError::LabelTooLong(label)
        );
        let too_long = format!("{}.com", vec!["a".repeat(62); 4].join("."));
        assert_eq!(too_long.len(), 255);
        assert_eq!(err(&too_long), DnsNameError::TooLong);
    }

    #[test]
    fn addresses_and_host_names() {
        let ip = DnsName::for_address("10.0.2.15".parse().unwrap());
        assert_eq!(ip.as_str(), "10.0.2.15");
        assert_eq!(ip.address(), Some("10.0.2.15".parse().unwrap()));
        assert_eq!(DnsName::parse("meet.example.com").unwrap().address(), None);
        assert_eq!(host_name("Bar3-4242").unwrap(), "bar3-4242");
        assert_eq!(host_name("a.example.com.").unwrap(), "a.example.com");
        assert_eq!(host_name("10.0.0.1"), Err(DnsNameError::NumericTopLevel));
        assert_eq!(host_name("a_b"), Err(DnsNameError::BadCharacter('_')));
    }

    #[test]
    fn wildcards() {
        let name = |s: &str| DnsName::parse(s).unwrap();
        assert!(pattern_covers("*.example.com", &name("meet.example.com")));
        assert!(pattern_covers("*.Example.com.", &name("meet.example.com")));
        assert!(!pattern_covers(
            "*.example.com",
            &name("a.meet.example.com")
        ));
        assert!(!pattern_covers("*.example.com", &name("example.com")));
        assert!(!pattern_covers("m*.example.com", &name("meet.example.com")));
        assert!(!pattern_covers("*.*.com", &name("meet.example.com")));
        assert!(!pattern_covers("meet.*.com", &name("meet.example.com")));
        assert!(pattern_covers(
            "MEET.example.com",
            &name("meet.example.com")
        ));
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse("ops+le@Example.com").unwrap().as_str(),
            "ops+le@example.com"
        );
        assert_eq!(Email::parse("ops.example.com"), Err(EmailError::NoAt));
        assert_eq!(Email::parse("@example.com"), Err(EmailError::EmptyLocal));
        assert_eq!(
            Email::parse("a b@example.com"),
            Err(EmailError::BadLocalCharacter(' '))
        );
        assert_eq!(Email::parse("a..b@example.com"), Err(EmailError::LocalDots));
        assert_eq!(
            Email::parse("ops@localhost"),
            Err(EmailError::Domain(DnsNameError::SingleLabel))
        );
    }
}
