//! The base stage: the root tree a build starts from.
//!
//! - `tarball`: downloaded into the content-addressed download cache, checked against a pinned
//!   SHA-256 or against a SHA256SUMS file whose detached signature `gpgv` verifies with the
//!   profile's keyring, then unpacked (owners, modes, xattrs, device nodes kept).
//! - `debootstrap`: run once per set of parameters (suite, mirror, variant, components,
//!   packages, keyring) in a private mount namespace, and kept under the cache's `bases/`.
//!   A mirror moves on: the cached base is what the mirror had then; `--no-cache` refreshes it.
//! - `local`: a directory (copied) or a tarball (unpacked).
//!
//! [`identify`] names the base by content (or parameters) for the provisioned-tree cache key;
//! [`materialize`] writes it into a fresh directory.

use crate::download::{self, DownloadCache};
use crate::partial::WorkDir;
use crate::profile::Base;
use crate::progress::Reporter;
use crate::provision;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where cached inputs and stages live.
#[derive(Clone, Debug)]
pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    /// `$APPLIANCE_CACHE`, else /var/cache/appliance.
    pub fn from_env() -> Cache {
        let root = std::env::var_os("APPLIANCE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/appliance"));
        Cache { root }
    }

    pub fn downloads(&self) -> DownloadCache {
        DownloadCache::new(self.root.join("downloads"))
    }

    pub fn bases(&self) -> PathBuf {
        self.root.join("bases")
    }

    pub fn stages(&self) -> PathBuf {
        self.root.join("stages")
    }
}

/// A base named by what it is made of.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BaseId {
    pub kind: &'static str,
    /// SHA-256 of the tarball, or of the debootstrap parameters, or of a directory's listing.
    pub sha256: String,
    /// What a person needs to know: URL, suite and mirror, path.
    pub source: String,
    /// For tarballs: the file in the download cache.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

fn hash_parts(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn file_name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Names the base. For a tarball this fetches (or, offline, reads from the cache) the signed
/// SHA256SUMS; `plan` passes `fetch = false` and gets `None` when the hash is not known yet.
pub fn identify(base: &Base, cache: &Cache, offline: bool, fetch: bool) -> Result<Option<BaseId>> {
    Ok(Some(match base {
        Base::Tarball {
            url,
            sha256,
            signed_sums,
        } => {
            let sha256 = match (sha256, signed_sums) {
                (Some(h), _) => h.clone(),
                (None, Some(s)) => {
                    if !fetch {
                        return Ok(None);
                    }
                    let dl = cache.downloads();
                    let sums = dl.fetch_small(&s.url, offline)?;
                    let sig = dl.fetch_small(&s.signature, offline)?;
                    download::verify_detached(&sums, &sig, &s.keyring)?;
                    let text = std::fs::read_to_string(&sums)
                        .with_context(|| format!("reading {}", sums.display()))?;
                    download::sum_for(&text, file_name_of(url))
                        .with_context(|| format!("in {}", s.url))?
                }
                (None, None) => bail!("base.sha256: missing"),
            };
            BaseId {
                kind: "tarball",
                sha256,
                source: url.clone(),
                file: None,
            }
        }
        Base::Debootstrap {
            suite,
            mirror,
            keyring,
            variant,
            components,
            include,
        } => {
            let keyring_hash = download::sha256_file(keyring)?;
            BaseId {
                kind: "debootstrap",
                sha256: hash_parts(&[
                    "debootstrap",
                    suite,
                    mirror,
                    variant,
                    &components.join(","),
                    &include.join(","),
                    &keyring_hash,
                ]),
                source: format!("{suite} from {mirror}"),
                file: None,
            }
        }
        Base::Local { path } => BaseId {
            kind: "local",
            sha256: if path.is_dir() {
                listing_hash(path)?
            } else {
                download::sha256_file(path)?
            },
            source: path.display().to_string(),
            file: Some(path.clone()),
        },
    }))
}

/// A directory named by its listing: every path with type, mode, owner, size, mtime and link
/// target. Reading every byte of a GiB tree on every build would cost more than the cache
/// saves; a change that keeps size and mtime is not noticed (as with make).
fn listing_hash(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let m = e.path().symlink_metadata()?;
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        let link = if m.file_type().is_symlink() {
            std::fs::read_link(e.path())?.display().to_string()
        } else {
            String::new()
        };
        h.update(format!(
            "{}\0{:o}\0{}\0{}\0{}\0{}\0{}\0{link}\n",
            rel.display(),
            m.mode(),
            m.uid(),
            m.gid(),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        ));
    }
    Ok(hex::encode(h.finalize()))
}

/// Copies a tree with `cp -a` (owners, modes, xattrs, ACLs, hard links, device nodes).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    crate::host::run(
        Command::new("cp")
            .arg("-a")
            .arg("--reflink=auto")
            .arg(format!("{}/.", from.display()))
            .arg(to),
        &format!("copying {} to {}", from.display(), to.display()),
    )?;
    Ok(())
}

