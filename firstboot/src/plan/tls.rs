//! Certificates the appliance makes or installs: the one nginx serves for every served name
//! (the user's chain and key, or a self-signed one made with `rcgen`), and prosody's internal
//! one for `auth.<dns_name>`. In IP mode the address is the served name: `rcgen` writes a name
//! that parses as an address as an IP subjectAltName, which is what browsers match an
//! `https://IP/` against.
//!
//! A self-signed certificate is ECDSA P-256 with SHA-256, valid from a day before `now` for
//! ten years (as jitsi-meet's own self-signed ones), naming every served name. It is made again
//! only when needed: the certificate already in place is kept if it covers the names, is
//! valid for at least [`MIN_REMAINING_DAYS`] more days, matches its key, and the last apply
//! was for this same instance (a cloned image must not keep the key of the image it was made
//! from). Keeping it means an unchanged `reconfigure` changes nothing. In Let's Encrypt mode
//! the certificate in place (self-signed, or the CA's) is kept while it is valid at all: the
//! ACME client ([`crate::acme`]) renews the CA's 30 days ahead.
//!
//! Private keys are handled as PEM text and never put into a message.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::input::cert::{CertificateChain, PrivateKeyPem};
use crate::input::names::DnsName;

/// A certificate in place is replaced when it has fewer days left than this.
pub const MIN_REMAINING_DAYS: i64 = 30;
/// Lifetime of a self-signed certificate.
pub const SELF_SIGNED_DAYS: i64 = 3650;

/// A certificate chain and its key, as the PEM texts written to disk.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
    /// The leaf's notAfter, seconds since the epoch.
    pub not_after: i64,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertAndKey {{ not_after: {}, .. }}", self.not_after)
    }
}

/// Seconds since the epoch.
pub fn epoch_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// A new self-signed certificate for `names` (the first is the subject's common name).
pub fn self_signed(names: &[&str], now: SystemTime) -> Result<CertAndKey> {
    let now = epoch_seconds(now);
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .map_err(|e| anyhow!("making a self-signed certificate: {e}"))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("appliance"),
    );
    dn.push(DnType::OrganizationName, "Appliance (self-signed)");
    params.distinguished_name = dn;
    let time = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| anyhow!("making a self-signed certificate: {e}"))
    };
    params.not_before = time(now - 86_400)?;
    let not_after = now + SELF_SIGNED_DAYS * 86_400;
    params.not_after = time(not_after)?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| anyhow!("making a key pair: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| anyhow!("signing a self-signed certificate: {e}"))?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// The certificate and key given in the configuration.
pub fn provided(chain: &CertificateChain, key: &PrivateKeyPem) -> CertAndKey {
    CertAndKey {
        cert_pem: chain.to_pem(),
        key_pem: key.expose().to_owned(),
        not_after: chain.leaf_not_after,
    }
}

/// The certificate in place, if it can be kept for `names` for `min_days` more days (see the
/// module doc; [`MIN_REMAINING_DAYS`] for the appliance's own certificates).
pub fn reusable(
    cert_pem: &[u8],
    key_pem: &[u8],
    names: &[&str],
    now: SystemTime,
    min_days: i64,
) -> Option<CertAndKey> {
    let cert_text = std::str::from_utf8(cert_pem).ok()?;
    let key_text = std::str::from_utf8(key_pem).ok()?;
    let chain = CertificateChain::parse(cert_text).ok()?;
    let key = PrivateKeyPem::parse(key_text).ok()?;
    let names: Vec<DnsName> = names
        .iter()
        .map(|n| DnsName::served(n))
        .collect::<Result<_, _>>()
        .ok()?;
    let names: Vec<&DnsName> = names.iter().collect();
    let now = epoch_seconds(now);
    let later = now + min_days * 86_400;
    if !chain.problems(now, &names).is_empty() || !chain.problems(later, &names).is_empty() {
        return None;
    }
    chain.check_key(&key).ok()?;
    Some(CertAndKey {
        cert_pem: cert_text.to_owned(),
        key_pem: key_text.to_owned(),
        not_after: chain.leaf_not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn made_and_kept() {
        let now = UNIX_EPOCH + Duration::from_secs(1_893_456_000);
        let names = ["meet.example.com", "chat.example.com"];
        let made = self_signed(&names, now).unwrap();
        assert!(made.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{made:?}").contains("PRIVATE"));
        let kept = reusable(
            made.cert_pem.as_bytes(),
            made.key_pem.as_bytes(),
            &names,
            now,
            MIN_REMAINING_DAYS,
        );
        assert_eq!(kept.as_ref(), Some(&made));
        // Another name, or too close to the end, or another key: made again.
        let other = ["meet.example.com", "other.example.com"];
        assert!(reusable(
            made.cert_pem.as_bytes(),
            made.key_pem.as_bytes(),
            &other,
            now,
            MIN_REMAINING_DAYS
        )
        .is_none());
        let late = now + Duration::from_secs((SELF_SIGNED_DAYS as u64 - 10) * 86_400);
        assert!(reusable(
            made.cert_pem.as_bytes(),
            made.key_pem.as_bytes(),
            &names,
            late,
            MIN_REMAINING_DAYS
        )
        .is_none());
        let second = self_signed(&names, now).unwrap();
        assert!(reusable(
            made.cert_pem.as_bytes(),
            second.key_pem.as_bytes(),
            &names,
            now,
            MIN_REMAINING_DAYS
        )
        .is_none());
    }
}
