//! `appliance build` and `appliance plan`: a profile to images.
//!
//! Stages: base → overlays (files) → provision (chroot) → modes/owners → \[cache\] → scrub →
//! late files → audit → assemble/export → manifest and build info.
//!
//! The provisioned tree is cached as a directory under `stages/<key>`, where the key hashes the
//! base's identity, every overlay's content (overlay.toml without late files, files/,
//! provision.sh) and the variables. A build whose key is cached copies that tree and goes
//! straight to scrub: changing only the disk size, the formats or a late file (the firstboot
//! binary) never re-runs debootstrap or apt. [`make_plan`] describes every step without running
//! any, from the same [`Plan`] the build follows.
//!
//! Inputs come from the network, through `--mirror`s (which do not change the key: a mirror
//! serves the same repository), or from a bundle made by `appliance fetch` (`--bundle`, no
//! network at all; the key then includes the bundle's hash, so a build from a bundle is made
//! from that bundle and not from a tree an online build cached).

use crate::disk::assemble::{self, AssembleOptions, Assembled};
use crate::export::Format;
use crate::inputs::bundle::Bundle;
use crate::inputs::mirror::{Mirrors, Repository};
use crate::inputs::{self, Inputs};
use crate::spec::overlay::{self, Component, LateSource};
use crate::spec::profile::{Base, Profile};
use crate::stages::base::{self, BaseId, MaterializeOptions};
use crate::stages::cache::{Cache, Entry};
use crate::stages::provision::Chroot;
use crate::stages::scrub;
use crate::util::partial::{PartialFile, WorkDir};
use crate::util::progress::Reporter;
use crate::util::size::human;
use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bumped when what the provisioning stage does changes, so old cached trees are not reused.
const STAGE_FORMAT: &str = "appliance-provisioned-tree-v1";

pub struct BuildOptions {
    pub out: PathBuf,
    pub offline: bool,
    /// Ignore cached debootstrap bases and provisioned trees (they are rewritten).
    pub no_cache: bool,
    pub cache: Cache,
    pub threads: usize,
    pub source_date_epoch: Option<u64>,
    /// The profile's repositories with this run's `--mirror`s.
    pub mirrors: Mirrors,
    /// Build from this bundle (`appliance fetch`), with no network.
    pub bundle: Option<PathBuf>,
}

/// Everything a build will do, resolved from the profile.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub profile: String,
    pub profile_file: PathBuf,
    pub profile_sha256: String,
    pub base: BaseDescription,
    pub overlays: Vec<OverlayDescription>,
    pub variables: crate::spec::overlay::Variables,
    /// The profile's comment above each of its variables: a pin's evidence.
    pub evidence: std::collections::BTreeMap<String, crate::spec::toml_file::KeyComment>,
    /// Every external component: the base, then what the overlays declare.
    pub components: Vec<Component>,
    /// The repositories the profile names, and this run's mirrors of them.
    pub mirrors: Vec<Repository>,
    /// The bundle the inputs come from, and the SHA-256 of its bundle.json.
    pub bundle: Option<BundleDescription>,
    /// `None` while a tarball's hash is still to be read from its SHA256SUMS.
    pub stage_key: Option<String>,
    pub stage_cached: bool,
    pub steps: Vec<PlannedStep>,
    pub outputs: Vec<PathBuf>,
}

/// One step of a build: `plan` lists them and `build` runs them, the same list in the same
/// order. The numbers index the profile's late files (`MakeLate`, `LateFile`) or its overlays
/// (`CopyOverlay`, `Provision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The bundle's files were checked against bundle.json when it was opened.
    Bundle,
    MakeLate(usize),
    Base,
    CopyOverlay(usize),
    Provision(usize),
    /// Modes and owners from every overlay.toml.
    Attributes,
    CacheStage,
    Scrub,
    LateFile(usize),
    Audit,
    Assemble,
    Export(Format),
    /// SHA256SUMS (written by assemble), the package manifest and the build info.
    Record,
}

/// A step and the line `plan` prints for it (the JSON plan has the line).
#[derive(Debug)]
pub struct PlannedStep {
    pub step: Step,
    pub text: String,
}

impl Serialize for PlannedStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl std::fmt::Display for PlannedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn planned(step: Step, text: String) -> PlannedStep {
    PlannedStep { step, text }
}

