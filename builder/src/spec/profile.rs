//! Profiles: what to build, as data (`profiles/*.toml`).
//!
//! A profile names a base, an ordered list of overlays, variables, the disk and the outputs.
//! Loading checks everything that can be checked without doing the work: unknown keys, missing
//! overlays and keyrings, overlay dependencies, variable names, and every template rendered
//! once against the variables, so a typo fails in a second instead of after debootstrap.
//! Every error is one line naming the profile file and the key.

use crate::disk::assemble::{check_name, BootModes};
use crate::disk::ext4::FeatureSet;
use crate::export::Format;
use crate::spec::overlay::{Overlay, Variables};
use crate::spec::toml_file::{comments_of, parse_toml, scalar, KeyComment};
use crate::util::size::parse_size;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The profile file as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub base: BaseSpec,
    #[serde(default)]
    pub overlays: Vec<String>,
    /// Where overlays live, relative to the profile file. Default: `../overlays`.
    #[serde(default)]
    pub overlays_dir: Option<PathBuf>,
    #[serde(default)]
    pub variables: BTreeMap<String, toml::Value>,
    /// The repositories the build downloads from, by name: `NAME = "URL prefix"`, so that
    /// `--mirror NAME=URL` can replace one (see [`crate::inputs::mirror`]).
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    #[serde(default)]
    pub disk: DiskSpec,
    #[serde(default)]
    pub output: OutputSpec,
}

/// Where the root tree comes from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BaseSpec {
    /// A root tarball downloaded from `url`, checked against `sha256` or against a SHA256SUMS
    /// file whose detached signature `keyring` verifies.
    Tarball {
        url: String,
        #[serde(default)]
        sha256: Option<String>,
        #[serde(default)]
        sha256sums: Option<String>,
        #[serde(default)]
        signature: Option<String>,
        #[serde(default)]
        keyring: Option<PathBuf>,
    },
    /// `debootstrap` from a mirror, checked with the keyring.
    Debootstrap {
        suite: String,
        mirror: String,
        keyring: PathBuf,
        #[serde(default = "default_variant")]
        variant: String,
        #[serde(default)]
        components: Vec<String>,
        #[serde(default)]
        include: Vec<String>,
        /// More suites of the same mirror (e.g. "bionic-updates", "bionic-security"), added
        /// to the tree's sources.list with the same components; the tree is then upgraded
        /// from them with apt (which checks their signed Release files with the tree's own
        /// archive keyring). Only for suites that no longer change (the cache keeps the
        /// tree by its parameters).
        #[serde(default)]
        extra_suites: Vec<String>,
        /// Packages installed with apt (without recommends) after that upgrade: apt resolves
        /// virtual packages and takes the newest version of every suite, which debootstrap's
        /// `include` does not.
        #[serde(default)]
        packages: Vec<String>,
        /// debootstrap's SCRIPT argument: the script (in the host's
        /// /usr/share/debootstrap/scripts) that knows how to bootstrap `suite`, when the
        /// host's debootstrap may be older than the suite. Ubuntu's scripts have all been links
        /// to `gutsy` since 2007, so `script = "gutsy"` runs on any host exactly what a newer
        /// debootstrap's link for the suite would (the script reads the suite's own name and
        /// its Release file's codename). Unset: the suite's own script, and a host without
        /// one stops before debootstrap with one line saying so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        script: Option<String>,
    },
    /// A local directory or tarball, relative to the profile file.
    Local { path: PathBuf },
}

