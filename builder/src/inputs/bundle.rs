//! Bundles: every external input of a build in one directory, for builds without a network.
//!
//! `appliance fetch PROFILE --out DIR` makes one; `appliance build PROFILE --bundle DIR` builds
//! from it. The layout:
//!
//! ```text
//! bundle.json     format, the profile it was made for (name, file hash, variables), the base,
//!                 and every file below with its size and SHA-256
//! SHA256SUMS      the same hashes (bundle.json's too), for `sha256sum -c SHA256SUMS`
//! base/           a tarball base: the tarball with its SHA256SUMS and signature as published;
//!                 a debootstrap base: debootstrap.tar (`debootstrap --make-tarball`)
//! apt/            every .deb provisioning installed, with Packages and Release made by
//!                 apt-ftparchive: a flat apt repository (`deb [trusted=yes] file:... ./`)
//! downloads/      what the overlays' helpers fetched (fetch-pinned, apt-key-pinned), each file
//!                 named by its SHA-256, and `index`: "SHA256 URL" lines (the URLs as the
//!                 profile has them, before any --mirror)
//! overlays/NAME/  what an overlay's provision.sh kept for itself (an npm cache, say)
//! ```
//!
//! A bundle is made in a hidden directory beside DIR and renamed to DIR when complete, so an
//! interrupted or failed fetch leaves none. Before a build uses one, every file is checked
//! against bundle.json (and nothing else may be there): a changed bundle is refused. The
//! .debs are trusted because of that check (apt sees the repository as `trusted=yes`): apt
//! verified their signatures when `fetch` downloaded them. bundle.json's own SHA-256 is
//! printed by `fetch` and recorded in the build info, to compare with.
//!
//! bundle.json itself is not signed, so that check only finds accidents: whoever can write the
//! bundle can change a .deb and its entry together, and apt then installs it unverified (its
//! maintainer scripts run as root, in the provisioning sandbox of [`crate::sandbox`]). The
//! bundle is as trustworthy as where it is kept; the README says so to the operator.

use crate::util::hash::sha256_file;
use crate::util::progress::Reporter;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;

/// The profile's variables as the bundle records them (the map of
/// [`crate::spec::overlay::Variables`], named here so that inputs need nothing of the spec).
type Variables = std::collections::BTreeMap<String, serde_json::Value>;
use std::path::{Component, Path, PathBuf};

pub const FORMAT: &str = "appliance-bundle-v1";
pub const MANIFEST: &str = "bundle.json";
pub const SUMS: &str = "SHA256SUMS";
/// The helpers' downloads, and their index of URLs.
pub const DOWNLOADS: &str = "downloads";
pub const DOWNLOADS_INDEX: &str = "downloads/index";
/// The apt repository.
pub const APT: &str = "apt";

/// `bundle.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// The profile's name, the SHA-256 of its file and its variables when the bundle was made.
    pub profile: String,
    pub profile_sha256: String,
    pub variables: Variables,
    pub base: BaseFiles,
    /// Seconds since the epoch (SOURCE_DATE_EPOCH when set).
    pub created: u64,
    pub files: Vec<FileEntry>,
}

/// The base's files in the bundle (paths relative to it).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BaseFiles {
    pub kind: String,
    /// What the base is: URL, or suite and mirror.
    pub source: String,
    /// The tarball, or debootstrap's tarball of .debs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256sums: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A bundle whose every file matched bundle.json.
#[derive(Debug)]
pub struct Bundle {
    dir: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 of bundle.json.
    pub sha256: String,
    by_path: BTreeMap<String, FileEntry>,
}

/// A path in bundle.json: relative, plain components only.
fn check_rel(path: &str) -> Result<()> {
    let p = Path::new(path);
    if path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("'{path}' is not a path inside the bundle");
    }
    Ok(())
}

/// Every file below `dir` (not directories), as sorted relative paths.
fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if e.file_type().is_dir() {
            continue;
        }
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        let rel = rel
            .to_str()
            .ok_or_else(|| anyhow!("{} is not a UTF-8 name", rel.display()))?;
        if !e.file_type().is_file() {
            bail!("{rel} is not a regular file");
        }
        out.push(rel.to_string());
    }
    Ok(out)
}

