//! Good user-data in every form cloud-init takes, each certificate mode, both sources.

mod common;

use std::time::Instant;

use common::*;
use firstboot::input::root_url::Scheme;
use firstboot::{CertificateMode, Config, Precedence, Sources};

const PLAIN: &str = "#cloud-config\nappliance:\n  dns_name: Meet.Example.com.\n";

fn dns(config: &Config) -> &str {
    config.dns_name.as_str()
}

#[test]
fn plain_minimal_gets_the_defaults() {
    let config = check(PLAIN.as_bytes(), None).unwrap();
    assert_eq!(dns(&config), "meet.example.com");
    assert_eq!(
        config.root_url.to_string(),
        "https://meet.example.com:3000/"
    );
    assert_eq!(config.root_url.scheme, Scheme::Https);
    assert_eq!(
        (config.root_url.port, config.root_url.path.as_str()),
        (3000, "/")
    );
    assert_eq!(config.certificate, CertificateMode::SelfSigned);
    assert_eq!((config.admin, config.mongo_url), (None, None));
}

#[test]
fn plain_with_every_key() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["meet.example.com", "chat.example.com"]);
    let user_data = with_cert(
        "  root_url: http://Chat.example.com:8081/chat/\n  \
         admin: {username: ops.admin, password: \"correct horse battery\", email: ops@example.com}\n  \
         mongo_url: mongodb://rc:s%40cret@db1:27017,db2/rocketchat?replicaSet=rs0&authSource=admin\n",
        &format!("{}{}", leaf.pem, ca.pem),
        &leaf.key_pem,
    );
    let config = check(user_data.as_bytes(), None).unwrap();
    assert_eq!(
        config.root_url.to_string(),
        "http://chat.example.com:8081/chat/"
    );
    let names: Vec<&str> = config.served_names().iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["meet.example.com", "chat.example.com"]);
    let admin = config.admin.as_ref().unwrap();
    assert_eq!(admin.username, "ops.admin");
    assert_eq!(admin.password.expose(), "correct horse battery");
    assert_eq!(admin.email.as_str(), "ops@example.com");
    let mongo = config.mongo_url.as_ref().unwrap();
    assert_eq!(mongo.hosts, ["db1:27017", "db2"]);
    assert_eq!(mongo.database, "rocketchat");
    let CertificateMode::Provided { chain, key } = &config.certificate else {
        panic!("{:?}", config.certificate)
    };
    assert_eq!(chain.len(), 2);
    assert_eq!(
        chain.to_pem(),
        format!("{}{}", leaf.pem, ca.pem).replace("\r\n", "\n")
    );
    assert_eq!(key.expose(), leaf.key_pem.replace("\r\n", "\n"));
    // Nothing secret in what people see.
    for shown in [format!("{config}"), format!("{config:?}")] {
        for secret in ["correct horse", "s%40cret", "PRIVATE KEY"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    assert_eq!(
        config.to_string(),
        "dns_name:    meet.example.com\n\
         root_url:    http://chat.example.com:8081/chat/\n\
         certificate: provided, 2 certificate(s), leaf valid until 2040-01-01 00:00 UTC, names meet.example.com, chat.example.com\n\
         admin:       ops.admin <ops@example.com>\n\
         mongo_url:   mongodb://rc:****@db1:27017,db2/rocketchat?replicaSet=rs0&authSource=admin"
    );
}

#[test]
fn crlf_line_ends() {
    let config = check(PLAIN.replace('\n', "\r\n").as_bytes(), None).unwrap();
    assert_eq!(dns(&config), "meet.example.com");
}

#[test]
fn multipart_later_part_wins_key_by_key() {
    let first = b"#cloud-config\nfqdn: old.example.com\nappliance:\n  dns_name: old.example.com\n  root_url: https://chat.example.com/\n  admin: {username: a, password: correct-horse-battery, email: a@example.com}\n";
    let second = b"#cloud-config\nappliance:\n  dns_name: meet.example.com\n  admin: {}\n";
    let user_data = mime(&[
        Part("text/cloud-config; charset=\"us-ascii\"", "7bit", first),
        Part("text/x-shellscript", "7bit", b"#!/bin/sh\necho hello\n"),
        Part("text/cloud-config", "base64", second),
    ]);
    let sources = Sources::parse(&user_data, None).unwrap();
    assert_eq!(sources.user_data.cloud_config_parts, 2);
    assert_eq!(sources.user_data.ignored_parts, ["text/x-shellscript"]);
    let config = sources.validate(Precedence::UserData, now()).unwrap();
    assert_eq!(dns(&config), "meet.example.com");
    assert_eq!(config.root_url.to_string(), "https://chat.example.com/");
    assert_eq!(config.admin, None);
}

#[test]
fn multipart_parts_typed_by_their_first_line() {
    let user_data = mime(&[
        Part(
            "text/plain",
            "7bit",
            b"  #Cloud-Config\nappliance: {dns_name: meet.example.com}",
        ),
        Part(
            "text/x-shellscript",
            "7bit",
            b"#cloud-config\nappliance: {root_url: https://chat.example.com/}",
        ),
        Part(
            "text/plain",
            "7bit",
            b"## template: jinja\n#cloud-config\nappliance: {dns_name: x}",
        ),
        Part("application/octet-stream", "base64", b"\x00\x01"),
    ]);
    let sources = Sources::parse(&user_data, None).unwrap();
    assert_eq!(
        sources.user_data.ignored_parts,
        ["text/jinja2", "application/octet-stream"]
    );
    let config = sources.validate(Precedence::UserData, now()).unwrap();
    assert_eq!(dns(&config), "meet.example.com");
    assert_eq!(config.root_url.to_string(), "https://chat.example.com/");
}

#[test]
fn gzip_plain() {
    let config = check(&gzip(PLAIN.as_bytes()), None).unwrap();
    assert_eq!(dns(&config), "meet.example.com");
}

#[test]
fn gzip_multipart() {
    let inner = mime(&[Part("text/cloud-config", "7bit", PLAIN.as_bytes())]);
    let config = check(&gzip(&inner), None).unwrap();
    assert_eq!(dns(&config), "meet.example.com");
}

#[test]
fn multipart_with_a_gzip_part() {
    let user_data = mime(&[
        Part(
            "text/cloud-config",
            "7bit",
            b"#cloud-config\nappliance: {dns_name: old.example.com}",
        ),
        Part("application/x-gzip", "base64", &gzip(PLAIN.as_bytes())),
    ]);
    let config = check(&user_data, None).unwrap();
    assert_eq!(dns(&config), "meet.example.com");
}

#[test]
fn fqdn_then_hostname_stand_in_for_dns_name() {
    let config = check(
        b"#cloud-config\nhostname: meet\nfqdn: meet.example.com\n",
        None,
    )
    .unwrap();
    assert_eq!(dns(&config), "meet.example.com");
    let config = check(b"#cloud-config\nhostname: meet.example.org\n", None).unwrap();
    assert_eq!(dns(&config), "meet.example.org");
    let user_data =
        b"#cloud-config\nfqdn: host.example.com\nappliance: {dns_name: meet.example.com}\n";
    assert_eq!(dns(&check(user_data, None).unwrap()), "meet.example.com");
}

/// Which name is served and which host name is set, from the user-data and each cloud's
/// instance data (tests/data/instance-data); 10.0.2.15 stands for the default route's address.
#[test]
fn ip_mode_name_and_address_from_each_cloud() {
    let fallback = "10.0.2.15";
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        // (instance data, user-data, served, host name)
        (
            "ec2",
            "",
            "3.89.187.177",
            Some("ip-172-31-81-43.ec2.internal"),
        ),
        (
            "ec2",
            "#cloud-config\nhostname: bar3-4242\n",
            "3.89.187.177",
            Some("bar3-4242"),
        ),
        (
            "ec2",
            "#cloud-config\nfqdn: meet.example.com\nhostname: meet\n",
            "meet.example.com",
            Some("meet.example.com"),
        ),
        (
            "ec2",
            "#cloud-config\nhostname: box\nappliance: {dns_name: meet.example.com}\n",
            "meet.example.com",
            Some("box"),
        ),
        (
            "ec2-private",
            "",
            fallback,
            Some("ip-10-1-2-3.ec2.internal"),
        ),
        ("azure", "", "104.46.124.81", Some("meet-vm")),
        (
            "gce",
            "",
            fallback,
            Some("meet-1.us-central1-a.c.my-project.internal"),
        ),
        (
            "nocloud",
            "#cloud-config\nhostname: bar3-4242\n",
            fallback,
            Some("bar3-4242"),
        ),
        (
            "nocloud",
            "#cloud-config\nfqdn: single\n",
            fallback,
            Some("single"),
        ),
        ("none", "", fallback, None),
        (
            "none",
            "#cloud-config\nappliance: {dns_name: meet.example.com}\n",
            "meet.example.com",
            Some("meet.example.com"),
        ),
    ];
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/instance-data");
    let hooks = firstboot::hooks::TestHooks {
        address: Some(fallback.parse().unwrap()),
        ..Default::default()
    };
    for (cloud, user_data, served, host_name) in cases {
        let root = tempfile::tempdir().unwrap();
        if *cloud != "none" {
            let to = root.path().join(firstboot::input::userdata::INSTANCE_DATA);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(data.join(format!("{cloud}.json")), to).unwrap();
        }
        let machine = firstboot::input::address::Machine::read(root.path(), &hooks);
        let sources = Sources::parse(user_data.as_bytes(), None).unwrap();
        let config = sources
            .validate_on(Precedence::UserData, now(), &machine)
            .unwrap_or_else(|e| panic!("{cloud} {user_data:?}: {e:?}"));
        let what = format!("{cloud}, {user_data:?}");
        assert_eq!(dns(&config), *served, "{what}");
        assert_eq!(config.host_name.as_deref(), *host_name, "{what}");
        let ip_mode = served.parse::<std::net::Ipv4Addr>().is_ok();
        assert_eq!(config.dns_name.address().is_some(), ip_mode, "{what}");
        if ip_mode {
            assert_eq!(
                config.root_url.to_string(),
                format!("https://{served}:3000/")
            );
            assert_eq!(config.certificate, CertificateMode::SelfSigned);
            assert_eq!(config.served_names().len(), 1, "{what}");
        }
    }
}

