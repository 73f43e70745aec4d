//! `appliance-firstboot acme`: the certificate of `certificate: {letsencrypt: {email}}`, from
//! Let's Encrypt (or any RFC 8555 CA) over the HTTP-01 challenge, swapped in for the
//! self-signed one that `apply` serves meanwhile, and renewed.
//!
//! **When.** `appliance-acme.timer` starts `appliance-acme.service` a minute after boot and
//! every 15 minutes; each run first decides from the state and the files alone, without the
//! network, whether there is anything to do:
//!
//! | state                                          | run                                |
//! |------------------------------------------------|------------------------------------|
//! | no state, or a mode other than `letsencrypt`   | nothing (exit 0)                   |
//! | the certificate in place is this CA's, covers the served names and has 30 days left | up to date (exit 0) |
//! | `failed`, `--scheduled`, before `next_attempt` | not due (exit 0): the back-off     |
//! | otherwise (`pending`, `failed`, renewal due)   | an attempt                         |
//!
//! After a failure the next scheduled attempt waits 15 minutes (`--first-retry`), then 30, 60, ... up to 12
//! hours, which keeps well inside Let's Encrypt's limit of 5 failed validations per name
//! and hour while a user is still pointing DNS at the instance; a run by hand (without
//! `--scheduled`) tries at once.
//!
//! **An attempt.** Under the lock `apply` takes, so that the two never interleave:
//! 1. the account: its key is made once per instance, CA and e-mail address and kept in
//!    [`ACCOUNT_DIR`] (0700, the file 0600); creating it agrees to the CA's terms of service,
//!    which the user asked for by giving `letsencrypt.email`;
//! 2. an order for every served name (the state's `served_names`: the DNS name and
//!    ROOT_URL's host); for each authorization the HTTP-01 key authorization is written to
//!    `/var/www/acme/.well-known/acme-challenge/<token>`, which nginx serves on port 80 for
//!    every served name (see [`crate::plan`]), and the CA is told to validate; the files are
//!    removed again whatever happens;
//! 3. a new P-256 key and a CSR (`rcgen`) for the names; the chain downloaded when the CA
//!    has issued it, then checked as a user's certificate is (PEM, order and signatures,
//!    valid now, SAN covers every name, key matches: [`crate::input::cert`]);
//! 4. installed with `apply`'s machinery ([`crate::txn::journal`]): `/etc/ssl/<dns_name>.crt` and
//!    `/etc/ssl/private/<dns_name>.key`, prosody's copy, and the state, staged and swapped
//!    together; then `nginx -t`, prosody restarted, nginx reloaded. If any of it fails,
//!    every file is restored (the certificate served before stays) and the services that
//!    were restarted are restarted again.
//!
//! The state's `certificate.acme` records the outcome: `valid` with `issued_by` (the
//! directory URL) and the new expiry; or `failed` with `last_error` (one line, also printed
//! and so in the journal), the count of failures in a row and `next_attempt`. A later
//! `apply` keeps the CA's certificate while it is valid (renewal is this module's job) and,
//! with it, this record.
//!
//! **Which CA.** `letsencrypt.directory` in the configuration (`production`, the default,
//! `staging`, or another CA's URL; see [`crate::input::config`]), recorded in the state by `apply`;
//! `--directory URL` or `--staging` override it for one run. A certificate from another
//! directory than the one asked for is replaced. `--ca-file` trusts a private CA's HTTPS.
//!
//! HTTPS and name resolution: see [`http`] (no `getaddrinfo` in the static binary).

pub mod http;

use std::collections::BTreeSet;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, Problem, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::hooks::TestHooks;
use crate::input::cert::{utc_date, CertificateChain, PrivateKeyPem};
use crate::input::names::DnsName;
use crate::plan::hostname::static_hostname;
use crate::plan::tls::{self, epoch_seconds, CertAndKey};
use crate::plan::{self, DirSpec, Effect, Installed, ACME_WEBROOT};
use crate::state::{AcmeState, State, STATE_FILE};
use crate::tree::Tree;
use crate::txn::journal::{self, write_atomically};
use crate::txn::lock::lock;
use crate::txn::services::{ServiceManager, Step};
use crate::txn::transact::{transact, ApplyError};

