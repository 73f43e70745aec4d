//! Downloads: resumable, with progress, cached by content hash; signed checksum files.
//!
//! The cache root holds:
//! - `sha256/<hex>`: complete files, verified, named by their SHA-256. Nothing else is ever
//!   written under these names: a download is renamed here only after its hash matched.
//! - `partial/<hex>`: a download in progress or interrupted; the next fetch of the same hash
//!   resumes it with an HTTP Range request. `partial/<hex>.lock` is held (flock) while a process
//!   works on it, so two builds sharing a cache never append to the same file.
//! - `by-url/<sha256 of the URL>`: small files whose hash is not known in advance (SHA256SUMS
//!   and its signature), fetched fresh on every online run and reused by `--offline`.
//!
//! Proxies come from the environment (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, lower case too,
//! and `NO_PROXY`), as ureq reads them: one proxy for both schemes.

use crate::util::host;
use crate::util::partial::PartialFile;
use crate::util::progress::{Reporter, Step};
use crate::util::size::human;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A read that stalls this long fails the download; the next run resumes it.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The most `fetch_small` reads: checksum lists and signatures are a few KiB.
const SMALL_LIMIT: u64 = 16 << 20;
const BUFFER: usize = 256 << 10;

/// Downloads cached by content: `<root>/sha256/<hex>`; partial downloads in `<root>/partial/`;
/// small files cached by URL (for `--offline`) in `<root>/by-url/<sha256 of url>`.
pub struct DownloadCache {
    root: PathBuf,
    agent: ureq::Agent,
    reporter: Reporter,
}

/// What one download attempt produced in the partial file.
struct Downloaded {
    sha256: String,
    resumed: bool,
}

