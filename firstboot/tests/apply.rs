//! `apply`, `reconfigure` and `status` on fixture trees: what is written, what is restarted and
//! in which order, once per instance, each certificate mode, ufw, rollback.

mod common;

use std::os::unix::fs::MetadataExt;

use common::fixture::{assert_same, Fixture, Flavor, PLACEHOLDER};
use common::*;
use firstboot::apply::{ApplyError, Outcome};
use firstboot::state::State;
use firstboot::txn::services::Recorder;

const MINIMAL: &str = "#cloud-config\nappliance:\n  dns_name: meet.example.com\n";

fn state(f: &Fixture) -> State {
    State::parse(f.read("/var/lib/appliance/state.json").as_bytes()).unwrap()
}

fn changed(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::Applied { changed, .. } => changed.clone(),
        Outcome::UpToDate { .. } => panic!("up to date"),
    }
}

/// Everything but the lock file and its directory, which every run makes first.
/// The tree, without the lock and the failure record (what a failed run writes for
/// `status`, checked by the tests of failures).
fn snapshot(f: &Fixture) -> Vec<(String, String)> {
    f.snapshot(&|p| {
        p == "/var/lib/appliance/lock"
            || p == "/var/lib/appliance"
            || p == "/var/lib/appliance/last-failure"
    })
}

