//! `appliance-firstboot acme` against pebble, Let's Encrypt's test CA, on 127.0.0.1: real ACME
//! (account, order, HTTP-01 validated by pebble fetching the webroot through a stand-in for
//! nginx, CSR, chain), the certificate swapped in with nginx checked and reloaded, failures
//! recorded with the self-signed certificate still served, retries, renewal.
//!
//! Needs `pebble` (Debian package; scripts/setup installs it).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::fixture::{Fixture, Flavor, SEED};
use common::pebble::{Answer, ChallengeServer, Pebble};
use firstboot::acme::{self, AcmeError, Outcome};
use firstboot::apply;
use firstboot::hooks::TestHooks;
use firstboot::input::cert::{CertificateChain, PrivateKeyPem};
use firstboot::state::State;
use firstboot::txn::services::Recorder;
use x509_parser::prelude::{FromDer, X509Certificate};

const CERT: &str = "/etc/ssl/meet.example.com.crt";
const KEY: &str = "/etc/ssl/private/meet.example.com.key";
const CHALLENGES: &str = "/var/www/acme/.well-known/acme-challenge";
const RELOAD: [&str; 3] = [
    "nginx -t -q",
    "systemctl try-restart prosody.service",
    "systemctl try-reload-or-restart nginx.service",
];

fn user_data(root_url: Option<&str>) -> String {
    let root_url = root_url
        .map(|u| format!("  root_url: {u}\n"))
        .unwrap_or_default();
    format!(
        "#cloud-config\nappliance:\n  dns_name: meet.example.com\n{root_url}  \
         certificate: {{letsencrypt: {{email: ops@example.com}}}}\n"
    )
}

/// A tree configured for Let's Encrypt by `apply` on the real clock (pebble issues for now).
fn configured(root_url: Option<&str>) -> Fixture {
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data(&user_data(root_url));
    apply_now(&f, false);
    f
}

fn apply_now(f: &Fixture, reconfigure: bool) {
    let options = apply::Options {
        root: f.root().to_path_buf(),
        reconfigure,
        hooks: TestHooks {
            seed: Some(SEED.into()),
            ..TestHooks::default()
        },
    };
    apply::run(&options, Some(&mut Recorder::new())).unwrap_or_else(|e| panic!("apply: {e}"));
}

fn state(f: &Fixture) -> State {
    State::parse(f.read("/var/lib/appliance/state.json").as_bytes()).unwrap()
}

fn options(f: &Fixture, pebble: &Pebble) -> acme::Options {
    acme::Options {
        root: f.root().to_path_buf(),
        directory: Some(pebble.directory.clone()),
        ca_file: Some(pebble.ca_file.clone()),
        scheduled: false,
        first_retry: acme::RETRY_FIRST,
        hooks: TestHooks::default(),
    }
}

/// `acme` in process; the outcome and the steps recorded.
fn run(options: &acme::Options, recorder: Recorder) -> (Result<Outcome, AcmeError>, Vec<String>) {
    let mut recorder = recorder;
    let outcome = acme::run(options, Some(&mut recorder));
    (outcome, recorder.lines())
}