impl Bundle {
    /// Reads `dir/bundle.json` and checks every file against it: present, the same size and
    /// SHA-256, and nothing that it does not list. Every error is one line naming the bundle.
    pub fn open(dir: &Path, reporter: &Reporter) -> Result<Bundle> {
        let at = |e: anyhow::Error| anyhow!("bundle {}: {e:#}", dir.display());
        let path = dir.join(MANIFEST);
        if !dir.is_dir() {
            return Err(at(anyhow!("no such directory")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            at(anyhow!(
                "no readable {MANIFEST} ({e}): make the bundle with `appliance fetch PROFILE --out DIR`"
            ))
        })?;
        let manifest = parse_manifest(&text).map_err(at)?;
        let sha256 = sha256_file(&path).map_err(at)?;
        let mut by_path = BTreeMap::new();
        for f in &manifest.files {
            by_path.insert(f.path.clone(), f.clone());
        }
        let present = list_files(dir).map_err(at)?;
        for p in &present {
            if p != MANIFEST && p != SUMS && !by_path.contains_key(p) {
                return Err(at(anyhow!("{p} is not listed in {MANIFEST}")));
            }
        }
        let total: u64 = manifest.files.iter().map(|f| f.size).sum();
        let step = reporter.bytes("checking the bundle", total);
        let mut done = 0;
        for f in &manifest.files {
            let p = dir.join(&f.path);
            let meta = p
                .symlink_metadata()
                .map_err(|_| at(anyhow!("{} is missing", f.path)))?;
            let got = if meta.is_file() && meta.len() == f.size {
                sha256_file(&p).map_err(at)?
            } else {
                format!("a file of {} bytes", meta.len())
            };
            if got != f.sha256 {
                return Err(at(anyhow!(
                    "{} does not match {MANIFEST} (SHA-256 {} expected, {got} found): it changed after `appliance fetch` made the bundle",
                    f.path,
                    f.sha256
                )));
            }
            done += f.size;
            step.set(done);
        }
        step.done();
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
            sha256,
            by_path,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file at `rel` with its SHA-256 from bundle.json, when the bundle has it.
    pub fn file(&self, rel: &str) -> Option<(PathBuf, &str)> {
        self.by_path
            .get(rel)
            .map(|f| (self.dir.join(rel), f.sha256.as_str()))
    }

    /// Refuses a bundle made for another profile.
    pub fn check_profile(&self, name: &str) -> Result<()> {
        if self.manifest.profile != name {
            bail!(
                "bundle {} was made for profile {}, not {name}",
                self.dir.display(),
                self.manifest.profile
            );
        }
        Ok(())
    }
}

/// Parses and checks bundle.json's text.
pub fn parse_manifest(text: &str) -> Result<Manifest> {
    let m: Manifest = serde_json::from_str(text).map_err(|e| anyhow!("{MANIFEST}: {e}"))?;
    if m.format != FORMAT {
        bail!("{MANIFEST}: format '{}' is not {FORMAT}", m.format);
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in &m.files {
        check_rel(&f.path).map_err(|e| anyhow!("{MANIFEST}: {e}"))?;
        if f.path == MANIFEST || f.path == SUMS || !seen.insert(f.path.as_str()) {
            bail!("{MANIFEST}: {} is listed twice", f.path);
        }
        if f.sha256.len() != 64
            || !f
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            bail!("{MANIFEST}: {}: '{}' is not a SHA-256", f.path, f.sha256);
        }
    }
    for rel in [&m.base.file, &m.base.sha256sums, &m.base.signature]
        .into_iter()
        .flatten()
    {
        if !seen.contains(rel.as_str()) {
            bail!("{MANIFEST}: base: {rel} is not among the files");
        }
    }
    Ok(m)
}

/// Makes the flat apt repository in `dir` (Packages and Release, by apt-ftparchive from
/// apt-utils) from the .debs there; an empty one when there are none.
pub fn index_apt_repository(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tool = crate::util::host::require("apt-ftparchive")?;
    // Release covers Packages, so it comes second; each is written only once made (made in
    // place, a half-written Release would list itself).
    for (what, file) in [("packages", "Packages"), ("release", "Release")] {
        let out = crate::util::host::run(
            std::process::Command::new(&tool)
                .args(["-o", "APT::FTPArchive::Release::Origin=appliance-bundle"])
                .args([what, "."])
                .current_dir(dir),
            &format!("indexing the bundle's .debs (apt-ftparchive {what})"),
        )?;
        std::fs::write(dir.join(file), &out.stdout)
            .with_context(|| format!("writing {}/{file}", dir.display()))?;
    }
    Ok(())
}

/// Checks the helpers' downloads in `staging`: every index line names a file there with that
/// SHA-256; the index is rewritten sorted and without repeats.
pub fn tidy_downloads(staging: &Path) -> Result<usize> {
    let index = staging.join(DOWNLOADS_INDEX);
    let text = std::fs::read_to_string(&index).unwrap_or_default();
    let mut lines = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (sha, url) = line
            .split_once(' ')
            .ok_or_else(|| anyhow!("{}: '{line}' is not \"SHA256 URL\"", index.display()))?;
        let file = staging.join(DOWNLOADS).join(sha);
        let got = sha256_file(&file).with_context(|| format!("the download of {url}"))?;
        if got != sha {
            bail!(
                "the download of {url} in {} changed while fetching",
                file.display()
            );
        }
        lines.insert(format!("{sha} {url}\n"));
    }
    if !lines.is_empty() {
        std::fs::write(&index, lines.iter().map(String::as_str).collect::<String>())
            .with_context(|| format!("writing {}", index.display()))?;
    }
    Ok(lines.len())
}

/// Writes bundle.json and SHA256SUMS for every file in `staging`, then renames `staging` to
/// `dest`. Returns bundle.json's SHA-256.
pub fn seal(
    staging: &Path,
    dest: &Path,
    profile: &str,
    profile_sha256: &str,
    variables: &Variables,
    base: BaseFiles,
    created: u64,
) -> Result<String> {
    let mut files = Vec::new();
    for rel in list_files(staging)? {
        if rel == MANIFEST || rel == SUMS {
            continue;
        }
        let p = staging.join(&rel);
        files.push(FileEntry {
            size: p
                .metadata()
                .with_context(|| format!("reading {}", p.display()))?
                .len(),
            sha256: sha256_file(&p)?,
            path: rel,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        profile: profile.into(),
        profile_sha256: profile_sha256.into(),
        variables: variables.clone(),
        base,
        created,
        files,
    };
    let mut json = serde_json::to_vec_pretty(&manifest)?;
    json.push(b'\n');
    // Refuse here what a build would refuse, rather than make an unusable bundle.
    parse_manifest(std::str::from_utf8(&json)?)?;
    write_synced(&staging.join(MANIFEST), &json)?;
    let sha256 = sha256_file(&staging.join(MANIFEST))?;
    let mut sums: Vec<(String, String)> = manifest
        .files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    sums.push((MANIFEST.into(), sha256.clone()));
    sums.sort();
    let text: String = sums.iter().map(|(p, h)| format!("{h}  {p}\n")).collect();
    write_synced(&staging.join(SUMS), text.as_bytes())?;
    std::fs::rename(staging, dest)
        .with_context(|| format!("moving the bundle to {}", dest.display()))?;
    Ok(sha256)
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, data: &[u8]) -> FileEntry {
        use sha2::Digest;
        FileEntry {
            path: path.into(),
            size: data.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(data)),
        }
    }

    fn sealed(dir: &Path) -> PathBuf {
        let staging = dir.join(".staging");
        std::fs::create_dir_all(staging.join("base")).unwrap();
        std::fs::create_dir_all(staging.join(DOWNLOADS)).unwrap();
        std::fs::write(staging.join("base/debootstrap.tar"), b"debs").unwrap();
        std::fs::write(staging.join("downloads").join(entry("", b"k").sha256), b"k").unwrap();
        std::fs::write(
            staging.join(DOWNLOADS_INDEX),
            format!(
                "{h} https://e.org/k.asc\n{h} https://e.org/k.asc\n",
                h = entry("", b"k").sha256
            ),
        )
        .unwrap();
        assert_eq!(tidy_downloads(&staging).unwrap(), 1);
        let dest = dir.join("bundle");
        seal(
            &staging,
            &dest,
            "p",
            &"0".repeat(64),
            &Variables::new(),
            BaseFiles {
                kind: "debootstrap".into(),
                source: "bookworm from http://deb.debian.org/debian".into(),
                file: Some("base/debootstrap.tar".into()),
                ..BaseFiles::default()
            },
            0,
        )
        .unwrap();
        dest
    }

    #[test]
    fn a_sealed_bundle_opens_and_a_changed_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let b = sealed(d.path());
        assert!(!d.path().join(".staging").exists());
        let bundle = Bundle::open(&b, &Reporter::new()).unwrap();
        assert_eq!(bundle.manifest.files.len(), 3);
        assert!(bundle.file("base/debootstrap.tar").is_some());
        bundle.check_profile("p").unwrap();
        assert_eq!(
            bundle.check_profile("q").unwrap_err().to_string(),
            format!("bundle {} was made for profile p, not q", b.display())
        );
        let sums = std::fs::read_to_string(b.join(SUMS)).unwrap();
        assert!(sums.contains("  bundle.json\n") && sums.contains("  base/debootstrap.tar\n"));

        let err = |b: &Path| format!("{:#}", Bundle::open(b, &Reporter::new()).unwrap_err());
        std::fs::write(b.join("base/debootstrap.tar"), b"DEBS").unwrap();
        assert_eq!(
            err(&b),
            format!(
                "bundle {}: base/debootstrap.tar does not match bundle.json (SHA-256 {} expected, {} found): it changed after `appliance fetch` made the bundle",
                b.display(),
                entry("", b"debs").sha256,
                entry("", b"DEBS").sha256
            )
        );
        std::fs::write(b.join("base/debootstrap.tar"), b"debs").unwrap();
        std::fs::write(b.join("base/extra"), b"x").unwrap();
        assert_eq!(
            err(&b),
            format!(
                "bundle {}: base/extra is not listed in bundle.json",
                b.display()
            )
        );
        std::fs::remove_file(b.join("base/extra")).unwrap();
        std::fs::remove_file(b.join("base/debootstrap.tar")).unwrap();
        assert_eq!(
            err(&b),
            format!("bundle {}: base/debootstrap.tar is missing", b.display())
        );
        let none = d.path().join("none");
        assert_eq!(
            err(&none),
            format!("bundle {}: no such directory", none.display())
        );
        std::fs::create_dir(&none).unwrap();
        assert!(err(&none).starts_with(&format!(
            "bundle {}: no readable bundle.json (",
            none.display()
        )));
    }