/// Writes the base into `dest` (which must not exist yet).
pub fn materialize(
    base: &Base,
    id: &BaseId,
    dest: &Path,
    cache: &Cache,
    opts: &MaterializeOptions,
    reporter: &Reporter,
) -> Result<()> {
    match base {
        Base::Tarball { url, .. } => {
            let file = cache.downloads().fetch(url, &id.sha256, opts.offline)?;
            unpack(&file, dest, reporter)
        }
        Base::Local { path } if path.is_dir() => {
            let step = reporter.step(&format!("copying the base tree {}", path.display()));
            copy_tree(path, dest)?;
            step.done();
            Ok(())
        }
        Base::Local { path } => unpack(path, dest, reporter),
        Base::Debootstrap { .. } => {
            let tree = debootstrap_cached(base, id, cache, opts, reporter)?;
            let step = reporter.step("copying the cached debootstrap tree");
            copy_tree(&tree, dest)?;
            step.done();
            Ok(())
        }
    }
}

pub struct MaterializeOptions<'a> {
    pub offline: bool,
    /// Run debootstrap even when its tree is cached.
    pub refresh: bool,
    pub log: &'a Path,
}

fn unpack(tarball: &Path, dest: &Path, reporter: &Reporter) -> Result<()> {
    let len = tarball.metadata().map(|m| m.len()).unwrap_or(0);
    let step = reporter.bytes("unpacking the base tarball", len);
    let parent = dest.parent().context("the tree has no parent directory")?;
    let tmp = WorkDir::create(parent, "unpack")?;
    let tree = crate::tree::RootTree::open(tarball, tmp.path(), &|n| step.set(n))?;
    std::fs::rename(&tree.path, dest)
        .with_context(|| format!("moving the unpacked tree to {}", dest.display()))?;
    step.done();
    Ok(())
}

/// The debootstrap tree for these parameters, made once and kept in the cache.
fn debootstrap_cached(
    base: &Base,
    id: &BaseId,
    cache: &Cache,
    opts: &MaterializeOptions,
    reporter: &Reporter,
) -> Result<PathBuf> {
    let Base::Debootstrap {
        suite,
        mirror,
        keyring,
        variant,
        components,
        include,
    } = base
    else {
        unreachable!("called for debootstrap bases only")
    };
    let dir = cache
        .bases()
        .join(format!("debootstrap-{suite}-{}", &id.sha256[..16]));
    let done = dir.with_extension("complete");
    if done.exists() && !opts.refresh {
        return Ok(dir);
    }
    if opts.offline {
        bail!(
            "offline: the debootstrap base ({suite} from {mirror}) is not in the cache {}",
            cache.bases().display()
        );
    }
    crate::host::require("debootstrap")?;
    std::fs::create_dir_all(cache.bases())
        .with_context(|| format!("creating {}", cache.bases().display()))?;
    let work = WorkDir::create(&cache.bases(), "debootstrap")?;
    let target = work.path().join("tree");
    let mut args = vec![format!("--variant={variant}"), "--arch=amd64".into()];
    args.push(format!("--keyring={}", keyring.display()));
    if !components.is_empty() {
        args.push(format!("--components={}", components.join(",")));
    }
    if !include.is_empty() {
        args.push(format!("--include={}", include.join(",")));
    }
    args.extend([suite.clone(), target.display().to_string(), mirror.clone()]);
    let step = reporter.step(&format!(
        "debootstrap {suite} from {mirror} (a few minutes)"
    ));
    let mut env = provision::base_env();
    env.retain(|(k, _)| k != "LC_ALL");
    provision::run(&provision::Step {
        what: format!("debootstrap {suite}"),
        program: "debootstrap",
        args,
        env,
        chroot: None,
        log: opts.log,
    })?;
    step.done();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
        let _ = std::fs::remove_file(&done);
    }
    std::fs::rename(&target, &dir)
        .with_context(|| format!("moving the tree to {}", dir.display()))?;
    std::fs::write(&done, format!("{}\n", id.sha256))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_hash_sees_changes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "1").unwrap();
        let h0 = listing_hash(d.path()).unwrap();
        assert_eq!(listing_hash(d.path()).unwrap(), h0);
        std::fs::write(d.path().join("b"), "").unwrap();
        assert_ne!(listing_hash(d.path()).unwrap(), h0);
    }

    #[test]
    fn debootstrap_ids_follow_parameters() {
        let d = tempfile::tempdir().unwrap();
        let kr = d.path().join("k.gpg");
        std::fs::write(&kr, "key").unwrap();
        let cache = Cache {
            root: d.path().join("cache"),
        };
        let base = |include: &[&str]| Base::Debootstrap {
            suite: "bookworm".into(),
            mirror: "http://deb.debian.org/debian".into(),
            keyring: kr.clone(),
            variant: "minbase".into(),
            components: vec![],
            include: include.iter().map(|s| s.to_string()).collect(),
        };
        let id = |b: &Base| identify(b, &cache, true, true).unwrap().unwrap().sha256;
        assert_eq!(id(&base(&["a"])), id(&base(&["a"])));
        assert_ne!(id(&base(&["a"])), id(&base(&["a", "b"])));
        let e = materialize(
            &base(&["a"]),
            &identify(&base(&["a"]), &cache, true, true)
                .unwrap()
                .unwrap(),
            &d.path().join("t"),
            &cache,
            &MaterializeOptions {
                offline: true,
                refresh: false,
                log: &d.path().join("log"),
            },
            &Reporter::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("offline: the debootstrap base (bookworm from http://deb.debian.org/debian) is not in the cache "), "{e}");
    }
}