/// Before launch (`check`), IP mode says it will serve on the instance's address.
#[test]
fn ip_mode_before_launch() {
    let config = check(b"#cloud-config\nhostname: bar3-4242\n", None).unwrap();
    let text = config.to_string();
    assert!(
        text.starts_with("dns_name:    none: IP mode, on the instance's public IPv4 address"),
        "{text}"
    );
    assert!(text.contains("\nhost name:   bar3-4242\n"), "{text}");
    assert!(
        text.contains("\nroot_url:    https://<address>:3000/\n"),
        "{text}"
    );
    // A ROOT_URL on a name is kept, and the certificate is made for it and the address.
    let config = check(
        b"#cloud-config\nappliance: {root_url: 'https://chat.example.com/'}\n",
        None,
    )
    .unwrap();
    assert_eq!(config.root_url.to_string(), "https://chat.example.com/");
    assert!(check(b"", None).is_ok());
}

#[test]
fn config_yaml_alone() {
    let file =
        b"dns_name: meet.example.com\ncertificate:\n  letsencrypt: {email: ops@example.com}\n";
    let config = check(b"", Some(file)).unwrap();
    assert_eq!(dns(&config), "meet.example.com");
    let CertificateMode::LetsEncrypt { email, directory } = &config.certificate else {
        panic!("{:?}", config.certificate)
    };
    assert_eq!(email.as_str(), "ops@example.com");
    assert_eq!(directory, firstboot::acme::LETSENCRYPT);
    // Another CA: staging by name, or any https URL, written back to config.yaml as its URL.
    for (given, url) in [
        ("staging", firstboot::acme::LETSENCRYPT_STAGING),
        ("production", firstboot::acme::LETSENCRYPT),
        (
            "https://ca.example.com:14000/dir",
            "https://ca.example.com:14000/dir",
        ),
    ] {
        let file = format!(
            "dns_name: meet.example.com\ncertificate:\n  letsencrypt: {{email: ops@example.com, directory: \"{given}\"}}\n"
        );
        let config = check(b"", Some(file.as_bytes())).unwrap();
        let CertificateMode::LetsEncrypt { directory, .. } = &config.certificate else {
            panic!("{:?}", config.certificate)
        };
        assert_eq!(directory, url);
        let yaml = firstboot::state::effective_yaml(&config);
        assert_eq!(
            yaml.contains("directory:"),
            url != firstboot::acme::LETSENCRYPT,
            "{yaml}"
        );
        assert_eq!(check(b"", Some(yaml.as_bytes())).unwrap(), config);
    }
}