/// `apply --no-restart` through the binary, which must succeed.
fn apply_binary_ok(f: &Fixture) {
    let out = f.run_binary(&["apply", "--no-restart"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn config_yaml_with(f: &Fixture, from: &str, to: &str) {
    let text = f.read("/etc/appliance/config.yaml");
    assert!(text.contains(from), "{text}");
    f.write_mode("/etc/appliance/config.yaml", &text.replace(from, to), 0o600);
}

#[test]
fn first_boot_of_the_debian_image() {
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data(MINIMAL);
    let (outcome, steps) = f.apply();
    assert_eq!(
        steps,
        [
            "nginx -t -q",
            "hostname meet.example.com",
            "systemctl daemon-reload",
            "systemctl try-restart prosody.service",
            "systemctl try-reload-or-restart nginx.service",
        ]
    );
    assert!(changed(&outcome).contains(&"/etc/hostname".to_owned()));
    assert_eq!(f.read("/etc/hostname"), "meet.example.com\n");
    assert!(f
        .read("/etc/hosts")
        .contains("\n127.0.1.1\tmeet.example.com meet\n"));
    // The certificate: self-signed for the one served name, key readable by ssl-cert.
    let cert = f.read("/etc/ssl/meet.example.com.crt");
    let key = f.read("/etc/ssl/private/meet.example.com.key");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(f.mode("/etc/ssl/private/meet.example.com.key"), 0o640);
    let key_meta = std::fs::metadata(f.path("/etc/ssl/private/meet.example.com.key")).unwrap();
    if std::fs::metadata(f.root()).unwrap().uid() == 0 {
        assert_eq!((key_meta.uid(), key_meta.gid()), (0, 110));
    }
    let chain = firstboot::input::cert::CertificateChain::parse(&cert).unwrap();
    assert_eq!(chain.leaf_names, ["meet.example.com"]);
    assert!(chain
        .check_key(&firstboot::input::cert::PrivateKeyPem::parse(&key).unwrap())
        .is_ok());
    // nginx, prosody, Rocket.Chat's drop-in.
    assert_eq!(
        std::fs::read_link(f.path("/etc/nginx/sites-enabled/appliance.conf")).unwrap(),
        std::path::Path::new("/etc/nginx/sites-available/appliance.conf")
    );
    assert!(f.exists("/etc/nginx/sites-enabled/default"));
    assert!(f.path("/var/www/acme/.well-known/acme-challenge").is_dir());
    let vhost = f.read("/etc/prosody/conf.avail/meet.example.com.cfg.lua");
    assert!(
        vhost.contains("VirtualHost \"meet.example.com\""),
        "{vhost}"
    );
    assert!(f.exists("/etc/prosody/conf.d/meet.example.com.cfg.lua"));
    assert_eq!(f.read("/etc/prosody/certs/meet.example.com.crt"), cert);
    let dropin = f.read("/etc/systemd/system/rocketchat.service.d/appliance.conf");
    assert!(dropin.contains("Environment=\"ROOT_URL=https://meet.example.com:3000/\"\n"));
    assert!(dropin.contains("Environment=\"PORT=3001\"\n"));
    assert_eq!(
        f.mode("/etc/systemd/system/rocketchat.service.d/appliance.conf"),
        0o600
    );
    // ufw already lets 3000 in (the image's rule): untouched, and not firstboot's.
    assert_eq!(
        f.read("/etc/ufw/user.rules"),
        include_str!("data/ufw/user.rules")
    );
    let s = state(&f);
    assert_eq!(
        (s.instance_id.as_str(), s.ufw_port, s.jitsi),
        ("i-0001", None, false)
    );
    assert_eq!(s.certificate.mode, "self-signed");
    assert_eq!(f.mode("/etc/appliance/config.yaml"), 0o600);
    assert_eq!(f.mode("/var/lib/appliance/state.json"), 0o600);
    assert_eq!(f.mode("/var/lib/appliance/secrets.json"), 0o600);
    // No staging, backup or journal is left.
    for (path, _) in snapshot(&f) {
        assert!(
            !path.contains(".firstboot-") && !path.contains("apply.journal"),
            "{path}"
        );
    }
}

#[test]
fn a_second_apply_changes_nothing_and_restarts_nothing() {
    for flavor in [Flavor::Debian, Flavor::Jitsi] {
        let f = Fixture::new(flavor);
        f.set_user_data(MINIMAL);
        f.apply();
        let before = snapshot(&f);
        let (outcome, steps) = f.apply();
        assert!(matches!(outcome, Outcome::UpToDate { .. }), "{outcome:?}");
        assert!(steps.is_empty());
        assert_same(&snapshot(&f), &before);
        // reconfigure with the same configuration: applied, and still nothing changes (the
        // self-signed certificate, the secrets and the prosody accounts are kept).
        let (outcome, steps) = f.reconfigure();
        assert_eq!(changed(&outcome), Vec::<String>::new());
        assert!(steps.is_empty(), "{steps:?}");
        assert_same(&snapshot(&f), &before);
    }
}

#[test]
fn jitsi_is_moved_off_the_placeholder_domain_with_fresh_secrets() {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data(MINIMAL);
    let (_, steps) = f.apply();
    assert_eq!(
        steps,
        [
            "nginx -t -q",
            "hostname meet.example.com",
            "systemctl daemon-reload",
            "update-ca-certificates --fresh",
            "systemctl try-restart prosody.service",
            "systemctl try-restart jicofo.service",
            "systemctl try-restart jitsi-videobridge2.service",
            "systemctl try-restart rocketchat.service",
            // coturn: its configuration with this instance's secret (issue 13).
            "systemctl try-restart coturn.service",
            "systemctl try-reload-or-restart nginx.service",
        ]
    );
    // Nothing names the placeholder any more, in its content or its name.
    for (path, content) in snapshot(&f) {
        assert!(
            !path.contains(PLACEHOLDER) && !content.contains(PLACEHOLDER),
            "{path} still names the placeholder"
        );
        for old in ["OldTurnSecret", "OldFocusPassword", "OldJvbSecret"] {
            assert!(!content.contains(old), "{path} holds {old}");
        }
    }
    let d = "meet.example.com";
    for path in [
        format!("/etc/jitsi/meet/{d}-config.js"),
        format!("/etc/prosody/conf.d/{d}.cfg.lua"),
        format!("/etc/prosody/certs/auth.{d}.crt"),
        format!("/usr/local/share/ca-certificates/auth.{d}.crt"),
        "/var/lib/prosody/auth%2emeet%2eexample%2ecom/accounts/focus.dat".into(),
        "/var/lib/prosody/auth%2emeet%2eexample%2ecom/accounts/jvb.dat".into(),
        "/var/lib/prosody/auth%2emeet%2eexample%2ecom/roster/focus.dat".into(),
    ] {
        assert!(f.exists(&path), "{path}");
    }
    let secrets: serde_json::Value =
        serde_json::from_str(&f.read("/var/lib/appliance/secrets.json")).unwrap();
    let focus = secrets["focus_password"].as_str().unwrap();
    let jvb = secrets["jvb_password"].as_str().unwrap();
    assert!(f.read("/etc/jitsi/jicofo/jicofo.conf").contains(focus));
    assert!(f
        .read("/etc/jitsi/videobridge/sip-communicator.properties")
        .contains(jvb));
    let passwords = f.read("/var/cache/debconf/passwords.dat");
    assert!(passwords.contains(&format!(
        "Template: jicofo/jicofo-authpassword\nValue: {focus}\n"
    )));
    assert!(passwords.contains(&format!(
        "Template: jitsi-videobridge/jvbsecret\nValue: {jvb}\n"
    )));
    assert_eq!(f.mode("/var/cache/debconf/passwords.dat"), 0o600);
    assert!(f
        .read("/var/cache/debconf/config.dat")
        .contains("Template: jitsi-videobridge/jvb-hostname\nValue: meet.example.com\n"));
    let account = f.read("/var/lib/prosody/auth%2emeet%2eexample%2ecom/accounts/focus.dat");
    assert!(firstboot::plan::prosody::account_matches(&account, focus));
    assert!(!account.contains(focus), "the password is stored hashed");
    assert!(state(&f).jitsi);
}

#[test]
fn a_new_instance_id_regenerates_the_secrets() {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data(MINIMAL);
    f.apply();
    let secrets = f.read("/var/lib/appliance/secrets.json");
    let key = f.read("/etc/ssl/private/meet.example.com.key");
    let jicofo = f.read("/etc/jitsi/jicofo/jicofo.conf");
    f.set_instance("i-0002");
    let (outcome, steps) = f.apply();
    assert!(matches!(outcome, Outcome::Applied { .. }));
    assert_ne!(f.read("/var/lib/appliance/secrets.json"), secrets);
    assert_ne!(f.read("/etc/ssl/private/meet.example.com.key"), key);
    assert_ne!(f.read("/etc/jitsi/jicofo/jicofo.conf"), jicofo);
    assert_eq!(state(&f).instance_id, "i-0002");
    assert!(steps.contains(&"systemctl try-restart jicofo.service".to_owned()));
    // The host name did not change: not set again.
    assert!(
        !steps.iter().any(|s| s.starts_with("hostname")),
        "{steps:?}"
    );
}

#[test]
fn reconfigure_applies_edits_of_config_yaml_and_moves_the_ufw_port() {
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data(MINIMAL);
    f.apply();
    assert!(!f.read("/etc/appliance/config.yaml").contains("root_url"));
    // config.yaml wins over user-data on a configured instance.
    let text = f.read("/etc/appliance/config.yaml");
    f.write_mode(
        "/etc/appliance/config.yaml",
        &format!("{text}root_url: https://meet.example.com:8443/\n"),
        0o600,
    );
    let (_, steps) = f.reconfigure();
    assert!(steps.contains(&"ufw reload".to_owned()), "{steps:?}");
    let rules = f.read("/etc/ufw/user.rules");
    assert!(rules.contains("### tuple ### allow tcp 8443 0.0.0.0/0 any 0.0.0.0/0 in comment="));
    assert!(f
        .read("/etc/ufw/user6.rules")
        .contains("-A ufw6-user-input -p tcp --dport 8443 -j ACCEPT"));
    assert_eq!(state(&f).ufw_port, Some(8443));
    assert_eq!(state(&f).rocketchat_port, 3000);
    assert!(f
        .read("/etc/nginx/sites-available/appliance.conf")
        .contains("listen 8443 ssl;"));
    // Moved again: the old rule goes, the new one comes.
    config_yaml_with(&f, ":8443/", ":9443/");
    f.reconfigure();
    let rules = f.read("/etc/ufw/user.rules");
    assert!(!rules.contains(" 8443 ") && rules.contains("--dport 9443 "));
    assert_eq!(state(&f).ufw_port, Some(9443));
    // Back to the image's own port 3000: firstboot's rule goes, the image's stays.
    config_yaml_with(&f, "root_url: \"https://meet.example.com:9443/\"\n", "");
    f.reconfigure();
    assert_eq!(
        f.read("/etc/ufw/user.rules"),
        include_str!("data/ufw/user.rules")
    );
    assert_eq!(
        f.read("/etc/ufw/user6.rules"),
        include_str!("data/ufw/user6.rules")
    );
    assert_eq!(state(&f).ufw_port, None);
}

#[test]
fn a_new_dns_name_removes_the_old_names_files() {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data(MINIMAL);
    f.apply();
    config_yaml_with(&f, "meet.example.com", "video.example.org");
    f.reconfigure();
    for (path, content) in snapshot(&f) {
        // prosody's data directories of the old host are left; the accounts in them go.
        if path.starts_with("/var/lib/cloud/") || content.starts_with("dir ") {
            continue;
        }
        assert!(
            !path.contains("meet.example.com") && !path.contains("meet%2eexample"),
            "{path}"
        );
        assert!(!content.contains("meet.example.com"), "{path}");
    }
    assert_eq!(f.read("/etc/hostname"), "video.example.org\n");
    assert!(f.exists("/etc/ssl/video.example.org.crt"));
}

#[test]
fn each_certificate_mode() {
    // Provided: installed as given (chain leaf first), the key as given.
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["meet.example.com"]);
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data(&with_cert(
        "",
        &format!("{}{}", leaf.pem, ca.pem),
        &leaf.key_pem,
    ));
    f.apply();
    let cert = f.read("/etc/ssl/meet.example.com.crt");
    assert_eq!(
        firstboot::input::cert::CertificateChain::parse(&cert)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        cert.replace('\r', ""),
        format!("{}{}", leaf.pem, ca.pem).replace('\r', "")
    );
    assert_eq!(
        f.read("/etc/ssl/private/meet.example.com.key").trim(),
        leaf.key_pem.trim()
    );
    let s = state(&f);
    assert_eq!(s.certificate.mode, "provided");
    assert_eq!(s.certificate.not_after, 2_208_988_800); // 2040-01-01
    let config = f.read("/etc/appliance/config.yaml");
    assert!(config.contains("  key: |\n    -----BEGIN PRIVATE KEY-----\n"));
    // The effective config.yaml reads back as the same configuration.
    assert!(matches!(f.apply().0, Outcome::UpToDate { .. }));

    // Provided, then self-signed: the user's certificate is not kept.
    f.write_mode(
        "/etc/appliance/config.yaml",
        "dns_name: meet.example.com\ncertificate: {}\n",
        0o600,
    );
    f.set_user_data(MINIMAL);
    f.reconfigure();
    assert_ne!(f.read("/etc/ssl/meet.example.com.crt"), cert);
    assert_eq!(state(&f).certificate.mode, "self-signed");

    // Let's Encrypt: self-signed for every served name until the ACME client's turn.
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data(
        "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  \
         root_url: https://chat.example.com/\n  \
         certificate: {letsencrypt: {email: ops@example.com}}\n",
    );
    f.apply();
    let s = state(&f);
    assert_eq!(s.certificate.mode, "letsencrypt");
    let acme = s.certificate.acme.unwrap();
    assert_eq!(
        (acme.email.as_str(), acme.status.as_str()),
        ("ops@example.com", "pending")
    );
    let chain =
        firstboot::input::cert::CertificateChain::parse(&f.read("/etc/ssl/meet.example.com.crt"))
            .unwrap();
    assert_eq!(chain.leaf_names, ["meet.example.com", "chat.example.com"]);
    let site = f.read("/etc/nginx/sites-available/appliance.conf");
    assert!(site.contains("server_name meet.example.com chat.example.com;"));
    assert!(site.contains("root /var/www/acme;"));
    // The ACME client's progress stands while its certificate is kept...
    let text = f.read("/var/lib/appliance/state.json");
    f.write_mode(
        "/var/lib/appliance/state.json",
        &text.replace("\"pending\"", "\"valid\""),
        0o600,
    );
    f.reconfigure();
    assert_eq!(state(&f).certificate.acme.unwrap().status, "valid");
    // ... and starts again for a certificate that must be made anew.
    config_yaml_with(&f, "https://chat.example.com/", "https://talk.example.com/");
    f.reconfigure();
    assert_eq!(state(&f).certificate.acme.unwrap().status, "pending");
}

#[test]
fn a_failed_nginx_check_restores_every_file() {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data(MINIMAL);
    f.apply();
    let before = snapshot(&f);
    config_yaml_with(
        &f,
        "dns_name: \"meet.example.com\"",
        "dns_name: \"video.example.org\"",
    );
    let edited = snapshot(&f);
    let mut recorder = Recorder::failing("nginx -t -q");
    let error = f.apply_with(true, Some(&mut recorder)).unwrap_err();
    assert!(matches!(error, ApplyError::RolledBack { .. }));
    assert_eq!(
        error.to_string(),
        "nginx -t -q: failed (as the test asked); the previous configuration was restored"
    );
    // The check runs first: nothing was restarted, so nothing is restarted again.
    assert_eq!(recorder.lines(), ["nginx -t -q"]);
    assert_same(&snapshot(&f), &edited);
    assert_ne!(snapshot(&f), before);
    assert_eq!(state(&f).dns_name, "meet.example.com");
}

#[test]
fn a_failed_restart_restores_and_restarts_with_the_old_files() {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data(MINIMAL);
    f.apply();
    config_yaml_with(
        &f,
        "dns_name: \"meet.example.com\"",
        "dns_name: \"video.example.org\"",
    );
    let edited = snapshot(&f);
    let mut recorder = Recorder::failing("systemctl try-restart jicofo.service");
    let error = f.apply_with(true, Some(&mut recorder)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "systemctl try-restart jicofo.service: failed (as the test asked); \
         the previous configuration was restored (but: systemctl try-restart jicofo.service: \
         failed (as the test asked))"
    );
    assert_eq!(
        recorder.lines(),
        [
            // With the new files, up to the failure.
            "nginx -t -q",
            "hostname video.example.org",
            "systemctl daemon-reload",
            "update-ca-certificates --fresh",
            "systemctl try-restart prosody.service",
            "systemctl try-restart jicofo.service",
            // The same again with the restored files (the check left out).
            "hostname meet.example.com",
            "systemctl daemon-reload",
            "update-ca-certificates --fresh",
            "systemctl try-restart prosody.service",
            "systemctl try-restart jicofo.service",
        ]
    );
    assert_same(&snapshot(&f), &edited);
}

#[test]
fn invalid_user_data_touches_nothing() {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data("#cloud-config\nappliance:\n  dns_name: meet_example\n");
    let before = snapshot(&f);
    let error = f.apply_with(false, Some(&mut Recorder::new())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "appliance.dns_name: \"meet_example\" is not a valid DNS name: it holds '_': only \
         letters, digits, '-' and '.' are allowed"
    );
    assert_same(&snapshot(&f), &before);
    // What `status` will show (see a_failed_run_is_shown_by_status_until_a_run_succeeds).
    assert!(f
        .read("/var/lib/appliance/last-failure")
        .contains("\nappliance.dns_name: \"meet_example\" is not a valid DNS name"));
}

#[test]
fn a_failed_run_is_shown_by_status_until_a_run_succeeds() {
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data(MINIMAL);
    apply_binary_ok(&f);
    let good = String::from_utf8_lossy(&f.run_binary(&["status"], &[]).stdout).into_owned();

    // A new instance with bad user-data: one line per problem on stderr, the same lines in
    // the record, which status shows below the configuration still in force.
    f.set_instance("i-0002");
    f.set_user_data("#cloud-config\nappliance:\n  dns_name: meet_example\n");
    let before = snapshot(&f);
    let out = f.run_binary(&["apply", "--no-restart"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let dns_error = "appliance.dns_name: \"meet_example\" is not a valid DNS name: it holds '_': \
                     only letters, digits, '-' and '.' are allowed";
    let kept = "nothing was changed; the machine keeps its last good configuration";
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: {dns_error}\nerror: {kept}\n")
    );
    assert_same(&snapshot(&f), &before);
    assert_eq!(
        f.read("/var/lib/appliance/last-failure"),
        format!("failed on 2030-01-01 00:00 UTC\n{dns_error}\n{kept}\n")
    );
    let status = String::from_utf8_lossy(&f.run_binary(&["status"], &[]).stdout).into_owned();
    assert_eq!(
        status,
        format!(
            "{}\nlast run:     failed on 2030-01-01 00:00 UTC, the configuration above stays in force\n  \
             error: {dns_error}\n  error: {kept}\n",
            good.trim_end()
        )
    );

    // Fixed: the next run applies, and the record is gone.
    f.set_user_data(MINIMAL);
    apply_binary_ok(&f);
    assert!(!f.path("/var/lib/appliance/last-failure").exists());
    let status = String::from_utf8_lossy(&f.run_binary(&["status"], &[]).stdout).into_owned();
    assert!(!status.contains("last run"), "{status}");
    assert!(status.starts_with("instance id:  i-0002\n"), "{status}");
}

#[test]
fn status_and_the_binary() {
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data(MINIMAL);
    let out = f.run_binary(&["status"], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "not applied yet\n");
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = log.path().to_str().unwrap();
    let out = f.run_binary(
        &["apply"],
        &[("APPLIANCE_FIRSTBOOT_FAKE_SERVICES", log_path)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(log.path()).unwrap(),
        "nginx -t -q\nhostname meet.example.com\nsystemctl daemon-reload\n\
         systemctl try-restart prosody.service\nsystemctl try-reload-or-restart nginx.service\n"
    );
    let out = f.run_binary(&["status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let hash = &state(&f).config_sha256;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "instance id:  i-0001");
    assert_eq!(lines[1], format!("config hash:  sha256:{hash}"));
    assert_eq!(lines[2], "applied at:   2030-01-01 00:00 UTC");
    assert_eq!(lines[3], "dns_name:     meet.example.com");
    assert_eq!(lines[4], "root_url:     https://meet.example.com:3000/");
    assert_eq!(lines[5], "served names: meet.example.com");
    assert_eq!(
        lines[6],
        "certificate:  self-signed, valid until 2039-12-30 00:00 UTC, /etc/ssl/meet.example.com.crt"
    );
    assert_eq!(lines[7], "rocket.chat:  127.0.0.1:3001");
    assert_eq!(lines[8], "ufw:          no port opened by firstboot");
    assert_eq!(lines[9], "jitsi:        not installed");
    // --no-restart: files written, nothing run.
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data(MINIMAL);
    let out = f.run_binary(
        &["apply", "--no-restart"],
        &[("APPLIANCE_FIRSTBOOT_FAKE_SERVICES", log_path)],
    );
    assert!(out.status.success());
    assert_eq!(f.read("/etc/hostname"), "meet.example.com\n");
    assert_eq!(
        std::fs::read_to_string(log.path()).unwrap().lines().count(),
        5
    );
    // A bad value: one line naming the key, then that nothing changed; exit 1.
    f.set_user_data(
        "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  root_url: ftp://x/\n",
    );
    let out = f.run_binary(&["reconfigure"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: appliance.root_url: must start with https:// or http://\n\
         error: nothing was changed; the machine keeps its last good configuration\n"
    );
}

/// A boot with the same instance and configuration, in the slowest configuration to check
/// (Jitsi, a provided RSA chain, Rocket.Chat on another name): the binary says "up to date",
/// changes no file and runs nothing, however often it runs. How long it takes is measured by
/// scripts/bench-firstboot (BENCHMARKS.md), which takes this test's tree before the first
/// apply from APPLIANCE_FIRSTBOOT_BENCH_TREE=DIR.
#[test]
fn the_no_op_boot_reports_up_to_date_and_changes_nothing() {
    let f = Fixture::new(Flavor::Jitsi);
    let user_data = with_cert(
        "",
        include_str!("data/rsa.crt"),
        include_str!("data/rsa-pkcs1.key"),
    );
    f.set_user_data(&user_data.replace(
        "meet.example.com\n",
        "meet.example.com\n  root_url: https://chat.example.com/\n",
    ));
    if let Some(dir) = std::env::var_os("APPLIANCE_FIRSTBOOT_BENCH_TREE") {
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(f.root().join("."))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(copied.success(), "copying the tree to {dir:?}");
    }
    apply_binary_ok(&f);
    let before = snapshot(&f);
    let log = tempfile::NamedTempFile::new().unwrap();
    let services = [(
        "APPLIANCE_FIRSTBOOT_FAKE_SERVICES",
        log.path().to_str().unwrap(),
    )];
    for _ in 0..3 {
        let out = f.run_binary(&["apply"], &services);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.starts_with("up to date: instance i-0001"), "{said}");
        assert_same(&snapshot(&f), &before);
    }
    assert_eq!(std::fs::read_to_string(log.path()).unwrap(), "");
}

#[test]
fn a_port_that_a_service_of_the_appliance_uses_is_refused() {
    // Refused with the other values, whether or not Jitsi is installed, so that `check`
    // says the same.
    for flavor in [Flavor::Jitsi, Flavor::Debian] {
        let f = Fixture::new(flavor);
        f.set_user_data(&format!(
            "{MINIMAL}  root_url: https://meet.example.com:9090/\n"
        ));
        let before = snapshot(&f);
        let error = f.apply_with(false, None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "appliance.root_url: port 9090 is taken: the Jitsi videobridge listens there"
        );
        assert_same(&snapshot(&f), &before);
    }
}

/// When the new name is also an old one (the image's placeholder itself, or a rename from
/// `auth.X` to `X`), the files the plan writes are also files of an old domain: each path is
/// targeted once, written and not removed, and every apply succeeds and keeps them.
#[test]
fn a_path_is_targeted_once_when_the_new_name_is_an_old_one() {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data(&appliance(&format!("  dns_name: {PLACEHOLDER}\n")));
    for i in 0..3 {
        f.set_instance(&format!("i-{i}"));
        f.apply();
        for path in [
            format!("/etc/prosody/certs/{PLACEHOLDER}.crt"),
            format!("/etc/prosody/certs/auth.{PLACEHOLDER}.key"),
            format!("/etc/prosody/conf.avail/{PLACEHOLDER}.cfg.lua"),
            format!("/etc/jitsi/meet/{PLACEHOLDER}-config.js"),
        ] {
            assert!(f.exists(&path), "apply {i}: {path} is gone");
        }
    }

    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data(&appliance("  dns_name: auth.meet.example.com\n"));
    f.apply();
    f.set_user_data(MINIMAL);
    f.set_instance("i-0002");
    f.apply();
    for path in [
        "/etc/prosody/certs/auth.meet.example.com.crt",
        "/etc/prosody/certs/auth.meet.example.com.key",
        "/usr/local/share/ca-certificates/auth.meet.example.com.crt",
    ] {
        assert!(f.exists(path), "{path} is gone after the rename");
    }
}

/// IP mode through the binary: no DNS name, so the (test's) default route address is served;
/// a new address at the next run is applied like a new configuration; a DNS name set in
/// config.yaml and `reconfigure` move everything to the name.
#[test]
fn ip_mode_follows_the_address_until_given_a_name() {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data("#cloud-config\nhostname: bar3-4242\n");
    let run = |args: &[&str], address: &str| {
        let out = f.run_binary(args, &[("APPLIANCE_FIRSTBOOT_TEST_ADDRESS", address)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let leaf_names = |ip: &str| {
        let text = f.read(&format!("/etc/ssl/{ip}.crt"));
        firstboot::input::cert::CertificateChain::parse(&text)
            .unwrap()
            .leaf_names
    };
    let motd = "/var/lib/appliance/motd.d/50-appliance-ip-mode";

    let out = run(&["apply", "--no-restart"], "10.0.2.15");
    assert!(out.starts_with("applied 10.0.2.15 for instance "), "{out}");
    assert_eq!(f.read("/etc/hostname"), "bar3-4242\n");
    assert!(f.read("/etc/hosts").contains("\n127.0.1.1\tbar3-4242\n"));
    assert_eq!(leaf_names("10.0.2.15"), ["10.0.2.15"]);
    assert!(f.exists("/etc/prosody/conf.avail/10.0.2.15.cfg.lua"));
    assert!(f.exists("/etc/prosody/certs/auth.10.0.2.15.crt"));
    assert!(f
        .read("/etc/jitsi/meet/10.0.2.15-config.js")
        .contains("domain: \"10.0.2.15\","));
    assert!(f
        .read("/etc/systemd/system/rocketchat.service.d/appliance.conf")
        .contains("ROOT_URL=https://10.0.2.15:3000/"));
    let yaml = f.read("/etc/appliance/config.yaml");
    assert!(!yaml.contains("\ndns_name:"), "{yaml}");
    assert!(
        yaml.contains("# No dns_name: IP mode, served on 10.0.2.15."),
        "{yaml}"
    );
    assert!(f
        .read(motd)
        .starts_with("This appliance has no DNS name: it runs on its IP address 10.0.2.15 "));
    let status = run(&["status"], "10.0.2.15");
    assert!(
        status.contains("dns_name:     none: IP mode, served on 10.0.2.15\n              to give it a name: set dns_name in /etc/appliance/config.yaml and run `appliance-firstboot reconfigure`\n"),
        "{status}"
    );

    // The same address: nothing to do; a new one: applied, the old address's files gone.
    assert!(run(&["apply", "--no-restart"], "10.0.2.15").starts_with("up to date: "));
    let out = run(&["apply", "--no-restart"], "10.0.2.16");
    assert!(out.starts_with("applied 10.0.2.16 for instance "), "{out}");
    assert_eq!(leaf_names("10.0.2.16"), ["10.0.2.16"]);
    assert!(!f.exists("/etc/ssl/10.0.2.15.crt"));
    assert!(!f.exists("/etc/prosody/conf.avail/10.0.2.15.cfg.lua"));

    // A name given later.
    let yaml = f.read("/etc/appliance/config.yaml");
    f.write_mode(
        "/etc/appliance/config.yaml",
        &format!("{yaml}dns_name: \"meet.example.com\"\n"),
        0o600,
    );
    let out = run(&["reconfigure", "--no-restart"], "10.0.2.16");
    assert!(
        out.starts_with("applied meet.example.com for instance "),
        "{out}"
    );
    assert_eq!(f.read("/etc/hostname"), "bar3-4242\n");
    assert!(f
        .read("/etc/hosts")
        .contains("\n127.0.1.1\tmeet.example.com meet bar3-4242\n"));
    assert!(f.exists("/etc/ssl/meet.example.com.crt"));
    assert!(!f.exists("/etc/ssl/10.0.2.16.crt"));
    assert!(!f.exists("/etc/prosody/conf.avail/10.0.2.16.cfg.lua"));
    assert!(!f.exists(motd));
    assert!(f
        .read("/etc/systemd/system/rocketchat.service.d/appliance.conf")
        .contains("ROOT_URL=https://meet.example.com:3000/"));
    let status = run(&["status"], "10.0.2.16");
    assert!(
        status.contains("dns_name:     meet.example.com\n"),
        "{status}"
    );
}

/// Rocket.Chat's credentials (the administrator's password, MongoDB's user and password) are
/// not `Environment=` lines of the drop-in: systemd shows those to any local user (`systemctl
/// show rocketchat`). They are in an `EnvironmentFile=` of mode 0600, which systemd reads as
/// root and shows only by name; `sh` reads the same file back to the exact values.
#[test]
fn rocketchat_credentials_are_in_a_root_only_environment_file() {
    let f = Fixture::new(Flavor::Jitsi);
    let password = r#"p%h $HOME `id` "q" \ 'x' #1"#;
    f.set_user_data(&format!(
        "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  \
         mongo_url: mongodb://rc:s%40cret@db1:27017/rocketchat?replicaSet=rs0\n  \
         admin: {{username: boss, password: '{}', email: ops@example.com}}\n",
        password.replace('\'', "''")
    ));
    f.apply();
    let dropin = f.read("/etc/systemd/system/rocketchat.service.d/appliance.conf");
    for secret in [
        "ADMIN_PASS",
        "p%%h",
        "s%40cret",
        "s%%40cret",
        "MONGO_URL",
        "rc:",
    ] {
        assert!(
            !dropin.contains(secret),
            "{secret} in the drop-in:\n{dropin}"
        );
    }
    assert!(
        dropin.contains("\nEnvironmentFile=/etc/appliance/rocketchat.env\n"),
        "{dropin}"
    );
    assert!(dropin.contains("Environment=\"ROOT_URL=https://meet.example.com:3000/\"\n"));
    let env = "/etc/appliance/rocketchat.env";
    assert_eq!(f.mode(env), 0o600);
    let meta = std::fs::metadata(f.path(env)).unwrap();
    if std::fs::metadata(f.root()).unwrap().uid() == 0 {
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    }
    // The values as a reader of the file gets them (the quoting is the same for sh and for
    // systemd's EnvironmentFile= parser, old and new).
    let out = std::process::Command::new("env")
        .args(["-i", "sh", "-c"])
        .arg(
            "set -a; . \"$1\"; printf '%s\\n' \"$ADMIN_USERNAME\" \"$ADMIN_PASS\" \
             \"$ADMIN_EMAIL\" \"$MONGO_URL\" \"$MONGO_OPLOG_URL\"",
        )
        .args(["sh", f.path(env).to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "boss\n{password}\nops@example.com\n\
             mongodb://rc:s%40cret@db1:27017/rocketchat?replicaSet=rs0\n\
             mongodb://rc:s%40cret@db1:27017/local?replicaSet=rs0&authSource=rocketchat\n"
        )
    );
}

/// The Rocket.Chat Cloud registration token is `REG_TOKEN` in the same root-only environment
/// file, read back exactly by sh (as by systemd); nowhere else but config.yaml (0600) and the
/// user-data itself. A new
/// token is a new configuration (Rocket.Chat restarted with it); without one, no line.
#[test]
fn registration_token_is_reg_token_in_the_environment_file_only() {
    let f = Fixture::new(Flavor::Jitsi);
    let env = "/etc/appliance/rocketchat.env";
    let token = "rc-Tok3n:x/y+z=$HOME%h#!&*?";
    f.set_user_data(&format!(
        "{MINIMAL}  rocketchat_registration_token: '{token}'\n"
    ));
    f.apply();
    let text = f.read(env);
    assert_eq!(f.mode(env), 0o600);
    assert_eq!(text.matches("REG_TOKEN=").count(), 1, "{text}");
    assert!(
        text.ends_with("\nREG_TOKEN=\"rc-Tok3n:x/y+z=\\$HOME%h#!&*?\"\n"),
        "{text}"
    );
    let reg_token = |f: &Fixture| {
        let out = std::process::Command::new("env")
            .args(["-i", "sh", "-c"])
            .arg("set -a; . \"$1\"; printf '%s' \"${REG_TOKEN-unset}\"")
            .args(["sh", f.path(env).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(reg_token(&f), token);
    assert_eq!(f.mode("/etc/appliance/config.yaml"), 0o600);
    let keep = [
        env,
        "/etc/appliance/config.yaml",
        "/var/lib/cloud/instance/user-data.txt",
    ];
    for (path, content) in f.snapshot(&|p| keep.contains(&p)) {
        assert!(!content.contains("Tok3n"), "the token in {path}");
    }
    // A new token in config.yaml: a new hash, Rocket.Chat restarted with the new value.
    let hash = state(&f).config_sha256;
    config_yaml_with(&f, "Tok3n", "Tok4n");
    let (_, steps) = f.reconfigure();
    assert!(
        steps.contains(&"systemctl try-restart rocketchat.service".to_owned()),
        "{steps:?}"
    );
    assert_ne!(state(&f).config_sha256, hash);
    assert_eq!(reg_token(&f), token.replace("Tok3n", "Tok4n"));
    // Taken out of both sources (config.yaml alone is merged key by key with the user-data,
    // which would give it again): no REG_TOKEN line.
    f.set_user_data(MINIMAL);
    let line = format!(
        "rocketchat_registration_token: \"{}\"\n",
        token.replace("Tok3n", "Tok4n")
    );
    config_yaml_with(&f, &line, "");
    f.reconfigure();
    assert!(!f.read(env).contains("REG_TOKEN"), "{}", f.read(env));
    assert_eq!(reg_token(&f), "unset");
}

/// Without a registration token in the user-data, the environment file has no REG_TOKEN.
#[test]
fn no_registration_token_no_reg_token_line() {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data(MINIMAL);
    f.apply();
    let text = f.read("/etc/appliance/rocketchat.env");
    assert!(text.contains("\nMONGO_URL="), "{text}");
    assert!(!text.contains("REG_TOKEN"), "{text}");
}

/// `--root`: a tree whose /etc/nginx and /etc/ssl are absolute links (to directories that
/// exist on the host too) is written inside the tree, where the links lead once the tree is
/// booted; nothing is written to the host's directories.
#[test]
fn links_in_the_tree_are_resolved_inside_the_root() {
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data(MINIMAL);
    // The tree's `dir` moved to where a host directory is, and an absolute link to it left.
    let relocate = |dir: &str| {
        let host = tempfile::tempdir().unwrap();
        let inside = f.path(host.path().to_str().unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::rename(f.path(dir), &inside).unwrap();
        std::os::unix::fs::symlink(host.path(), f.path(dir)).unwrap();
        (host, inside)
    };
    let (nginx_host, nginx) = relocate("/etc/nginx");
    let (ssl_host, ssl) = relocate("/etc/ssl");
    apply_binary_ok(&f);
    for host in [&nginx_host, &ssl_host] {
        let written: Vec<_> = std::fs::read_dir(host.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            written.is_empty(),
            "written to the host's {}: {written:?}",
            host.path().display()
        );
    }
    let site = std::fs::read_to_string(nginx.join("sites-available/appliance.conf")).unwrap();
    assert!(site.contains("server_name meet.example.com"), "{site}");
    assert_eq!(
        std::fs::read_link(nginx.join("sites-enabled/appliance.conf")).unwrap(),
        std::path::Path::new("/etc/nginx/sites-available/appliance.conf")
    );
    let cert = std::fs::read_to_string(ssl.join("meet.example.com.crt")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    assert!(ssl.join("private/meet.example.com.key").is_file());
}