impl DownloadCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_proxy(root, ureq::Proxy::try_from_env())
    }

    fn with_proxy(root: impl Into<PathBuf>, proxy: Option<ureq::Proxy>) -> Self {
        let agent = ureq::Agent::config_builder()
            .proxy(proxy)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            // Status codes are checked here, to name the URL and to see 206 and 416.
            .http_status_as_error(false)
            // Byte ranges and hashes are about the file as stored, never a re-encoding of it.
            .accept_encoding("identity")
            .build()
            .new_agent();
        DownloadCache {
            root: root.into(),
            agent,
            reporter: Reporter::new(),
        }
    }

    /// Reports progress through `reporter` (the run's own) instead of a new one.
    pub fn with_reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = reporter;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cached file for this content hash, if present (no network).
    pub fn cached(&self, sha256: &str) -> Option<PathBuf> {
        let hex = parse_sha256(sha256).ok()?;
        let path = self.root.join("sha256").join(hex);
        path.is_file().then_some(path)
    }

    /// Returns the path of a file with this SHA-256 in the cache, downloading `url` when it is
    /// not there. Resumes an earlier partial download with a Range request, and starts over
    /// when the server cannot continue it or the resumed file does not match. An interrupted
    /// download is an error that keeps the partial file for the next run.
    pub fn fetch(&self, url: &str, sha256: &str, offline: bool) -> Result<PathBuf> {
        let want =
            parse_sha256(sha256).with_context(|| format!("reading the SHA-256 given for {url}"))?;
        if let Some(path) = self.cached(&want) {
            return Ok(path);
        }
        if offline {
            bail!(
                "offline: {url} (sha256 {want}) is not in the download cache {}",
                self.root.display()
            );
        }
        let partial_dir = self.root.join("partial");
        let final_dir = self.root.join("sha256");
        for dir in [&partial_dir, &final_dir] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let lock_path = partial_dir.join(format!("{want}.lock"));
        let lock = lock_exclusive(&lock_path)?;
        // Another process may have finished this download while we waited for the lock.
        if let Some(path) = self.cached(&want) {
            return Ok(path);
        }
        let part = partial_dir.join(&want);
        let mut got = self
            .download(url, &part, true)
            .with_context(|| format!("downloading {url}"))?;
        if got.sha256 != want && got.resumed {
            eprintln!("{url}: the resumed download does not match its SHA-256; starting over");
            got = self
                .download(url, &part, false)
                .with_context(|| format!("downloading {url} again from the start"))?;
        }
        if got.sha256 != want {
            let _ = fs::remove_file(&part);
            bail!(
                "{url} does not have the expected SHA-256: expected {want}, got {}",
                got.sha256
            );
        }
        let dest = final_dir.join(&want);
        File::open(&part)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("flushing {}", part.display()))?;
        fs::rename(&part, &dest)
            .with_context(|| format!("renaming {} to {}", part.display(), dest.display()))?;
        // Safe while we hold it: whoever opened it and waits checks the cache first.
        let _ = fs::remove_file(&lock_path);
        drop(lock);
        Ok(dest)
    }

    /// A small file whose hash is not known in advance (SHA256SUMS, its signature): fetched
    /// fresh when online and stored by URL, so that `--offline` can reuse it.
    pub fn fetch_small(&self, url: &str, offline: bool) -> Result<PathBuf> {
        self.fetch_small_via(url, url, offline)
    }

    /// [`DownloadCache::fetch_small`] of `url` downloaded from `from` (its mirror), stored
    /// under `url`: another mirror, or none, finds it again.
    pub fn fetch_small_via(&self, url: &str, from: &str, offline: bool) -> Result<PathBuf> {
        let dir = self.root.join("by-url");
        let dest = dir.join(hex::encode(Sha256::digest(url.as_bytes())));
        if offline {
            if dest.is_file() {
                return Ok(dest);
            }
            bail!(
                "offline: {url} is not in the download cache {}",
                self.root.display()
            );
        }
        let data = self
            .get_small(from)
            .with_context(|| format!("downloading {from}"))?;
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut out = PartialFile::create(&dest)?;
        out.file_mut()
            .write_all(&data)
            .with_context(|| format!("writing {}", out.path().display()))?;
        out.commit()
    }

    fn get_small(&self, url: &str) -> Result<Vec<u8>> {
        let resp = self.get(url, 0)?;
        let status = resp.status();
        if status != ureq::http::StatusCode::OK {
            bail!("{}", http_error(status));
        }
        resp.into_body()
            .into_with_config()
            .limit(SMALL_LIMIT)
            .read_to_vec()
            .context("reading the response")
    }

    fn get(&self, url: &str, offset: u64) -> Result<ureq::http::Response<ureq::Body>> {
        let mut req = self.agent.get(url);
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        req.call().map_err(|e| match no_answer(url, &e) {
            Some(reason) => anyhow::Error::new(Unreachable {
                url: url.to_string(),
                reason,
            }),
            None => anyhow::Error::new(e).context("sending the request"),
        })
    }

    /// Downloads `url` into `part`, continuing what is there when `resume` is set; returns the
    /// SHA-256 of the whole partial file.
    fn download(&self, url: &str, part: &Path, resume: bool) -> Result<Downloaded> {
        let mut offset = match resume {
            true => fs::metadata(part).map(|m| m.len()).unwrap_or(0),
            false => 0,
        };
        // At most two requests: a range the server cannot serve sends us back to byte 0.
        let resp = loop {
            let resp = self.get(url, offset)?;
            let status = resp.status().as_u16();
            match status {
                206 if offset > 0 => {
                    if content_range_start(&resp) == Some(offset) {
                        break resp;
                    }
                    eprintln!("{url}: the server sent another range than asked; starting over");
                }
                416 if offset > 0 => {
                    eprintln!("{url}: the partial download is larger than the file; starting over");
                }
                200 => {
                    if offset > 0 {
                        eprintln!("{url}: the server does not resume downloads; starting over");
                    }
                    offset = 0;
                    break resp;
                }
                _ => bail!("{}", http_error(resp.status())),
            }
            offset = 0;
        };
        let total = resp.body().content_length().map(|len| len + offset);

        let mut hasher = Sha256::new();
        let mut file = if offset > 0 {
            let mut existing =
                File::open(part).with_context(|| format!("opening {}", part.display()))?;
            std::io::copy(&mut existing, &mut hasher)
                .with_context(|| format!("reading {}", part.display()))?;
            OpenOptions::new().append(true).open(part)
        } else {
            File::create(part)
        }
        .with_context(|| format!("opening {} for writing", part.display()))?;

        let name = url.rsplit('/').find(|s| !s.is_empty()).unwrap_or(url);
        let mut progress = Progress::new(&self.reporter, name, total, offset);
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; BUFFER];
        let mut position = offset;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "the transfer stopped after {} of {}; {} keeps what arrived and \
                             the next run resumes from there",
                            human(position),
                            total.map_or("an unknown size".to_string(), human),
                            part.display()
                        )
                    })
                }
            };
            file.write_all(&buf[..n])
                .with_context(|| format!("writing {}", part.display()))?;
            hasher.update(&buf[..n]);
            position += n as u64;
            progress.set(position);
        }
        Ok(Downloaded {
            sha256: hex::encode(hasher.finalize()),
            resumed: offset > 0,
        })
    }
}

