//! Bad and hostile user-data, each with the exact lines `check` must print (without the
//! `error: ` prefix), or `(valid: ...)` with the configuration for the few hostile inputs that
//! are harmless as read (a UTF-16 file or a gzip inside gzip is not cloud-config, as for
//! cloud-init; `%2e%2e` in a path is resolved as browsers do).

mod common;

use std::time::Instant;

use common::*;
use firstboot::{Precedence, Sources};
use rcgen::ExtendedKeyUsagePurpose;

const KNOWN: &str =
    "(known: dns_name, root_url, certificate, admin, mongo_url, rocketchat_registration_token)";

/// `appliance:` with a good DNS name and `rest`.
const LE_IP_MODE: &str = "appliance.certificate.letsencrypt: Let's Encrypt issues no certificates for IP addresses, and no DNS name is given (IP mode): set dns_name to a name of this machine, or leave certificate out for a self-signed one";

fn named(rest: &str) -> Vec<u8> {
    appliance(&format!("  dns_name: meet.example.com\n{rest}")).into_bytes()
}

fn dns(value: &str) -> Vec<u8> {
    appliance(&format!("  dns_name: {value}\n")).into_bytes()
}

fn root_url(value: &str) -> Vec<u8> {
    named(&format!("  root_url: {value}\n"))
}

fn admin(value: &str) -> Vec<u8> {
    named(&format!("  admin: {value}\n"))
}

fn mongo(value: &str) -> Vec<u8> {
    named(&format!("  mongo_url: {value}\n"))
}

fn token(value: &str) -> Vec<u8> {
    named(&format!("  rocketchat_registration_token: {value}\n"))
}