fn default_variant() -> String {
    "minbase".into()
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// e.g. "4GiB"; default: sized from the tree.
    #[serde(default)]
    pub size: Option<String>,
    /// "bios", "uefi"; default both.
    #[serde(default)]
    pub boot: Option<Vec<String>>,
    /// "auto", "compat" or "current".
    #[serde(default)]
    pub ext4_features: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Default: ["qcow2"].
    #[serde(default)]
    pub formats: Option<Vec<String>>,
    /// Base name of the artifacts; default: the profile's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A loaded, checked profile with its overlays and final variables.
#[derive(Debug)]
pub struct Profile {
    pub path: PathBuf,
    pub file: ProfileFile,
    /// SHA-256 of the profile file's bytes.
    pub sha256: String,
    pub base: Base,
    pub overlays: Vec<Overlay>,
    pub variables: Variables,
    /// `[mirrors]`, checked, prefixes without trailing slashes.
    pub mirrors: BTreeMap<String, String>,
    pub disk_size: Option<u64>,
    pub boot: BootModes,
    pub ext4_features: Option<FeatureSet>,
    pub formats: Vec<Format>,
    pub image_name: String,
    /// The comment above each of `[variables]`' keys (a pin's evidence), by key.
    pub evidence: BTreeMap<String, KeyComment>,
}

/// The base with paths resolved against the profile's directory.
#[derive(Clone, Debug)]
pub enum Base {
    Tarball {
        url: String,
        sha256: Option<String>,
        signed_sums: Option<SignedSums>,
    },
    Debootstrap(Debootstrap),
    Local {
        path: PathBuf,
    },
}

/// A debootstrap base: what debootstrap is run with, then what apt adds.
#[derive(Clone, Debug)]
pub struct Debootstrap {
    pub suite: String,
    pub mirror: String,
    pub keyring: PathBuf,
    pub variant: String,
    pub components: Vec<String>,
    pub include: Vec<String>,
    pub extra_suites: Vec<String>,
    pub packages: Vec<String>,
    /// debootstrap's SCRIPT argument, when the profile names one.
    pub script: Option<String>,
}

impl Debootstrap {
    /// The name of its tree in the cache's `bases/`, for the base id `sha256`.
    pub fn cache_name(&self, sha256: &str) -> String {
        format!("debootstrap-{}-{}", self.suite, &sha256[..16])
    }

    /// What `appliance plan` says of it: suite, mirror and every parameter that is set.
    pub fn describe(&self) -> String {
        let listed = |label: &str, items: &[String]| {
            if items.is_empty() {
                String::new()
            } else {
                format!("{label}{}", items.join(","))
            }
        };
        format!(
            "{} from {} (variant {}{}{}{}{}{})",
            self.suite,
            self.mirror,
            self.variant,
            self.script
                .as_ref()
                .map(|s| format!(", debootstrap script {s}"))
                .unwrap_or_default(),
            listed(", components ", &self.components),
            listed("; include ", &self.include),
            listed("; upgraded from ", &self.extra_suites),
            listed("; then apt installs ", &self.packages),
        )
    }
}

#[derive(Clone, Debug)]
pub struct SignedSums {
    pub url: String,
    pub signature: String,
    pub keyring: PathBuf,
}

/// A `--var name=value` from the command line.
pub fn parse_var(text: &str) -> Result<(String, String)> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("--var '{text}' is not NAME=VALUE"))?;
    check_variable_name(k).map_err(|e| anyhow!("--var '{text}': {e}"))?;
    Ok((k.to_string(), v.to_string()))
}

fn check_variable_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("variable name '{name}' must be lowercase letters, digits and '_', starting with a letter");
    }
    Ok(())
}

/// Where profiles named without a path are looked for, in this order: `./profiles`, the
/// directories of `$APPLIANCE_PROFILES` (colon-separated), the `profiles/` of the source tree
/// this binary was built from, and the installed data directory
/// `/usr/share/appliance/profiles` (with its overlays in `/usr/share/appliance/overlays`).
pub fn search_dirs() -> Vec<PathBuf> {
    search_dirs_with(std::env::var_os("APPLIANCE_PROFILES"))
}

fn search_dirs_with(env: Option<std::ffi::OsString>) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("profiles")];
    if let Some(v) = env {
        dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.push(crate::util::rootpath::lexical(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles"),
    ));
    dirs.push(PathBuf::from("/usr/share/appliance/profiles"));
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let fresh = !seen.contains(d);
        seen.push(d.clone());
        fresh
    });
    dirs
}