/// Download progress: the run's bar on a terminal; on a log, a line per 10% (the reporter
/// itself prints only the start and the end there).
struct Progress {
    step: Step,
    name: String,
    total: Option<u64>,
    /// The last tenth printed, on a log.
    tenth: Option<u64>,
}

impl Progress {
    fn new(reporter: &Reporter, name: &str, total: Option<u64>, start: u64) -> Self {
        let what = format!("downloading {name}");
        let step = match total {
            Some(t) => reporter.bytes(&what, t),
            None => reporter.step(&what),
        };
        step.set(start);
        let on_log = !std::io::stderr().is_terminal();
        let tenth = match (on_log, total) {
            (true, Some(t)) if t > 0 => Some(start * 10 / t),
            _ => None,
        };
        Progress {
            step,
            name: name.to_string(),
            total,
            tenth,
        }
    }

    fn set(&mut self, position: u64) {
        self.step.set(position);
        if let (Some(last), Some(total)) = (self.tenth, self.total) {
            let now = position * 10 / total.max(1);
            if now > last {
                self.tenth = Some(now);
                eprintln!(
                    "    {}: {}% of {}",
                    self.name,
                    (now * 10).min(100),
                    human(total)
                );
            }
        }
    }
}

/// Why a request got no answer from the server at all, in a few words; `None` for other
/// errors (a bad URL, a broken answer).
fn no_answer(url: &str, e: &ureq::Error) -> Option<String> {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    Some(match e {
        ureq::Error::HostNotFound => format!("cannot resolve {host}"),
        // getaddrinfo's failure, which ureq passes on as an I/O error.
        ureq::Error::Io(io) if io.to_string().contains("failed to lookup address") => {
            format!("cannot resolve {host}")
        }
        ureq::Error::Io(io) => format!("cannot connect to {host}: {io}"),
        ureq::Error::ConnectionFailed => format!("cannot connect to {host}"),
        ureq::Error::Timeout(_) => format!("{host} did not answer in time"),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => format!("TLS with {host} failed: {e}"),
        _ => return None,
    })
}

fn http_error(status: ureq::http::StatusCode) -> String {
    format!(
        "the server answered HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string()
}

/// The first byte of a 206 response's `Content-Range: bytes FIRST-LAST/TOTAL`.
fn content_range_start(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let value = resp.headers().get("content-range")?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// Takes the lock file's exclusive flock, waiting for another process that holds it. The lock
/// lasts as long as the returned file is open.
fn lock_exclusive(path: &Path) -> Result<File> {
    use std::os::fd::AsRawFd;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    loop {
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
    }
}

/// A SHA-256 in hex, lower case.
fn parse_sha256(text: &str) -> Result<String> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{text:?} is not a SHA-256 (64 hexadecimal digits)");
    }
    Ok(text.to_ascii_lowercase())
}

/// Checks a detached OpenPGP signature with `gpgv --keyring KEYRING SIG DATA`. A bad signature
/// or a key not in the keyring is an error saying which file failed against which keyring, with
/// gpgv's own reason.
pub fn verify_detached(data: &Path, signature: &Path, keyring: &Path) -> Result<()> {
    let gpgv = host::require("gpgv")?;
    // gpgv looks for a keyring named without a slash in its home directory, not here.
    let keyring_abs = std::path::absolute(keyring)
        .with_context(|| format!("finding the keyring {}", keyring.display()))?;
    if !keyring_abs.is_file() {
        bail!("the keyring {} does not exist", keyring.display());
    }
    let out = Command::new(gpgv)
        .arg("--status-fd")
        .arg("1")
        .arg("--keyring")
        .arg(&keyring_abs)
        .arg(signature)
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .context("running gpgv")?;
    // Exit status 0 alone is what gpgv promises; VALIDSIG also makes sure a signature was
    // actually checked.
    let status = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && status.lines().any(|l| l.starts_with("[GNUPG:] VALIDSIG ")) {
        return Ok(());
    }
    let reason = host::last_lines(&out, 1);
    bail!(
        "the signature {} of {} does not verify against the keyring {}: {}",
        signature.display(),
        data.display(),
        keyring.display(),
        reason.strip_prefix("gpgv: ").unwrap_or(&reason)
    )
}