/// A PEM block of `label` around `der`.
fn pem_block(label: &str, der: &[u8]) -> String {
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in base64(der).as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// `text` in UTF-16 LE with its byte-order mark.
fn utf16le(text: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

/// A one-part MIME message whose body is written as given, whatever its transfer encoding.
fn mime_raw(ctype: &str, encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "Content-Type: multipart/mixed; boundary=\"b\"\nMIME-Version: 1.0\n\n--b\n\
         Content-Type: {ctype}\nContent-Transfer-Encoding: {encoding}\n\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\n--b--\n");
    out
}

fn billion_laughs() -> Vec<u8> {
    let mut doc =
        String::from("#cloud-config\nlol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        doc.push_str(&format!("lol{i}: &a{i} [{refs}]\n"));
    }
    doc.push_str("appliance: {dns_name: meet.example.com}\n");
    doc.into_bytes()
}

fn deep_nesting() -> Vec<u8> {
    let mut doc = String::from("#cloud-config\nappliance:\n  dns_name: meet.example.com\n");
    for i in 0..40 {
        doc.push_str(&format!("{}k:\n", " ".repeat(i)));
    }
    doc.into_bytes()
}

/// What the cases are made from: certificates and documents made once.
struct Inputs {
    ca: Ca,
    good: Leaf,
    other: Leaf,
    chain: String,
    expired: Leaf,
    future: Leaf,
    client_only: Leaf,
    wildcard: Leaf,
    no_san: Leaf,
    impostor: Ca,
    big: Vec<u8>,
    bomb: Vec<u8>,
    encrypted: &'static str,
    damaged_begin: String,
    long_dotted: String,
    long_plain: String,
    ca_leaf: Leaf,
    ed_leaf: Leaf,
    dnsname_unknown: String,
    colour_unknown: String,
}

type Case<'a> = (&'a str, Vec<u8>, Vec<&'a str>);

fn inputs() -> Inputs {
    let ca = Ca::new("Test CA");
    let good = ca.leaf(&["meet.example.com"]);
    let other = ca.leaf(&["meet.example.com"]);
    let chain = format!("{}{}", good.pem, ca.pem);
    let expired = ca.leaf_with(
        &["meet.example.com"],
        LeafOptions {
            validity: Some(((2020, 1, 1), (2025, 6, 30))),
            ..Default::default()
        },
    );
    let future = ca.leaf_with(
        &["meet.example.com"],
        LeafOptions {
            validity: Some(((2031, 2, 3), (2040, 1, 1))),
            ..Default::default()
        },
    );
    let client_only = ca.leaf_with(
        &["meet.example.com"],
        LeafOptions {
            eku: Some(ExtendedKeyUsagePurpose::ClientAuth),
            ..Default::default()
        },
    );
    let wildcard = ca.leaf(&["*.example.com"]);
    let no_san = ca.leaf(&[]);
    let impostor = Ca::new("Test CA");
    let big = format!("#cloud-config\n# {}\n", "x".repeat(1 << 20)).into_bytes();
    let bomb = gzip(format!("#cloud-config\n# {}\n", "x".repeat(2 << 20)).as_bytes());
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";

    // The pem crate's own error quotes the tags: a BEGIN line without its closing dashes takes
    // the key's base64 into the tag, up to the next "-----".
    let damaged_begin = format!(
        "{}{}",
        good.key_pem
            .replace("-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE KEY"),
        good.pem
    );

    // Valid DNS names (labels of at most 63, at most 253 in all) that prosody cannot store.
    let long_dotted = format!(
        "{}.{}.{}.{}",
        "a-".repeat(31) + "a",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    let long_plain = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(60)
    );
    let ca_leaf = ca.leaf_with(
        &["meet.example.com"],
        LeafOptions {
            ca: true,
            ..Default::default()
        },
    );

    let ed_leaf = ca.leaf_with(
        &["meet.example.com"],
        LeafOptions {
            alg: Some(&rcgen::PKCS_ED25519),
            ..Default::default()
        },
    );

    let dnsname_unknown = format!("appliance.dnsname: unknown key {KNOWN}");
    let colour_unknown = format!("appliance.colour: unknown key {KNOWN}");
    Inputs {
        ca,
        good,
        other,
        chain,
        expired,
        future,
        client_only,
        wildcard,
        no_san,
        impostor,
        big,
        bomb,
        encrypted,
        damaged_begin,
        long_dotted,
        long_plain,
        ca_leaf,
        ed_leaf,
        dnsname_unknown,
        colour_unknown,
    }
}

/// The cases: Reading.
fn reading_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let Inputs { big, bomb, .. } = inputs;
    vec![
    // Reading.
    (
        "YAML syntax",
        b"#cloud-config\nappliance: [\n".to_vec(),
        vec!["user-data: YAML: unclosed bracket '[' at line 2, column 12"],
    ),
    (
        "duplicate key",
        b"#cloud-config\nappliance:\n  dns_name: a.example.com\n  dns_name: b.example.com\n".to_vec(),
        vec!["user-data: YAML: duplicate mapping key `dns_name` is not allowed here at line 4, column 3"],
    ),
    (
        "document is a list",
        b"#cloud-config\n- a\n- b\n".to_vec(),
        vec!["user-data: the document is a list, not a mapping of keys"],
    ),
    (
        "appliance is a string",
        b"#cloud-config\nappliance: meet.example.com\n".to_vec(),
        vec!["appliance: must be a mapping, not a string"],
    ),
    (
        "appliance is empty",
        b"#cloud-config\nappliance:\n".to_vec(),
        vec!["appliance: is empty"],
    ),
    (
        "not UTF-8",
        b"#cloud-config\nappliance:\n  dns_name: \xff\n".to_vec(),
        vec!["user-data: not UTF-8 text"],
    ),
    (
        "larger than 1 MiB",
        big.clone(),
        vec!["user-data: larger than 1048576 bytes"],
    ),
    (
        "gzip bomb",
        bomb.clone(),
        vec!["user-data: larger than 1048576 bytes once decompressed"],
    ),
    (
        "broken gzip",
        b"\x1f\x8b\x08\x00garbage".to_vec(),
        vec!["user-data: not valid gzip: incomplete deflate stream"],
    ),
    (
        "billion laughs",
        billion_laughs(),
        vec!["user-data: YAML: YAML document too large or too complex: limits breached: RecordedAnchorEvents { recorded_anchor_events: 10001 } at line 2, column 55 (defined at line 5, column 11) (used at line 6, column 12)"],
    ),
    (
        "nesting too deep",
        deep_nesting(),
        vec!["user-data: YAML: YAML document too large or too complex: limits breached: Depth { depth: 33 } at line 36, column 33"],
    ),
    (
        "flow nesting too deep",
        format!("#cloud-config\nappliance: {}{}\n", "[".repeat(40), "]".repeat(40)).into_bytes(),
        vec!["user-data: YAML: recursion limit exceeded at line 2, column 44"],
    ),
    (
        "MIME parts decompress to more than 1 MiB together",
        mime(&[
            Part("application/gzip", "base64", &gzip(format!("#cloud-config\n# {}\n", "x".repeat(600_000)).as_bytes())),
            Part("application/gzip", "base64", &gzip(format!("#cloud-config\n# {}\n", "x".repeat(600_000)).as_bytes())),
        ]),
        vec!["user-data: larger than 1048576 bytes once decompressed"],
    ),
    (
        "MIME gzip part broken",
        mime(&[Part("application/x-gzip", "base64", b"\x1f\x8b\x08\x00junk")]),
        vec!["user-data part 1: not valid gzip: unexpected end of file"],
    ),
    (
        "MIME part with bad YAML",
        mime(&[
            Part("text/cloud-config", "7bit", b"#cloud-config\nappliance: {dns_name: meet.example.com}"),
            Part("text/cloud-config", "7bit", b"#cloud-config\nappliance: {dns_name: x"),
        ]),
        vec!["user-data part 2: YAML: unclosed bracket '{' at line 2, column 12"],
    ),
    (
        "MIME: the later part's bad DNS name wins",
        mime(&[
            Part("text/cloud-config", "7bit", b"#cloud-config\nappliance: {dns_name: meet.example.com}"),
            Part("text/cloud-config", "base64", b"#cloud-config\nappliance: {dns_name: meet..example.com}"),
        ]),
        vec![r#"appliance.dns_name: "meet..example.com" is not a valid DNS name: it has an empty label (two dots in a row, or a leading dot)"#],
    ),
    ]
}

/// The cases: Keys.
fn keys_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let Inputs {
        dnsname_unknown, ..
    } = inputs;
    vec![
    // Keys.
    (
        "unknown key (and so IP mode)",
        appliance("  dnsname: meet.example.com\n").into_bytes(),
        vec![&dnsname_unknown],
    ),
    (
        "Let's Encrypt in IP mode",
        appliance("  certificate:\n    letsencrypt: {email: ops@example.com}\n").into_bytes(),
        vec![LE_IP_MODE],
    ),
    (
        "Let's Encrypt with only a single-label hostname",
        b"#cloud-config\nhostname: meet\nappliance:\n  certificate: {letsencrypt: {email: ops@example.com}}\n".to_vec(),
        vec![LE_IP_MODE],
    ),
    (
        "hostname that is not a host name",
        b"#cloud-config\nhostname: meet_1\n".to_vec(),
        vec![r#"hostname: "meet_1" is not a valid DNS name: it holds '_': only letters, digits, '-' and '.' are allowed"#],
    ),
    ]
}

/// The cases: DNS name.
fn dns_name_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
        // DNS name.
        (
            "DNS name is a number",
            dns("12"),
            vec!["appliance.dns_name: must be a string, not a number (quote it)"],
        ),
        (
            "DNS name is an empty string",
            dns("\"\""),
            vec!["appliance.dns_name: is empty"],
        ),
        (
            "DNS name has no value",
            dns(""),
            vec!["appliance.dns_name: is empty"],
        ),
        (
            "DNS name is a list",
            dns("[meet.example.com]"),
            vec!["appliance.dns_name: must be a string, not a list"],
        ),
        (
            "DNS name with two trailing dots",
            dns("meet.example.com.."),
            vec![
                r#"appliance.dns_name: "meet.example.com.." is not a valid DNS name: it has an empty label (two dots in a row, or a leading dot)"#,
            ],
        ),
        (
            "DNS name of one label",
            dns("meet"),
            vec![
                r#"appliance.dns_name: "meet" is not a valid DNS name: it is a single label: give a fully qualified name such as meet.example.com"#,
            ],
        ),
        (
            "DNS name with an underscore",
            dns("meet_1.example.com"),
            vec![
                r#"appliance.dns_name: "meet_1.example.com" is not a valid DNS name: it holds '_': only letters, digits, '-' and '.' are allowed"#,
            ],
        ),
        (
            "DNS label ending in a hyphen",
            dns("meet-.example.com"),
            vec![
                r#"appliance.dns_name: "meet-.example.com" is not a valid DNS name: label "meet-" starts or ends with a hyphen"#,
            ],
        ),
        (
            "DNS label of 64 characters",
            dns(&format!("{}.example.com", "a".repeat(64))),
            vec![
                r#"appliance.dns_name: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com" is not a valid DNS name: label "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" is longer than 63 characters"#,
            ],
        ),
        (
            "DNS name of 255 characters",
            dns(&format!("{}.com", vec!["a".repeat(62); 4].join("."))),
            vec![
                r#"appliance.dns_name: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaa..." is not a valid DNS name: it is longer than 253 characters"#,
            ],
        ),
        (
            "DNS name is an IP address",
            dns("10.1.2.3"),
            vec![
                r#"appliance.dns_name: "10.1.2.3" is not a valid DNS name: its last label is all digits: give a host name, not an IP address"#,
            ],
        ),
        (
            "DNS name not in ASCII",
            dns("bücher.example"),
            vec![
                r#"appliance.dns_name: "bücher.example" is not a valid DNS name: it is not ASCII (write an internationalised name in its xn-- form)"#,
            ],
        ),
        (
            "DNS name with a tab",
            dns("\"meet.example.com\\t\""),
            vec!["appliance.dns_name: holds a control character or line break"],
        ),
        (
            "fqdn standing in is bad",
            b"#cloud-config\nfqdn: meet_1.example.com\n".to_vec(),
            vec![
                r#"fqdn: "meet_1.example.com" is not a valid DNS name: it holds '_': only letters, digits, '-' and '.' are allowed"#,
            ],
        ),
    ]
}