    #[test]
    fn bad_manifests_get_one_line() {
        let good = Manifest {
            format: FORMAT.into(),
            profile: "p".into(),
            profile_sha256: "0".repeat(64),
            variables: Variables::new(),
            base: BaseFiles {
                kind: "tarball".into(),
                source: "https://e.org/r.tar.xz".into(),
                file: Some("base/r.tar.xz".into()),
                ..BaseFiles::default()
            },
            created: 0,
            files: vec![entry("base/r.tar.xz", b"r")],
        };
        let text = |m: &Manifest| serde_json::to_string(m).unwrap();
        parse_manifest(&text(&good)).unwrap();
        let with = |f: &dyn Fn(&mut Manifest)| {
            let mut m = good.clone();
            f(&mut m);
            text(&m)
        };
        let cases = [
            (
                with(&|m| m.format = "v0".into()),
                "bundle.json: format 'v0' is not appliance-bundle-v1".to_string(),
            ),
            (
                with(&|m| m.files[0].path = "../r".into()),
                "bundle.json: '../r' is not a path inside the bundle".into(),
            ),
            (
                with(&|m| m.files[0].path = "/etc/passwd".into()),
                "bundle.json: '/etc/passwd' is not a path inside the bundle".into(),
            ),
            (
                with(&|m| m.files.push(m.files[0].clone())),
                "bundle.json: base/r.tar.xz is listed twice".into(),
            ),
            (
                with(&|m| m.files[0].sha256 = "xyz".into()),
                "bundle.json: base/r.tar.xz: 'xyz' is not a SHA-256".into(),
            ),
            (
                with(&|m| m.base.signature = Some("base/S.gpg".into())),
                "bundle.json: base: base/S.gpg is not among the files".into(),
            ),
            (
                "{\"format\": 1}".into(),
                "bundle.json: invalid type: integer `1`, expected a string at line 1 column 12"
                    .into(),
            ),
            (
                "not json".into(),
                "bundle.json: expected ident at line 1 column 2".into(),
            ),
            (
                text(&good).replace("\"created\"", "\"colour\":1,\"created\""),
                "bundle.json: unknown field `colour`, expected one of".into(),
            ),
        ];
        for (t, want) in cases {
            let got = format!("{:#}", parse_manifest(&t).unwrap_err());
            assert!(
                got.starts_with(&want) && !got.contains('\n'),
                "\n got: {got}\nwant: {want}"
            );
        }
    }