use self::http::{Https, NameServers};

// The directories are the configuration's vocabulary (config and state name them); here too.
pub use crate::input::config::{LETSENCRYPT, LETSENCRYPT_STAGING};
/// The ACME accounts, relative to the root.
pub const ACCOUNT_DIR: &str = "var/lib/appliance/acme";
/// The first wait after a failure, doubled after each further one up to [`RETRY_MAX`].
pub const RETRY_FIRST: i64 = 15 * 60;
pub const RETRY_MAX: i64 = 12 * 3600;
/// How far this machine's clock may lag the CA's.
const CLOCK_SKEW: i64 = 3600;
/// How long the CA gets to validate the challenges and to issue.
const CA_TIMEOUT: Duration = Duration::from_secs(120);

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    /// The CA's directory URL, instead of the one the configuration names
    /// (`letsencrypt.directory`, by default [`LETSENCRYPT`]).
    pub directory: Option<String>,
    /// Trust only the certificates of this PEM file for the CA's HTTPS (else the built-in
    /// roots).
    pub ca_file: Option<PathBuf>,
    /// Respect the back-off after a failure (the timer's runs).
    pub scheduled: bool,
    /// The wait after a first failure, in seconds, doubled after each further one up to
    /// [`RETRY_MAX`] (default [`RETRY_FIRST`]).
    pub first_retry: i64,
    pub hooks: TestHooks,
}

/// What a run did.
#[derive(Debug)]
pub enum Outcome {
    /// The appliance is not configured yet.
    NotConfigured,
    /// The certificate mode is not Let's Encrypt.
    NotAsked { mode: String },
    /// The CA's certificate is in place for long enough.
    UpToDate { not_after: i64 },
    /// The last attempt failed and the back-off runs until `next_attempt`.
    NotDue {
        next_attempt: i64,
        last_error: String,
    },
    /// A certificate was obtained and installed.
    Issued {
        names: Vec<String>,
        not_after: i64,
        steps: Vec<Step>,
    },
}