/// The cases: ROOT_URL.
fn root_url_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // ROOT_URL.
    (
        "root_url over ftp",
        root_url("ftp://chat.example.com/"),
        vec!["appliance.root_url: must start with https:// or http://"],
    ),
    (
        "root_url with a user",
        root_url("https://admin@chat.example.com/"),
        vec!["appliance.root_url: must not hold a user name or password"],
    ),
    (
        "root_url with a query",
        root_url("https://chat.example.com/?x=1"),
        vec!["appliance.root_url: must not have a query ('?...')"],
    ),
    (
        "root_url with a fragment",
        root_url("\"https://chat.example.com/#top\""),
        vec!["appliance.root_url: must not have a fragment ('#...')"],
    ),
    (
        "root_url on an IP address",
        root_url("https://192.0.2.1:3000/"),
        vec!["appliance.root_url: its host must be a DNS name, not an IP address (nginx picks the site by name)"],
    ),
    (
        "root_url on port 0",
        root_url("https://chat.example.com:0/"),
        vec!["appliance.root_url: port 0 is not a port"],
    ),
    (
        "root_url on port 70000",
        root_url("https://chat.example.com:70000/"),
        vec!["appliance.root_url: is not a URL: invalid port number"],
    ),
    (
        "root_url path with a semicolon",
        root_url("https://chat.example.com/a;b"),
        vec!["appliance.root_url: its path may hold only letters, digits and '/', '.', '_', '~', '-', not ';'"],
    ),
    (
        "root_url host with an underscore",
        root_url("https://chat_1.example.com/"),
        vec![r#"appliance.root_url: its host "chat_1.example.com" is not a valid DNS name: it holds '_': only letters, digits, '-' and '.' are allowed"#],
    ),
    ]
}