/// The hash for `file_name` in a SHA256SUMS text (lines `<hex>  name` or `<hex> *name`), in
/// lower case.
pub fn sum_for(sums: &str, file_name: &str) -> Result<String> {
    let mut found: Option<String> = None;
    for line in sums.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((hash, rest)) = line.split_once(' ') else {
            continue;
        };
        let name = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .unwrap_or(rest);
        if name != file_name {
            continue;
        }
        let hash = parse_sha256(hash)
            .with_context(|| format!("reading the SHA256SUMS line for {file_name}"))?;
        match &found {
            Some(other) if *other != hash => {
                bail!("SHA256SUMS lists {file_name} twice, with different hashes")
            }
            _ => found = Some(hash),
        }
    }
    found.with_context(|| format!("SHA256SUMS has no line for {file_name}"))
}

/// A download that got no answer at all (no route, no DNS, refused, timed out, TLS failed):
/// the run's edge turns it into advice ([`crate::inputs::no_network_advice`]).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Unreachable {
    pub url: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::hash::sha256_file;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    /// How the test server misbehaves.
    #[derive(Clone, Copy, Default)]
    struct Behaviour {
        /// Close the first response's connection after this many body bytes.
        cut_first_after: Option<usize>,
        /// Answer 200 with the whole file to a Range request.
        ignore_range: bool,
        /// Answer a Range request with 206 and the whole file (a broken server).
        wrong_range: bool,
        /// Wait this long before answering.
        delay: Duration,
    }

    /// A request the server saw: path and Range header.
    type Seen = (String, Option<String>);

    /// A tiny HTTP/1.1 server on 127.0.0.1: one response per connection.
    struct Server {
        base: String,
        files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Server {
        fn start(behaviour: Behaviour) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let files = Arc::new(Mutex::new(HashMap::new()));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (f, s) = (files.clone(), seen.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let first = s.lock().unwrap().is_empty();
                    if let Some(seen) = read_request(&stream) {
                        s.lock().unwrap().push(seen.clone());
                        let data = f.lock().unwrap().get(&seen.0).cloned();
                        std::thread::sleep(behaviour.delay);
                        let cut = behaviour.cut_first_after.filter(|_| first);
                        let _ = respond(stream, data, seen.1, behaviour, cut);
                    }
                }
            });
            Server { base, files, seen }
        }

        fn put(&self, path: &str, data: &[u8]) -> String {
            self.files
                .lock()
                .unwrap()
                .insert(path.to_string(), data.to_vec());
            format!("{}{path}", self.base)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        fn ranges(&self) -> Vec<Option<String>> {
            self.seen().into_iter().map(|(_, r)| r).collect()
        }
    }

    fn read_request(stream: &TcpStream) -> Option<Seen> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let path = line.split_whitespace().nth(1)?.to_string();
        let mut range = None;
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let header = line.trim_end();
            if header.is_empty() {
                return Some((path, range));
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("range") {
                    range = Some(value.trim().to_string());
                }
            }
        }
    }

    fn respond(
        mut stream: TcpStream,
        data: Option<Vec<u8>>,
        range: Option<String>,
        behaviour: Behaviour,
        cut: Option<usize>,
    ) -> std::io::Result<()> {
        let start = range
            .filter(|_| !behaviour.ignore_range)
            .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok());
        let (status, extra, body) = match (data, start) {
            (None, _) => ("404 Not Found", String::new(), b"no such file".to_vec()),
            (Some(d), Some(s)) if s >= d.len() => (
                "416 Range Not Satisfiable",
                format!("Content-Range: bytes */{}\r\n", d.len()),
                Vec::new(),
            ),
            (Some(d), Some(_)) if behaviour.wrong_range => (
                "206 Partial Content",
                format!("Content-Range: bytes 0-{}/{}\r\n", d.len() - 1, d.len()),
                d,
            ),
            (Some(d), Some(s)) => (
                "206 Partial Content",
                format!("Content-Range: bytes {s}-{}/{}\r\n", d.len() - 1, d.len()),
                d[s..].to_vec(),
            ),
            (Some(d), None) => ("200 OK", String::new(), d),
        };
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        )?;
        stream.write_all(&body[..cut.unwrap_or(body.len()).min(body.len())])?;
        stream.flush()?;
        stream.shutdown(Shutdown::Write)
    }

    /// A few MiB that do not repeat (xorshift).
    fn payload(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// A cache that never goes through a proxy: the tests only talk to 127.0.0.1.
    fn cache(dir: &Path) -> DownloadCache {
        DownloadCache::with_proxy(dir, None)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    const SIZE: usize = 3 << 20;

    #[test]
    fn fetch_downloads_verifies_and_caches() {
        let server = Server::start(Behaviour::default());
        let data = payload(SIZE, 1);
        let url = server.put("/img/root.tar.xz", &data);
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        assert_eq!(cache.cached(&sha(&data)), None);

        let path = cache
            .fetch(&url, &sha(&data).to_uppercase(), false)
            .unwrap();
        assert_eq!(path, dir.path().join("sha256").join(sha(&data)));
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(sha256_file(&path).unwrap(), sha(&data));
        assert_eq!(cache.cached(&sha(&data)), Some(path.clone()));
        assert_eq!(entries(&dir.path().join("partial")), Vec::<String>::new());

        // A second fetch is served from the cache.
        assert_eq!(cache.fetch(&url, &sha(&data), false).unwrap(), path);
        assert_eq!(server.ranges(), vec![None]);
    }

    #[test]
    fn interrupted_download_resumes_with_a_range_request() {
        let cut = 1_000_000;
        let server = Server::start(Behaviour {
            cut_first_after: Some(cut),
            ..Behaviour::default()
        });
        let data = payload(SIZE, 2);
        let url = server.put("/root.tar.xz", &data);
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());

        let err = format!("{:#}", cache.fetch(&url, &sha(&data), false).unwrap_err());
        assert!(err.starts_with(&format!("downloading {url}: the transfer stopped after")));
        let part = dir.path().join("partial").join(sha(&data));
        assert_eq!(fs::read(&part).unwrap(), &data[..cut]);
        assert!(!dir.path().join("sha256").join(sha(&data)).exists());

        let path = cache.fetch(&url, &sha(&data), false).unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(server.ranges(), vec![None, Some(format!("bytes={cut}-"))]);
        assert!(!part.exists());
    }

    #[test]
    fn server_ignoring_the_range_still_gives_the_right_file() {
        let cut = 700_000;
        let server = Server::start(Behaviour {
            cut_first_after: Some(cut),
            ignore_range: true,
            ..Behaviour::default()
        });
        let data = payload(SIZE, 3);
        let url = server.put("/root.tar.xz", &data);
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        cache.fetch(&url, &sha(&data), false).unwrap_err();
        let path = cache.fetch(&url, &sha(&data), false).unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(server.ranges(), vec![None, Some(format!("bytes={cut}-"))]);
    }

    #[test]
    fn unusable_partial_data_starts_over() {
        let data = payload(SIZE, 4);
        let broken = Behaviour {
            wrong_range: true,
            ..Behaviour::default()
        };
        // (the server, what the partial file holds, the ranges the server should see)
        let cases: [(Behaviour, Vec<u8>, Vec<Option<String>>); 3] = [
            // Wrong bytes: the resumed file's hash is wrong.
            (
                Behaviour::default(),
                vec![0xAA; 4096],
                vec![Some("bytes=4096-".into()), None],
            ),
            // Longer than the file: 416.
            (
                Behaviour::default(),
                vec![0; SIZE + 10],
                vec![Some(format!("bytes={}-", SIZE + 10)), None],
            ),
            // Right bytes, but the server answers with another range than asked.
            (
                broken,
                data[..4096].to_vec(),
                vec![Some("bytes=4096-".into()), None],
            ),
        ];
        for (behaviour, partial, ranges) in cases {
            let server = Server::start(behaviour);
            let url = server.put("/f", &data);
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("partial")).unwrap();
            fs::write(dir.path().join("partial").join(sha(&data)), &partial).unwrap();
            let path = cache(dir.path()).fetch(&url, &sha(&data), false).unwrap();
            assert_eq!(fs::read(&path).unwrap(), data);
            assert_eq!(server.ranges(), ranges);
        }
    }

    #[test]
    fn concurrent_fetches_of_one_file_download_it_once() {
        let server = Server::start(Behaviour {
            delay: Duration::from_millis(300),
            ..Behaviour::default()
        });
        let data = payload(SIZE, 7);
        let url = server.put("/root.tar.xz", &data);
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Barrier::new(2);
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let fetchers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        cache(dir.path()).fetch(&url, &sha(&data), false).unwrap()
                    })
                })
                .collect();
            fetchers.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(paths[0], paths[1]);
        assert_eq!(fs::read(&paths[0]).unwrap(), data);
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn http_errors_name_the_url_and_the_status() {
        let server = Server::start(Behaviour::default());
        let url = format!("{}/missing.tar.xz", server.base);
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let err = cache.fetch(&url, &"0".repeat(64), false).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("downloading {url}: the server answered HTTP 404 Not Found")
        );
        let err = cache.fetch_small(&url, false).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("downloading {url}: the server answered HTTP 404 Not Found")
        );
        assert_eq!(entries(&dir.path().join("sha256")), Vec::<String>::new());
    }

    #[test]
    fn wrong_content_is_an_error_and_never_cached() {
        let server = Server::start(Behaviour::default());
        let data = payload(SIZE, 5);
        let expected = sha(b"something else");
        let url = server.put("/root.tar.xz", &data);
        let dir = tempfile::tempdir().unwrap();
        let err = cache(dir.path()).fetch(&url, &expected, false).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "{url} does not have the expected SHA-256: expected {expected}, got {}",
                sha(&data)
            )
        );
        assert_eq!(entries(&dir.path().join("sha256")), Vec::<String>::new());
        assert!(!dir.path().join("partial").join(&expected).exists());
    }

    #[test]
    fn a_malformed_hash_is_refused_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let err = cache(dir.path())
            .fetch("http://127.0.0.1:9/x", "abc", false)
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "reading the SHA-256 given for http://127.0.0.1:9/x: \"abc\" is not a SHA-256 (64 hexadecimal digits)"
        );
    }

    #[test]
    fn offline_uses_the_cache_only() {
        let server = Server::start(Behaviour::default());
        let data = payload(10_000, 6);
        let url = server.put("/a.tar.xz", &data);
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let path = cache.fetch(&url, &sha(&data), false).unwrap();
        assert_eq!(cache.fetch(&url, &sha(&data), true).unwrap(), path);
        assert_eq!(server.seen().len(), 1);

        let missing = sha(b"not here");
        let err = cache.fetch(&url, &missing, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "offline: {url} (sha256 {missing}) is not in the download cache {}",
                dir.path().display()
            )
        );
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn small_files_are_fetched_fresh_and_kept_for_offline() {
        let server = Server::start(Behaviour::default());
        let url = server.put("/SHA256SUMS", b"one\n");
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let path = cache.fetch_small(&url, false).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one\n");
        assert_eq!(path, dir.path().join("by-url").join(sha(url.as_bytes())));

        server.put("/SHA256SUMS", b"two\n");
        assert_eq!(cache.fetch_small(&url, false).unwrap(), path);
        assert_eq!(fs::read(&path).unwrap(), b"two\n");
        assert_eq!(server.seen().len(), 2);

        assert_eq!(cache.fetch_small(&url, true).unwrap(), path);
        assert_eq!(server.seen().len(), 2);
        assert_eq!(entries(&dir.path().join("by-url")).len(), 1);

        let other = format!("{}/SHA256SUMS.gpg", server.base);
        assert_eq!(
            cache.fetch_small(&other, true).unwrap_err().to_string(),
            format!(
                "offline: {other} is not in the download cache {}",
                dir.path().display()
            )
        );
    }

    #[test]
    fn sums_table() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let sums = format!(
            "{a} *root.tar.xz\n{b}  disk1.img\r\n\n{a}  name with spaces.img\n\
             {a} single-space.img\nnot-a-hash  broken.img\n"
        );
        let good = [
            ("root.tar.xz", a.clone()),
            ("disk1.img", b.to_lowercase()),
            ("name with spaces.img", a.clone()),
            ("single-space.img", a.clone()),
        ];
        for (name, want) in good {
            assert_eq!(sum_for(&sums, name).unwrap(), want, "{name}");
        }
        let twice = format!("{a}  x.img\n{}  x.img\n", "c".repeat(64));
        let bad = [
            (
                sums.as_str(),
                "absent.img",
                "SHA256SUMS has no line for absent.img",
            ),
            (
                sums.as_str(),
                "broken.img",
                "reading the SHA256SUMS line for broken.img: \"not-a-hash\" is not a SHA-256 \
                 (64 hexadecimal digits)",
            ),
            (
                twice.as_str(),
                "x.img",
                "SHA256SUMS lists x.img twice, with different hashes",
            ),
            ("", "root.tar.xz", "SHA256SUMS has no line for root.tar.xz"),
            (
                "<html>not found</html>",
                "root.tar.xz",
                "SHA256SUMS has no line for root.tar.xz",
            ),
            // A name is matched whole, not as a suffix.
            (sums.as_str(), "tar.xz", "SHA256SUMS has no line for tar.xz"),
        ];
        for (text, name, want) in bad {
            assert_eq!(format!("{:#}", sum_for(text, name).unwrap_err()), want);
        }
    }

    /// A throwaway GnuPG home with one signing key; its agent is stopped on drop.
    struct GpgHome {
        dir: tempfile::TempDir,
    }

    impl GpgHome {
        fn new(name: &str) -> GpgHome {
            let dir = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
            let home = GpgHome { dir };
            home.gpg(&[
                "--passphrase",
                "",
                "--quick-gen-key",
                &format!("{name} <t@example.invalid>"),
                "ed25519",
                "sign",
                "never",
            ]);
            home
        }

        fn gpg(&self, args: &[&str]) -> Vec<u8> {
            let out = Command::new("gpg")
                .env("GNUPGHOME", self.dir.path())
                .arg("--batch")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }

        fn sign(&self, file: &Path) -> PathBuf {
            let sig = file.with_extension("gpg");
            self.gpg(&[
                "--yes",
                "--detach-sign",
                "-o",
                sig.to_str().unwrap(),
                file.to_str().unwrap(),
            ]);
            sig
        }
    }

    impl Drop for GpgHome {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf")
                .env("GNUPGHOME", self.dir.path())
                .args(["--kill", "gpg-agent"])
                .status();
        }
    }

    #[test]
    fn detached_signatures() {
        let trusted = GpgHome::new("Test");
        let stranger = GpgHome::new("Stranger");
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("keyring.gpg");
        fs::write(&keyring, trusted.gpg(&["--export"])).unwrap();
        let sums = dir.path().join("SHA256SUMS");
        fs::write(&sums, format!("{}  root.tar.xz\n", "a".repeat(64))).unwrap();
        let sig = trusted.sign(&sums);

        verify_detached(&sums, &sig, &keyring).unwrap();

        let fails = |data: &Path, sig: &Path, keyring: &Path, reason: &str| {
            let err = verify_detached(data, sig, keyring).unwrap_err();
            assert_eq!(
                format!("{err:#}"),
                format!(
                    "the signature {} of {} does not verify against the keyring {}: {reason}",
                    sig.display(),
                    data.display(),
                    keyring.display()
                )
            );
        };

        let tampered = dir.path().join("tampered");
        fs::write(&tampered, format!("{}  root.tar.xz\n", "b".repeat(64))).unwrap();
        fails(
            &tampered,
            &sig,
            &keyring,
            "BAD signature from \"Test <t@example.invalid>\"",
        );

        let other = dir.path().join("other");
        fs::copy(&sums, &other).unwrap();
        let other_sig = stranger.sign(&other);
        fails(
            &other,
            &other_sig,
            &keyring,
            "Can't check signature: No public key",
        );

        let err = verify_detached(&sums, &sig, &dir.path().join("none.gpg")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the keyring {} does not exist",
                dir.path().join("none.gpg").display()
            )
        );
    }
}
