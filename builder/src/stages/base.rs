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
//!
//! Where the inputs come from ([`Inputs`]): downloads go to the mirror of their repository
//! (`--mirror`), and debootstrap's sources.list is written back to the profile's mirror, so
//! the tree is the same as without one (and shares its cache). `appliance fetch` also keeps the
//! base's files for the bundle: a tarball with its SHA256SUMS and signature, or
//! `debootstrap --make-tarball` of the .debs, from which it then makes the tree with
//! `--unpack-tarball` as a build from the bundle does ([`bundle_files`] says where they go).

use crate::inputs::bundle::BaseFiles;
use crate::inputs::download;
use crate::inputs::Inputs;
use crate::sandbox;
use crate::spec::profile::{Base, Debootstrap};
use crate::stages::cache::{Cache, Entry};
use crate::stages::provision;
use crate::util::partial::WorkDir;
use crate::util::progress::Reporter;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// What the builder's chroot (stages/provision.rs) leaves in a tree it ran apt in, as far as
/// it makes the tree differ: part of the id of every debootstrap base upgraded or added to
/// with apt. Change it with any change to that behaviour. 2: a link a step put in place of a
/// file the chroot placed stays (systemd's and systemd-resolved's /etc/resolv.conf link; the
/// bases before kept the build's file, which scrub empties: no name server in the image).
const CHROOT_RECIPE: &str = "chroot 2";

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

/// The base's files in a bundle (paths relative to it), and what it is.
pub fn bundle_files(base: &Base) -> BaseFiles {
    let under = |url: &str| Some(format!("base/{}", file_name_of(url)));
    match base {
        Base::Tarball {
            url, signed_sums, ..
        } => BaseFiles {
            kind: "tarball".into(),
            source: url.clone(),
            file: under(url),
            sha256sums: signed_sums.as_ref().and_then(|s| under(&s.url)),
            signature: signed_sums.as_ref().and_then(|s| under(&s.signature)),
        },
        Base::Debootstrap(d) => BaseFiles {
            kind: "debootstrap".into(),
            source: format!("{} from {}", d.suite, d.mirror),
            file: Some("base/debootstrap.tar".into()),
            ..BaseFiles::default()
        },
        Base::Local { path } => BaseFiles {
            kind: "local".into(),
            source: path.display().to_string(),
            ..BaseFiles::default()
        },
    }
}

/// The bundle's copy of one of the base's files (`which` says which, for the error).
fn from_bundle(
    bundle: &crate::inputs::bundle::Bundle,
    rel: &Option<String>,
    which: &str,
) -> Result<PathBuf> {
    rel.as_deref()
        .and_then(|r| bundle.file(r))
        .map(|(p, _)| p)
        .with_context(|| format!("bundle {} has no {which}", bundle.dir().display()))
}

/// A small file of the base (SHA256SUMS, its signature): from the bundle, or fetched through
/// its mirror and cached under the profile's URL.
fn small_input(
    url: &str,
    in_bundle: &Option<String>,
    cache: &Cache,
    inputs: &Inputs,
    offline: bool,
) -> Result<PathBuf> {
    match inputs {
        Inputs::Bundle(b) => from_bundle(b, in_bundle, url),
        Inputs::Network(m) | Inputs::Fetch { mirrors: m, .. } => {
            cache
                .downloads()
                .fetch_small_via(url, &m.apply(url), offline)
        }
    }
}

/// Checks that a bundle holds this base (the same kind and source).
pub fn check_bundle_base(base: &Base, bundle: &crate::inputs::bundle::Bundle) -> Result<()> {
    let want = bundle_files(base);
    let have = &bundle.manifest.base;
    if want != *have {
        bail!(
            "bundle {} holds the base {} {}, but the profile's is {} {}",
            bundle.dir().display(),
            have.kind,
            have.source,
            want.kind,
            want.source
        );
    }
    Ok(())
}