    #[test]
    fn the_debs_become_a_flat_apt_repository() {
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("pkg");
        std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
        std::fs::write(
            pkg.join("DEBIAN/control"),
            "Package: appliance-test\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: a test\n",
        )
        .unwrap();
        let repo = d.path().join("apt");
        std::fs::create_dir_all(&repo).unwrap();
        let deb = repo.join("appliance-test_1.0-1_all.deb");
        let ok = std::process::Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&pkg)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        index_apt_repository(&repo).unwrap();
        let packages = std::fs::read_to_string(repo.join("Packages")).unwrap();
        assert!(
            packages.starts_with("Package: appliance-test\n")
                && packages.contains("\nVersion: 1.0-1\n"),
            "{packages}"
        );
        assert!(
            packages.contains("Filename: ./appliance-test_1.0-1_all.deb\n"),
            "{packages}"
        );
        let release = std::fs::read_to_string(repo.join("Release")).unwrap();
        let packages_sha = sha256_file(&repo.join("Packages")).unwrap();
        assert!(release.contains(&format!(" {packages_sha} ")), "{release}");
        assert!(!release.contains(" Release\n"), "{release}");

        let empty = d.path().join("empty");
        index_apt_repository(&empty).unwrap();
        assert_eq!(std::fs::read_to_string(empty.join("Packages")).unwrap(), "");
    }
}