/// The cases: What `apply` would refuse on the appliance, `check` refuses too.
fn refused_by_apply_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let Inputs {
        ca,
        good,
        chain,
        long_dotted,
        long_plain,
        ca_leaf,
        ..
    } = inputs;
    vec![
    // What `apply` would refuse on the appliance, `check` refuses too.
    (
        "root_url on prosody's client port",
        root_url("https://chat.example.com:5222/"),
        vec!["appliance.root_url: port 5222 is taken: prosody listens there"],
    ),
    (
        "root_url on prosody's BOSH port",
        root_url("http://chat.example.com:5280/"),
        vec!["appliance.root_url: port 5280 is taken: prosody listens there"],
    ),
    (
        "root_url on the videobridge's port",
        root_url("https://chat.example.com:8080/"),
        vec!["appliance.root_url: port 8080 is taken: the Jitsi videobridge listens there"],
    ),
    (
        "root_url on the videobridge's REST port",
        root_url("https://chat.example.com:9090/"),
        vec!["appliance.root_url: port 9090 is taken: the Jitsi videobridge listens there"],
    ),
    (
        "root_url on jicofo's port",
        root_url("https://chat.example.com:8888/"),
        vec!["appliance.root_url: port 8888 is taken: jicofo listens there"],
    ),
    (
        "root_url on MongoDB's port",
        root_url("https://chat.example.com:27017/"),
        vec!["appliance.root_url: port 27017 is taken: MongoDB listens there"],
    ),
    (
        "dns_name too long for prosody's file names once encoded",
        dns(long_dotted),
        vec!["appliance.dns_name: too long for prosody: its directory for auth.NAME, with each '.' and '-' written as 3 characters, takes 328 bytes (at most 255)"],
    ),
    (
        "dns_name of 252 characters in 4 labels",
        dns(long_plain),
        vec!["appliance.dns_name: too long for prosody: its directory for auth.NAME, with each '.' and '-' written as 3 characters, takes 265 bytes (at most 255)"],
    ),
    (
        "dns_name with invalid punycode",
        dns("xn--a.example.com"),
        vec![r#"appliance.dns_name: "xn--a.example.com" is not a valid DNS name: label "xn--a" is not valid punycode"#],
    ),
    (
        "key with a Comment: header",
        with_cert("", chain, &good.key_pem.replacen("-----\n", "-----\nComment: made by hand\n\n", 1)).into_bytes(),
        vec!["appliance.certificate.key: has header lines (such as Comment:): nginx loads only a bare key, as OpenSSL writes it"],
    ),
    (
        "leaf with CA:TRUE",
        with_cert("", &format!("{}{}", ca_leaf.pem, ca.pem), &ca_leaf.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: the leaf certificate is a CA certificate (CA:TRUE), which browsers refuse for a server"],
    ),
    (
        "root_url on SSH's port",
        root_url("https://chat.example.com:22/"),
        vec!["appliance.root_url: port 22 is taken: SSH listens there"],
    ),
    (
        "root_url https on port 80",
        root_url("https://chat.example.com:80/"),
        vec!["appliance.root_url: port 80 is taken: it serves plain HTTP (redirects and ACME)"],
    ),
    (
        "root_url is Jitsi's",
        root_url("https://meet.example.com/chat"),
        vec!["appliance.root_url: https://meet.example.com/ is where Jitsi Meet is served: give Rocket.Chat another host name or port"],
    ),
    ]
}

/// The cases: Certificate. (1)
fn certificate_1_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let Inputs { good, chain, .. } = inputs;
    vec![
    // Certificate.
    (
        "cert and letsencrypt",
        named("  certificate:\n    cert: x\n    key: y\n    letsencrypt: {email: ops@example.com}\n"),
        vec!["appliance.certificate: give either cert and key, or letsencrypt, not both"],
    ),
    (
        "cert without key",
        named(&format!("  certificate:\n    cert: {}", block(chain, 6))),
        vec!["appliance.certificate.key: missing (cert needs its private key)"],
    ),
    (
        "unknown key under certificate",
        named("  certificate:\n    chain: x\n"),
        vec!["appliance.certificate.chain: unknown key (known: cert, key, letsencrypt)"],
    ),
    (
        "letsencrypt without email",
        named("  certificate:\n    letsencrypt: {}\n"),
        vec!["appliance.certificate.letsencrypt.email: missing (Let's Encrypt needs an account e-mail address)"],
    ),
    (
        "letsencrypt email without @",
        named("  certificate:\n    letsencrypt: {email: ops.example.com}\n"),
        vec![r#"appliance.certificate.letsencrypt.email: "ops.example.com" is not a valid e-mail address: it has no '@'"#],
    ),
    (
        "letsencrypt email on a single label",
        named("  certificate:\n    letsencrypt: {email: ops@localhost, staging: true}\n"),
        vec![
            "appliance.certificate.letsencrypt.staging: unknown key (known: email, directory)",
            r#"appliance.certificate.letsencrypt.email: "ops@localhost" is not a valid e-mail address: its domain: it is a single label: give a fully qualified name such as meet.example.com"#,
        ],
    ),
    (
        "letsencrypt directory over plain http",
        named("  certificate:\n    letsencrypt: {email: ops@example.com, directory: \"http://ca.example.com/dir\"}\n"),
        vec![r#"appliance.certificate.letsencrypt.directory: "http://ca.example.com/dir" is not an ACME directory: give production, staging or an https:// URL"#],
    ),
    (
        "letsencrypt directory neither a URL nor a name",
        named("  certificate:\n    letsencrypt: {email: ops@example.com, directory: test}\n"),
        vec![r#"appliance.certificate.letsencrypt.directory: "test" is not an ACME directory: give production, staging or an https:// URL"#],
    ),
    (
        "letsencrypt directory as a boolean",
        named("  certificate:\n    letsencrypt: {email: ops@example.com, directory: true}\n"),
        vec!["appliance.certificate.letsencrypt.directory: must be a string, not a boolean (quote it)"],
    ),
    (
        "letsencrypt directory with credentials",
        named("  certificate:\n    letsencrypt: {email: ops@example.com, directory: \"https://acme:s3cret@ca.example.com/dir\"}\n"),
        vec!["appliance.certificate.letsencrypt.directory: must not hold a user name or password (they would be sent to the CA and stored)"],
    ),
    (
        "letsencrypt http directory with credentials",
        named("  certificate:\n    letsencrypt: {email: ops@example.com, directory: \"http://acme:s3cret@ca.example.com/dir\"}\n"),
        vec!["appliance.certificate.letsencrypt.directory: must not hold a user name or password (they would be sent to the CA and stored)"],
    ),
    (
        "cert is not PEM",
        with_cert("", "hello", &good.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: holds no PEM CERTIFICATE block"],
    ),
    ]
}

/// The cases: Certificate. (2)
fn certificate_2_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let Inputs {
        ca,
        good,
        other,
        chain,
        expired,
        future,
        encrypted,
        damaged_begin,
        ..
    } = inputs;
    vec![
    (
        "cert holds the key",
        with_cert("", &format!("{}{}", good.pem, good.key_pem), &good.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: holds a private key: it belongs under certificate.key"],
    ),
    (
        "key is a certificate",
        with_cert("", &good.pem, &good.pem).into_bytes(),
        vec!["appliance.certificate.key: holds a CERTIFICATE block, not a private key"],
    ),
    (
        "key is encrypted",
        with_cert("", &good.pem, encrypted).into_bytes(),
        vec!["appliance.certificate.key: is encrypted: give the key without a pass phrase (nginx starts unattended)"],
    ),
    (
        "key and cert together in key",
        with_cert("", &good.pem, &format!("{}{}", good.key_pem, good.pem)).into_bytes(),
        vec!["appliance.certificate.key: holds more than one PEM block: give the leaf's private key alone"],
    ),
    (
        "key whose BEGIN line lost its dashes, then the certificate",
        with_cert("", &good.pem, damaged_begin).into_bytes(),
        vec!["appliance.certificate.key: is not PEM: a BEGIN line without its matching END line"],
    ),
    (
        "key whose END tag differs from its BEGIN tag",
        with_cert("", &good.pem, &good.key_pem.replace("END PRIVATE", "END RSA PRIVATE")).into_bytes(),
        vec!["appliance.certificate.key: is not PEM: a BEGIN line without its matching END line"],
    ),
    (
        "key with a bad base64 character",
        with_cert("", &good.pem, &good.key_pem.replacen("\n", "\n!", 2).replacen("\n!", "\n", 1)).into_bytes(),
        vec!["appliance.certificate.key: is not PEM: its base64 text is damaged"],
    ),
    (
        "cert whose END line lost its dashes",
        with_cert("", &good.pem.replace("END CERTIFICATE-----", "END CERTIFICATE"), &good.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: holds no PEM CERTIFICATE block"],
    ),
    (
        "cert with a NUL",
        named(&format!(
            "  certificate:\n    cert: {}\n    key: {}",
            serde_json::to_string(&good.pem.replacen('\n', "\n\u{0}", 1)).unwrap(),
            block(&good.key_pem, 6)
        )),
        vec!["appliance.certificate.cert: holds a control character other than a line break"],
    ),
    (
        "wrong key",
        with_cert("", chain, &other.key_pem).into_bytes(),
        vec!["appliance.certificate.key: does not match the leaf certificate's public key"],
    ),
    (
        "expired leaf",
        with_cert("", &format!("{}{}", expired.pem, ca.pem), &expired.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: certificate 1 (CN=leaf) expired on 2025-06-30 00:00 UTC"],
    ),
    (
        "leaf not yet valid",
        with_cert("", &format!("{}{}", future.pem, ca.pem), &future.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: certificate 1 (CN=leaf) is not valid before 2031-02-03 00:00 UTC"],
    ),
    ]
}

/// The cases: Certificate. (3)
fn certificate_3_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let Inputs {
        ca,
        good,
        chain,
        client_only,
        wildcard,
        no_san,
        impostor,
        ..
    } = inputs;
    vec![
    (
        "SAN does not cover the DNS name",
        appliance(&format!(
            "  dns_name: jitsi.example.com\n  certificate:\n    cert: {}    key: {}",
            block(chain, 6),
            block(&good.key_pem, 6)
        ))
        .into_bytes(),
        vec!["appliance.certificate.cert: the leaf certificate does not cover jitsi.example.com (it names meet.example.com)"],
    ),
    (
        "SAN does not cover ROOT_URL's host",
        with_cert("  root_url: https://chat.example.com/\n", chain, &good.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: the leaf certificate does not cover chat.example.com (it names meet.example.com)"],
    ),
    (
        "wildcard covers one label only",
        appliance(&format!(
            "  dns_name: meet.eu.example.com\n  certificate:\n    cert: {}    key: {}",
            block(&wildcard.pem, 6),
            block(&wildcard.key_pem, 6)
        ))
        .into_bytes(),
        vec!["appliance.certificate.cert: the leaf certificate does not cover meet.eu.example.com (it names *.example.com)"],
    ),
    (
        "leaf without subjectAltName",
        with_cert("", &no_san.pem, &no_san.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: the leaf certificate has no subjectAltName DNS names (browsers ignore the common name)"],
    ),
    (
        "chain in the wrong order",
        with_cert("", &format!("{}{}", ca.pem, good.pem), &good.key_pem).into_bytes(),
        vec![
            "appliance.certificate.cert: certificate 2 (CN=leaf) did not issue certificate 1 (issued by CN=Test CA): give the chain leaf first, each certificate followed by its issuer",
            "appliance.certificate.cert: the leaf certificate has no subjectAltName DNS names (browsers ignore the common name)",
            "appliance.certificate.key: does not match the leaf certificate's public key",
        ],
    ),
    (
        "issuer of the same name but another key",
        with_cert("", &format!("{}{}", good.pem, impostor.pem), &good.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: certificate 1's signature does not verify with the key of certificate 2"],
    ),
    (
        "leaf for TLS clients only",
        with_cert("", &client_only.pem, &client_only.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: the leaf certificate's extended key usage does not allow TLS servers"],
    ),
    ]
}

/// The cases: Admin.
fn admin_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // Admin.
    (
        "admin without email",
        admin("{username: admin, password: correct-horse-battery}"),
        vec!["appliance.admin.email: missing (admin needs username, password and email, or none of them)"],
    ),
    (
        "admin password too short",
        admin("{username: admin, password: hunter2, email: ops@example.com}"),
        vec!["appliance.admin.password: must be at least 12 characters long"],
    ),
    (
        "admin password is a number",
        admin("{username: admin, password: 123456789012345, email: ops@example.com}"),
        vec!["appliance.admin.password: must be a string, not a number (quote it)"],
    ),
    (
        "admin password with a newline",
        admin("{username: admin, password: \"correct-horse\\nbattery\", email: ops@example.com}"),
        vec!["appliance.admin.password: holds a control character or line break"],
    ),
    (
        "admin username with a space",
        admin("{username: \"the admin\", password: correct-horse-battery, email: ops@example.com}"),
        vec!["appliance.admin.username: may hold only letters, digits, '.', '_' and '-'"],
    ),
    (
        "admin email bad",
        admin("{username: admin, password: correct-horse-battery, email: \"ops@@example.com\"}"),
        vec![r#"appliance.admin.email: "ops@@example.com" is not a valid e-mail address: its local part holds '@'"#],
    ),
    (
        "admin with an unknown key",
        admin("{username: admin, passwd: correct-horse-battery, email: ops@example.com}"),
        vec![
            "appliance.admin.passwd: unknown key (known: username, password, email)",
            "appliance.admin.password: missing (admin needs username, password and email, or none of them)",
        ],
    ),
    (
        "admin is a list",
        admin("[admin]"),
        vec!["appliance.admin: must be a mapping, not a list"],
    ),
    ]
}

/// The cases: MongoDB.
fn mongodb_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // MongoDB.
    (
        "mongo_url of another scheme",
        mongo("postgres://db/rocketchat"),
        vec!["appliance.mongo_url: must start with mongodb:// or mongodb+srv://"],
    ),
    (
        "mongo_url without database",
        mongo("mongodb://a,b,c/?replicaSet=rs0"),
        vec!["appliance.mongo_url: names no database: write mongodb://HOSTS/DATABASE"],
    ),
    (
        "mongo_url with a bad port",
        mongo("mongodb://a:27017,b:0/rocketchat"),
        vec![r#"appliance.mongo_url: host "b:0" has a bad port (1 to 65535)"#],
    ),
    (
        "mongo_url srv with a port",
        mongo("mongodb+srv://db.example.com:27017/rocketchat"),
        vec!["appliance.mongo_url: mongodb+srv:// takes exactly one host name and no port"],
    ),
    (
        "mongo_url with an unescaped @ in the password",
        mongo("mongodb://rc:p@ss@db/rocketchat"),
        vec!["appliance.mongo_url: its user part holds an unescaped '@', ':', '/', '?', '#', '[' or ']', or a bad '%' escape"],
    ),
    ]
}

/// The Rocket.Chat Cloud registration token's problems: each names the key and never quotes
/// the value (every bad value holds `s3cr3t`).
const TOKEN_CHARACTERS: &str = "appliance.rocketchat_registration_token: may hold only printable ASCII characters without spaces, quotes or backslashes (a Rocket.Chat Cloud registration token)";

/// The cases: the Rocket.Chat Cloud registration token.
fn registration_token_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    (
        "registration token of 513 characters",
        token(&format!("s3cr3t{}", "a".repeat(507))),
        vec!["appliance.rocketchat_registration_token: longer than 512 characters (a Rocket.Chat Cloud registration token)"],
    ),
    (
        "registration token of 512 characters",
        token(&format!("s3cr3t{}", "a".repeat(506))),
        vec!["(valid: Config { dns_name: DnsName(\"meet.example.com\"), host_name: Some(\"meet.example.com\"), root_url: RootUrl { scheme: Https, host: DnsName(\"meet.example.com\"), port: 3000, path: \"/\" }, certificate: SelfSigned, admin: None, mongo_url: None, rocketchat_registration_token: Some(Secret(..)) })"],
    ),
    ("registration token with a space", token("\"s3cr3t tok\""), vec![TOKEN_CHARACTERS]),
    ("registration token with a double quote", token("'s3cr3t\"tok'"), vec![TOKEN_CHARACTERS]),
    ("registration token with a single quote", token("\"s3cr3t'tok\""), vec![TOKEN_CHARACTERS]),
    ("registration token with a backquote", token("\"s3cr3t`id`\""), vec![TOKEN_CHARACTERS]),
    ("registration token with a backslash", token("'s3cr3t\\tok'"), vec![TOKEN_CHARACTERS]),
    ("registration token with a non-ASCII letter", token("s3cr3t\u{e9}"), vec![TOKEN_CHARACTERS]),
    (
        "registration token with a line break",
        token("\"s3cr3t\\nREG_TOKEN=x\""),
        vec!["appliance.rocketchat_registration_token: holds a control character or line break"],
    ),
    (
        "registration token with a tab",
        token("\"s3cr3t\\ttok\""),
        vec!["appliance.rocketchat_registration_token: holds a control character or line break"],
    ),
    (
        "registration token empty",
        token("\"\""),
        vec!["appliance.rocketchat_registration_token: is empty"],
    ),
    (
        "registration token of spaces",
        token("\"   \""),
        vec!["appliance.rocketchat_registration_token: is empty"],
    ),
    (
        "registration token is a number",
        token("123456789"),
        vec!["appliance.rocketchat_registration_token: must be a string, not a number (quote it)"],
    ),
    (
        "registration token is a mapping",
        token("{s3cr3t: x}"),
        vec!["appliance.rocketchat_registration_token: must be a string, not a mapping"],
    ),
    ]
}

/// The cases: Issue 16's own hostile inputs: keys and certificates of every kind.
fn issue_16_keys_and_certificates_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let Inputs {
        ca,
        good,
        other,
        chain,
        ed_leaf,
        ..
    } = inputs;
    vec![
    // Issue 16's own hostile inputs: keys and certificates of every kind.
    (
        "Ed25519 leaf and key",
        with_cert("", &format!("{}{}", ed_leaf.pem, ca.pem), &ed_leaf.key_pem).into_bytes(),
        vec!["appliance.certificate.key: is not a usable private key: Ed25519: browsers accept no Ed25519 certificate; RSA of 2048 to 8192 bits, or ECDSA P-256 or P-384 are supported"],
    ),
    (
        "key is a DSA key",
        with_cert("", chain, &pem_block("DSA PRIVATE KEY", b"\x30\x03\x02\x01\x00")).into_bytes(),
        vec!["appliance.certificate.key: holds a private key of kind DSA: RSA of 2048 to 8192 bits, or ECDSA P-256 or P-384 are supported, in PEM as OpenSSL writes them"],
    ),
    (
        "key is an OpenSSH key",
        with_cert("", chain, &pem_block("OPENSSH PRIVATE KEY", b"openssh-key-v1\0")).into_bytes(),
        vec!["appliance.certificate.key: holds a private key of kind OPENSSH: RSA of 2048 to 8192 bits, or ECDSA P-256 or P-384 are supported, in PEM as OpenSSL writes them"],
    ),
    (
        "PKCS#8 key whose DER is junk",
        with_cert("", chain, &pem_block("PRIVATE KEY", b"\x30\x05junk")).into_bytes(),
        vec!["appliance.certificate.key: is not a usable private key: InvalidEncoding; RSA of 2048 to 8192 bits, or ECDSA P-256 or P-384 are supported"],
    ),
    (
        "PKCS#1 key whose DER is junk",
        with_cert("", chain, &pem_block("RSA PRIVATE KEY", b"\x02\x01\x00")).into_bytes(),
        vec!["appliance.certificate.key: is not a usable private key: InvalidEncoding; RSA of 2048 to 8192 bits, or ECDSA P-256 or P-384 are supported"],
    ),
    (
        "SEC1 key whose DER is junk",
        with_cert("", chain, &pem_block("EC PRIVATE KEY", b"")).into_bytes(),
        vec!["appliance.certificate.key: is not a usable private key: not an RFC 5915 EC private key"],
    ),
    (
        "key is a public key",
        with_cert("", chain, &pem_block("PUBLIC KEY", b"\x30\x00")).into_bytes(),
        vec!["appliance.certificate.key: holds a PUBLIC KEY block, not a private key"],
    ),
    (
        "key is empty",
        named("  certificate:\n    cert: |\n      x\n    key: \"\"\n"),
        vec![
            "appliance.certificate.cert: holds no PEM CERTIFICATE block",
            "appliance.certificate.key: is empty",
        ],
    ),
    (
        "key is a mapping",
        named("  certificate:\n    cert: x\n    key: {pem: x}\n"),
        vec![
            "appliance.certificate.cert: holds no PEM CERTIFICATE block",
            "appliance.certificate.key: must be a string, not a mapping",
        ],
    ),
    (
        "cert is a number",
        named("  certificate:\n    cert: 12\n    key: x\n"),
        vec![
            "appliance.certificate.cert: must be a string, not a number (quote it)",
            "appliance.certificate.key: holds no PEM private key",
        ],
    ),
    (
        "certificate whose DER is junk",
        with_cert("", &pem_block("CERTIFICATE", b"\x30\x03\x02\x01\x00"), &good.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: certificate 1 is not valid X.509: Parsing Error: Der(UnexpectedTag { expected: Some(Tag(16)), actual: Tag(2) })"],
    ),
    (
        "a CRL in the chain",
        with_cert("", &format!("{}{}", good.pem, pem_block("X509 CRL", b"\x30\x00")), &good.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: holds a X509 CRL block: only CERTIFICATE blocks belong here"],
    ),
    (
        "an OpenSSL TRUSTED CERTIFICATE",
        with_cert("", &good.pem.replace("CERTIFICATE-----", "TRUSTED CERTIFICATE-----"), &good.key_pem).into_bytes(),
        vec!["appliance.certificate.cert: holds a TRUSTED CERTIFICATE block: only CERTIFICATE blocks belong here"],
    ),
    (
        "the key under cert and the chain under key",
        with_cert("", &good.key_pem, chain).into_bytes(),
        vec![
            "appliance.certificate.cert: holds a private key: it belongs under certificate.key",
            "appliance.certificate.key: holds more than one PEM block: give the leaf's private key alone",
        ],
    ),
    (
        "another leaf's key, of the same CA",
        with_cert("", &format!("{}{}", other.pem, ca.pem), &good.key_pem).into_bytes(),
        vec!["appliance.certificate.key: does not match the leaf certificate's public key"],
    ),
    ]
}

/// The cases: Encodings.
fn encodings_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // Encodings.
    (
        "UTF-16 with a byte-order mark",
        utf16le("#cloud-config\nappliance: {dns_name: meet.example.com}\n"),
        vec!["(valid: Config { dns_name: DnsName(\"0.0.0.0\"), host_name: None, root_url: RootUrl { scheme: Https, host: DnsName(\"0.0.0.0\"), port: 3000, path: \"/\" }, certificate: SelfSigned, admin: None, mongo_url: None, rocketchat_registration_token: None })"],
    ),
    (
        "a NUL byte in the YAML",
        b"#cloud-config\nappliance:\n  dns_name: meet\0.example.com\n".to_vec(),
        vec!["user-data: YAML: unexpected character: `\\u{0}' at line 3, column 17"],
    ),
    (
        "Latin-1 in a comment",
        b"#cloud-config\n# caf\xe9\nappliance: {dns_name: meet.example.com}\n".to_vec(),
        vec!["user-data: not UTF-8 text"],
    ),
    (
        "a DNS name in full-width letters",
        dns("ｍｅｅｔ.example.com"),
        vec!["appliance.dns_name: \"ｍｅｅｔ.example.com\" is not a valid DNS name: it is not ASCII (write an internationalised name in its xn-- form)"],
    ),
    (
        "a DNS name with a right-to-left override",
        dns("\"meet\\u202e.example.com\""),
        vec!["appliance.dns_name: \"meet\\u{202e}.example.com\" is not a valid DNS name: it is not ASCII (write an internationalised name in its xn-- form)"],
    ),
    ]
}

/// The cases: YAML.
fn yaml_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // YAML.
    (
        "a Python object tag",
        b"#cloud-config\nappliance: !!python/object/apply:os.system [reboot]\n".to_vec(),
        vec!["appliance: must be a mapping, not a list"],
    ),
    (
        "an alias as the DNS name's value, of a list",
        b"#cloud-config\nx: &l [a, b]\nappliance:\n  dns_name: *l\n".to_vec(),
        vec!["appliance.dns_name: must be a string, not a list"],
    ),
    (
        "an undefined alias",
        b"#cloud-config\nappliance:\n  dns_name: *nowhere\n".to_vec(),
        vec!["user-data: YAML: reference to unknown value at line 3, column 13"],
    ),
    (
        "two YAML documents",
        b"#cloud-config\nappliance: {dns_name: meet.example.com}\n---\nappliance: {dns_name: evil.example.com}\n".to_vec(),
        vec!["user-data: YAML: YAML document too large or too complex: limits breached: Documents { documents: 2 } at line 3, column 1"],
    ),
    (
        "a mapping as a key",
        b"#cloud-config\nappliance:\n  ? {dns_name: x}\n  : meet.example.com\n".to_vec(),
        vec!["user-data: YAML: expected string scalar at line 3, column 5"],
    ),
    ]
}

/// The cases: MIME and gzip.
fn mime_and_gzip_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // MIME and gzip.
    (
        "MIME part with damaged base64",
        mime_raw("text/cloud-config", "base64", b"#cloud-config\n!!!not base64!!!\n"),
        vec!["user-data: not valid MIME: part 1: Base64 decode error: invalid symbol at 0"],
    ),
    (
        "MIME without its closing boundary",
        b"Content-Type: multipart/mixed; boundary=\"b\"\nMIME-Version: 1.0\n\n--b\nContent-Type: text/cloud-config\n\n#cloud-config\nappliance: {dns_name: meet_1.example.com}\n".to_vec(),
        vec!["appliance.dns_name: \"meet_1.example.com\" is not a valid DNS name: it holds '_': only letters, digits, '-' and '.' are allowed"],
    ),
    (
        "gzip of gzip",
        gzip(&gzip(b"#cloud-config\nappliance: {dns_name: meet.example.com}\n")),
        vec!["(valid: Config { dns_name: DnsName(\"0.0.0.0\"), host_name: None, root_url: RootUrl { scheme: Https, host: DnsName(\"0.0.0.0\"), port: 3000, path: \"/\" }, certificate: SelfSigned, admin: None, mongo_url: None, rocketchat_registration_token: None })"],
    ),
    (
        "gzip cut short",
        {
            let whole = gzip(format!("#cloud-config\n# {}\nappliance: {{dns_name: meet.example.com}}\n", "x".repeat(5000)).as_bytes());
            whole[..whole.len() / 2].to_vec()
        },
        vec!["user-data: not valid gzip: incomplete deflate stream"],
    ),
    (
        "gzip of bad YAML",
        gzip(b"#cloud-config\nappliance: {dns_name: [\n"),
        vec!["user-data: YAML: unclosed bracket '[' at line 2, column 23"],
    ),
    ]
}

/// The cases: Names aimed at the files the appliance writes (nginx, Lua, JavaScript, hosts, paths).
fn names_aimed_at_files_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // Names aimed at the files the appliance writes (nginx, Lua, JavaScript, hosts, paths).
    (
        "DNS name carrying an nginx directive",
        dns("\"meet.example.com; include /etc/shadow\""),
        vec!["appliance.dns_name: \"meet.example.com; include /etc/shadow\" is not a valid DNS name: it holds ';': only letters, digits, '-' and '.' are allowed"],
    ),
    (
        "DNS name carrying a Lua string's end",
        dns("'meet.example.com\"; os.execute(\"id\") --'"),
        vec!["appliance.dns_name: \"meet.example.com\\\"; os.execute(\\\"id\\\") --\" is not a valid DNS name: it holds '\"': only letters, digits, '-' and '.' are allowed"],
    ),
    (
        "DNS name carrying JavaScript",
        dns("\"meet.example.com'};alert(1);//\""),
        vec!["appliance.dns_name: \"meet.example.com'};alert(1);//\" is not a valid DNS name: it holds '\\'': only letters, digits, '-' and '.' are allowed"],
    ),
    (
        "DNS name that climbs out of a directory",
        dns("../../etc/passwd"),
        vec!["appliance.dns_name: \"../../etc/passwd\" is not a valid DNS name: it holds '/': only letters, digits, '-' and '.' are allowed"],
    ),
    (
        "DNS name with a wildcard",
        dns("\"*.example.com\""),
        vec!["appliance.dns_name: \"*.example.com\" is not a valid DNS name: it holds '*': only letters, digits, '-' and '.' are allowed"],
    ),
    (
        "DNS name with a space",
        dns("\"meet example.com\""),
        vec!["appliance.dns_name: \"meet example.com\" is not a valid DNS name: it holds ' ': only letters, digits, '-' and '.' are allowed"],
    ),
    (
        "DNS name with a shell expansion",
        dns("\"$(reboot).example.com\""),
        vec!["appliance.dns_name: \"$(reboot).example.com\" is not a valid DNS name: it holds '$': only letters, digits, '-' and '.' are allowed"],
    ),
    (
        "hostname with a line for /etc/hosts",
        b"#cloud-config\nhostname: \"meet\\n10.0.0.1 evil.example.com\"\n".to_vec(),
        vec!["hostname: holds a control character or line break"],
    ),
    ]
}