/// Finds a profile given as a path (it has a `/` or ends in `.toml`), or as a name in the
/// first of [`search_dirs`] that has `NAME.toml`. An unknown name fails with one line saying
/// where it looked and which names it found.
pub fn locate(arg: &str) -> Result<PathBuf> {
    locate_in(arg, &search_dirs())
}

fn locate_in(arg: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    let p = PathBuf::from(arg);
    if p.exists() || arg.contains('/') || arg.ends_with(".toml") {
        return Ok(p);
    }
    if let Some(found) = dirs
        .iter()
        .map(|d| d.join(format!("{arg}.toml")))
        .find(|f| f.is_file())
    {
        return Ok(found);
    }
    let names: Vec<String> = available_in(dirs).into_iter().map(|e| e.name).collect();
    bail!(
        "no profile '{arg}': looked for {arg}.toml in {}; found {}",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )
}

/// Turns an error about `key` into the one line that names the profile and the key.
type At<'a> = &'a dyn Fn(&str, anyhow::Error) -> anyhow::Error;

impl Profile {
    /// Loads and checks a profile; `vars` are `--var` overrides.
    pub fn load(path: &Path, vars: &[(String, String)]) -> Result<Profile> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading profile {}", path.display()))?;
        let text = String::from_utf8(bytes.clone())
            .map_err(|_| anyhow!("profile {}: not UTF-8 text", path.display()))?;
        let file: ProfileFile = parse_toml(path, &text).map_err(|e| anyhow!("profile {e}"))?;
        let at = |key: &str, e: anyhow::Error| anyhow!("profile {}: {key}: {e:#}", path.display());
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();

        check_name(&file.name)
            .map_err(|e| at("name", anyhow!("{}", e.to_string().replace("--name ", ""))))?;
        let base = resolve_base(&file.base, &dir).map_err(|e| {
            let msg = format!("{e:#}");
            match msg.split_once(": ") {
                Some((key, rest)) if key.starts_with("base.") => {
                    anyhow!("profile {}: {key}: {rest}", path.display())
                }
                _ => at("base", e),
            }
        })?;
        let mirrors = mirrors_of(&file, &at)?;
        let overlays = overlays_of(&file, &dir, &at)?;
        let variables = variables_of(&file, &overlays, vars, path, &at)?;
        let (disk_size, boot, ext4_features) = disk_of(&file.disk, &at)?;
        let (formats, image_name) = output_of(&file, &at)?;
        let evidence = comments_of(&text, "variables")
            .map_err(|e| at("variables", e))?
            .into_iter()
            .collect();

        use sha2::Digest;
        Ok(Profile {
            path: path.to_path_buf(),
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            file,
            base,
            overlays,
            variables,
            mirrors,
            disk_size,
            boot,
            ext4_features,
            formats,
            image_name,
            evidence,
        })
    }
}

fn mirrors_of(file: &ProfileFile, at: At) -> Result<BTreeMap<String, String>> {
    let mut mirrors = BTreeMap::new();
    for (name, prefix) in &file.mirrors {
        let key = format!("mirrors.{name}");
        crate::inputs::mirror::check_name(name).map_err(|e| at(&key, e))?;
        let prefix = crate::inputs::mirror::normalize_prefix(prefix).map_err(|e| at(&key, e))?;
        mirrors.insert(name.clone(), prefix);
    }
    Ok(mirrors)
}

/// The overlays in the profile's order, each after those it depends on.
fn overlays_of(file: &ProfileFile, dir: &Path, at: At) -> Result<Vec<Overlay>> {
    let overlays_dir = crate::util::rootpath::lexical(
        &dir.join(
            file.overlays_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("../overlays")),
        ),
    );
    let mut overlays: Vec<Overlay> = Vec::new();
    for name in &file.overlays {
        if overlays.iter().any(|o| &o.name == name) {
            return Err(at("overlays", anyhow!("overlay '{name}' is listed twice")));
        }
        let overlay = Overlay::load(&overlays_dir, name).map_err(|e| at("overlays", e))?;
        for dep in &overlay.spec.depends {
            if !overlays.iter().any(|o| &o.name == dep) {
                return Err(at(
                    "overlays",
                    anyhow!("overlay '{name}' depends on '{dep}', which is not listed before it"),
                ));
            }
        }
        overlays.push(overlay);
    }
    Ok(overlays)
}