#[derive(Debug, Serialize)]
pub struct BundleDescription {
    pub dir: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct BaseDescription {
    pub kind: &'static str,
    pub source: String,
    /// Where the base is downloaded from instead, with `--mirror`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirrored: Option<String>,
    pub sha256: Option<String>,
    pub verified_by: String,
    pub cached: bool,
}

#[derive(Debug, Serialize)]
pub struct OverlayDescription {
    pub name: String,
    pub sha256: String,
    pub files: usize,
    pub templates: usize,
    pub provision: bool,
    pub depends: Vec<String>,
    pub secrets: Vec<String>,
    pub late: Vec<String>,
}

/// The provisioned tree's key: `overlay_hashes` are the overlays' content hashes, in order.
fn stage_key(
    id: &BaseId,
    profile: &Profile,
    overlay_hashes: &[String],
    inputs: &Inputs,
) -> Result<String> {
    let mut h = Sha256::new();
    h.update(STAGE_FORMAT);
    h.update([0]);
    h.update(&id.sha256);
    if let Inputs::Bundle(b) = inputs {
        h.update(format!("\0bundle\0{}", b.sha256));
    }
    for (o, hash) in profile.overlays.iter().zip(overlay_hashes) {
        h.update(format!("\0overlay\0{}\0{hash}", o.name));
    }
    h.update(serde_json::to_vec(&profile.variables)?);
    Ok(hex::encode(h.finalize()))
}

/// The provisioned tree of `key` in the cache.
fn stage_entry(cache: &Cache, key: &str) -> Entry {
    Entry::new(cache.stages(), &key[..32])
}

/// Resolves everything a build of `profile` would do. Fetches nothing (`fetch = false`) for
/// `plan`; the build passes `fetch = true` to learn a signed tarball's hash.
pub fn make_plan(
    profile: &Profile,
    opts: &BuildOptions,
    inputs: &Inputs,
    fetch: bool,
) -> Result<(Plan, Option<BaseId>)> {
    let id = base::identify(&profile.base, &opts.cache, inputs, opts.offline, fetch)?;
    // Each overlay's hash reads all its files: once, for the key and the description.
    let overlay_hashes = profile
        .overlays
        .iter()
        .map(|o| o.content_hash())
        .collect::<Result<Vec<_>>>()?;
    let key = id
        .as_ref()
        .map(|id| stage_key(id, profile, &overlay_hashes, inputs))
        .transpose()?;
    let stage_cached = !opts.no_cache
        && key
            .as_ref()
            .is_some_and(|k| stage_entry(&opts.cache, k).is_complete());
    let base = describe_base(profile, id.as_ref(), opts, inputs);
    let overlays = describe_overlays(profile, overlay_hashes)?;
    let mut components = vec![base_component(&base)];
    for o in &profile.overlays {
        components.extend(o.components(&profile.variables)?);
    }
    let mut plan = Plan {
        profile: profile.file.name.clone(),
        profile_file: profile.path.clone(),
        profile_sha256: profile.sha256.clone(),
        base,
        overlays,
        variables: profile.variables.clone(),
        evidence: profile.evidence.clone(),
        components,
        mirrors: opts.mirrors.repositories().to_vec(),
        bundle: match inputs {
            Inputs::Bundle(b) => Some(BundleDescription {
                dir: b.dir().to_path_buf(),
                sha256: b.sha256.clone(),
            }),
            _ => None,
        },
        stage_key: key,
        stage_cached,
        steps: Vec::new(),
        outputs: outputs(profile, opts),
    };
    plan.steps = steps(&plan, profile, opts, inputs)?;
    Ok((plan, id))
}

fn describe_base(
    profile: &Profile,
    id: Option<&BaseId>,
    opts: &BuildOptions,
    inputs: &Inputs,
) -> BaseDescription {
    let mirrored = |url: &str| {
        let via = inputs.mirrors()?.apply(url);
        (via != url).then_some(via)
    };
    match &profile.base {
        Base::Tarball {
            url,
            sha256,
            signed_sums,
        } => BaseDescription {
            kind: "tarball",
            source: url.clone(),
            mirrored: mirrored(url),
            sha256: id.map(|i| i.sha256.clone()),
            verified_by: match (sha256, signed_sums) {
                (Some(_), _) => "the SHA-256 pinned in the profile".into(),
                (None, Some(s)) => format!(
                    "{} signed ({}), checked with gpgv against {}",
                    s.url,
                    s.signature,
                    s.keyring.display()
                ),
                (None, None) => String::new(),
            },
            cached: id
                .as_ref()
                .is_some_and(|i| opts.cache.downloads().cached(&i.sha256).is_some()),
        },
        Base::Debootstrap(d) => BaseDescription {
            kind: "debootstrap",
            mirrored: mirrored(&d.mirror),
            source: d.describe(),
            sha256: id.map(|i| i.sha256.clone()),
            verified_by: format!(
                "the Release signature, checked against {}",
                d.keyring.display()
            ),
            cached: id.is_some_and(|i| {
                Entry::new(opts.cache.bases(), &d.cache_name(&i.sha256)).is_complete()
            }),
        },
        Base::Local { path } => BaseDescription {
            kind: "local",
            source: path.display().to_string(),
            mirrored: None,
            sha256: id.map(|i| i.sha256.clone()),
            verified_by: "nothing (a local input)".into(),
            cached: true,
        },
    }
}

/// What `plan` says of each overlay: its hash (`hashes`, in order) and what it holds.
fn describe_overlays(profile: &Profile, hashes: Vec<String>) -> Result<Vec<OverlayDescription>> {
    let mut overlays = Vec::new();
    for (o, sha256) in profile.overlays.iter().zip(hashes) {
        let files_dir = o.dir.join("files");
        let (mut files, mut templates) = (0, 0);
        if files_dir.exists() {
            for e in walkdir::WalkDir::new(&files_dir).min_depth(1) {
                let e = e?;
                if !e.file_type().is_dir() {
                    files += 1;
                    if e.file_name().to_string_lossy().ends_with(".hbs") {
                        templates += 1;
                    }
                }
            }
        }
        overlays.push(OverlayDescription {
            name: o.name.clone(),
            sha256,
            files,
            templates,
            provision: o.provision_script().is_some(),
            depends: o.spec.depends.clone(),
            secrets: o.spec.secrets.clone(),
            late: o.spec.late.keys().cloned().collect(),
        });
    }
    Ok(overlays)
}

/// The base as a component: a tarball by URL and content hash; a debootstrap base by its
/// repository (its id is a hash of parameters, not of content); a local one by path.
fn base_component(base: &BaseDescription) -> Component {
    let mut fields = std::collections::BTreeMap::new();
    if base.kind == "tarball" {
        fields.insert(
            "description",
            format!("tarball; verified by {}", base.verified_by),
        );
        fields.insert("url", base.source.clone());
        if let Some(h) = &base.sha256 {
            fields.insert("sha256", h.clone());
        }
    } else {
        fields.insert(
            "description",
            format!(
                "{} {}; verified by {}",
                base.kind, base.source, base.verified_by
            ),
        );
    }
    Component {
        name: "base".into(),
        overlay: String::new(),
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

/// The first steps, which need nothing of the base: the bundle (checked when opened) and the
/// late files the build makes, so that a missing one stops the build before any download.
fn first_steps(inputs: &Inputs, late: &[LateSource], logs: &Path) -> Vec<PlannedStep> {
    let mut steps = Vec::new();
    if let Inputs::Bundle(b) = inputs {
        steps.push(planned(
            Step::Bundle,
            format!(
                "bundle {}: every file checked against bundle.json; no network",
                b.dir().display()
            ),
        ));
    }
    for (i, l) in late.iter().enumerate() {
        if let Some(cmd) = &l.make {
            steps.push(planned(
                Step::MakeLate(i),
                format!(
                    "make {} (late file {}, overlay {}): `{}` in {}; log {}",
                    l.source.display(),
                    l.dest,
                    l.overlay,
                    cmd.join(" "),
                    l.make_dir.display(),
                    late_log(logs, l).display()
                ),
            ));
        }
    }
    steps
}

/// The steps that make the provisioned tree: the base, every overlay's files, each
/// provision.sh, modes and owners. The build and `appliance fetch` run these.
fn provision_steps(profile: &Profile) -> Vec<Step> {
    let overlays = &profile.overlays;
    let mut steps = vec![Step::Base];
    steps.extend((0..overlays.len()).map(Step::CopyOverlay));
    steps.extend(
        (0..overlays.len())
            .filter(|&i| overlays[i].provision_script().is_some())
            .map(Step::Provision),
    );
    steps.push(Step::Attributes);
    steps
}

/// The line `plan` prints for one of the provisioning steps.
fn provision_text(plan: &Plan, profile: &Profile, step: Step) -> String {
    let cached_note = if plan.stage_cached {
        " [cached: skipped]"
    } else {
        ""
    };
    match step {
        Step::Base => format!(
            "base: {} {}{}",
            plan.base.kind,
            plan.base.source,
            if plan.stage_cached {
                " [cached: skipped]"
            } else if plan.base.cached {
                " [cached]"
            } else {
                ""
            }
        ),
        Step::CopyOverlay(i) => {
            let o = &plan.overlays[i];
            format!(
                "overlay {}: copy {} file(s) from files/ ({} template(s) rendered){cached_note}",
                o.name, o.files, o.templates
            )
        }
        Step::Provision(i) => format!(
            "provision: overlay {}: provision.sh in a chroot{cached_note}",
            profile.overlays[i].name
        ),
        _ => format!("modes and owners from overlay.toml{cached_note}"),
    }
}

/// The steps a build takes, in order.
fn steps(
    plan: &Plan,
    profile: &Profile,
    opts: &BuildOptions,
    inputs: &Inputs,
) -> Result<Vec<PlannedStep>> {
    let late = late_files(profile)?;
    let mut steps = first_steps(inputs, &late, &opts.out.join("logs"));
    for step in provision_steps(profile) {
        steps.push(planned(step, provision_text(plan, profile, step)));
    }
    steps.push(planned(
        Step::CacheStage,
        format!(
            "cache the provisioned tree as {}{}",
            plan.stage_key
                .as_deref()
                .map(|k| &k[..16])
                .unwrap_or("(key known once the base's hash is)"),
            if plan.stage_cached { " [cached]" } else { "" }
        ),
    ));
    let secrets: usize = plan.overlays.iter().map(|o| o.secrets.len()).sum();
    steps.push(planned(Step::Scrub, format!("scrub: machine-id, SSH host keys, cloud-init state and logs, apt lists, histories, /tmp, logs; {secrets} declared secret(s)")));
    for (i, l) in late.iter().enumerate() {
        let note = match (&l.make, l.source.is_file()) {
            (Some(_), _) => " [made in the first steps]",
            (None, true) => "",
            (None, false) => " [does not exist yet: the build needs it]",
        };
        steps.push(planned(
            Step::LateFile(i),
            format!(
                "late file {} (overlay {}) from {}{note}",
                l.dest,
                l.overlay,
                l.source.display()
            ),
        ));
    }
    steps.push(planned(
        Step::Audit,
        "audit: fail if anything scrub removes, or a declared secret, is present".into(),
    ));
    steps.push(planned(Step::Assemble, assemble_step(profile)));
    for f in &profile.formats {
        steps.push(planned(Step::Export(*f), format!("export {}", f.name())));
    }
    steps.push(planned(
        Step::Record,
        "write SHA256SUMS, the package manifest and the build info".into(),
    ));
    Ok(steps)
}

/// The assemble step: disk size, boot modes, ext4 features.
fn assemble_step(profile: &Profile) -> String {
    format!(
        "assemble: GPT disk {}, boot {}, ext4 features {}",
        profile
            .disk_size
            .map(human)
            .unwrap_or_else(|| "sized from the tree".into()),
        [("bios", profile.boot.bios), ("uefi", profile.boot.uefi)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join("+"),
        profile
            .ext4_features
            .map(|f| f.name())
            .unwrap_or("auto (from the tree's e2fsprogs and GRUB)")
    )
}

/// Every file a build writes into the output directory.
fn outputs(profile: &Profile, opts: &BuildOptions) -> Vec<PathBuf> {
    let name = &profile.image_name;
    let mut outputs: Vec<PathBuf> = profile
        .formats
        .iter()
        .map(|f| opts.out.join(f.file_name(name)))
        .collect();
    outputs.push(opts.out.join("SHA256SUMS"));
    outputs.push(opts.out.join(format!("{name}.manifest")));
    outputs.push(opts.out.join(format!("{name}.build.json")));
    outputs
}

impl Plan {
    /// The plan's variables, each with the profile's comment above it: a pin's evidence.
    fn write_variables(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        writeln!(f, "variables:")?;
        // Under each, the profile's comment above it: a pin's evidence.
        for (k, v) in &self.variables {
            writeln!(f, "  {k} = {v}")?;
            if let Some(c) = self.evidence.get(k) {
                for line in c.text.lines() {
                    writeln!(f, "      # {line}")?;
                }
                if let Some(p) = &c.paragraph {
                    writeln!(f, "      # (and the comment above {p})")?;
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        writeln!(
            f,
            "profile {} ({}, sha256 {})",
            self.profile,
            self.profile_file.display(),
            &self.profile_sha256[..16]
        )?;
        writeln!(f, "base: {} {}", self.base.kind, self.base.source)?;
        if let Some(via) = &self.base.mirrored {
            writeln!(f, "  downloaded from {via} (--mirror)")?;
        }
        writeln!(
            f,
            "  sha256 {}; verified by {}",
            self.base
                .sha256
                .as_deref()
                .unwrap_or("(read from SHA256SUMS at build time)"),
            self.base.verified_by
        )?;
        writeln!(f, "overlays:")?;
        for o in &self.overlays {
            writeln!(
                f,
                "  {:<16} sha256 {}  {} file(s), {} template(s){}{}",
                o.name,
                &o.sha256[..16],
                o.files,
                o.templates,
                if o.provision { ", provision.sh" } else { "" },
                if o.depends.is_empty() {
                    String::new()
                } else {
                    format!(", after {}", o.depends.join(","))
                }
            )?;
        }
        self.write_variables(f)?;
        writeln!(f, "components:")?;
        for c in &self.components {
            let version = c
                .get("version")
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            let from = if c.overlay.is_empty() {
                "the profile's [base]".to_string()
            } else {
                format!("overlay {}", c.overlay)
            };
            writeln!(f, "  {}{version} ({from})", c.name)?;
            for field in overlay::COMPONENT_FIELDS
                .iter()
                .filter(|k| **k != "version")
            {
                let label = match *field {
                    "description" => String::new(),
                    "key_url" => "key ".into(),
                    other => format!("{} ", other.replace('_', " ")),
                };
                if let Some(v) = c.get(field) {
                    writeln!(f, "    {label}{v}")?;
                }
            }
        }
        if !self.mirrors.is_empty() {
            writeln!(f, "mirrors:")?;
            for r in &self.mirrors {
                match &r.mirror {
                    Some(m) => writeln!(f, "  {:<20} {} -> {m}", r.name, r.prefix)?,
                    None => writeln!(f, "  {:<20} {}", r.name, r.prefix)?,
                }
            }
        }
        if let Some(b) = &self.bundle {
            writeln!(
                f,
                "bundle: {} (bundle.json sha256 {})",
                b.dir.display(),
                &b.sha256[..16]
            )?;
        }
        writeln!(f, "steps:")?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "  {:>2}. {s}", i + 1)?;
        }
        writeln!(f, "outputs:")?;
        for o in &self.outputs {
            writeln!(f, "  {}", o.display())?;
        }
        Ok(())
    }
}

/// The build's own log (`logs/build.log`): each line also goes to stderr.
pub(crate) struct BuildLog {
    file: std::fs::File,
    started: Instant,
}

impl BuildLog {
    /// Creates `logs/build.log`, emptying `logs` first.
    pub(crate) fn create(logs: &Path) -> Result<BuildLog> {
        if logs.exists() {
            std::fs::remove_dir_all(logs)
                .with_context(|| format!("clearing {}", logs.display()))?;
        }
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        let path = logs.join("build.log");
        Ok(BuildLog {
            file: std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?,
            started: Instant::now(),
        })
    }

    pub(crate) fn note(&mut self, msg: &str) {
        let line = format!("[{:>6.1}s] {msg}", self.started.elapsed().as_secs_f64());
        if crate::util::progress::verbosity() > crate::util::progress::Verbosity::Quiet {
            eprintln!("{line}");
        }
        let _ = writeln!(self.file, "{line}");
    }
}

/// What a build made, for people and for `--json`.
#[derive(Debug, Serialize)]
pub struct Built {
    pub assembled: Assembled,
    pub manifest: PathBuf,
    pub build_info: PathBuf,
    pub logs: PathBuf,
    pub stage_cached: bool,
}

#[derive(Serialize)]
struct BuildInfo<'a> {
    profile: &'a str,
    profile_file: &'a Path,
    profile_sha256: &'a str,
    base: &'a BaseDescription,
    overlays: &'a [OverlayDescription],
    variables: &'a crate::spec::overlay::Variables,
    components: &'a [Component],
    mirrors: &'a [Repository],
    bundle: &'a Option<BundleDescription>,
    stage_key: &'a str,
    stage_cached: bool,
    late_files: Vec<serde_json::Value>,
    source_date_epoch: Option<u64>,
    tools: serde_json::Value,
    seconds: serde_json::Value,
    image: &'a Assembled,
}

fn tool_version(cmd: &str, arg: &str) -> Option<String> {
    let out = std::process::Command::new(cmd).arg(arg).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

fn dpkg_version_of(pkg: &str) -> Option<String> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", pkg])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// What making the provisioned tree takes. Shared by the build and `appliance fetch`.
pub(crate) struct ProvisionJob<'a> {
    pub profile: &'a Profile,
    pub id: &'a BaseId,
    pub cache: &'a Cache,
    pub inputs: &'a Inputs<'a>,
    /// Use cached bases only.
    pub offline: bool,
    /// Make a debootstrap base again even when cached.
    pub refresh: bool,
    pub logs: &'a Path,
    pub reporter: &'a Reporter,
}

/// Base, overlays' files, provisioning (with inputs from `job.inputs`), modes and owners: the
/// provisioned tree at `tree`, made by running [`provision_steps`].
pub(crate) fn provision_tree(
    job: &ProvisionJob,
    tree: &Path,
    log: &mut BuildLog,
    timed: &mut dyn FnMut(&str, Instant),
) -> Result<()> {
    let mut chroot = None;
    for step in provision_steps(job.profile) {
        let t = Instant::now();
        provision_step(job, tree, step, &mut chroot, log)?;
        timed(timing_name(step, false), t);
    }
    Ok(())
}

/// Runs one of [`provision_steps`]. The chroot is prepared for the first provision.sh and
/// restored before modes and owners are applied.
fn provision_step(
    job: &ProvisionJob,
    tree: &Path,
    step: Step,
    chroot: &mut Option<Chroot>,
    log: &mut BuildLog,
) -> Result<()> {
    let profile = job.profile;
    match step {
        Step::Base => {
            log.note(&format!("base: {} {}", job.id.kind, job.id.source));
            let materialize = MaterializeOptions {
                offline: job.offline,
                refresh: job.refresh,
                log: &job.logs.join("01-base.log"),
                inputs: job.inputs,
            };
            base::materialize(
                &profile.base,
                job.id,
                tree,
                job.cache,
                &materialize,
                job.reporter,
            )?;
        }
        Step::CopyOverlay(i) => {
            let o = &profile.overlays[i];
            let n = o.copy_files(tree, &profile.variables)?;
            log.note(&format!("overlay {}: {n} file(s) copied", o.name));
        }
        Step::Provision(i) => {
            if chroot.is_none() {
                *chroot = Some(Chroot::prepare(tree, job.inputs)?);
            }
            let chroot = chroot.as_ref().expect("prepared above");
            run_provision(job, chroot, i, log)?;
        }
        Step::Attributes => {
            // Prepared and restored even when no overlay has a provision.sh, as before the
            // steps were a list: preparing checks the tree is one apt can run in.
            let c = match chroot.take() {
                Some(c) => c,
                None => Chroot::prepare(tree, job.inputs)?,
            };
            c.restore()?;
            for o in &profile.overlays {
                o.apply_attrs(tree)?;
            }
        }
        other => anyhow::bail!("internal error: {other:?} is not a provisioning step"),
    }
    Ok(())
}

/// Overlay `i`'s provision.sh in the chroot, with the profile's variables in its environment.
fn run_provision(job: &ProvisionJob, chroot: &Chroot, i: usize, log: &mut BuildLog) -> Result<()> {
    let (profile, o) = (job.profile, &job.profile.overlays[i]);
    let script = o
        .provision_script()
        .context("internal error: a provision step for an overlay without provision.sh")?;
    let log_path = job
        .logs
        .join(format!("{:02}-provision-{}.log", i + 2, o.name));
    log.note(&format!(
        "provision: overlay {} (log {})",
        o.name,
        log_path.display()
    ));
    let step = job
        .reporter
        .step(&format!("provisioning overlay {}", o.name));
    let mut env = vec![
        ("APPLIANCE_PROFILE".to_string(), profile.file.name.clone()),
        ("APPLIANCE_OVERLAY".to_string(), o.name.clone()),
    ];
    for (k, v) in &profile.variables {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        env.push((format!("APPLIANCE_VAR_{}", k.to_ascii_uppercase()), v));
    }
    chroot.run_script(&o.name, &script, env, &log_path)?;
    step.done();
    Ok(())
}

/// The build info's name for the time a step takes (steps of one stage add up).
fn timing_name(step: Step, stage_cached: bool) -> &'static str {
    match step {
        Step::Bundle | Step::MakeLate(_) => "make_late_files",
        Step::Base if stage_cached => "copy_cached_tree",
        Step::Base => "base",
        Step::CopyOverlay(_) | Step::Provision(_) | Step::Attributes => "overlays_and_provision",
        Step::CacheStage => "cache_store",
        Step::Scrub | Step::LateFile(_) | Step::Audit => "scrub_and_audit",
        Step::Assemble | Step::Export(_) => "assemble_and_export",
        Step::Record => "record",
    }
}

/// Runs a whole build. A failure whose cause is an input (a download without an answer, an
/// input missing from the bundle) is one line saying what to do about it.
pub fn build(profile: &Profile, opts: &BuildOptions, reporter: &Reporter) -> Result<Built> {
    let bundle = opts
        .bundle
        .as_deref()
        .map(|dir| -> Result<Bundle> {
            let b = Bundle::open(dir, reporter)?;
            b.check_profile(&profile.file.name)?;
            base::check_bundle_base(&profile.base, &b)?;
            Ok(b)
        })
        .transpose()?;
    let inputs = match &bundle {
        Some(b) => Inputs::Bundle(b),
        None => Inputs::Network(&opts.mirrors),
    };
    build_from(profile, opts, &inputs, reporter).map_err(|e| inputs::explain(e, &inputs))
}

fn build_from(
    profile: &Profile,
    opts: &BuildOptions,
    inputs: &Inputs,
    reporter: &Reporter,
) -> Result<Built> {
    let logs = opts.out.join("logs");
    let log = start_log(profile, opts, inputs, &logs)?;
    let late = late_files(profile)?;
    let mut run = Run {
        profile,
        opts,
        reporter,
        late: &late,
        logs: &logs,
        log,
        timings: std::collections::BTreeMap::new(),
        done: 0,
        started: Instant::now(),
    };
    // The first steps need nothing of the base, and a missing late file stops the build
    // before any download; the rest of the plan needs the base's identity (a signed tarball's
    // hash is read from its SHA256SUMS).
    let first = first_steps(inputs, &late, &logs);
    for s in &first {
        run.step(s, None)?;
    }
    // A late file a step made was checked by that step; the others must exist already.
    for l in late.iter().filter(|l| l.make.is_none()) {
        l.require()?;
    }
    let (plan, id) = make_plan(profile, opts, inputs, true)?;
    let id = id.expect("identify with fetch = true names the base");
    let key = plan.stage_key.clone().expect("known once the base is");
    let ran: Vec<Step> = first.iter().map(|s| s.step).collect();
    let planned: Vec<Step> = plan.steps.iter().take(ran.len()).map(|s| s.step).collect();
    anyhow::ensure!(
        planned == ran,
        "internal error: the plan's first steps are not the ones the build ran"
    );

    let work = WorkDir::create(&opts.out, &profile.image_name)?;
    let job = ProvisionJob {
        profile,
        id: &id,
        cache: &opts.cache,
        inputs,
        offline: opts.offline,
        refresh: opts.no_cache,
        logs: &logs,
        reporter,
    };
    let mut tree = TreeState {
        plan: &plan,
        job,
        key: &key,
        path: work.path().join("tree"),
        chroot: None,
        manifest: None,
        assembled: None,
        recorded: None,
    };
    for s in &plan.steps[ran.len()..] {
        run.step(s, Some(&mut tree))?;
    }
    let (assembled, (manifest, build_info)) = tree
        .assembled
        .zip(tree.recorded)
        .context("internal error: the plan has no assemble or record step")?;
    drop(work);
    Ok(Built {
        assembled,
        manifest,
        build_info,
        logs,
        stage_cached: plan.stage_cached,
    })
}

/// A build as it runs the plan's steps: the log, each stage's time, how many steps ran.
struct Run<'a> {
    profile: &'a Profile,
    opts: &'a BuildOptions,
    reporter: &'a Reporter,
    late: &'a [LateSource],
    logs: &'a Path,
    log: BuildLog,
    /// Seconds each stage took, its steps added up (`timing_name`).
    timings: std::collections::BTreeMap<&'static str, f64>,
    done: usize,
    started: Instant,
}

/// What the steps after the first ones work on: the tree and what is made from it.
struct TreeState<'a> {
    plan: &'a Plan,
    job: ProvisionJob<'a>,
    key: &'a str,
    path: PathBuf,
    chroot: Option<Chroot>,
    manifest: Option<String>,
    assembled: Option<Assembled>,
    /// The manifest's and the build info's paths.
    recorded: Option<(PathBuf, PathBuf)>,
}

impl Run<'_> {
    /// Runs one step of the plan (the first steps have no tree yet) and logs it as
    /// `step N: <the line plan prints>`.
    fn step(&mut self, s: &PlannedStep, tree: Option<&mut TreeState>) -> Result<()> {
        self.done += 1;
        self.log.note(&format!("step {}: {s}", self.done));
        let t = Instant::now();
        let cached = tree.as_ref().is_some_and(|tree| tree.plan.stage_cached);
        match (s.step, tree) {
            (Step::Bundle, None) => {}
            (Step::MakeLate(i), None) => {
                let l = &self.late[i];
                let cmd = l
                    .make
                    .as_ref()
                    .context("internal error: nothing makes it")?;
                make_late(l, cmd, self.logs, &mut self.log, self.reporter)?;
                l.require()?;
            }
            (step, Some(tree)) => self.tree_step(step, tree)?,
            (step, None) => anyhow::bail!("internal error: {step:?} before the plan was made"),
        }
        *self.timings.entry(timing_name(s.step, cached)).or_default() += t.elapsed().as_secs_f64();
        Ok(())
    }