/// The cases: URLs.
fn urls_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // URLs.
    (
        "root_url with a backslash",
        root_url("\"https://chat.example.com\\\\@evil.example.com/\""),
        vec!["appliance.root_url: must be ASCII without spaces or backslashes (write the host in its xn-- form)"],
    ),
    (
        "root_url with a space in its path (nginx)",
        root_url("\"https://chat.example.com/a b\""),
        vec!["appliance.root_url: must be ASCII without spaces or backslashes (write the host in its xn-- form)"],
    ),
    (
        "root_url with an nginx variable in its path",
        root_url("\"https://chat.example.com/$host\""),
        vec!["appliance.root_url: its path may hold only letters, digits and '/', '.', '_', '~', '-', not '$'"],
    ),
    (
        "root_url with a brace in its path",
        root_url("\"https://chat.example.com/a{b\""),
        vec!["appliance.root_url: its path may hold only letters, digits and '/', '.', '_', '~', '-', not '{'"],
    ),
    (
        "root_url with an escaped dot-dot",
        root_url("https://chat.example.com/%2e%2e/x"),
        vec!["(valid: Config { dns_name: DnsName(\"meet.example.com\"), host_name: Some(\"meet.example.com\"), root_url: RootUrl { scheme: Https, host: DnsName(\"chat.example.com\"), port: 443, path: \"/x\" }, certificate: SelfSigned, admin: None, mongo_url: None, rocketchat_registration_token: None })"],
    ),
    (
        "root_url of scheme javascript",
        root_url("\"javascript:alert(1)\""),
        vec!["appliance.root_url: must start with https:// or http://"],
    ),
    (
        "root_url on an IPv6 address",
        root_url("\"https://[2001:db8::1]/\""),
        vec!["appliance.root_url: its host must be a DNS name, not an IP address (nginx picks the site by name)"],
    ),
    (
        "root_url with a user and password",
        root_url("https://admin:s3cret@chat.example.com/"),
        vec!["appliance.root_url: must not hold a user name or password"],
    ),
    (
        "root_url with a newline",
        root_url("\"https://chat.example.com/\\nEnvironment=X=1\""),
        vec!["appliance.root_url: holds a control character or line break"],
    ),
    ]
}