/// The Rocket.Chat Cloud registration token: taken as given (any printable ASCII but spaces,
/// quotes and backslashes), from either source, kept in the effective configuration, and
/// shown by no summary.
#[test]
fn registration_token_is_kept_and_never_shown() {
    let token = "rc-Tok3n:x/y+z=$%#!&*?";
    let user_data = format!(
        "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  \
         rocketchat_registration_token: '{token}'\n"
    );
    let config = check(user_data.as_bytes(), None).unwrap();
    let given = config.rocketchat_registration_token.as_ref().unwrap();
    assert_eq!(given.expose(), token);
    let shown = config.to_string();
    assert!(
        shown.ends_with(
            "\nmongo_url:   local replica set\n\
             cloud:       registers with Rocket.Chat Cloud (rocketchat_registration_token: redacted)"
        ),
        "{shown}"
    );
    for shown in [shown, format!("{config:?}")] {
        assert!(!shown.contains("Tok3n"), "{shown}");
    }
    // config.yaml keeps it (root only) and reads back to the same configuration.
    let yaml = firstboot::state::effective_yaml(&config);
    assert!(
        yaml.ends_with(&format!("\nrocketchat_registration_token: \"{token}\"\n")),
        "{yaml}"
    );
    assert_eq!(check(b"", Some(yaml.as_bytes())).unwrap(), config);
    // Absent: none, and no line about it.
    let config = check(PLAIN.as_bytes(), None).unwrap();
    assert_eq!(config.rocketchat_registration_token, None);
    assert!(!config.to_string().contains("cloud:"));
    assert!(!firstboot::state::effective_yaml(&config).contains("rocketchat_registration_token"));
}

