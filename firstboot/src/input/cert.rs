//! Checks of a certificate chain and private key given in user-data, before anything is
//! written: what nginx would refuse to load, or what browsers would refuse to trust.
//!
//! The chain (`certificate.cert`) is PEM `CERTIFICATE` blocks, leaf first, each certificate
//! followed by the one that issued it (issuer name equal to the next one's subject, signature
//! verified with the next one's key where `ring` knows the algorithm). Every certificate must be
//! valid now; the leaf must name each served host in its subjectAltName (RFC 6125 wildcards:
//! only a whole left-most label) and, if it has an extended key usage, allow TLS server use.
//!
//! The key (`certificate.key`) is one unencrypted PEM private key: PKCS#8 (`PRIVATE KEY`),
//! PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`), as OpenSSL and certbot write them;
//! RSA of 2048 to 8192 bits, or ECDSA P-256 or P-384 (what `ring` can load; Ed25519 is refused:
//! no browser accepts an Ed25519 server certificate). It must
//! be the leaf's key: `ring` derives its public key, which must equal the leaf's. The key's
//! text is never put into an error message, and `Debug` of [`PrivateKeyPem`] hides it.

use std::fmt;

use ring::signature::{self, KeyPair as _};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::input::names::{pattern_covers, DnsName};

/// A checked chain, leaf first, as PEM text ready for nginx (`ssl_certificate`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateChain {
    der: Vec<Vec<u8>>,
    /// The leaf's subjectAltName DNS names, as written in it.
    pub leaf_names: Vec<String>,
    /// The leaf's notAfter, seconds since the epoch.
    pub leaf_not_after: i64,
}

/// A private key as PEM text (one block, as given). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PrivateKeyPem(String);

/// What is wrong with a certificate chain or its key. Certificates are numbered from 1, the
/// leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("is not PEM: {0}")]
    Pem(&'static str),
    #[error("holds no PEM CERTIFICATE block")]
    NoCertificate,
    #[error("holds a private key: it belongs under certificate.key")]
    KeyInChain,
    #[error("holds a {0} block: only CERTIFICATE blocks belong here")]
    OtherBlock(String),
    #[error("certificate {index} is not valid X.509: {why}")]
    BadCertificate { index: usize, why: String },
    #[error("certificate {index} ({subject}) expired on {date}")]
    Expired {
        index: usize,
        subject: String,
        date: String,
    },
    #[error("certificate {index} ({subject}) is not valid before {date}")]
    NotYetValid {
        index: usize,
        subject: String,
        date: String,
    },
    #[error("certificate {next} ({next_subject}) did not issue certificate {index} (issued by {issuer}): give the chain leaf first, each certificate followed by its issuer")]
    Order {
        index: usize,
        issuer: String,
        next: usize,
        next_subject: String,
    },
    #[error("certificate {index}'s signature does not verify with the key of certificate {next}")]
    Signature { index: usize, next: usize },
    #[error(
        "the leaf certificate has no subjectAltName DNS names (browsers ignore the common name)"
    )]
    NoNames,
    #[error("the leaf certificate does not cover {name} (it names {names})")]
    NotCovered { name: String, names: String },
    #[error("the leaf certificate's extended key usage does not allow TLS servers")]
    NotForServers,
    #[error("holds no PEM private key")]
    NoKey,
    #[error("holds more than one PEM block: give the leaf's private key alone")]
    ManyKeys,
    #[error("holds a {0} block, not a private key")]
    NotAKey(String),
    /// A private key of a kind nginx or `ring` cannot use here (DSA, OpenSSH's own format...):
    /// the kind is the PEM label without " PRIVATE KEY".
    #[error("holds a private key of kind {0}: {KEY_KINDS}, in PEM as OpenSSL writes them")]
    UnsupportedKey(String),
    #[error("is encrypted: give the key without a pass phrase (nginx starts unattended)")]
    EncryptedKey,
    #[error("is not a usable private key: {0}")]
    BadKey(String),
    #[error(
        "has header lines (such as Comment:): nginx loads only a bare key, as OpenSSL writes it"
    )]
    KeyHeaders,
    #[error(
        "the leaf certificate is a CA certificate (CA:TRUE), which browsers refuse for a server"
    )]
    LeafIsCa,
    #[error("does not match the leaf certificate's public key")]
    KeyMismatch,
}