/// The cases: MongoDB URLs aimed at the environment file and the unit.
fn mongodb_urls_aimed_at_files_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // MongoDB URLs aimed at the environment file and the unit.
    (
        "mongo_url with a newline",
        mongo("\"mongodb://db/rocketchat\\nADMIN_PASS=x\""),
        vec!["appliance.mongo_url: holds a control character or line break"],
    ),
    (
        "mongo_url with a double quote",
        mongo("'mongodb://db/rocket\"chat'"),
        vec!["appliance.mongo_url: database \"rocket\\\"chat\" may hold only letters, digits, '_' and '-', at most 63"],
    ),
    (
        "mongo_url with a command substitution",
        mongo("\"mongodb://db/$(reboot)\""),
        vec!["appliance.mongo_url: database \"$(reboot)\" may hold only letters, digits, '_' and '-', at most 63"],
    ),
    (
        "mongo_url with a space",
        mongo("\"mongodb://db/rocket chat\""),
        vec!["appliance.mongo_url: must be ASCII without spaces (percent-encode the rest)"],
    ),
    (
        "mongo_url without hosts",
        mongo("mongodb:///rocketchat"),
        vec!["appliance.mongo_url: names no host"],
    ),
    ]
}

/// The cases: The administrator, aimed at the environment file and sh.
fn admin_aimed_at_files_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // The administrator, aimed at the environment file and sh.
    (
        "admin username with a command substitution",
        admin("{username: \"$(id)\", password: correct-horse-battery, email: ops@example.com}"),
        vec!["appliance.admin.username: may hold only letters, digits, '.', '_' and '-'"],
    ),
    (
        "admin username with a double quote",
        admin("{username: 'ad\"min', password: correct-horse-battery, email: ops@example.com}"),
        vec!["appliance.admin.username: may hold only letters, digits, '.', '_' and '-'"],
    ),
    (
        "admin email with a newline",
        admin("{username: admin, password: correct-horse-battery, email: \"ops@example.com\\nADMIN_PASS=x\"}"),
        vec!["appliance.admin.email: holds a control character or line break"],
    ),
    (
        "admin email with a backquote",
        admin("{username: admin, password: correct-horse-battery, email: \"`id`@example.com\"}"),
        vec!["(valid: Config { dns_name: DnsName(\"meet.example.com\"), host_name: Some(\"meet.example.com\"), root_url: RootUrl { scheme: Https, host: DnsName(\"meet.example.com\"), port: 3000, path: \"/\" }, certificate: SelfSigned, admin: Some(Admin { username: \"admin\", password: Secret(..), email: Email(\"`id`@example.com\") }), mongo_url: None, rocketchat_registration_token: None })"],
    ),
    (
        "admin password with a NUL",
        admin("{username: admin, password: \"correct-horse\\0battery\", email: ops@example.com}"),
        vec!["appliance.admin.password: holds a control character or line break"],
    ),
    ]
}