    fn tree_step(&mut self, step: Step, tree: &mut TreeState) -> Result<()> {
        let (cached, path) = (tree.plan.stage_cached, tree.path.clone());
        match step {
            Step::Base if cached => {
                self.log.note(&format!(
                    "provisioned tree {} is cached: skipping base, overlays and provisioning",
                    &tree.key[..16]
                ));
                let progress = self.reporter.step("copying the cached provisioned tree");
                base::copy_tree(&stage_entry(tree.job.cache, tree.key).dir, &path)?;
                progress.done();
            }
            Step::Base | Step::CopyOverlay(_) | Step::Provision(_) | Step::Attributes => {
                if !cached {
                    provision_step(&tree.job, &path, step, &mut tree.chroot, &mut self.log)?;
                }
            }
            Step::CacheStage if !cached => {
                save_stage(&path, tree.job.cache, tree.key, self.reporter)?;
                self.log
                    .note(&format!("provisioned tree cached as {}", &tree.key[..16]));
            }
            Step::CacheStage => {}
            Step::Scrub => {
                let n = scrub::scrub(&path, &self.secrets())?;
                self.log
                    .note(&format!("scrub: {n} path(s) removed or emptied"));
            }
            Step::LateFile(i) => {
                let l = &self.late[i];
                overlay::install_late(&path, std::slice::from_ref(l))?;
                self.log
                    .note(&format!("late file {} from {}", l.dest, l.source.display()));
            }
            Step::Audit => {
                let findings = scrub::audit(&path, &self.secrets())?;
                scrub::require_clean(&findings)?;
                self.log
                    .note("audit: passed (nothing that must not ship is in the tree)");
                tree.manifest = Some(crate::disk::manifest::for_tree(&path)?);
            }
            Step::Assemble => self.assemble(tree)?,
            Step::Export(f) => anyhow::ensure!(
                tree.assembled
                    .as_ref()
                    .is_some_and(|a| a.artifacts.iter().any(|x| x.format == f.name())),
                "internal error: assemble did not export {}",
                f.name()
            ),
            Step::Record => tree.recorded = Some(self.record(tree)?),
            Step::Bundle | Step::MakeLate(_) => {
                anyhow::bail!("internal error: {step:?} after the first steps")
            }
        }
        Ok(())
    }