/// What is wrong with PEM framing, in words of our own: the pem crate's messages quote the
/// BEGIN and END tags, and a damaged END line runs on into the key's base64.
fn pem_error(e: pem::PemError) -> CertError {
    use pem::PemError as E;
    CertError::Pem(match e {
        E::MismatchedTags(..) | E::MissingEndTag => "a BEGIN line without its matching END line",
        E::MissingBeginTag => "an END line without its BEGIN line",
        E::MalformedFraming | E::MissingData => "a BEGIN or END line is damaged",
        E::InvalidData(_) => "its base64 text is damaged",
        E::InvalidHeader(_) => "a header line (Name: value) is damaged",
        E::NotUtf8(_) => "a header line is not UTF-8",
    })
}

const KEY_KINDS: &str = "RSA of 2048 to 8192 bits, or ECDSA P-256 or P-384 are supported";

impl CertificateChain {
    /// Parses the PEM chain: only `CERTIFICATE` blocks, each a well-formed X.509 certificate.
    /// The checks that need a clock or the served names are [`CertificateChain::problems`].
    pub fn parse(text: &str) -> Result<CertificateChain, CertError> {
        let blocks = pem::parse_many(text).map_err(pem_error)?;
        if blocks.is_empty() {
            return Err(CertError::NoCertificate);
        }
        let mut der = Vec::with_capacity(blocks.len());
        for block in blocks {
            match block.tag() {
                "CERTIFICATE" => der.push(block.into_contents()),
                tag if tag.ends_with("PRIVATE KEY") => return Err(CertError::KeyInChain),
                tag => return Err(CertError::OtherBlock(tag.to_owned())),
            }
        }
        for (i, der) in der.iter().enumerate() {
            match X509Certificate::from_der(der) {
                Ok(([], _)) => {}
                Ok(_) => {
                    return Err(CertError::BadCertificate {
                        index: i + 1,
                        why: "trailing data after the certificate".into(),
                    })
                }
                Err(e) => {
                    return Err(CertError::BadCertificate {
                        index: i + 1,
                        why: e.to_string(),
                    })
                }
            }
        }
        let (leaf_names, leaf_not_after) = {
            let leaf = x509(&der[0]);
            (dns_names(&leaf), leaf.validity().not_after.timestamp())
        };
        Ok(CertificateChain {
            der,
            leaf_names,
            leaf_not_after,
        })
    }