fn challenge_files(f: &Fixture) -> Vec<String> {
    std::fs::read_dir(f.path(CHALLENGES))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn epoch_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn der_chain(pem_text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect()
}

/// The certificate in place is pebble's for `names`, with the key in place, its chain ending
/// at the root pebble made at its start.
fn assert_issued_by_pebble(f: &Fixture, pebble: &Pebble, names: &[&str]) {
    let cert = f.read(CERT);
    let chain = CertificateChain::parse(&cert).unwrap();
    let mut leaf_names = chain.leaf_names.clone();
    leaf_names.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(leaf_names, want);
    let key = PrivateKeyPem::parse(&f.read(KEY)).unwrap();
    chain.check_key(&key).unwrap();
    let named: Vec<_> = names
        .iter()
        .map(|n| firstboot::input::names::DnsName::parse(n).unwrap())
        .collect();
    let refs: Vec<_> = named.iter().collect();
    assert_eq!(chain.problems(epoch_now(), &refs), vec![]);
    let ders = der_chain(&cert);
    assert_eq!(ders.len(), 2, "leaf and pebble's intermediate");
    let (_, leaf) = X509Certificate::from_der(&ders[0]).unwrap();
    let (_, intermediate) = X509Certificate::from_der(&ders[1]).unwrap();
    assert!(
        leaf.issuer().to_string().contains("Pebble Intermediate CA"),
        "{}",
        leaf.issuer()
    );
    leaf.verify_signature(Some(intermediate.public_key()))
        .unwrap();
    let root_pem = pebble.issuing_root();
    let root_der = der_chain(&root_pem).remove(0);
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    assert_eq!(intermediate.issuer(), root.subject());
    intermediate
        .verify_signature(Some(root.public_key()))
        .unwrap();
}

/// After the first issue: prosody's copy, and the CA asked for each name through "nginx".
fn assert_served(f: &Fixture, server: &ChallengeServer) {
    assert_eq!(
        f.read("/etc/prosody/certs/meet.example.com.crt"),
        f.read(CERT)
    );
    assert_eq!(
        f.read("/etc/prosody/certs/meet.example.com.key"),
        f.read(KEY)
    );
    // pebble fetched each name's response from the webroot, through "nginx".
    let seen = server.take_seen();
    for name in ["meet.example.com", "chat.example.com"] {
        assert!(
            seen.iter().any(|s| s.host.split(':').next() == Some(name)
                && s.path.starts_with("/.well-known/acme-challenge/")
                && s.status == 200),
            "{seen:?}"
        );
    }
}

/// After the first issue: the state and the account (returned: its file and text).
fn assert_recorded(
    f: &Fixture,
    pebble: &Pebble,
    not_after: i64,
) -> (Vec<std::path::PathBuf>, String) {
    let s = state(f);
    let acme = s.certificate.acme.clone().unwrap();
    assert_eq!(acme.status, "valid");
    assert_eq!(acme.issued_by.as_deref(), Some(pebble.directory.as_str()));
    assert_eq!((acme.failures, acme.last_error), (0, None));
    assert_eq!(s.certificate.not_after, not_after);
    assert_eq!(f.mode("/var/lib/appliance/state.json"), 0o600);
    // The account: one file, 0600 in a 0700 directory.
    let accounts: Vec<_> = std::fs::read_dir(f.path("/var/lib/appliance/acme"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(accounts.len(), 1);
    let account = std::fs::read_to_string(&accounts[0]).unwrap();
    assert!(
        account.contains("\"email\": \"ops@example.com\""),
        "{account}"
    );
    assert_eq!(f.mode("/var/lib/appliance/acme"), 0o700);
    assert_eq!(
        std::fs::metadata(&accounts[0])
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let status = apply::status(f.root()).unwrap().to_string();
    assert!(
        status.contains(&format!(
            "(ACME account ops@example.com: valid, issued by {})",
            pebble.directory
        )),
        "{status}"
    );

    (accounts, account)
}

#[test]
fn obtains_installs_renews_and_is_kept_by_apply() {
    let f = configured(Some("https://chat.example.com/"));
    let self_signed = f.read(CERT);
    assert_eq!(state(&f).certificate.acme.unwrap().status, "pending");
    let server = ChallengeServer::start(&f.path("/var/www/acme"));
    let pebble = Pebble::start(server.port);
    let options = options(&f, &pebble);

    let (outcome, steps) = run(&options, Recorder::new());
    let outcome = outcome.unwrap_or_else(|e| panic!("acme: {e}\n{}", pebble.logs()));
    let Outcome::Issued {
        names, not_after, ..
    } = &outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(names, &["meet.example.com", "chat.example.com"]);
    assert!(outcome.to_string().starts_with(
        "installed a certificate for meet.example.com, chat.example.com, valid until "
    ));
    assert_eq!(steps, RELOAD);
    assert_ne!(f.read(CERT), self_signed);
    assert_issued_by_pebble(&f, &pebble, &["meet.example.com", "chat.example.com"]);
    assert_eq!(f.mode(KEY), 0o640);
    assert_eq!(f.mode(CERT), 0o644);
    assert_served(&f, &server);
    assert_eq!(challenge_files(&f), Vec::<String>::new());
    let (accounts, account) = assert_recorded(&f, &pebble, *not_after);

    // Next run: up to date, decided without the network.
    let issued = f.read(CERT);
    let (outcome, steps) = run(&options, Recorder::new());
    assert!(
        matches!(outcome, Ok(Outcome::UpToDate { .. })),
        "{outcome:?}"
    );
    assert_eq!(steps, Vec::<String>::new());
    assert_eq!(f.read(CERT), issued);

    // A reconfigure keeps the CA's certificate and the record.
    apply_now(&f, true);
    assert_eq!(f.read(CERT), issued);
    assert_eq!(state(&f).certificate.acme.unwrap().status, "valid");

    // 29 days before the end: renewed, with the same account.
    let late = UNIX_EPOCH + Duration::from_secs((*not_after - 29 * 86_400) as u64);
    let renewal = acme::Options {
        hooks: TestHooks {
            now: Some(late),
            ..TestHooks::default()
        },
        scheduled: true,
        ..options.clone()
    };
    let (outcome, steps) = run(&renewal, Recorder::new());
    assert!(
        matches!(outcome, Ok(Outcome::Issued { .. })),
        "{outcome:?}\n{}",
        pebble.logs()
    );
    assert_eq!(steps, RELOAD);
    assert_ne!(f.read(CERT), issued);
    assert_issued_by_pebble(&f, &pebble, &["meet.example.com", "chat.example.com"]);
    let after: Vec<_> = std::fs::read_dir(f.path("/var/lib/appliance/acme"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(after, accounts);
    assert_eq!(std::fs::read_to_string(&accounts[0]).unwrap(), account);

    // Back to a self-signed certificate: the CA's is not kept, since nothing would renew it.
    let renewed = f.read(CERT);
    let text = f.read("/etc/appliance/config.yaml");
    let self_signed_config: String = text
        .lines()
        .filter(|l| !l.starts_with("  ") && !l.starts_with("certificate:"))
        .map(|l| format!("{l}\n"))
        .collect();
    f.write_mode(
        "/etc/appliance/config.yaml",
        &format!("{self_signed_config}certificate: {{}}\n"),
        0o600,
    );
    apply_now(&f, true);
    assert_ne!(f.read(CERT), renewed);
    let s = state(&f);
    assert_eq!(
        (s.certificate.mode.as_str(), s.certificate.acme),
        ("self-signed", None)
    );
    let (outcome, _) = run(&options, Recorder::new());
    assert!(
        matches!(outcome, Ok(Outcome::NotAsked { .. })),
        "{outcome:?}"
    );
}

#[test]
fn a_failed_attempt_keeps_the_self_signed_certificate_and_is_retried() {
    let f = configured(None);
    let self_signed = f.read(CERT);
    let server = ChallengeServer::start(&f.path("/var/www/acme"));
    let pebble = Pebble::start(server.port);
    let options = options(&f, &pebble);
    let failed = |f: &Fixture| {
        let acme = state(f).certificate.acme.unwrap();
        assert_eq!(acme.status, "failed");
        assert_eq!(f.read(CERT), self_signed);
        assert_eq!(challenge_files(f), Vec::<String>::new());
        acme
    };

    // 1. The webroot is not served (404): pebble's validation fails.
    server.set(Answer::NotFound);
    let before = epoch_now();
    let (outcome, steps) = run(&options, Recorder::new());
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.starts_with("the CA could not validate the http-01 challenge: meet.example.com: "),
        "{error}"
    );
    assert!(error.contains("404"), "{error}");
    assert!(
        error.contains("; still serving the self-signed certificate; next attempt after "),
        "{error}"
    );
    assert!(!error.contains('\n'));
    assert_eq!(steps, Vec::<String>::new());
    let acme = failed(&f);
    assert_eq!(acme.failures, 1);
    assert!(acme.last_error.as_deref().unwrap().contains("404"));
    let next = acme.next_attempt.unwrap();
    assert!((before + 900..=epoch_now() + 900).contains(&next), "{next}");
    // pebble validates from 3 "perspectives", as Let's Encrypt does.
    let seen = server.take_seen();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| s.status == 404),
        "{seen:?}"
    );

    // The timer's run waits out the back-off, without the network.
    let scheduled = acme::Options {
        scheduled: true,
        ..options.clone()
    };
    let (outcome, _) = run(&scheduled, Recorder::new());
    let outcome = outcome.unwrap();
    assert!(matches!(outcome, Outcome::NotDue { next_attempt, .. } if next_attempt == next));
    assert!(outcome
        .to_string()
        .starts_with("not due: next attempt after "));
    assert_eq!(server.take_seen(), vec![]);

    // 2. Something else is served: a run by hand tries at once, and fails again.
    server.set(Answer::Wrong);
    let (outcome, _) = run(&options, Recorder::new());
    let error = outcome.unwrap_err().to_string();
    assert!(error.contains("meet.example.com: "), "{error}");
    let acme = failed(&f);
    assert_eq!(acme.failures, 2);
    assert!(acme.next_attempt.unwrap() >= epoch_now() + 1800 - 5);

    // 3. Validated and issued, but nginx refuses the configuration: rolled back.
    server.set(Answer::Webroot);
    let (outcome, steps) = run(&options, Recorder::failing("nginx -t -q"));
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.starts_with("installing the certificate: nginx -t -q: failed (as the test asked); the previous configuration was restored; still serving the self-signed certificate"),
        "{error}"
    );
    assert_eq!(steps, ["nginx -t -q"]);
    assert_eq!(failed(&f).failures, 3);
    assert_eq!(
        f.read("/etc/prosody/certs/meet.example.com.crt"),
        self_signed
    );

    // 4. Served: issued, the failures forgotten.
    let (outcome, steps) = run(&options, Recorder::new());
    assert!(matches!(outcome, Ok(Outcome::Issued { .. })), "{outcome:?}");
    assert_eq!(steps, RELOAD);
    assert_issued_by_pebble(&f, &pebble, &["meet.example.com"]);
    let acme = state(&f).certificate.acme.unwrap();
    assert_eq!(
        (
            acme.status.as_str(),
            acme.failures,
            acme.last_error,
            acme.next_attempt
        ),
        ("valid", 0, None, None)
    );
}

#[test]
fn the_binary_reaches_the_configured_ca_by_name_without_getaddrinfo() {
    let f = Fixture::new(Flavor::Debian);
    let server = ChallengeServer::start(&f.path("/var/www/acme"));
    let pebble = Pebble::start(server.port);
    // The CA as user-data names it; acme.example.com is known only to pebble's DNS server,
    // so a lookup through the system's resolver (getaddrinfo) would not find it.
    f.set_user_data(&format!(
        "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  certificate:\n    \
         letsencrypt: {{email: ops@example.com, directory: \"{}\"}}\n",
        pebble.directory_by_name
    ));
    let real_clock = ("APPLIANCE_FIRSTBOOT_TEST_NOW", "");
    let out = f.run_binary(&["apply"], &[real_clock]);
    assert!(out.status.success(), "{out:?}");
    let self_signed = f.read(CERT);
    let services = f.root().join("services.log");
    let dns = pebble.dns.to_string();
    let ca_file = pebble.ca_file.to_str().unwrap();
    let args = ["acme", "--ca-file", ca_file];
    let env = [
        real_clock,
        ("APPLIANCE_FIRSTBOOT_TEST_NAMESERVER", dns.as_str()),
        (
            "APPLIANCE_FIRSTBOOT_FAKE_SERVICES",
            services.to_str().unwrap(),
        ),
    ];

    server.set(Answer::NotFound);
    let out = f.run_binary(&args, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "error: the CA could not validate the http-01 challenge: meet.example.com: "
        ),
        "{stderr}"
    );
    assert_eq!(f.read(CERT), self_signed);
    assert!(!services.exists());

    // Killed (as by a power cut) after the new certificate replaced the old one, before the
    // key and the state did: the next run rolls back to a consistent set, then obtains.
    server.set(Answer::Webroot);
    let mut killed = env.to_vec();
    killed.push(("APPLIANCE_FIRSTBOOT_FAILPOINT", "swapped:1"));
    let out = f.run_binary(&args, &killed);
    assert_eq!(out.status.code(), None, "{out:?}");
    assert_ne!(f.read(CERT), self_signed);
    assert!(f.exists("/var/lib/appliance/apply.journal"));
    let out = f.run_binary(&args, &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}\n{}", pebble.logs());
    assert!(!f.exists("/var/lib/appliance/apply.journal"));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("installed a certificate for meet.example.com, valid until "),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("; ran {}", RELOAD.join(", "))),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&services).unwrap(),
        format!("{}\n", RELOAD.join("\n"))
    );
    assert_issued_by_pebble(&f, &pebble, &["meet.example.com"]);
    assert_eq!(
        state(&f).certificate.acme.unwrap().issued_by.as_deref(),
        Some(pebble.directory_by_name.as_str())
    );

    // The timer's next run: up to date, exit 0.
    let mut scheduled = args.to_vec();
    scheduled.push("--scheduled");
    let out = f.run_binary(&scheduled, &env);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("up to date: the certificate is valid until "));
}