/// Variables: overlay defaults, then the profile's, then --var; every overlay's templates,
/// late files and components checked against them.
fn variables_of(
    file: &ProfileFile,
    overlays: &[Overlay],
    vars: &[(String, String)],
    path: &Path,
    at: At,
) -> Result<Variables> {
    let mut variables = Variables::new();
    for o in overlays {
        for (k, v) in &o.spec.variables {
            variables.insert(k.clone(), scalar(v).expect("checked by Overlay::load"));
        }
    }
    for (k, v) in &file.variables {
        check_variable_name(k).map_err(|e| at(&format!("variables.{k}"), e))?;
        let v = scalar(v).ok_or_else(|| {
            at(
                &format!("variables.{k}"),
                anyhow!("must be a string, an integer or a boolean"),
            )
        })?;
        variables.insert(k.clone(), v);
    }
    for (k, v) in vars {
        if !variables.contains_key(k) {
            bail!(
                "--var {k}: no such variable in profile {} or its overlays (known: {})",
                path.display(),
                variables.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        variables.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    for o in overlays {
        o.check_templates(&variables)?;
        o.late_sources(&variables)?;
        o.components(&variables)?;
    }
    Ok(variables)
}

/// The `[disk]` table: size, boot modes, ext4 features.
fn disk_of(disk: &DiskSpec, at: At) -> Result<(Option<u64>, BootModes, Option<FeatureSet>)> {
    let disk_size = disk
        .size
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| at("disk.size", e))?;
    let boot = match &disk.boot {
        Some(list) if list.is_empty() => {
            return Err(at("disk.boot", anyhow!("must name bios, uefi or both")))
        }
        Some(list) => BootModes::parse(&list.join(",")).map_err(|e| at("disk.boot", e))?,
        None => BootModes {
            bios: true,
            uefi: true,
        },
    };
    let ext4_features = match disk.ext4_features.as_deref() {
        None | Some("auto") => None,
        Some(other) => Some(
            other
                .parse::<FeatureSet>()
                .map_err(|e| at("disk.ext4_features", e))?,
        ),
    };
    Ok((disk_size, boot, ext4_features))
}

/// The `[output]` table: formats and the image's name.
fn output_of(file: &ProfileFile, at: At) -> Result<(Vec<Format>, String)> {
    let formats = match &file.output.formats {
        Some(list) => Format::parse_list(&list.join(",")).map_err(|e| at("output.formats", e))?,
        None => vec![Format::Qcow2],
    };
    let image_name = file
        .output
        .name
        .clone()
        .unwrap_or_else(|| file.name.clone());
    check_name(&image_name).map_err(|e| {
        at(
            "output.name",
            anyhow!("{}", e.to_string().replace("--name ", "")),
        )
    })?;
    Ok((formats, image_name))
}

fn keyring_file(dir: &Path, key: &str, p: &Path) -> Result<PathBuf> {
    let p = dir.join(p);
    if !p.is_file() {
        bail!("base.{key}: keyring {} does not exist", p.display());
    }
    Ok(p)
}

fn check_url(key: &str, url: &str) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("base.{key}: '{url}' is not an http:// or https:// URL");
    }
    Ok(())
}