    /// Everything wrong with the chain at `now` (seconds since the epoch) for serving `names`.
    pub fn problems(&self, now: i64, names: &[&DnsName]) -> Vec<CertError> {
        let certs: Vec<X509Certificate<'_>> = self.der.iter().map(|d| x509(d)).collect();
        let mut problems = Vec::new();
        for (i, cert) in certs.iter().enumerate() {
            let validity = cert.validity();
            if now > validity.not_after.timestamp() {
                problems.push(CertError::Expired {
                    index: i + 1,
                    subject: cert.subject().to_string(),
                    date: utc_date(validity.not_after.timestamp()),
                });
            } else if now < validity.not_before.timestamp() {
                problems.push(CertError::NotYetValid {
                    index: i + 1,
                    subject: cert.subject().to_string(),
                    date: utc_date(validity.not_before.timestamp()),
                });
            }
        }
        for (i, pair) in certs.windows(2).enumerate() {
            let (cert, issuer) = (&pair[0], &pair[1]);
            if cert.issuer().as_raw() != issuer.subject().as_raw() {
                problems.push(CertError::Order {
                    index: i + 1,
                    issuer: cert.issuer().to_string(),
                    next: i + 2,
                    next_subject: issuer.subject().to_string(),
                });
            } else if let Err(X509Error::SignatureVerificationError) =
                cert.verify_signature(Some(issuer.public_key()))
            {
                // Algorithms ring does not verify (SHA-1, RSA-PSS) are left to the issuer check.
                problems.push(CertError::Signature {
                    index: i + 1,
                    next: i + 2,
                });
            }
        }
        let leaf = &certs[0];
        // A self-signed CA:TRUE leaf is what `openssl req -x509` writes, and browsers let the
        // user trust it; one issued by another CA is refused as a server certificate.
        if let Ok(Some(bc)) = leaf.basic_constraints() {
            if bc.value.ca && leaf.issuer().as_raw() != leaf.subject().as_raw() {
                problems.push(CertError::LeafIsCa);
            }
        }
        if let Ok(Some(eku)) = leaf.extended_key_usage() {
            if !(eku.value.server_auth || eku.value.any) {
                problems.push(CertError::NotForServers);
            }
        }
        if self.leaf_names.is_empty() {
            problems.push(CertError::NoNames);
        } else {
            for name in names {
                if !self.leaf_names.iter().any(|p| pattern_covers(p, name)) {
                    problems.push(CertError::NotCovered {
                        name: name.to_string(),
                        names: self.leaf_names.join(", "),
                    });
                }
            }
        }
        problems
    }

    /// Whether `key` is the leaf's private key.
    pub fn check_key(&self, key: &PrivateKeyPem) -> Result<(), CertError> {
        let leaf = x509(&self.der[0]);
        let spki = leaf.public_key();
        let leaf_key: &[u8] = &spki.subject_public_key.data;
        let block = pem::parse(&key.0).map_err(pem_error)?;
        let der = block.contents();
        let public = match block.tag() {
            "PRIVATE KEY" => pkcs8_public_key(der)?,
            "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(der)
                .map_err(|e| CertError::BadKey(format!("{e}; {KEY_KINDS}")))?
                .public_key()
                .as_ref()
                .to_vec(),
            // SEC1 holds the private scalar alone; ring checks it against the leaf's point.
            "EC PRIVATE KEY" => {
                let scalar = sec1_private_scalar(der)?;
                let alg = match spki.algorithm.parameters.as_ref().map(|p| p.as_oid()) {
                    Some(Ok(oid)) if oid.to_id_string() == "1.2.840.10045.3.1.7" => {
                        &signature::ECDSA_P256_SHA256_ASN1_SIGNING
                    }
                    Some(Ok(oid)) if oid.to_id_string() == "1.3.132.0.34" => {
                        &signature::ECDSA_P384_SHA384_ASN1_SIGNING
                    }
                    _ => return Err(CertError::KeyMismatch),
                };
                let rng = ring::rand::SystemRandom::new();
                signature::EcdsaKeyPair::from_private_key_and_public_key(
                    alg, scalar, leaf_key, &rng,
                )
                .map_err(|_| CertError::KeyMismatch)?;
                leaf_key.to_vec()
            }
            _ => return Err(CertError::NotAKey(block.tag().to_owned())),
        };
        if public != leaf_key {
            return Err(CertError::KeyMismatch);
        }
        Ok(())
    }

    /// The chain as PEM, leaf first: what nginx's `ssl_certificate` file holds.
    pub fn to_pem(&self) -> String {
        self.der
            .iter()
            .map(|d| pem::encode_config(&pem::Pem::new("CERTIFICATE", d.clone()), lf()))
            .collect()
    }

    /// How many certificates the chain holds.
    pub fn len(&self) -> usize {
        self.der.len()
    }

    /// Never true for a parsed chain; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.der.is_empty()
    }
}