/// The cases: ACME.
fn acme_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let _ = inputs;
    vec![
    // ACME.
    (
        "letsencrypt email with a space",
        named("  certificate:\n    letsencrypt: {email: \"ops @example.com\"}\n"),
        vec!["appliance.certificate.letsencrypt.email: \"ops @example.com\" is not a valid e-mail address: its local part holds ' '"],
    ),
    (
        "letsencrypt directory with a newline",
        named("  certificate:\n    letsencrypt: {email: ops@example.com, directory: \"https://ca.example.com/\\ndir\"}\n"),
        vec!["appliance.certificate.letsencrypt.directory: holds a control character or line break"],
    ),
    ]
}

/// The cases: Several at once, in key order.
fn several_at_once_cases(inputs: &Inputs) -> Vec<Case<'_>> {
    let Inputs { colour_unknown, .. } = inputs;
    vec![
    // Several at once, in key order.
    (
        "three bad keys",
        named("  root_url: https://chat.example.com:22/\n  admin: {username: admin}\n  mongo_url: mongodb://db\n  colour: blue\n"),
        vec![
            &colour_unknown,
            "appliance.root_url: port 22 is taken: SSH listens there",
            "appliance.admin.password: missing (admin needs username, password and email, or none of them)",
            "appliance.admin.email: missing (admin needs username, password and email, or none of them)",
            "appliance.mongo_url: names no database: write mongodb://HOSTS/DATABASE",
        ],
    ),
    ]
}