    /// Every overlay's declared secrets.
    fn secrets(&self) -> Vec<String> {
        self.profile
            .overlays
            .iter()
            .flat_map(|o| o.spec.secrets.clone())
            .collect()
    }

    /// The disk and its exports: the formats are the plan's export steps.
    fn assemble(&mut self, tree: &mut TreeState) -> Result<()> {
        let formats: Vec<Format> = tree
            .plan
            .steps
            .iter()
            .filter_map(|s| match s.step {
                Step::Export(f) => Some(f),
                _ => None,
            })
            .collect();
        let mut options = assemble_options(self.profile, self.opts, &tree.path);
        options.formats = formats;
        tree.assembled = Some(assemble::assemble(&options, self.reporter)?);
        Ok(())
    }

    /// The package manifest and the build info; returns their paths.
    fn record(&mut self, tree: &TreeState) -> Result<(PathBuf, PathBuf)> {
        let name = &self.profile.image_name;
        let manifest = tree
            .manifest
            .as_ref()
            .context("internal error: no audit before the record")?;
        let assembled = tree
            .assembled
            .as_ref()
            .context("internal error: no assemble before the record")?;
        let manifest_path = self.opts.out.join(format!("{name}.manifest"));
        let mut m = PartialFile::create(&manifest_path)?;
        m.file_mut().write_all(manifest.as_bytes())?;
        m.commit()?;
        let tenths = |s: f64| serde_json::json!((s * 10.0).round() / 10.0);
        let mut timings: serde_json::Map<_, _> = self
            .timings
            .iter()
            .map(|(name, s)| (name.to_string(), tenths(*s)))
            .collect();
        timings.insert("total".into(), tenths(self.started.elapsed().as_secs_f64()));
        let info = build_info(
            tree.plan, tree.key, self.late, self.opts, timings, assembled,
        );
        let info_path = self.opts.out.join(format!("{name}.build.json"));
        let mut f = PartialFile::create(&info_path)?;
        serde_json::to_writer_pretty(f.file_mut(), &info)?;
        f.file_mut().write_all(b"\n")?;
        f.commit()?;
        self.log.note(&format!(
            "done: {} in {:.1}s",
            self.opts.out.display(),
            self.started.elapsed().as_secs_f64()
        ));
        Ok((manifest_path, info_path))
    }
}