#[test]
fn nothing_to_do_without_letsencrypt() {
    // No network either: the directory is a closed port.
    let closed = format!("https://127.0.0.1:{}/dir", common::pebble::free_port());
    let f = Fixture::new(Flavor::Debian);
    let args = ["acme", "--directory", closed.as_str()];
    let out = f.run_binary(&args, &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nothing to do: the appliance is not configured yet\n"
    );
    f.set_user_data("#cloud-config\nappliance:\n  dns_name: meet.example.com\n");
    assert!(f.run_binary(&["apply"], &[]).status.success());
    let before = f.read("/var/lib/appliance/state.json");
    let out = f.run_binary(&args, &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nothing to do: the certificate is self-signed, not Let's Encrypt\n"
    );
    assert_eq!(f.read("/var/lib/appliance/state.json"), before);
}

#[test]
fn an_unreachable_ca_is_a_recorded_failure() {
    let closed = format!("https://127.0.0.1:{}/dir", common::pebble::free_port());
    let f = configured(None);
    let self_signed = f.read(CERT);
    let options = acme::Options {
        root: f.root().to_path_buf(),
        directory: Some(closed.clone()),
        ca_file: None,
        scheduled: true,
        first_retry: acme::RETRY_FIRST,
        hooks: TestHooks::default(),
    };
    let (outcome, steps) = run(&options, Recorder::new());
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("creating an account at {closed}: {closed}: ")),
        "{error}"
    );
    assert!(
        error.contains("still serving the self-signed certificate"),
        "{error}"
    );
    assert_eq!(steps, Vec::<String>::new());
    assert_eq!(f.read(CERT), self_signed);
    let acme = state(&f).certificate.acme.unwrap();
    assert_eq!((acme.status.as_str(), acme.failures), ("failed", 1));
    // The back-off holds for the timer's runs.
    let (outcome, _) = run(&options, Recorder::new());
    assert!(matches!(outcome, Ok(Outcome::NotDue { .. })), "{outcome:?}");
    assert_eq!(state(&f).certificate.acme.unwrap().failures, 1);
}