impl std::fmt::Display for Outcome {
    /// The one line a run prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NotConfigured => {
                write!(f, "nothing to do: the appliance is not configured yet")
            }
            Outcome::NotAsked { mode } => {
                write!(
                    f,
                    "nothing to do: the certificate is {mode}, not Let's Encrypt"
                )
            }
            Outcome::UpToDate { not_after } => write!(
                f,
                "up to date: the certificate is valid until {}, renewed from 30 days before",
                utc_date(*not_after)
            ),
            Outcome::NotDue {
                next_attempt,
                last_error,
            } => write!(
                f,
                "not due: next attempt after {} (the last one failed: {last_error})",
                utc_date(*next_attempt)
            ),
            Outcome::Issued {
                names,
                not_after,
                steps,
            } => {
                write!(
                    f,
                    "installed a certificate for {}, valid until {}",
                    names.join(", "),
                    utc_date(*not_after)
                )?;
                if !steps.is_empty() {
                    let steps: Vec<String> = steps.iter().map(ToString::to_string).collect();
                    write!(f, "; ran {}", steps.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// Nothing was attempted (the state could not be read or written, the lock not taken).
    #[error("{0:#}")]
    NotAttempted(anyhow::Error),
    /// The attempt failed; the state records it and what was served before still is.
    #[error("{error}; {serving}; next attempt after {}", utc_date(*.next_attempt))]
    Failed {
        error: String,
        serving: String,
        next_attempt: i64,
    },
}

impl From<anyhow::Error> for AcmeError {
    fn from(e: anyhow::Error) -> AcmeError {
        AcmeError::NotAttempted(e)
    }
}

/// Runs `acme` under `options.root`; `services` is `None` for no restarts.
pub fn run(
    options: &Options,
    services: Option<&mut dyn ServiceManager>,
) -> Result<Outcome, AcmeError> {
    let tree = Tree::new(&options.root);
    let _lock = lock(&tree)?;
    // A run cut short (this one or an apply) is rolled back; what it may have restarted with
    // the files now restored is restarted again below, with this run's own steps.
    let recovered = journal::recover(&tree).context("recovering an interrupted run")?;
    let recovered_effects: BTreeSet<Effect> = recovered
        .map(|r| r.effects.into_iter().collect())
        .unwrap_or_default();
    let state = tree
        .read(&format!("/{STATE_FILE}"))
        .context("reading the state")?
        .and_then(|b| State::parse(&b));
    let mut services = services;
    // Nothing to order: the restarts a recovery owes are still run before returning.
    let (Some(state), Some(acme)) = (
        state.as_ref(),
        state.as_ref().and_then(|s| s.certificate.acme.clone()),
    ) else {
        if let (Some(services), false) = (services.as_deref_mut(), recovered_effects.is_empty()) {
            let steps = match &state {
                Some(state) => steps_for(&tree, state, &recovered_effects),
                None => {
                    let hostname = tree
                        .read("/etc/hostname")
                        .context("reading /etc/hostname")?
                        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                        .unwrap_or_default();
                    plan::steps(&recovered_effects, &Installed::detect(&tree), &hostname)
                }
            };
            run_steps(&steps, services).map_err(AcmeError::NotAttempted)?;
        }
        return Ok(match state {
            None => Outcome::NotConfigured,
            Some(state) => Outcome::NotAsked {
                mode: state.certificate.mode,
            },
        });
    };
    let state = state.clone();
    let now = epoch_seconds(options.hooks.now());
    let directory = (options.directory.as_ref())
        .or(acme.directory.as_ref())
        .map_or(LETSENCRYPT, String::as_str)
        .to_owned();
    let decision = decide(&tree, &state, &acme, &directory, options.scheduled, now)?;
    if !matches!(decision, Decision::Attempt) {
        if let Some(services) = services.as_deref_mut() {
            let steps = steps_for(&tree, &state, &recovered_effects);
            run_steps(&steps, services).map_err(AcmeError::NotAttempted)?;
        }
        return Ok(match decision {
            Decision::UpToDate { not_after } => Outcome::UpToDate { not_after },
            Decision::NotDue => Outcome::NotDue {
                next_attempt: acme.next_attempt.unwrap_or(now),
                last_error: acme.last_error.clone().unwrap_or_default(),
            },
            Decision::Attempt => unreachable!(),
        });
    }

    let names = state.served_names.clone();
    let at = Attempt {
        tree: &tree,
        state: &state,
        acme: &acme,
        directory: &directory,
        options,
        now,
    };
    let attempt = attempt(&at, &recovered_effects, services);
    match attempt {
        Ok((not_after, steps)) => Ok(Outcome::Issued {
            names,
            not_after,
            steps,
        }),
        Err(error) => Err(failed(&tree, state, acme, now, options, &error)),
    }
}

/// Records a failed attempt in the state (when to try again, what failed) and says what is
/// still served.
fn failed(
    tree: &Tree,
    mut state: State,
    mut acme: AcmeState,
    now: i64,
    options: &Options,
    error: &anyhow::Error,
) -> AcmeError {
    let error = one_line(error);
    // The state as it is now: a rollback restored the one read above.
    acme.status = "failed".into();
    acme.last_attempt = Some(now);
    acme.last_error = Some(error.clone());
    acme.failures = acme.failures.saturating_add(1);
    let next_attempt = now + retry_delay(options.first_retry, acme.failures);
    acme.next_attempt = Some(next_attempt);
    let serving = match &acme.issued_by {
        Some(_) => format!(
            "still serving the certificate valid until {}",
            utc_date(state.certificate.not_after)
        ),
        None => "still serving the self-signed certificate".to_owned(),
    };
    state.certificate.acme = Some(acme);
    if let Err(e) = write_state(tree, &state) {
        return AcmeError::NotAttempted(e.context(format!("{error}; recording that it failed")));
    }
    AcmeError::Failed {
        error,
        serving,
        next_attempt,
    }
}

enum Decision {
    UpToDate { not_after: i64 },
    NotDue,
    Attempt,
}

/// Whether to attempt, from the state and the files alone.
fn decide(
    tree: &Tree,
    state: &State,
    acme: &AcmeState,
    directory: &str,
    scheduled: bool,
    now: i64,
) -> Result<Decision> {
    let names: Vec<&str> = state.served_names.iter().map(String::as_str).collect();
    if acme.issued_by.as_deref() == Some(directory) {
        let cert = tree.read(&state.certificate.cert_file)?;
        let key = tree.read(&state.certificate.key_file)?;
        if let (Some(cert), Some(key)) = (cert, key) {
            let time = std::time::UNIX_EPOCH + Duration::from_secs(now.max(0) as u64);
            if let Some(kept) = tls::reusable(&cert, &key, &names, time, tls::MIN_REMAINING_DAYS) {
                return Ok(Decision::UpToDate {
                    not_after: kept.not_after,
                });
            }
        }
    }
    if scheduled && acme.next_attempt.is_some_and(|next| now < next) {
        return Ok(Decision::NotDue);
    }
    Ok(Decision::Attempt)
}

/// The wait before the next scheduled attempt after `failures` failures in a row, `first`
/// after the first one.
pub fn retry_delay(first: i64, failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1).min(16);
    (first.clamp(1, RETRY_MAX) << doublings).min(RETRY_MAX)
}

/// What an attempt works from: the state as read, the CA asked and the time.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    tree: &'a Tree,
    state: &'a State,
    acme: &'a AcmeState,
    directory: &'a str,
    options: &'a Options,
    now: i64,
}