/// The output directory and the build's log, which starts with what is built from what.
fn start_log(
    profile: &Profile,
    opts: &BuildOptions,
    inputs: &Inputs,
    logs: &Path,
) -> Result<BuildLog> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating the output directory {}", opts.out.display()))?;
    let mut log = BuildLog::create(logs)?;
    log.note(&format!(
        "building profile {} ({})",
        profile.file.name,
        profile.path.display()
    ));
    if let Inputs::Bundle(b) = inputs {
        log.note(&format!(
            "inputs: bundle {} (bundle.json sha256 {}), all files checked",
            b.dir().display(),
            b.sha256
        ));
    }
    Ok(log)
}

fn assemble_options(profile: &Profile, opts: &BuildOptions, tree: &Path) -> AssembleOptions {
    AssembleOptions {
        rootfs: tree.to_path_buf(),
        out: opts.out.clone(),
        name: profile.image_name.clone(),
        size: profile.disk_size,
        boot: profile.boot,
        formats: profile.formats.clone(),
        seed: None,
        ext4_features: profile.ext4_features,
        source_date_epoch: opts.source_date_epoch,
        threads: opts.threads,
    }
}

fn build_info<'a>(
    plan: &'a Plan,
    key: &'a str,
    late: &[LateSource],
    opts: &BuildOptions,
    seconds: serde_json::Map<String, serde_json::Value>,
    image: &'a Assembled,
) -> BuildInfo<'a> {
    BuildInfo {
        profile: &plan.profile,
        profile_file: &plan.profile_file,
        profile_sha256: &plan.profile_sha256,
        base: &plan.base,
        overlays: &plan.overlays,
        variables: &plan.variables,
        components: &plan.components,
        mirrors: &plan.mirrors,
        bundle: &plan.bundle,
        stage_key: key,
        stage_cached: plan.stage_cached,
        late_files: late
            .iter()
            .map(|l| {
                serde_json::json!({
                    "path": l.dest,
                    "source": l.source,
                    "sha256": crate::util::hash::sha256_file(&l.source).ok(),
                })
            })
            .collect(),
        source_date_epoch: opts.source_date_epoch,
        tools: serde_json::json!({
            "appliance": env!("CARGO_PKG_VERSION"),
            "mke2fs": tool_version("mke2fs", "-V"),
            "qemu-img": tool_version("qemu-img", "--version"),
            "grub-mkimage": tool_version("grub-mkimage", "--version"),
            "debootstrap": dpkg_version_of("debootstrap"),
            "gpgv": tool_version("gpgv", "--version"),
        }),
        seconds: serde_json::Value::Object(seconds),
        image,
    }
}