/// An apply cut short while restarting is rolled back by the next run, which owes the
/// restarts of the restored files: `acme` runs them even when it has nothing to order.
#[test]
fn acme_recovery_reruns_the_owed_restarts_without_letsencrypt() {
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data("#cloud-config\nappliance:\n  dns_name: meet.example.com\n");
    let logs = tempfile::tempdir().unwrap();
    let (first, owed) = (logs.path().join("apply.log"), logs.path().join("acme.log"));
    // The binary with fake services logging to `log`, and a failpoint if any.
    let run = |command: &str, log: &std::path::Path, failpoint: Option<&str>| {
        let mut env = vec![("APPLIANCE_FIRSTBOOT_FAKE_SERVICES", log.to_str().unwrap())];
        env.extend(failpoint.map(|p| ("APPLIANCE_FIRSTBOOT_FAILPOINT", p)));
        let out = f.run_binary(&[command], &env);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run("apply", &first, None);
    assert!(ok, "{stderr}");
    f.set_instance("i-0002");
    assert!(!run("apply", &first, Some("restarting:1")).0);
    assert!(f.exists("/var/lib/appliance/apply.journal"));
    let (ok, stderr) = run("acme", &owed, None);
    assert!(ok, "{stderr}");
    assert!(!f.exists("/var/lib/appliance/apply.journal"));
    let log = std::fs::read_to_string(&owed).unwrap_or_default();
    assert!(log.contains("nginx"), "no restarts owed were run: {log:?}");
}