/// Obtains, checks and installs a certificate. Returns its expiry and the steps run.
fn attempt(
    at: &Attempt<'_>,
    recovered_effects: &BTreeSet<Effect>,
    services: Option<&mut dyn ServiceManager>,
) -> Result<(i64, Vec<Step>)> {
    let Attempt {
        tree,
        state,
        acme,
        directory,
        options,
        now,
    } = *at;
    let names: Vec<String> = state.served_names.clone();
    let dns = &state.dns_name;
    let name_servers = match options.hooks.name_server {
        Some(addr) => NameServers::At(addr),
        None => NameServers::System,
    };
    let https = Https::new(options.ca_file.as_deref(), name_servers)?;
    let accounts = AccountStore {
        dir: tree.path(&format!("/{ACCOUNT_DIR}")),
        directory: directory.to_owned(),
        email: acme.email.clone(),
        instance_id: state.instance_id.clone(),
    };
    let webroot = tree.path(&format!("{ACME_WEBROOT}/.well-known/acme-challenge"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let obtained = runtime.block_on(obtain(https, &accounts, &names, &webroot))?;

    let cert = checked(obtained, &names, now)?;

    // Installed like an apply: all files together, rolled back on any failure.
    let mut new_state = state.clone();
    new_state.certificate.not_after = cert.not_after;
    new_state.certificate.acme = Some(AcmeState {
        status: "valid".into(),
        issued_by: Some(directory.to_owned()),
        last_attempt: Some(now),
        last_error: None,
        failures: 0,
        next_attempt: None,
        ..acme.clone()
    });
    let mut targets: Vec<plan::Target> = plan::nginx_certificate(tree, dns, &cert).into();
    if tree.is_dir("/etc/prosody/certs") {
        targets.extend(plan::prosody_certificate(tree, dns, &cert));
    }
    targets.push(plan::Target {
        path: format!("/{STATE_FILE}"),
        action: plan::Action::File(plan::FileSpec {
            content: new_state.to_json().into_bytes(),
            mode: 0o600,
            uid: 0,
            gid: 0,
        }),
        effects: vec![],
    });
    let changed: Vec<&plan::Target> = targets.iter().collect();
    let mut effects: BTreeSet<Effect> = targets
        .iter()
        .flat_map(|t| t.effects.iter().copied())
        .collect();
    effects.extend(recovered_effects);
    let steps = match &services {
        Some(_) => steps_for(tree, state, &effects),
        None => Vec::new(),
    };
    let dirs: Vec<DirSpec> = Vec::new();
    transact(tree, &dirs, &changed, effects, &steps, services).map_err(|e| match e {
        ApplyError::RolledBack { .. } => anyhow!("installing the certificate: {e}"),
        other => anyhow!("installing the certificate: {other}"),
    })?;
    Ok((cert.not_after, steps))
}

/// The CA's certificate after the same checks as one given in user-data.
fn checked(obtained: Obtained, names: &[String], now: i64) -> Result<CertAndKey> {
    let chain = CertificateChain::parse(&obtained.cert_pem)
        .map_err(|e| anyhow!("the CA's certificate chain {e}"))?;
    let key =
        PrivateKeyPem::parse(&obtained.key_pem).map_err(|e| anyhow!("the new private key {e}"))?;
    let dns_names: Vec<DnsName> = names
        .iter()
        .map(|n| DnsName::parse(n))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("the state's served names: {e}"))?;
    let dns_refs: Vec<&DnsName> = dns_names.iter().collect();
    // Checked an hour ahead: a CA may issue from the second of the request (pebble does),
    // or this machine's clock may lag a little; a fresh certificate never ends that soon.
    if let Some(problem) = chain.problems(now + CLOCK_SKEW, &dns_refs).first() {
        bail!("the CA's certificate: {problem}");
    }
    chain
        .check_key(&key)
        .map_err(|e| anyhow!("the CA's certificate: the new key {e}"))?;

    Ok(CertAndKey {
        cert_pem: chain.to_pem(),
        key_pem: obtained.key_pem,
        not_after: chain.leaf_not_after,
    })
}

/// The restart steps for `effects` on this tree.
fn steps_for(tree: &Tree, state: &State, effects: &BTreeSet<Effect>) -> Vec<Step> {
    let hostname = static_hostname(&state.dns_name).to_owned();
    plan::steps(effects, &Installed::detect(tree), &hostname)
}

fn run_steps(steps: &[Step], services: &mut dyn ServiceManager) -> Result<()> {
    for step in steps {
        services
            .run(step)
            .map_err(|message| anyhow!("{step}: {message}"))?;
    }
    Ok(())
}

fn write_state(tree: &Tree, state: &State) -> Result<()> {
    let path = tree.path(&format!("/{STATE_FILE}"));
    write_atomically(&path, state.to_json().as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// An error as one line: its causes joined, line breaks (a CA's detail may have some) as
/// spaces.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A certificate chain (PEM, leaf first) and its new key.
struct Obtained {
    cert_pem: String,
    key_pem: String,
}

/// The ACME conversation: account, order, challenges, CSR, chain.
async fn obtain(
    https: Https,
    accounts: &AccountStore,
    names: &[String],
    webroot: &Path,
) -> Result<Obtained> {
    let account = accounts.account(https).await?;
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
        Ok(order) => order,
        Err(e) => {
            if is_problem(&e, "accountDoesNotExist") || is_problem(&e, "unauthorized") {
                // Deactivated or unknown to the CA: the next attempt makes a new one.
                accounts.forget();
            }
            return Err(acme_error(e)).with_context(|| format!("ordering {}", names.join(", ")));
        }
    };

    let mut responses = Responses::new(webroot);
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization
            .map_err(acme_error)
            .context("reading an authorization")?;
        let name = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => bail!("{name}: the CA's authorization is {other:?}"),
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| anyhow!("{name}: the CA offers no http-01 challenge"))?;
        responses.write(
            &name,
            &challenge.token,
            challenge.key_authorization().as_str(),
        )?;
        challenge
            .set_ready()
            .await
            .map_err(acme_error)
            .with_context(|| format!("{name}: answering the http-01 challenge"))?;
    }

    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .backoff(1.5)
        .timeout(CA_TIMEOUT);
    match order.poll_ready(&retries).await {
        Ok(OrderStatus::Ready) => {}
        Ok(_) | Err(instant_acme::Error::Api(_)) => return Err(why_invalid(&mut order).await),
        Err(e) => {
            return Err(acme_error(e)).context("waiting for the CA to validate the challenges")
        }
    }
    drop(responses);

    let key = rcgen::KeyPair::generate().map_err(|e| anyhow!("making a key pair: {e}"))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| anyhow!("making the certificate request: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| anyhow!("making the certificate request: {e}"))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(acme_error)
        .context("finalizing the order")?;
    let cert_pem = order
        .poll_certificate(&retries)
        .await
        .map_err(acme_error)
        .context("downloading the certificate")?;
    Ok(Obtained {
        cert_pem,
        key_pem: key.serialize_pem(),
    })
}

/// Why the CA did not validate: each failed challenge's problem, by name.
async fn why_invalid(order: &mut Order) -> anyhow::Error {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        if authorization.refresh().await.is_err() {
            continue;
        }
        let name = authorization.identifier().to_string();
        for challenge in &authorization.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(format!("{name}: {}", problem_text(problem)));
            }
        }
    }
    if reasons.is_empty() {
        if let Some(problem) = &order.state().error {
            reasons.push(problem_text(problem));
        } else {
            reasons.push("the order is invalid".into());
        }
    }
    anyhow!(
        "the CA could not validate the http-01 challenge: {}",
        reasons.join("; ")
    )
}