fn resolve_base(spec: &BaseSpec, dir: &Path) -> Result<Base> {
    Ok(match spec {
        BaseSpec::Tarball {
            url,
            sha256,
            sha256sums,
            signature,
            keyring,
        } => {
            check_url("url", url)?;
            if let Some(h) = sha256 {
                if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                    bail!("base.sha256: '{h}' is not a SHA-256 in hex");
                }
            }
            let signed_sums = match (sha256sums, signature, keyring) {
                (None, None, None) => None,
                (Some(sums), Some(sig), Some(kr)) => {
                    check_url("sha256sums", sums)?;
                    check_url("signature", sig)?;
                    Some(SignedSums {
                        url: sums.clone(),
                        signature: sig.clone(),
                        keyring: keyring_file(dir, "keyring", kr)?,
                    })
                }
                (None, _, _) => bail!("base.sha256sums: missing (signature and keyring are given)"),
                (Some(_), None, _) => {
                    bail!("base.signature: missing (a SHA256SUMS must be signed)")
                }
                (Some(_), Some(_), None) => {
                    bail!("base.keyring: missing (the signature must be checked against it)")
                }
            };
            if sha256.is_none() && signed_sums.is_none() {
                bail!("base.sha256: missing (give sha256, or sha256sums + signature + keyring)");
            }
            Base::Tarball {
                url: url.clone(),
                sha256: sha256.as_ref().map(|h| h.to_ascii_lowercase()),
                signed_sums,
            }
        }
        BaseSpec::Debootstrap { .. } => Base::Debootstrap(resolve_debootstrap(spec, dir)?),
        BaseSpec::Local { path } => {
            let p = dir.join(path);
            if !p.exists() {
                bail!("base.path: {} does not exist", p.display());
            }
            Base::Local { path: p }
        }
    })
}

fn resolve_debootstrap(spec: &BaseSpec, dir: &Path) -> Result<Debootstrap> {
    let BaseSpec::Debootstrap {
        suite,
        mirror,
        keyring,
        variant,
        components,
        include,
        extra_suites,
        packages,
        script,
    } = spec
    else {
        unreachable!("called for debootstrap bases only")
    };
    check_url("mirror", mirror)?;
    let suite_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !suite_name(suite) {
        bail!("base.suite: '{suite}' is not a suite name");
    }
    if let Some(s) = extra_suites.iter().find(|s| !suite_name(s)) {
        bail!("base.extra_suites: '{s}' is not a suite name");
    }
    // A name in the host's scripts directory, never a path: whether the host has it is
    // checked before debootstrap runs (crate::stages::base), as it depends on the host.
    if let Some(s) = script
        .as_ref()
        .filter(|s| !suite_name(s) || s.starts_with('.'))
    {
        bail!("base.script: '{s}' is not the name of a debootstrap script (e.g. \"gutsy\")");
    }
    if !["minbase", "buildd", "fakechroot", ""].contains(&variant.as_str()) {
        bail!("base.variant: '{variant}' is not one of minbase, buildd, fakechroot");
    }
    for p in include.iter().chain(components) {
        if p.is_empty() || p.contains([',', ' ']) {
            bail!("base.include: '{p}' is not a package name");
        }
    }
    if let Some(p) = packages
        .iter()
        .find(|p| p.is_empty() || p.starts_with('-') || p.contains([',', ' ']))
    {
        bail!("base.packages: '{p}' is not a package name");
    }
    Ok(Debootstrap {
        suite: suite.clone(),
        mirror: mirror.trim_end_matches('/').to_string(),
        keyring: keyring_file(dir, "keyring", keyring)?,
        variant: variant.clone(),
        components: components.clone(),
        include: include.clone(),
        extra_suites: extra_suites.clone(),
        packages: packages.clone(),
        script: script.clone(),
    })
}

/// A profile `appliance profiles` lists: `name` is what `plan NAME` takes (the file's stem).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProfileEntry {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    /// Set when the file does not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The profiles in one directory, sorted by name. A profile that does not parse is listed with
/// its error.
pub fn list(dir: &Path) -> Result<Vec<ProfileEntry>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("listing profiles in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let (Some(stem), true) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().is_some_and(|e| e == "toml"),
        ) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (description, error) = match parse_toml::<ProfileFile>(&path, &text) {
            Ok(f) => (f.description, None),
            Err(e) => (String::new(), Some(format!("{e:#}"))),
        };
        out.push(ProfileEntry {
            name: stem.to_string(),
            description,
            path,
            error,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.path.cmp(&b.path)));
    Ok(out)
}

/// Every profile a name finds, from [`search_dirs`]: a name in an earlier directory hides the
/// same name in a later one, as [`locate`] does.
pub fn available() -> Vec<ProfileEntry> {
    available_in(&search_dirs())
}