#[test]
fn precedence_between_user_data_and_config_yaml() {
    let user_data = b"#cloud-config\nfqdn: new.example.com\nappliance:\n  root_url: https://chat.example.com/\n";
    let file = b"dns_name: old.example.com\nroot_url: https://old-chat.example.com/\nmongo_url: mongodb://db/rc\n";
    // A new instance: the user-data (its fqdn included) wins; config.yaml fills the rest.
    let config = check_with(user_data, Some(file), Precedence::UserData).unwrap();
    assert_eq!(dns(&config), "new.example.com");
    assert_eq!(config.root_url.to_string(), "https://chat.example.com/");
    assert_eq!(config.mongo_url.unwrap().to_string(), "mongodb://db/rc");
    // The same instance again, or reconfigure: config.yaml wins.
    let config = check_with(user_data, Some(file), Precedence::ConfigFile).unwrap();
    assert_eq!(dns(&config), "old.example.com");
    assert_eq!(config.root_url.to_string(), "https://old-chat.example.com/");
}

#[test]
fn certificate_modes() {
    let le = "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  certificate: {letsencrypt: {email: ops@example.com}}\n";
    assert!(matches!(
        check(le.as_bytes(), None).unwrap().certificate,
        CertificateMode::LetsEncrypt { .. }
    ));
    let empty = "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  certificate: {}\n";
    assert_eq!(
        check(empty.as_bytes(), None).unwrap().certificate,
        CertificateMode::SelfSigned
    );
}

fn provided(user_data: &str) -> Config {
    let config = check(user_data.as_bytes(), None).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(matches!(
        config.certificate,
        CertificateMode::Provided { .. }
    ));
    config
}

#[test]
fn provided_chains_and_keys() {
    let root = Ca::new("Test Root");
    let intermediate = Ca::issued_by("Test Intermediate", Some(&root));
    // Leaf, intermediate and root.
    let leaf = intermediate.leaf(&["meet.example.com"]);
    let chain = format!("{}{}{}", leaf.pem, intermediate.pem, root.pem);
    provided(&with_cert("", &chain, &leaf.key_pem));
    // Leaf and intermediate only, as CAs hand them out.
    let chain = format!("{}{}", leaf.pem, intermediate.pem);
    provided(&with_cert("", &chain, &leaf.key_pem));
    // A self-signed leaf alone.
    let alone = self_signed(&["meet.example.com"]);
    provided(&with_cert("", &alone.pem, &alone.key_pem));
    // A wildcard for both names served.
    let wildcard = root.leaf(&["*.example.com"]);
    provided(&with_cert(
        "  root_url: https://chat.example.com/\n",
        &wildcard.pem,
        &wildcard.key_pem,
    ));
    // A P-384 key (Ed25519 is refused: tests/bad_inputs.rs).
    let leaf = root.leaf_with(
        &["meet.example.com"],
        LeafOptions {
            alg: Some(&rcgen::PKCS_ECDSA_P384_SHA384),
            ..Default::default()
        },
    );
    provided(&with_cert("", &leaf.pem, &leaf.key_pem));
}

#[test]
fn provided_key_in_sec1_form() {
    // OpenSSL's `EC PRIVATE KEY`: the ECPrivateKey inside rcgen's PKCS#8.
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["meet.example.com"]);
    let pkcs8 = pem::parse(&leaf.key_pem).unwrap();
    let (_, info) = x509_parser::der_parser::parse_der(pkcs8.contents()).unwrap();
    let sec1 = info.as_sequence().unwrap()[2].as_slice().unwrap();
    let sec1_pem = pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1.to_vec()));
    provided(&with_cert("", &leaf.pem, &sec1_pem));
    // The same form with another key does not match.
    let other = ca.leaf(&["meet.example.com"]);
    let errors = check(with_cert("", &other.pem, &sec1_pem).as_bytes(), None).unwrap_err();
    assert_eq!(
        errors,
        ["appliance.certificate.key: does not match the leaf certificate's public key"]
    );
}