#[test]
fn every_bad_input_gets_its_exact_lines() {
    let inputs = inputs();
    let good = &inputs.good;
    let key_body: Vec<&str> = good
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect();
    let cases: Vec<Case<'_>> = [
        reading_cases(&inputs),
        keys_cases(&inputs),
        dns_name_cases(&inputs),
        root_url_cases(&inputs),
        refused_by_apply_cases(&inputs),
        certificate_1_cases(&inputs),
        certificate_2_cases(&inputs),
        certificate_3_cases(&inputs),
        admin_cases(&inputs),
        mongodb_cases(&inputs),
        registration_token_cases(&inputs),
        issue_16_keys_and_certificates_cases(&inputs),
        encodings_cases(&inputs),
        yaml_cases(&inputs),
        mime_and_gzip_cases(&inputs),
        names_aimed_at_files_cases(&inputs),
        urls_cases(&inputs),
        mongodb_urls_aimed_at_files_cases(&inputs),
        admin_aimed_at_files_cases(&inputs),
        acme_cases(&inputs),
        several_at_once_cases(&inputs),
    ]
    .concat();

    assert!(cases.len() >= 150, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (name, user_data, expected) in &cases {
        let started = Instant::now();
        let got = match check(user_data, None) {
            Ok(config) => vec![format!("(valid: {config:?})")],
            Err(errors) => errors,
        };
        assert!(
            started.elapsed().as_secs() < 2,
            "{name}: took {:?}",
            started.elapsed()
        );
        assert!(
            got.len() <= firstboot::input::error::MAX_LINES,
            "{name}: {} lines",
            got.len()
        );
        if got != *expected {
            failures.push(format!(
                "{name}:\n  expected {expected:#?}\n  got      {got:#?}"
            ));
        }
        for line in &got {
            assert!(
                !line.contains('\n'),
                "{name}: a message spans lines: {line:?}"
            );
            assert!(!line.contains("PRIVATE KEY"), "{name}: {line}");
            assert!(
                line.starts_with("(valid: ")
                    || line.chars().count() <= firstboot::input::error::MAX_LINE,
                "{name}: a line of {} characters",
                line.chars().count()
            );
            assert!(
                !line.contains("s3cr3t"),
                "{name}: quotes the registration token: {line}"
            );
            for secret in &key_body {
                assert!(
                    !line.contains(&secret[..16]),
                    "{name}: quotes the key: {line}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn config_file_problems_name_config_yaml() {
    let user_data = b"#cloud-config\nfqdn: meet.example.com\n";
    let file = b"dns_name: meet.example.com\nroot_url: https://chat.example.com:22/\ncolor: blue\nadmin: {username: admin}\n";
    let errors = check(user_data, Some(file)).unwrap_err();
    assert_eq!(
        errors,
        [
            format!("config.yaml:color: unknown key {KNOWN}"),
            "config.yaml:root_url: port 22 is taken: SSH listens there".to_owned(),
            "config.yaml:admin.password: missing (admin needs username, password and email, or none of them)".to_owned(),
            "config.yaml:admin.email: missing (admin needs username, password and email, or none of them)".to_owned(),
        ]
    );
    let errors = check(user_data, Some(b"dns_name: [x\n")).unwrap_err();
    assert_eq!(
        errors,
        ["config.yaml: YAML: unclosed bracket '[' at line 1, column 11"]
    );
    let errors = check(user_data, Some(b"- a\n")).unwrap_err();
    assert_eq!(
        errors,
        ["config.yaml: the document is a list, not a mapping of keys"]
    );
}

#[test]
fn registration_token_in_config_yaml_is_checked_the_same() {
    let user_data = b"#cloud-config\nfqdn: meet.example.com\n";
    let file = b"dns_name: meet.example.com\nrocketchat_registration_token: \"s3cr3t tok\"\n";
    let errors = check(user_data, Some(file)).unwrap_err();
    assert_eq!(
        errors,
        [TOKEN_CHARACTERS.replace("appliance.", "config.yaml:")]
    );
}

/// With no DNS name and no address (no public IPv4 in the instance data, no default route),
/// the configuration is refused with why.
#[test]
fn ip_mode_without_an_address() {
    let sources = Sources::parse(b"#cloud-config\nhostname: bar3-4242\n", None).unwrap();
    let machine = firstboot::input::address::Machine {
        address: firstboot::input::address::IpAddress::NotFound(
            "no public IPv4 in run/cloud-init/instance-data.json, and no default route (/proc/net/route)".into(),
        ),
        local_hostname: None,
    };
    let errors: Vec<String> = sources
        .validate_on(Precedence::UserData, now(), &machine)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        ["appliance.dns_name: missing, and no address to serve on instead (IP mode): no public IPv4 in run/cloud-init/instance-data.json, and no default route (/proc/net/route)"]
    );
}

/// Whatever the user sends, `check` prints at most `MAX_LINES` lines of at most `MAX_LINE`
/// characters: a long echo is slow on a serial console and fills the journal.
#[test]
fn echoes_of_user_input_are_bounded() {
    use firstboot::input::error::{MAX_LINE, MAX_LINES};
    let long_label = format!("{}.example.com", "a".repeat(900_000));
    let many_keys: String = (0..2000)
        .map(|i| format!("  {}{i}: x\n", "k".repeat(50)))
        .collect();
    let long_key = format!("  {}: x\n", "k".repeat(500_000));
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf_with(
        &["other.example.com"],
        LeafOptions {
            validity: Some(((2020, 1, 1), (2025, 6, 30))),
            ..Default::default()
        },
    );
    let long_chain = format!("{}{}", leaf.pem, leaf.pem.repeat(300));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a 900 KB label", dns(&long_label)),
        ("2000 unknown keys", named(&many_keys)),
        ("a 500 KB unknown key", named(&long_key)),
        (
            "a chain of 301 bad certificates",
            with_cert("", &long_chain, &leaf.key_pem).into_bytes(),
        ),
    ];
    for (name, user_data) in &cases {
        let lines = check(user_data, None).unwrap_err();
        assert!(lines.len() <= MAX_LINES, "{name}: {} lines", lines.len());
        for line in &lines {
            assert!(
                line.chars().count() <= MAX_LINE,
                "{name}: a line of {} characters",
                line.len()
            );
        }
    }
    let lines = check(&cases[0].1, None).unwrap_err();
    assert_eq!(
        lines,
        [format!(
            "appliance.dns_name: {:?} is not a valid DNS name: label {:?} is longer than 63 characters",
            format!("{}...", "a".repeat(80)),
            format!("{}...", "a".repeat(80)),
        )]
    );
    let lines = check(&cases[1].1, None).unwrap_err();
    assert_eq!(lines.len(), MAX_LINES);
    assert_eq!(
        lines[MAX_LINES - 1],
        format!("... and {} more problems", 2000 - (MAX_LINES - 1))
    );
}
