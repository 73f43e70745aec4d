//! HTTPS for the ACME client: [`instant_acme::HttpClient`] on `ureq` (rustls with `ring`).
//!
//! **Trust.** The CA's server certificate is checked against the Mozilla roots compiled in
//! (`webpki-roots`), which stay current with the binary where Ubuntu 18.04's own store
//! would not; `--ca-file` replaces them with the PEM certificates of a file, for a private
//! ACME CA or a test server such as pebble.
//!
//! **Host names without NSS.** The binary is linked statically with glibc so that it runs
//! on Ubuntu 18.04; a static glibc program must not call `getaddrinfo`, which loads the NSS
//! modules of the *running* system's glibc with `dlopen` (a version mismatch crashes or
//! fails). Names are resolved by `hickory-resolver` instead: the name servers, search
//! domains and options of `/etc/resolv.conf` (on 18.04 systemd-resolved's 127.0.0.53) and
//! `/etc/hosts`, over UDP and TCP from Rust. Each request's host is resolved before ureq
//! runs, into a cache that ureq's resolver (`Resolved`) only reads: ureq's own resolver
//! (std's `ToSocketAddrs`, i.e. `getaddrinfo`) is never installed. IP literals (tests use
//! `https://127.0.0.1:PORT/`) need no resolver at all. Environment proxies are ignored,
//! since their host names would need the same care (ACME needs port 80 reachable from the
//! CA anyway, so the appliance is on an open network).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use http::{Request, Uri};
use http_body_util::BodyExt as _;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// A response body larger than this is refused (a certificate chain is a few kilobytes).
const MAX_BODY: u64 = 1 << 20;
/// ureq keeps this many addresses of a name.
const MAX_ADDRS: usize = 16;
/// One request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where names are looked up.
#[derive(Debug, Clone, Default)]
pub enum NameServers {
    /// `/etc/resolv.conf` and `/etc/hosts`.
    #[default]
    System,
    /// This server alone, over UDP and TCP (tests: pebble-challtestsrv on loopback).
    At(SocketAddr),
}

/// The HTTPS client of one run.
pub struct Https {
    agent: ureq::Agent,
    names: Arc<Names>,
}

impl Https {
    /// A client trusting the built-in roots, or only the certificates of `ca_file`.
    pub fn new(ca_file: Option<&Path>, name_servers: NameServers) -> Result<Https> {
        let roots = match ca_file {
            None => RootCerts::WebPki,
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading the CA file {}", path.display()))?;
                let certs = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<Vec<Certificate<'static>>, _>>()
                    .with_context(|| format!("reading the CA file {}", path.display()))?;
                if certs.is_empty() {
                    anyhow::bail!("the CA file {} holds no certificate", path.display());
                }
                RootCerts::new_with_certs(&certs)
            }
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("appliance-firstboot/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build();
        let names = Arc::new(Names {
            servers: name_servers,
            resolver: Mutex::default(),
            cache: Mutex::default(),
        });
        let agent =
            ureq::Agent::with_parts(config, DefaultConnector::default(), Resolved(names.clone()));
        Ok(Https { agent, names })
    }

    /// Resolves `host` (no-op for an IP literal) the way every request does.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>> {
        self.names.lookup(host).await
    }
}

impl HttpClient for Https {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let agent = self.agent.clone();
        let names = self.names.clone();
        Box::pin(async move {
            let other = |e: anyhow::Error| instant_acme::Error::Other(flatten(e));
            let host = req
                .uri()
                .host()
                .ok_or_else(|| other(anyhow!("{}: no host", req.uri())))?
                .to_owned();
            names.lookup(&host).await.map_err(other)?;
            let (parts, body) = req.into_parts();
            let Ok(body) = body.collect().await;
            let body = body.to_bytes().to_vec();
            let request = Request::from_parts(parts, body);
            let uri = request.uri().clone();
            let (parts, body) = tokio::task::spawn_blocking(move || -> Result<_> {
                let response = agent.run(request).with_context(|| uri.to_string())?;
                let (parts, body) = response.into_parts();
                let body = body
                    .into_with_config()
                    .limit(MAX_BODY)
                    .read_to_vec()
                    .with_context(|| format!("{uri}: reading the response"))?;
                Ok((parts, body))
            })
            .await
            .map_err(|e| other(anyhow!("the HTTP request did not finish: {e}")))?
            .map_err(other)?;
            Ok(BytesResponse {
                parts,
                body: Box::new(Bytes::from(body)),
            })
        })
    }
}