/// The id of a debootstrap base: a hash of every parameter that makes the tree.
fn debootstrap_id(d: &crate::spec::profile::Debootstrap) -> Result<BaseId> {
    let keyring_hash = crate::util::hash::sha256_file(&d.keyring)?;
    let (components, include) = (d.components.join(","), d.include.join(","));
    let mut parts = vec![
        "debootstrap",
        &d.suite,
        &d.mirror,
        &d.variant,
        &components,
        &include,
        &keyring_hash,
    ];
    // Appended only when there are some: the ids of bases without stay as they were.
    let extra = d.extra_suites.join(",");
    if !d.extra_suites.is_empty() {
        parts.push(&extra);
    }
    let packages = format!("apt-get install {}", d.packages.join(","));
    if packages != "apt-get install " {
        parts.push(&packages);
    }
    // A base apt upgrades or installs into runs in the builder's chroot, whose own
    // behaviour is then an input too: a change to what it leaves in the tree changes
    // this id, so no cache keeps a base made the old way.
    if !d.extra_suites.is_empty() || !d.packages.is_empty() {
        parts.push(CHROOT_RECIPE);
    }
    let script = d.script.as_ref().map(|s| format!("script {s}"));
    if let Some(s) = &script {
        parts.push(s);
    }
    Ok(BaseId {
        kind: "debootstrap",
        sha256: hash_parts(&parts),
        source: if d.extra_suites.is_empty() {
            format!("{} from {}", d.suite, d.mirror)
        } else {
            format!("{} + {extra} from {}", d.suite, d.mirror)
        },
        file: None,
    })
}