#[test]
fn provided_rsa_key_in_pkcs1_form() {
    // Made with OpenSSL (see tests/data/README.md): `RSA PRIVATE KEY`, valid 2026 to 2126.
    let cert = include_str!("data/rsa.crt");
    let key = include_str!("data/rsa-pkcs1.key");
    let config = provided(&with_cert(
        "  root_url: https://chat.example.com/\n",
        cert,
        key,
    ));
    assert!(config
        .to_string()
        .contains("names meet.example.com, chat.example.com"));
    let other = Ca::new("Test CA").leaf(&["meet.example.com"]);
    let errors = check(with_cert("", cert, &other.key_pem).as_bytes(), None).unwrap_err();
    assert_eq!(
        errors,
        ["appliance.certificate.key: does not match the leaf certificate's public key"]
    );
}

#[test]
fn billion_laughs_is_refused_quickly() {
    // Every level an anchor of nine aliases to the one before: 9^9 strings if expanded.
    let mut doc = String::from("#cloud-config\na0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let started = Instant::now();
    let errors = check(doc.as_bytes(), None).unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed.as_millis() < 500, "took {elapsed:?}");
    assert!(
        errors[0].starts_with("user-data: YAML: YAML document too large or too complex"),
        "{errors:?}"
    );
    // A few aliases are fine.
    let few = "#cloud-config\nx: &n meet.example.com\nappliance: {dns_name: *n}\n";
    assert_eq!(
        dns(&check(few.as_bytes(), None).unwrap()),
        "meet.example.com"
    );
}

#[test]
fn sources_read_from_a_root() {
    let root = tempfile::tempdir().unwrap();
    let dir = |p: &str| std::fs::create_dir_all(root.path().join(p)).unwrap();
    dir("var/lib/cloud/instance");
    dir("etc/appliance");
    // Nothing there: empty sources, and dns_name is missing.
    let sources = Sources::read(root.path()).unwrap();
    assert_eq!(sources, Sources::default());
    std::fs::write(
        root.path().join(firstboot::input::userdata::USER_DATA),
        gzip(PLAIN.as_bytes()),
    )
    .unwrap();
    std::fs::write(
        root.path().join(firstboot::input::userdata::CONFIG_FILE),
        "root_url: https://chat.example.com/\n",
    )
    .unwrap();
    let sources = Sources::read(root.path()).unwrap();
    let config = sources.validate(Precedence::UserData, now()).unwrap();
    assert_eq!(dns(&config), "meet.example.com");
    assert_eq!(config.root_url.to_string(), "https://chat.example.com/");
}

#[test]
fn instance_id_from_cloud_init() {
    use firstboot::input::userdata::{
        instance_id, CLOUD_INIT_ENABLED, INSTANCE_DATA, INSTANCE_ID, MACHINE_ID,
    };
    let root = tempfile::tempdir().unwrap();
    let write = |p: &str, text: &str| {
        let path = root.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let none = "instance id: neither /run/cloud-init/instance-data.json (v1.instance_id) nor /var/lib/cloud/data/instance-id gives one, and /etc/machine-id (used when cloud-init found no datasource) holds no machine id";
    assert_eq!(instance_id(root.path()).unwrap_err().to_string(), none);
    // No datasource (cloud-init disabled itself): the machine id stands in ...
    write(MACHINE_ID, "uninitialized\n");
    assert_eq!(instance_id(root.path()).unwrap_err().to_string(), none);
    write(MACHINE_ID, "0123456789abcdef0123456789ABCDEF\n");
    assert_eq!(
        instance_id(root.path()).unwrap(),
        "machine-0123456789abcdef0123456789ABCDEF"
    );
    // ... never while cloud-init runs this boot: its id is awaited.
    write(CLOUD_INIT_ENABLED, "");
    assert_eq!(instance_id(root.path()).unwrap_err().to_string(), none);
    write(INSTANCE_ID, "iid-file\n");
    assert_eq!(instance_id(root.path()).unwrap(), "iid-file");
    write(
        INSTANCE_DATA,
        r#"{"v1": {"instance_id": "i-0123456789abcdef0", "region": "x"}}"#,
    );
    assert_eq!(instance_id(root.path()).unwrap(), "i-0123456789abcdef0");
    write(INSTANCE_DATA, r#"{"v1": {"instance_id": "bad id"}}"#);
    assert_eq!(
        instance_id(root.path()).unwrap_err().to_string(),
        r#"instance id: "bad id" is not an instance id"#
    );
}