/// An error with its causes on one line, as instant-acme keeps only the outer value.
fn flatten(e: anyhow::Error) -> Box<dyn StdError + Send + Sync> {
    format!("{e:#}").into()
}

/// Names resolved so far, and the resolver (made on first use: a run against IP literals
/// never reads /etc/resolv.conf).
#[derive(Debug)]
struct Names {
    servers: NameServers,
    resolver: Mutex<Option<TokioResolver>>,
    cache: Mutex<HashMap<String, Vec<IpAddr>>>,
}

impl Names {
    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        if let Some(found) = self.cache.lock().expect("not poisoned").get(host) {
            return Ok(found.clone());
        }
        let resolver = {
            let mut made = self.resolver.lock().expect("not poisoned");
            match &*made {
                Some(resolver) => resolver.clone(),
                None => made.insert(self.make_resolver()?).clone(),
            }
        };
        let found: Vec<IpAddr> = resolver
            .lookup_ip(host)
            .await
            .with_context(|| format!("looking up {host}"))?
            .iter()
            .collect();
        if found.is_empty() {
            anyhow::bail!("looking up {host}: no address");
        }
        self.cache
            .lock()
            .expect("not poisoned")
            .insert(host.to_owned(), found.clone());
        Ok(found)
    }

    fn make_resolver(&self) -> Result<TokioResolver> {
        let provider = TokioRuntimeProvider::default();
        let builder = match &self.servers {
            NameServers::System => TokioResolver::builder(provider)
                .context("reading /etc/resolv.conf for the name servers")?,
            NameServers::At(addr) => {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                let config = ResolverConfig::from_parts(None, vec![], vec![server]);
                TokioResolver::builder_with_config(config, provider)
            }
        };
        builder.build().context("setting up the name resolver")
    }
}

/// `host` as an address, if it is one (`[::1]` as a URI has it too).
fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// ureq's resolver: the addresses [`Names`] found before the request was handed to ureq.
#[derive(Debug)]
struct Resolved(Arc<Names>);

impl Resolver for Resolved {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let ips = match ip_literal(host) {
            Some(ip) => vec![ip],
            None => self
                .0
                .cache
                .lock()
                .expect("not poisoned")
                .get(host)
                .cloned()
                .ok_or(ureq::Error::HostNotFound)?,
        };
        let mut out = self.empty();
        for ip in ips.into_iter().take(MAX_ADDRS) {
            out.push(SocketAddr::new(ip, port));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(ip_literal("127.0.0.1"), Some([127, 0, 0, 1].into()));
        assert_eq!(
            ip_literal("[::1]"),
            Some(std::net::Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(ip_literal("acme-v02.api.letsencrypt.org"), None);
    }

    #[test]
    fn ureq_never_looks_up_a_name_itself() {
        let https = Https::new(None, NameServers::System).unwrap();
        let resolver = Resolved(https.names.clone());
        let config = ureq::config::Config::default();
        let uri: Uri = "https://example.com/dir".parse().unwrap();
        let timeout = NextTimeout::default();
        assert!(matches!(
            resolver.resolve(&uri, &config, timeout),
            Err(ureq::Error::HostNotFound)
        ));
        https
            .names
            .cache
            .lock()
            .unwrap()
            .insert("example.com".into(), vec![[127, 0, 0, 1].into()]);
        let found = resolver.resolve(&uri, &config, timeout).unwrap();
        assert_eq!(found[..], ["127.0.0.1:443".parse().unwrap()]);
        let uri: Uri = "http://127.0.0.2:8080/x".parse().unwrap();
        let found = resolver.resolve(&uri, &config, timeout).unwrap();
        assert_eq!(found[..], ["127.0.0.2:8080".parse().unwrap()]);
    }
}