impl PrivateKeyPem {
    /// Checks that `text` is one unencrypted private-key PEM block and nothing else.
    pub fn parse(text: &str) -> Result<PrivateKeyPem, CertError> {
        let blocks = pem::parse_many(text).map_err(pem_error)?;
        let block = match blocks.as_slice() {
            [] => return Err(CertError::NoKey),
            [block] => block,
            _ => return Err(CertError::ManyKeys),
        };
        match block.tag() {
            "ENCRYPTED PRIVATE KEY" => Err(CertError::EncryptedKey),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                if block.headers().get("Proc-Type").is_some() {
                    return Err(CertError::EncryptedKey);
                }
                // OpenSSL reads any other header as a damaged encryption header ("not proc type").
                if block.headers().iter().next().is_some() {
                    return Err(CertError::KeyHeaders);
                }
                Ok(PrivateKeyPem(pem::encode_config(block, lf())))
            }
            tag => match tag.strip_suffix(" PRIVATE KEY") {
                Some(kind) if !kind.is_empty() => Err(CertError::UnsupportedKey(kind.to_owned())),
                _ => Err(CertError::NotAKey(tag.to_owned())),
            },
        }
    }

    /// The PEM text, for the key file only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(..)")
    }
}

/// PEM with Unix line ends, as the files under /etc/ssl have them.
fn lf() -> pem::EncodeConfig {
    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF)
}

/// The public key of a PKCS#8 private key, in the form a certificate's SubjectPublicKeyInfo
/// holds it.
fn pkcs8_public_key(der: &[u8]) -> Result<Vec<u8>, CertError> {
    let rng = ring::rand::SystemRandom::new();
    if signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok() {
        return Err(CertError::BadKey(format!(
            "Ed25519: browsers accept no Ed25519 certificate; {KEY_KINDS}"
        )));
    }
    for alg in [
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
    ] {
        if let Ok(k) = signature::EcdsaKeyPair::from_pkcs8(alg, der, &rng) {
            return Ok(k.public_key().as_ref().to_vec());
        }
    }
    match signature::RsaKeyPair::from_pkcs8(der) {
        Ok(k) => Ok(k.public_key().as_ref().to_vec()),
        Err(e) if e.to_string() != "WrongAlgorithm" => {
            Err(CertError::BadKey(format!("{e}; {KEY_KINDS}")))
        }
        Err(_) => Err(CertError::BadKey(format!("unknown key type; {KEY_KINDS}"))),
    }
}

/// The private scalar of a SEC1 `ECPrivateKey` (RFC 5915): SEQUENCE { version 1, OCTET
/// STRING, ... }.
fn sec1_private_scalar(der: &[u8]) -> Result<&[u8], CertError> {
    let bad = || CertError::BadKey("not an RFC 5915 EC private key".into());
    let (_, obj) = x509_parser::der_parser::parse_der(der).map_err(|_| bad())?;
    let fields = obj.as_sequence().map_err(|_| bad())?;
    match fields.as_slice() {
        [version, scalar, ..] if version.as_u32() == Ok(1) => scalar.as_slice().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A certificate already checked by [`CertificateChain::parse`].
fn x509(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).expect("parsed before").1
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_string()),
                // An IPv4 subjectAltName covers IP mode's served "name", the address.
                GeneralName::IPAddress(&[a, b, c, d]) => Some(format!("{a}.{b}.{c}.{d}")),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the epoch (proleptic Gregorian calendar).
pub fn utc_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let minutes = secs.rem_euclid(86_400) / 60;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minutes / 60,
        minutes % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_735_689_599), "2024-12-31 23:59 UTC");
        assert_eq!(utc_date(-86_400), "1969-12-31 00:00 UTC");
    }

    #[test]
    fn key_debug_hides_the_key() {
        let key = PrivateKeyPem("-----BEGIN PRIVATE KEY-----\nsecret\n".into());
        assert_eq!(format!("{key:?}"), "PrivateKeyPem(..)");
    }
}