/// A problem document as `detail (type)`, the type without its URN prefix.
fn problem_text(problem: &Problem) -> String {
    let kind = problem
        .r#type
        .as_deref()
        .map(|t| t.trim_start_matches("urn:ietf:params:acme:error:"));
    match (&problem.detail, kind) {
        (Some(detail), Some(kind)) => format!("{detail} ({kind})"),
        (Some(detail), None) => detail.clone(),
        (None, Some(kind)) => kind.to_owned(),
        (None, None) => "no detail given".to_owned(),
    }
}

fn is_problem(e: &instant_acme::Error, kind: &str) -> bool {
    matches!(e, instant_acme::Error::Api(p)
        if p.r#type.as_deref() == Some(&format!("urn:ietf:params:acme:error:{kind}")))
}

/// instant-acme's error, a CA's problem document shown as [`problem_text`].
fn acme_error(e: instant_acme::Error) -> anyhow::Error {
    match e {
        instant_acme::Error::Api(problem) => anyhow!("the CA says: {}", problem_text(&problem)),
        instant_acme::Error::Timeout(_) => anyhow!("the CA did not finish in time"),
        other => anyhow!("{other}"),
    }
}

/// The HTTP-01 responses written to the webroot; removed when dropped.
struct Responses {
    dir: PathBuf,
    written: Vec<PathBuf>,
}

impl Responses {
    fn new(dir: &Path) -> Responses {
        Responses {
            dir: dir.to_path_buf(),
            written: Vec::new(),
        }
    }

    fn write(&mut self, name: &str, token: &str, key_authorization: &str) -> Result<()> {
        // The token becomes a file name: only base64url, as RFC 8555 requires of it.
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("{name}: the CA's challenge token is not base64url");
        }
        if !self.dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&self.dir)
                .with_context(|| format!("making {}", self.dir.display()))?;
        }
        let path = self.dir.join(token);
        let write = || -> std::io::Result<()> {
            std::fs::write(&path, key_authorization)?;
            // Read by nginx's worker user.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        };
        write().with_context(|| format!("{name}: writing {}", path.display()))?;
        self.written.push(path);
        Ok(())
    }
}

