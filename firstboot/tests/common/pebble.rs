//! Let's Encrypt's test CA, `pebble` (Debian package `pebble`), on 127.0.0.1 only: its ACME
//! server, `pebble-challtestsrv` as its DNS server (every name is 127.0.0.1, no AAAA), and a
//! small HTTP server standing in for nginx's port 80, which pebble's HTTP-01 validation
//! reaches. Nothing listens on or connects to any other address.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Ca;

/// The name pebble's own HTTPS certificate is for, besides 127.0.0.1 (looked up through
/// challtestsrv, to test the client's resolver).
pub const PEBBLE_NAME: &str = "acme.example.com";

/// pebble and its DNS server, stopped when dropped.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// The ACME directory URL (`https://127.0.0.1:PORT/dir`).
    pub directory: String,
    /// The same by name: `https://acme.example.com:PORT/dir`.
    pub directory_by_name: String,
    /// The CA of pebble's HTTPS certificate (the client's `--ca-file`).
    pub ca_file: PathBuf,
    /// challtestsrv's DNS server.
    pub dns: SocketAddr,
    management: u16,
    children: Vec<Child>,
}

/// Whether pebble is installed (`apt-get install pebble`).
pub fn installed() -> bool {
    ["pebble", "pebble-challtestsrv"].iter().all(|tool| {
        Command::new(tool)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// A TCP port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on 127.0.0.1:`http_port`.
    pub fn start(http_port: u16) -> Pebble {
        assert!(
            installed(),
            "pebble and pebble-challtestsrv are needed: apt-get install pebble"
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("Test CA of pebble's HTTPS");
        let leaf = ca.leaf(&["127.0.0.1", PEBBLE_NAME]);
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        std::fs::write(dir.path().join("cert.pem"), &leaf.pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
        let (acme, management, tls, dns, dns_management) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        let config_file = dir.path().join("pebble-config.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let logs = dir.path().to_path_buf();
        let log = |name: &str| std::fs::File::create(logs.join(name)).unwrap();
        let dns_server = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .unwrap();
        let mut pebble = Pebble {
            directory: format!("https://127.0.0.1:{acme}/dir"),
            directory_by_name: format!("https://{PEBBLE_NAME}:{acme}/dir"),
            ca_file,
            dns: SocketAddr::from(([127, 0, 0, 1], dns)),
            management,
            children: vec![dns_server],
            dir,
        };
        let server = Command::new("pebble")
            .arg("-config")
            .arg(&config_file)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        pebble.children.push(server);
        for port in [acme, management, dns, dns_management] {
            pebble.wait_for(port);
        }
        pebble
    }

    fn wait_for(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            for child in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("a pebble process ended: {status}\n{}", self.logs());
                }
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on 127.0.0.1:{port}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// pebble's and challtestsrv's output, for a failed test.
    pub fn logs(&self) -> String {
        [
            "pebble.log",
            "pebble.err",
            "challtestsrv.log",
            "challtestsrv.err",
        ]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            format!("--- {f}\n{text}")
        })
        .collect()
    }

    /// The root of the chains pebble issues (made anew at each start), from its management
    /// interface.
    pub fn issuing_root(&self) -> String {
        let pem = std::fs::read(&self.ca_file).unwrap();
        let ca = ureq::tls::Certificate::from_pem(&pem).unwrap();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .build()
            .new_agent();
        agent
            .get(&format!("https://127.0.0.1:{}/roots/0", self.management))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the stand-in for nginx answers on `/.well-known/acme-challenge/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The file from the webroot, as nginx's site does.
    Webroot,
    /// 404, as a web server without the webroot location would.
    NotFound,
    /// Some other text with status 200.
    Wrong,
}

/// One request the stand-in received: the Host header and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub host: String,
    pub path: String,
    pub status: u16,
}

/// nginx's port 80 for HTTP-01: serves `<root>/var/www/acme` on 127.0.0.1.
pub struct ChallengeServer {
    pub port: u16,
    pub answer: Arc<Mutex<Answer>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChallengeServer {
    pub fn start(webroot: &Path) -> ChallengeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new(Answer::Webroot));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answer, seen, stop) = (answer.clone(), seen.clone(), stop.clone());
            let webroot = webroot.to_path_buf();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let mode = *answer.lock().unwrap();
                        if let Some(s) = serve(stream, &webroot, mode) {
                            seen.lock().unwrap().push(s);
                        }
                    }
                }
            })
        };
        ChallengeServer {
            port,
            answer,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for ChallengeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, webroot: &Path, answer: Answer) -> Option<Seen> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_owned();
    let mut host = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("host") {
                host = value.trim().to_owned();
            }
        }
    }
    let file = path
        .strip_prefix("/.well-known/acme-challenge/")
        .filter(|t| !t.is_empty() && !t.contains('/') && !t.contains(".."))
        .map(|t| webroot.join(".well-known/acme-challenge").join(t));
    let (status, body) = match (answer, file) {
        (Answer::Webroot, Some(file)) => match std::fs::File::open(&file) {
            Ok(mut f) => {
                let mut body = Vec::new();
                f.read_to_end(&mut body).ok()?;
                (200, body)
            }
            Err(_) => (404, b"not found\n".to_vec()),
        },
        (Answer::Wrong, Some(_)) => (200, b"not the key authorization".to_vec()),
        _ => (404, b"not found\n".to_vec()),
    };
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(&body).ok()?;
    Some(Seen { host, path, status })
}