/// Every overlay's late files, in profile order.
fn late_files(profile: &Profile) -> Result<Vec<LateSource>> {
    Ok(profile
        .overlays
        .iter()
        .map(|o| o.late_sources(&profile.variables))
        .collect::<Result<Vec<_>>>()?
        .concat())
}

/// The log of the command that makes a late file: `00-make-<file name>.log`.
fn late_log(logs: &Path, l: &LateSource) -> PathBuf {
    let name = Path::new(&l.dest)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    logs.join(format!("00-make-{name}.log"))
}

/// Runs the command that makes a late file's source, in the overlay's directory, with the
/// builder's environment (cargo's PATH and caches) and its output in the step's log.
fn make_late(
    l: &LateSource,
    cmd: &[String],
    logs: &Path,
    log: &mut BuildLog,
    reporter: &Reporter,
) -> Result<()> {
    let log_path = late_log(logs, l);
    // A program named by a path is relative to the overlay, wherever the builder runs.
    let program = if cmd[0].contains('/') {
        let p = std::path::absolute(l.make_dir.join(&cmd[0]))
            .with_context(|| format!("finding {}", cmd[0]))?;
        crate::util::rootpath::lexical(&p).display().to_string()
    } else {
        cmd[0].clone()
    };
    log.note(&format!(
        "late file {}: making {} with `{}` (log {})",
        l.dest,
        l.source.display(),
        cmd.join(" "),
        log_path.display()
    ));
    let step = reporter.step(&format!("making {} (overlay {})", l.dest, l.overlay));
    crate::sandbox::run(&crate::sandbox::Step {
        what: format!(
            "overlay '{}': late file {}: making it with `{}`",
            l.overlay,
            l.dest,
            cmd.join(" ")
        ),
        program: &program,
        args: cmd[1..].to_vec(),
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        chroot: None,
        binds: &[],
        cwd: Some(&l.make_dir),
        log: &log_path,
    })?;
    step.done();
    Ok(())
}

/// Copies the provisioned tree into the cache under its key (see [`Entry::fill`]).
fn save_stage(tree: &Path, cache: &Cache, key: &str, reporter: &Reporter) -> Result<()> {
    let step = reporter.step("caching the provisioned tree");
    stage_entry(cache, key).fill("stage", key, |copy| base::copy_tree(tree, copy))?;
    step.done();
    Ok(())
}