impl Drop for Responses {
    fn drop(&mut self) {
        for path in &self.written {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The ACME accounts: one file per CA directory, holding the account's key and URL, for this
/// instance and e-mail address.
struct AccountStore {
    dir: PathBuf,
    directory: String,
    email: String,
    instance_id: String,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    email: String,
    instance_id: String,
    credentials: AccountCredentials,
}

impl AccountStore {
    /// `account-<first 16 hex digits of SHA-256 of the directory URL>.json`.
    fn path(&self) -> PathBuf {
        let hash = crate::state::sha256_hex(&self.directory);
        self.dir.join(format!("account-{}.json", &hash[..16]))
    }

    /// The stored account if it is this instance's for this address, else a new one.
    async fn account(&self, https: Https) -> Result<Account> {
        let path = self.path();
        let stored = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<StoredAccount>(&b).ok())
            .filter(|s| {
                s.directory == self.directory
                    && s.email == self.email
                    && s.instance_id == self.instance_id
            });
        let builder = Account::builder_with_http(Box::new(https));
        if let Some(stored) = stored {
            return builder
                .from_credentials(stored.credentials)
                .await
                .map_err(acme_error)
                .with_context(|| format!("reaching the CA at {}", self.directory));
        }
        let contact = format!("mailto:{}", self.email);
        let (account, credentials) = builder
            .create(
                &NewAccount {
                    contact: &[&contact],
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory.clone(),
                None,
            )
            .await
            .map_err(acme_error)
            .with_context(|| format!("creating an account at {}", self.directory))?;
        let stored = StoredAccount {
            directory: self.directory.clone(),
            email: self.email.clone(),
            instance_id: self.instance_id.clone(),
            credentials,
        };
        let text = serde_json::to_vec_pretty(&stored).expect("account serializes");
        if !self.dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .with_context(|| format!("making {}", self.dir.display()))?;
        }
        // 0600 from the start (write_atomically), since it holds the account's key.
        write_atomically(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        Ok(account)
    }

    fn forget(&self) {
        let _ = std::fs::remove_file(self.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off() {
        let delays: Vec<i64> = (1..=8).map(|n| retry_delay(RETRY_FIRST, n)).collect();
        assert_eq!(
            delays,
            [900, 1800, 3600, 7200, 14_400, 28_800, 43_200, 43_200]
        );
        assert_eq!(retry_delay(RETRY_FIRST, u32::MAX), RETRY_MAX);
        let short: Vec<i64> = (1..=3).map(|n| retry_delay(20, n)).collect();
        assert_eq!(short, [20, 40, 80]);
        assert_eq!(retry_delay(0, 1), 1);
    }

    #[test]
    fn problems_read_as_one_line() {
        let problem: Problem = serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:connection","detail":"127.0.0.1: Connection refused","status":400}"#,
        )
        .unwrap();
        assert_eq!(
            problem_text(&problem),
            "127.0.0.1: Connection refused (connection)"
        );
        let e = anyhow!("a\nb").context("c");
        assert_eq!(one_line(&e), "c: a b");
    }

    #[test]
    fn tokens_must_be_base64url() {
        let dir = tempfile::tempdir().unwrap();
        let mut responses = Responses::new(dir.path());
        for bad in ["", "../x", "a/b", "a.b", "a b"] {
            assert!(responses.write("n", bad, "k").is_err(), "{bad:?}");
        }
        responses.write("n", "aB-_9", "k.t").unwrap();
        let path = dir.path().join("aB-_9");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "k.t");
        drop(responses);
        assert!(!path.exists());
    }
}
