//! Test helpers: certificates made with rcgen, user-data in every form cloud-init accepts,
//! fixture trees for `apply` ([`fixture`]), and pebble, the ACME test CA ([`pebble`]).
#![allow(dead_code)]

pub mod fixture;
pub mod pebble;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firstboot::{Config, ConfigError, Precedence, Sources};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SignatureAlgorithm,
};

/// 2030-01-01 00:00 UTC: the clock of these tests.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

/// A certificate authority that issues test certificates.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub pem: String,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        Ca::issued_by(cn, None)
    }

    /// A CA certificate, self-signed or issued by `parent` (an intermediate).
    pub fn issued_by(cn: &str, parent: Option<&Ca>) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let cert = match parent {
            None => params.self_signed(&key).unwrap(),
            Some(parent) => params.signed_by(&key, &parent.issuer()).unwrap(),
        };
        Ca {
            params,
            key,
            pem: cert.pem(),
        }
    }

    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A leaf for `names`, valid 2020 to 2040, with a P-256 key.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, LeafOptions::default())
    }

    pub fn leaf_with(&self, names: &[&str], options: LeafOptions) -> Leaf {
        let key = match options.alg {
            Some(alg) => KeyPair::generate_for(alg).unwrap(),
            None => KeyPair::generate().unwrap(),
        };
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, options.cn.unwrap_or("leaf"));
        let (from, to) = options.validity.unwrap_or(((2020, 1, 1), (2040, 1, 1)));
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        if let Some(eku) = options.eku {
            params.extended_key_usages = vec![eku];
        }
        if options.ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Leaf {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Year, month, day.
pub type Ymd = (i32, u8, u8);

#[derive(Default)]
pub struct LeafOptions {
    pub cn: Option<&'static str>,
    pub validity: Option<(Ymd, Ymd)>,
    pub eku: Option<ExtendedKeyUsagePurpose>,
    pub alg: Option<&'static SignatureAlgorithm>,
    /// Basic constraints CA:TRUE, as a leaf must not have.
    pub ca: bool,
}

pub struct Leaf {
    pub pem: String,
    pub key_pem: String,
}

/// A self-signed leaf (no CA), for one-certificate chains.
pub fn self_signed(names: &[&str]) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, "self");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    Leaf {
        pem: params.self_signed(&key).unwrap().pem(),
        key_pem: key.serialize_pem(),
    }
}

/// `|` block scalar of `text` for a YAML value at `indent` spaces.
pub fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::from("|\n");
    for line in text.lines() {
        out.push_str(&pad);
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `#cloud-config` with `body` (indented by the caller as it sits under `appliance:`).
pub fn appliance(body: &str) -> String {
    format!("#cloud-config\nappliance:\n{body}")
}

/// An `appliance:` mapping with a provided certificate.
pub fn with_cert(extra: &str, chain: &str, key: &str) -> String {
    appliance(&format!(
        "  dns_name: meet.example.com\n{extra}  certificate:\n    cert: {}    key: {}",
        block(chain, 6),
        block(key, 6)
    ))
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One MIME part: content type, transfer encoding (`7bit` or `base64`), body.
pub struct Part<'a>(pub &'a str, pub &'a str, pub &'a [u8]);

/// A multipart/mixed message as `cloud-init devel make-mime` writes it.
pub fn mime(parts: &[Part<'_>]) -> Vec<u8> {
    let boundary = "===============0740947994048919689==";
    let mut out =
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n")
            .into_bytes();
    for (i, Part(ctype, encoding, body)) in parts.iter().enumerate() {
        write!(
            out,
            "--{boundary}\nContent-Type: {ctype}\nMIME-Version: 1.0\n\
             Content-Transfer-Encoding: {encoding}\n\
             Content-Disposition: attachment; filename=\"part{i}\"\n\n"
        )
        .unwrap();
        if *encoding == "base64" {
            for line in base64(body).as_bytes().chunks(76) {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        } else {
            out.extend_from_slice(body);
            out.push(b'\n');
        }
    }
    writeln!(out, "--{boundary}--").unwrap();
    out
}

/// Reads and checks user-data (and config.yaml) as on a first boot at [`now`].
pub fn check(user_data: &[u8], config_file: Option<&[u8]>) -> Result<Config, Vec<String>> {
    check_with(user_data, config_file, Precedence::UserData)
}

pub fn check_with(
    user_data: &[u8],
    config_file: Option<&[u8]>,
    precedence: Precedence,
) -> Result<Config, Vec<String>> {
    let strings = |errors: Vec<ConfigError>| firstboot::input::error::bounded_lines(errors);
    let sources = Sources::parse(user_data, config_file).map_err(strings)?;
    sources.validate(precedence, now()).map_err(strings)
}