fn available_in(dirs: &[PathBuf]) -> Vec<ProfileEntry> {
    let mut out: Vec<ProfileEntry> = Vec::new();
    for d in dirs.iter().filter(|d| d.is_dir()) {
        for e in list(d).unwrap_or_default() {
            if !out.iter().any(|o| o.name == e.name) {
                out.push(e);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    const GOOD: &str = r#"
name = "demo"
description = "a demo"
overlays = ["a", "b"]

[base]
kind = "local"
path = "tree"

[variables]
port = 3000

[disk]
size = "2GiB"
boot = ["bios"]

[output]
formats = ["qcow2", "raw"]
"#;

    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("profiles/tree")).unwrap();
        write(
            d.path(),
            "overlays/a/overlay.toml",
            "[variables]\nport = 80\ngreeting = \"hi\"\n",
        );
        write(
            d.path(),
            "overlays/a/files/etc/motd.hbs",
            "{{greeting}} on {{port}}\n",
        );
        write(d.path(), "overlays/b/overlay.toml", "depends = [\"a\"]\n");
        d
    }

    fn load_with(d: &Path, text: &str, vars: &[(String, String)]) -> Result<Profile> {
        let p = d.join("profiles/p.toml");
        std::fs::write(&p, text).unwrap();
        Profile::load(&p, vars)
    }

    fn err(d: &Path, text: &str) -> String {
        let e = load_with(d, text, &[]).unwrap_err();
        format!("{e:#}").replace(&d.display().to_string(), "D")
    }

    #[test]
    fn good_profile_and_variable_precedence() {
        let d = fixture();
        let p = load_with(d.path(), GOOD, &[("greeting".into(), "hello".into())]).unwrap();
        assert_eq!(p.overlays.len(), 2);
        assert_eq!(p.variables["port"], serde_json::json!(3000));
        assert_eq!(p.variables["greeting"], serde_json::json!("hello"));
        assert_eq!(p.disk_size, Some(2 << 30));
        assert!(p.boot.bios && !p.boot.uefi);
        assert_eq!(p.formats, vec![Format::Raw, Format::Qcow2]);
        assert_eq!(p.image_name, "demo");
        assert!(p.mirrors.is_empty());
        let with_mirror = GOOD.replace(
            "[disk]\n",
            "[mirrors]\ndebian = \"http://deb.debian.org/debian/\"\n[disk]\n",
        );
        let p = load_with(d.path(), &with_mirror, &[]).unwrap();
        assert_eq!(p.mirrors["debian"], "http://deb.debian.org/debian");
    }

    #[test]
    fn bad_profiles_name_file_and_key() {
        let d = fixture();
        let cases: &[(&str, &str, &str)] = &[
            ("name = \"demo\"\n", "name = \"demo\"\nsize = 3\n", "profile D/profiles/p.toml, line 3: size: unknown key `size`, expected one of"),
            ("[disk]\n", "[disk]\nsise = \"2G\"\n", "profile D/profiles/p.toml, line 14: disk.sise: unknown key `sise`, expected one of `size`, `boot`, `ext4_features`"),
            ("overlays = [\"a\", \"b\"]", "overlays = [\"a\", \"nope\"]", "profile D/profiles/p.toml: overlays: no overlay 'nope' (no directory D/overlays/nope)"),
            ("overlays = [\"a\", \"b\"]", "overlays = [\"b\", \"a\"]", "profile D/profiles/p.toml: overlays: overlay 'b' depends on 'a', which is not listed before it"),
            ("path = \"tree\"", "path = \"gone\"", "profile D/profiles/p.toml: base.path: D/profiles/gone does not exist"),
            ("kind = \"local\"", "kind = \"floppy\"", "profile D/profiles/p.toml, line 7: base.kind: unknown variant `floppy`, expected one of `tarball`, `debootstrap`, `local`"),
            ("size = \"2GiB\"", "size = \"2 apples\"", "profile D/profiles/p.toml: disk.size: "),
            ("boot = [\"bios\"]", "boot = [\"floppy\"]", "profile D/profiles/p.toml: disk.boot: unknown boot mode 'floppy'"),
            ("formats = [\"qcow2\", \"raw\"]", "formats = [\"qcow3\"]", "profile D/profiles/p.toml: output.formats: "),
            ("name = \"demo\"", "name = \"../demo\"", "profile D/profiles/p.toml: name: '../demo' is not a valid image name"),
            ("port = 3000", "port = [1]", "profile D/profiles/p.toml: variables.port: must be a string, an integer or a boolean"),
            ("port = 3000", "Port = 1", "profile D/profiles/p.toml: variables.Port: variable name 'Port' must be lowercase"),
            ("name = \"demo\"\n", "", "profile D/profiles/p.toml, line 1: missing key `name`"),
            ("[disk]\n", "[mirrors]\nDebian = \"http://x\"\n[disk]\n", "profile D/profiles/p.toml: mirrors.Debian: 'Debian' is not a repository name (lowercase letters, digits and '-')"),
            ("[disk]\n", "[mirrors]\ndebian = \"ftp://x\"\n[disk]\n", "profile D/profiles/p.toml: mirrors.debian: 'ftp://x' is not an http:// or https:// URL"),
            ("[disk]\n", "[mirrors]\ndebian = 1\n[disk]\n", "profile D/profiles/p.toml, line 14: mirrors.debian: invalid type: integer `1`, expected a string"),
        ];
        let mut wrong = Vec::new();
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "{from}");
            let got = err(d.path(), &GOOD.replacen(from, to, 1));
            if !got.starts_with(want) || got.contains('\n') {
                wrong.push(format!("\n got: {got}\nwant: {want}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.concat());
    }

    #[test]
    fn tarball_bases_must_be_pinned_or_signed() {
        let d = fixture();
        let tarball = |extra: &str| {
            GOOD.replace(
                "kind = \"local\"\npath = \"tree\"",
                &format!("kind = \"tarball\"\nurl = \"https://example.invalid/r.tar.xz\"\n{extra}"),
            )
        };
        assert!(err(d.path(), &tarball(""))
            .ends_with("base.sha256: missing (give sha256, or sha256sums + signature + keyring)"));
        assert!(
            err(d.path(), &tarball("sha256sums = \"https://e.invalid/S\""))
                .ends_with("base.signature: missing (a SHA256SUMS must be signed)")
        );
        assert!(err(d.path(), &tarball("sha256sums = \"https://e.invalid/S\"\nsignature = \"https://e.invalid/S.gpg\"\nkeyring = \"kr.gpg\"")).ends_with("base.keyring: keyring D/profiles/kr.gpg does not exist"));
        assert!(err(d.path(), &tarball("sha256 = \"xyz\""))
            .ends_with("base.sha256: 'xyz' is not a SHA-256 in hex"));
        write(d.path(), "profiles/kr.gpg", "k");
        let ok = tarball("sha256sums = \"https://e.invalid/S\"\nsignature = \"https://e.invalid/S.gpg\"\nkeyring = \"kr.gpg\"");
        assert!(load_with(d.path(), &ok, &[]).is_ok());
    }

    #[test]
    fn extra_suites_must_be_suite_names() {
        let d = fixture();
        write(d.path(), "profiles/kr.gpg", "k");
        let deb = |extra: &str| {
            GOOD.replace(
                "kind = \"local\"\npath = \"tree\"",
                &format!(
                    "kind = \"debootstrap\"\nsuite = \"bionic\"\nmirror = \"http://archive.invalid/ubuntu\"\nkeyring = \"kr.gpg\"\n{extra}"
                ),
            )
        };
        assert!(
            err(d.path(), &deb("extra_suites = [\"bionic-updates main\"]"))
                .ends_with("base.extra_suites: 'bionic-updates main' is not a suite name")
        );
        let p = load_with(d.path(), &deb("extra_suites = [\"bionic-updates\"]"), &[]).unwrap();
        let Base::Debootstrap(d) = p.base else {
            panic!("not a debootstrap base")
        };
        assert_eq!(d.extra_suites, ["bionic-updates"]);
        assert_eq!(d.script, None);
    }

    #[test]
    fn debootstrap_script_is_a_script_name() {
        let d = fixture();
        write(d.path(), "profiles/kr.gpg", "k");
        let deb = |extra: &str| {
            GOOD.replace(
                "kind = \"local\"\npath = \"tree\"",
                &format!(
                    "kind = \"debootstrap\"\nsuite = \"noble\"\nmirror = \"http://archive.invalid/ubuntu\"\nkeyring = \"kr.gpg\"\n{extra}"
                ),
            )
        };
        let p = load_with(d.path(), &deb("script = \"gutsy\""), &[]).unwrap();
        let Base::Debootstrap(b) = p.base else {
            panic!("not a debootstrap base")
        };
        assert_eq!(b.script.as_deref(), Some("gutsy"));
        assert!(
            b.describe().contains(", debootstrap script gutsy"),
            "{}",
            b.describe()
        );
        for bad in [
            "../gutsy",
            "/usr/share/debootstrap/scripts/gutsy",
            "",
            "a b",
            "..",
        ] {
            let e = err(d.path(), &deb(&format!("script = \"{bad}\"")));
            assert_eq!(
                e,
                format!("profile D/profiles/p.toml: base.script: '{bad}' is not the name of a debootstrap script (e.g. \"gutsy\")"),
            );
        }
        // serde names the table of an internally tagged enum, not the key.
        let e = err(d.path(), &deb("script = 1"));
        assert!(
            e.starts_with("profile D/profiles/p.toml, line 6: base: invalid type: integer `1`, expected a string")
                && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn unknown_command_line_variables_are_refused() {
        let d = fixture();
        let e = load_with(d.path(), GOOD, &[("gretting".into(), "x".into())]).unwrap_err();
        assert!(format!("{e:#}").starts_with("--var gretting: no such variable in profile"));
        assert!(parse_var("a=b=c").unwrap() == ("a".into(), "b=c".into()));
        assert!(parse_var("nonsense").is_err());
    }

    #[test]
    fn names_are_found_in_order_and_an_unknown_one_says_where_it_looked() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let base = "[base]\nkind = \"local\"\npath = \"/x\"\n";
        write(
            &a,
            "one.toml",
            &format!("name = \"one\"\ndescription = \"first\"\n{base}"),
        );
        write(
            &b,
            "one.toml",
            &format!("name = \"one\"\ndescription = \"hidden\"\n{base}"),
        );
        write(&b, "two.toml", &format!("name = \"two\"\n{base}"));
        write(&b, "bad.toml", "name = \n");
        let dirs = [a.clone(), b.clone(), d.path().join("none")];
        assert_eq!(locate_in("one", &dirs).unwrap(), a.join("one.toml"));
        assert_eq!(locate_in("two", &dirs).unwrap(), b.join("two.toml"));
        // A path is taken as it is, whether or not it exists.
        assert_eq!(locate_in("x/one", &dirs).unwrap(), PathBuf::from("x/one"));
        let listed = available_in(&dirs);
        let names: Vec<(&str, &str)> = listed
            .iter()
            .map(|e| (e.name.as_str(), e.description.as_str()))
            .collect();
        assert_eq!(names, [("bad", ""), ("one", "first"), ("two", "")]);
        assert!(listed[0].error.is_some());
        assert!(listed[1..].iter().all(|e| e.error.is_none()), "{listed:?}");
        let e = locate_in("three", &dirs).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "no profile 'three': looked for three.toml in {}, {}, {}; found bad, one, two",
                a.display(),
                b.display(),
                d.path().join("none").display()
            )
        );
    }

    #[test]
    fn search_dirs_follow_the_environment() {
        let dirs = search_dirs_with(Some("/x:/y:".into()));
        assert_eq!(
            dirs[..3],
            [PathBuf::from("profiles"), "/x".into(), "/y".into()]
        );
        let source = dirs[3].clone();
        assert!(
            source.join("debian12-test.toml").is_file(),
            "{}",
            source.display()
        );
        assert!(!source.to_string_lossy().contains(".."));
        assert_eq!(search_dirs_with(None).len(), 3);
    }
}