/// Names the base. For a tarball this fetches (or, offline, reads from the cache; or takes
/// from the bundle) the signed SHA256SUMS; `plan` passes `fetch = false` and gets `None` when
/// the hash is not known yet.
pub fn identify(
    base: &Base,
    cache: &Cache,
    inputs: &Inputs,
    offline: bool,
    fetch: bool,
) -> Result<Option<BaseId>> {
    let files = bundle_files(base);
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
                    let sums = small_input(&s.url, &files.sha256sums, cache, inputs, offline)?;
                    let sig = small_input(&s.signature, &files.signature, cache, inputs, offline)?;
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
        Base::Debootstrap(d) if matches!(inputs, Inputs::Bundle(_)) => {
            let Inputs::Bundle(b) = inputs else {
                unreachable!()
            };
            let sha = files
                .file
                .as_deref()
                .and_then(|f| b.file(f))
                .map(|(_, sha)| sha.to_string())
                .with_context(|| {
                    format!("bundle {} has no debootstrap tarball", b.dir().display())
                })?;
            BaseId {
                kind: "debootstrap",
                sha256: hash_parts(&["debootstrap --unpack-tarball", &sha]),
                source: format!(
                    "{} from {} (the bundle's debootstrap.tar)",
                    d.suite, d.mirror
                ),
                file: None,
            }
        }
        Base::Debootstrap(d) => debootstrap_id(d)?,
        Base::Local { path } => BaseId {
            kind: "local",
            sha256: if path.is_dir() {
                listing_hash(path)?
            } else {
                crate::util::hash::sha256_file(path)?
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
    crate::util::host::run(
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
    let files = bundle_files(base);
    match (base, opts.inputs) {
        (Base::Tarball { .. }, Inputs::Bundle(b)) => {
            let file = from_bundle(b, &files.file, "base tarball")?;
            if b.file(files.file.as_deref().unwrap_or_default())
                .map(|(_, h)| h)
                != Some(&id.sha256)
            {
                bail!(
                    "bundle {}: {} is not the tarball the signed SHA256SUMS names ({})",
                    b.dir().display(),
                    file.display(),
                    id.sha256
                );
            }
            unpack(&file, dest, reporter)
        }
        (
            Base::Tarball {
                url, signed_sums, ..
            },
            inputs,
        ) => {
            let mirrors = inputs.mirrors().expect("not a bundle");
            let file = cache
                .downloads()
                .fetch(&mirrors.apply(url), &id.sha256, opts.offline)?;
            if let Inputs::Fetch { staging, .. } = inputs {
                keep(&file, staging, &files.file)?;
                if let Some(s) = signed_sums {
                    let dl = cache.downloads();
                    keep(&dl.fetch_small(&s.url, true)?, staging, &files.sha256sums)?;
                    keep(
                        &dl.fetch_small(&s.signature, true)?,
                        staging,
                        &files.signature,
                    )?;
                }
            }
            unpack(&file, dest, reporter)
        }
        (Base::Debootstrap(d), Inputs::Bundle(b)) => {
            let tarball = from_bundle(b, &files.file, "debootstrap tarball")?;
            // debootstrap takes absolute tarball paths only.
            let tarball = std::path::absolute(&tarball)
                .with_context(|| format!("finding {}", tarball.display()))?;
            let unpack = format!("--unpack-tarball={}", tarball.display());
            let tree = debootstrap_cached(d, id, cache, opts, Some(&unpack), reporter)?;
            let step = reporter.step("copying the cached debootstrap tree");
            copy_tree(&tree, dest)?;
            step.done();
            Ok(())
        }
        (Base::Debootstrap(d), Inputs::Fetch { staging, mirrors }) => {
            if !d.extra_suites.is_empty() || !d.packages.is_empty() {
                bail!("base.extra_suites, base.packages: bundles do not carry them yet; build from the network");
            }
            let rel = files
                .file
                .as_deref()
                .expect("debootstrap bases have a file");
            let tarball = std::path::absolute(staging.join(rel))
                .with_context(|| format!("finding {}", staging.display()))?;
            if let Some(dir) = tarball.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            // The .debs (into the bundle), then the tree from them, as a build from the
            // bundle makes it.
            debootstrap(
                d,
                Some(&format!("--make-tarball={}", tarball.display())),
                Some(mirrors),
                dest,
                opts,
                reporter,
            )?;
            debootstrap(
                d,
                Some(&format!("--unpack-tarball={}", tarball.display())),
                None,
                dest,
                opts,
                reporter,
            )
        }
        (Base::Local { path }, _) if path.is_dir() => {
            let step = reporter.step(&format!("copying the base tree {}", path.display()));
            copy_tree(path, dest)?;
            step.done();
            Ok(())
        }
        (Base::Local { path }, _) => unpack(path, dest, reporter),
        (Base::Debootstrap(d), Inputs::Network(_)) => {
            let tree = debootstrap_cached(d, id, cache, opts, None, reporter)?;
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
    pub inputs: &'a Inputs<'a>,
}

/// Keeps a copy of a base file in the bundle being made at `staging`.
fn keep(file: &Path, staging: &Path, rel: &Option<String>) -> Result<()> {
    let Some(rel) = rel else { return Ok(()) };
    let dest = staging.join(rel);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::copy(file, &dest)
        .with_context(|| format!("copying {} into the bundle", file.display()))?;
    Ok(())
}

fn unpack(tarball: &Path, dest: &Path, reporter: &Reporter) -> Result<()> {
    let len = tarball.metadata().map(|m| m.len()).unwrap_or(0);
    let step = reporter.bytes("unpacking the base tarball", len);
    let parent = dest.parent().context("the tree has no parent directory")?;
    let tmp = WorkDir::create(parent, "unpack")?;
    let tree = crate::disk::tree::RootTree::open(tarball, tmp.path(), &|n| step.set(n))?;
    std::fs::rename(&tree.path, dest)
        .with_context(|| format!("moving the unpacked tree to {}", dest.display()))?;
    step.done();
    Ok(())
}

/// Runs debootstrap into `target` (which it makes), with `mode` (`--make-tarball=...` or
/// `--unpack-tarball=...`) when given, from the profile's mirror or its `--mirror`. A tree
/// made from a mirror gets the profile's mirror back in its sources.list.
fn debootstrap(
    d: &Debootstrap,
    mode: Option<&str>,
    mirrors: Option<&crate::inputs::mirror::Mirrors>,
    target: &Path,
    opts: &MaterializeOptions,
    reporter: &Reporter,
) -> Result<()> {
    let Debootstrap {
        suite,
        mirror,
        keyring,
        variant,
        components,
        include,
        script,
        ..
    } = d;
    crate::util::host::require("debootstrap")?;
    check_script(suite, script.as_deref(), &debootstrap_scripts())?;
    let from = mirrors
        .map(|m| m.apply(mirror))
        .unwrap_or_else(|| mirror.clone());
    let mut args = vec![format!("--variant={variant}"), "--arch=amd64".into()];
    args.push(format!("--keyring={}", keyring.display()));
    if !components.is_empty() {
        args.push(format!("--components={}", components.join(",")));
    }
    if !include.is_empty() {
        args.push(format!("--include={}", include.join(",")));
    }
    args.extend(mode.map(String::from));
    args.extend([suite.clone(), target.display().to_string(), from.clone()]);
    args.extend(script.clone());
    let step = reporter.step(&match mode {
        Some(m) if m.starts_with("--make-tarball") => {
            format!("debootstrap: downloading the .debs of {suite} from {from}")
        }
        Some(_) => format!("debootstrap {suite} from the bundle's .debs (a few minutes)"),
        None => format!("debootstrap {suite} from {from} (a few minutes)"),
    });
    let mut env = sandbox::base_env();
    env.retain(|(k, _)| k != "LC_ALL");
    let log = match mode {
        // Each run its own log: the second would overwrite the first.
        Some(m) if m.starts_with("--make-tarball") => opts.log.with_extension("download.log"),
        _ => opts.log.to_path_buf(),
    };
    sandbox::run(&sandbox::Step {
        what: format!("debootstrap {suite}"),
        program: "debootstrap",
        args,
        env,
        chroot: None,
        binds: &[],
        cwd: None,
        log: &log,
    })?;
    step.done();
    if from != *mirror && target.is_dir() {
        let list = target.join("etc/apt/sources.list");
        let text = std::fs::read_to_string(&list)
            .with_context(|| format!("reading {}", list.display()))?;
        let back: String = text
            .lines()
            .map(|l| {
                let words: Vec<&str> = l
                    .split(' ')
                    .map(|w| if w == from { mirror.as_str() } else { w })
                    .collect();
                words.join(" ") + "\n"
            })
            .collect();
        std::fs::write(&list, back).with_context(|| format!("writing {}", list.display()))?;
    }
    Ok(())
}

/// Where the host's debootstrap keeps its scripts (it honours `DEBOOTSTRAP_DIR` too).
fn debootstrap_scripts() -> PathBuf {
    std::env::var_os("DEBOOTSTRAP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/debootstrap"))
        .join("scripts")
}

/// Fails with one line, before anything runs, when the host's debootstrap has no script for
/// the suite (or not the profile's `script`): debootstrap would stop only after setting up the
/// target, with "No such script".
fn check_script(suite: &str, script: Option<&str>, dir: &Path) -> Result<()> {
    match script {
        Some(s) if !dir.join(s).is_file() => bail!(
            "base.script: this host's debootstrap has no script '{s}' (not in {})",
            dir.display()
        ),
        None if !dir.join(suite).is_file() => bail!(
            "base.suite: this host's debootstrap has no script for '{suite}' (not in {}): \
             install a newer debootstrap, or set base.script to a script it has for a suite \
             like it (\"gutsy\" for any Ubuntu release)",
            dir.display()
        ),
        _ => Ok(()),
    }
}

/// Adds the base's extra suites to the tree's sources.list (the profile's mirror, the same
/// components) and upgrades the tree from them with apt in a chroot: apt checks their
/// Release files' signatures with the archive keyring debootstrap installed in the tree.
fn upgrade_from_extra_suites(
    d: &Debootstrap,
    target: &Path,
    opts: &MaterializeOptions,
    reporter: &Reporter,
) -> Result<()> {
    let Debootstrap {
        suite,
        mirror,
        components,
        extra_suites,
        packages,
        ..
    } = d;
    if extra_suites.is_empty() && packages.is_empty() {
        return Ok(());
    }
    let list = target.join("etc/apt/sources.list");
    let mut text =
        std::fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
    let components = if components.is_empty() {
        "main".to_string()
    } else {
        components.join(" ")
    };
    for s in extra_suites {
        text.push_str(&format!("deb {mirror} {s} {components}\n"));
    }
    std::fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
    let step = reporter.step(&format!(
        "upgrading the base from {} and installing {} package(s) with apt (a few minutes)",
        extra_suites.join(", "),
        packages.len()
    ));
    let chroot = provision::Chroot::prepare(target, opts.inputs)?;
    let mut env = chroot.env();
    env.retain(|(k, _)| k != "LC_ALL");
    let log = opts.log.with_extension("upgrade.log");
    // "$@": the packages, as arguments (never parsed by the shell).
    let mut args = vec![
        "-ec".into(),
        "apt-get update; apt-get -y dist-upgrade; \
         if [ $# -gt 0 ]; then apt-get -y install --no-install-recommends \"$@\"; fi; \
         apt-get clean"
            .into(),
        "sh".into(),
    ];
    args.extend(packages.iter().cloned());
    sandbox::run(&sandbox::Step {
        what: format!("apt-get dist-upgrade and install in the {} base", suite),
        program: "/bin/sh",
        args,
        env,
        chroot: Some(target),
        binds: &[],
        cwd: None,
        log: &log,
    })?;
    chroot.restore()?;
    step.done();
    Ok(())
}

/// The debootstrap tree for these parameters (or from a bundle's tarball of .debs,
/// `unpack`), made once and kept in the cache.
fn debootstrap_cached(
    d: &Debootstrap,
    id: &BaseId,
    cache: &Cache,
    opts: &MaterializeOptions,
    unpack: Option<&str>,
    reporter: &Reporter,
) -> Result<PathBuf> {
    if (!d.extra_suites.is_empty() || !d.packages.is_empty()) && unpack.is_some() {
        bail!("base.extra_suites, base.packages: bundles do not carry them yet; build from the network");
    }
    let entry = Entry::new(cache.bases(), &d.cache_name(&id.sha256));
    if entry.is_complete() && !opts.refresh {
        return Ok(entry.dir);
    }
    if opts.offline && unpack.is_none() {
        bail!(
            "offline: the debootstrap base ({} from {}) is not in the cache {}",
            d.suite,
            d.mirror,
            cache.bases().display()
        );
    }
    entry.fill("debootstrap", &id.sha256, |target| {
        debootstrap(d, unpack, opts.inputs.mirrors(), target, opts, reporter)?;
        upgrade_from_extra_suites(d, target, opts, reporter)
    })?;
    Ok(entry.dir)
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
    fn a_suite_the_hosts_debootstrap_has_no_script_for_is_one_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("gutsy"), "").unwrap();
        std::os::unix::fs::symlink("gutsy", d.path().join("jammy")).unwrap();
        assert!(check_script("jammy", None, d.path()).is_ok());
        assert!(check_script("noble", Some("gutsy"), d.path()).is_ok());
        let dir = d.path().display();
        let e = check_script("noble", None, d.path())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "base.suite: this host's debootstrap has no script for 'noble' (not in {dir}): \
                 install a newer debootstrap, or set base.script to a script it has for a suite \
                 like it (\"gutsy\" for any Ubuntu release)"
            )
        );
        let e = check_script("noble", Some("sid"), d.path())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("base.script: this host's debootstrap has no script 'sid' (not in {dir})")
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn debootstrap_ids_follow_parameters() {
        let d = tempfile::tempdir().unwrap();
        let kr = d.path().join("k.gpg");
        std::fs::write(&kr, "key").unwrap();
        let cache = Cache {
            root: d.path().join("cache"),
        };
        let base = |include: &[&str]| {
            Base::Debootstrap(Debootstrap {
                suite: "bookworm".into(),
                mirror: "http://deb.debian.org/debian".into(),
                keyring: kr.clone(),
                variant: "minbase".into(),
                components: vec![],
                include: include.iter().map(|s| s.to_string()).collect(),
                extra_suites: vec![],
                packages: vec![],
                script: None,
            })
        };
        let mirrors = crate::inputs::mirror::Mirrors::default();
        let inputs = Inputs::Network(&mirrors);
        let id = |b: &Base| {
            identify(b, &cache, &inputs, true, true)
                .unwrap()
                .unwrap()
                .sha256
        };
        assert_eq!(id(&base(&["a"])), id(&base(&["a"])));
        assert_ne!(id(&base(&["a"])), id(&base(&["a", "b"])));
        // Extra suites are part of the id; without them the id is as it always was.
        let mut upgraded = base(&["a"]);
        if let Base::Debootstrap(d) = &mut upgraded {
            d.extra_suites.push("bookworm-updates".into());
        }
        assert_ne!(id(&base(&["a"])), id(&upgraded));
        // And, as apt then runs in the builder's chroot, that chroot's recipe.
        assert_eq!(
            id(&upgraded),
            hash_parts(&[
                "debootstrap",
                "bookworm",
                "http://deb.debian.org/debian",
                "minbase",
                "",
                "a",
                &crate::util::hash::sha256_file(&kr).unwrap(),
                "bookworm-updates",
                CHROOT_RECIPE,
            ])
        );
        // So is debootstrap's script, when a profile names one.
        let mut scripted = base(&["a"]);
        if let Base::Debootstrap(d) = &mut scripted {
            d.script = Some("sid".into());
        }
        assert_ne!(id(&base(&["a"])), id(&scripted));
        assert_eq!(
            id(&base(&["a"])),
            hash_parts(&[
                "debootstrap",
                "bookworm",
                "http://deb.debian.org/debian",
                "minbase",
                "",
                "a",
                &crate::util::hash::sha256_file(&kr).unwrap(),
            ])
        );
        let e = materialize(
            &base(&["a"]),
            &identify(&base(&["a"]), &cache, &inputs, true, true)
                .unwrap()
                .unwrap(),
            &d.path().join("t"),
            &cache,
            &MaterializeOptions {
                offline: true,
                refresh: false,
                log: &d.path().join("log"),
                inputs: &inputs,
            },
            &Reporter::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("offline: the debootstrap base (bookworm from http://deb.debian.org/debian) is not in the cache "), "{e}");
    }
}
