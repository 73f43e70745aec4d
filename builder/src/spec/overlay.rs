//! Overlays: one component of an image each (`overlays/<name>/`).
//!
//! ```text
//! overlay.toml    description, depends, variable defaults, modes/owners, secrets, late files
//! files/          copied into the tree in profile order; `*.hbs` rendered (strict handlebars)
//! provision.sh    run in a chroot of the tree after every overlay's files are in
//! ```
//!
//! Order of work: all overlays' `files/` (so provision scripts see every file), then each
//! `provision.sh` in profile order, then the modes and owners of `overlay.toml` (after
//! provisioning, so an owner may be a user that a package created). Late files are put in after
//! scrubbing and are not part of the provisioned tree's cache key: they are for build outputs
//! such as the firstboot binary, so that changing one does not re-run apt.

use crate::spec::toml_file::{parse_toml, scalar};
use crate::util::rootpath;
use anyhow::{anyhow, bail, Context, Result};
use handlebars::Handlebars;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Variables by name, as templates see them.
pub type Variables = BTreeMap<String, serde_json::Value>;

/// `overlay.toml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySpec {
    #[serde(default)]
    pub description: String,
    /// Overlays that must come earlier in the profile.
    #[serde(default)]
    pub depends: Vec<String>,
    /// Default values; the profile and `--var` override them.
    #[serde(default)]
    pub variables: BTreeMap<String, toml::Value>,
    /// Mode and owner of paths in the tree, applied after provisioning.
    #[serde(default)]
    pub files: BTreeMap<String, FileAttrs>,
    /// Build-time secrets: removed by scrub; the audit fails if one is present.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Files put in after scrub, from outside the overlay (`source` is a template).
    #[serde(default)]
    pub late: BTreeMap<String, LateFile>,
    /// The external components the overlay installs, for `plan` and the build info. (Left
    /// out of the serialized spec when empty, which keeps content hashes as they were.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileAttrs {
    /// Octal, e.g. "0640".
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LateFile {
    pub source: String,
    /// How the source is made from this checkout: a command run in the overlay's directory
    /// before the build downloads anything (e.g. `["../../scripts/build-firstboot"]`). Run
    /// only while the source is the overlay's default: a profile or `--var` that names another
    /// file ships that file as it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub make: Vec<String>,
    #[serde(flatten)]
    pub attrs: FileAttrs,
}

/// The fields a component may have (`[components.NAME]`), in the order `plan` shows them:
/// what it is, its version, its apt packages, the file it is downloaded from (`url`) with its
/// SHA-256 and detached signature, or the apt repository ("URI SUITE [COMPONENT...]") it is
/// installed from, and the key that signs either (fetched from `key_url`, refused unless it has
/// `key_fingerprint`).
pub const COMPONENT_FIELDS: &[&str] = &[
    "description",
    "version",
    "packages",
    "url",
    "sha256",
    "signature",
    "repository",
    "key_url",
    "key_fingerprint",
];

/// An external component an overlay installs (a package set, a tarball, an app): what it is
/// and how the build pins it. `fields` are [`COMPONENT_FIELDS`], rendered from the variables;
/// one that renders empty is left out. Declarative only: it does not change what provision.sh
/// does, nor the provisioned tree's cache key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Component {
    pub name: String,
    /// Empty for the base, which the profile names.
    pub overlay: String,
    #[serde(flatten)]
    pub fields: BTreeMap<String, String>,
}

impl Component {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

#[derive(Clone, Debug)]
pub struct Overlay {
    pub name: String,
    pub dir: PathBuf,
    pub spec: OverlaySpec,
}

/// A late file with its source resolved.
#[derive(Clone, Debug)]
pub struct LateSource {
    pub overlay: String,
    pub dest: String,
    pub source: PathBuf,
    pub attrs: FileAttrs,
    /// The command that makes `source`, run in `make_dir`, when the build is to make it.
    pub make: Option<Vec<String>>,
    pub make_dir: PathBuf,
}

impl LateSource {
    /// Fails, naming the file, unless the source is there (a build needs it).
    pub fn require(&self) -> Result<()> {
        if !self.source.is_file() {
            bail!(
                "overlay '{}': late file {}: source {} does not exist",
                self.overlay,
                self.dest,
                self.source.display()
            );
        }
        Ok(())
    }
}

fn parse_mode(text: &str) -> Result<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(m),
        _ => bail!("mode '{text}' is not an octal mode like \"0644\""),
    }
}

fn check_tree_path(p: &str) -> Result<()> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") || p.contains('\0') {
        bail!("'{p}' is not an absolute path inside the tree");
    }
    Ok(())
}

impl Overlay {
    /// Loads `dir/name` and checks its overlay.toml and layout.
    pub fn load(overlays_dir: &Path, name: &str) -> Result<Overlay> {
        let dir = overlays_dir.join(name);
        if name.is_empty() || name.contains('/') || !dir.is_dir() {
            bail!("no overlay '{name}' (no directory {})", dir.display());
        }
        let toml_path = dir.join("overlay.toml");
        let spec: OverlaySpec = if toml_path.exists() {
            let text = std::fs::read_to_string(&toml_path)
                .with_context(|| format!("reading {}", toml_path.display()))?;
            parse_toml(&toml_path, &text).map_err(|e| anyhow!("overlay '{name}': {e}"))?
        } else {
            OverlaySpec::default()
        };
        let at =
            |key: &str, e: anyhow::Error| anyhow!("overlay '{name}': overlay.toml: {key}: {e:#}");
        for (k, v) in &spec.variables {
            if scalar(v).is_none() {
                return Err(at(
                    &format!("variables.{k}"),
                    anyhow!("must be a string, an integer or a boolean"),
                ));
            }
        }
        for (p, a) in spec
            .files
            .iter()
            .chain(spec.late.iter().map(|(p, l)| (p, &l.attrs)))
        {
            check_tree_path(p).map_err(|e| at(&format!("files.\"{p}\""), e))?;
            if let Some(m) = &a.mode {
                parse_mode(m).map_err(|e| at(&format!("files.\"{p}\".mode"), e))?;
            }
        }
        for p in &spec.secrets {
            check_tree_path(p).map_err(|e| at("secrets", e))?;
        }
        for (p, l) in &spec.late {
            if l.make.first().is_some_and(|c| c.is_empty()) {
                return Err(at(
                    &format!("late.\"{p}\".make"),
                    anyhow!("the command's first word (the program) is empty"),
                ));
            }
        }
        for (c, fields) in &spec.components {
            if let Some(k) = fields
                .keys()
                .find(|k| !COMPONENT_FIELDS.contains(&k.as_str()))
            {
                return Err(at(
                    &format!("components.{c}.{k}"),
                    anyhow!(
                        "unknown key, expected one of {}",
                        COMPONENT_FIELDS.join(", ")
                    ),
                ));
            }
        }
        let provision = dir.join("provision.sh");
        if provision.exists() {
            let head = std::fs::read(&provision)
                .with_context(|| format!("reading {}", provision.display()))?;
            if !head.starts_with(b"#!") {
                bail!("overlay '{name}': provision.sh does not start with a #! line");
            }
        }
        Ok(Overlay {
            name: name.to_string(),
            dir,
            spec,
        })
    }

    pub fn provision_script(&self) -> Option<PathBuf> {
        let p = self.dir.join("provision.sh");
        p.exists().then_some(p)
    }

    fn files_dir(&self) -> PathBuf {
        self.dir.join("files")
    }

    /// The entries of `files/`, sorted, as (path relative to files/, walkdir entry).
    fn entries(&self) -> Result<Vec<walkdir::DirEntry>> {
        let root = self.files_dir();
        if !root.exists() {
            return Ok(Vec::new());
        }
        walkdir::WalkDir::new(&root)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.with_context(|| format!("overlay '{}': walking files/", self.name)))
            .collect()
    }

    fn renderer(&self) -> Handlebars<'static> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb
    }

    /// Renders one template; errors name the overlay, the file and the line.
    fn render(&self, hb: &Handlebars, rel: &Path, text: &str, vars: &Variables) -> Result<String> {
        let where_ = format!("overlay '{}': files/{}", self.name, rel.display());
        render_at(hb, &where_, text, vars)
    }

    /// Renders every template once (to nothing), so a bad template fails before any work.
    pub fn check_templates(&self, vars: &Variables) -> Result<usize> {
        let hb = self.renderer();
        let mut n = 0;
        for e in self.entries()? {
            if e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(".hbs") {
                let rel = e.path().strip_prefix(self.files_dir()).unwrap_or(e.path());
                let text = std::fs::read_to_string(e.path())
                    .with_context(|| format!("reading {}", e.path().display()))?;
                self.render(&hb, rel, &text, vars)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Late files with their sources rendered. A profile can be loaded and planned before the
    /// sources are made; a build makes them ([`LateSource::make`]) and then requires them.
    pub fn late_sources(&self, vars: &Variables) -> Result<Vec<LateSource>> {
        let hb = self.renderer();
        let defaults: Variables = self
            .spec
            .variables
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), scalar(v)?)))
            .collect();
        let mut out = Vec::new();
        for (dest, late) in &self.spec.late {
            let src = hb
                .render_template(&late.source, vars)
                .map_err(|e| anyhow!("overlay '{}': late file {dest}: source: {e}", self.name))?;
            // The make command makes the overlay's own default source, not a file a profile
            // or --var named instead.
            let default_source = hb.render_template(&late.source, &defaults).ok();
            let made_here = !late.make.is_empty() && default_source.is_none_or(|d| d == src);
            out.push(LateSource {
                overlay: self.name.clone(),
                dest: dest.clone(),
                source: rootpath::lexical(&self.dir.join(&src)),
                attrs: late.attrs.clone(),
                make: made_here.then(|| late.make.clone()),
                make_dir: self.dir.clone(),
            });
        }
        Ok(out)
    }

    /// The components of overlay.toml, rendered with the variables.
    pub fn components(&self, vars: &Variables) -> Result<Vec<Component>> {
        let hb = self.renderer();
        let mut out = Vec::new();
        for (name, templates) in &self.spec.components {
            let mut fields = BTreeMap::new();
            for (key, template) in templates {
                let where_ = format!(
                    "overlay '{}': overlay.toml: components.{name}.{key}",
                    self.name
                );
                let text = render_at(&hb, &where_, template, vars)?;
                if !text.trim().is_empty() {
                    fields.insert(key.clone(), text.trim().to_string());
                }
            }
            out.push(Component {
                name: name.clone(),
                overlay: self.name.clone(),
                fields,
            });
        }
        Ok(out)
    }

    /// SHA-256 over what shapes the provisioned tree: overlay.toml without its late and
    /// components tables, files/ (names, types, modes, contents, link targets) and
    /// provision.sh.
    pub fn content_hash(&self) -> Result<String> {
        let mut h = Sha256::new();
        let mut spec = self.spec.clone();
        spec.late.clear();
        spec.components.clear();
        h.update(serde_json::to_vec(&spec)?);
        let mut feed = |tag: &str, rel: &Path, meta: &std::fs::Metadata, data: &[u8]| {
            h.update(format!(
                "{tag}\0{}\0{:o}\0{}\0",
                rel.display(),
                meta.mode() & 0o7777,
                data.len()
            ));
            h.update(data);
        };
        for e in self.entries()? {
            let rel = e.path().strip_prefix(&self.dir).unwrap_or(e.path());
            let meta = e.path().symlink_metadata()?;
            if e.file_type().is_symlink() {
                let t = std::fs::read_link(e.path())?;
                feed("l", rel, &meta, t.as_os_str().as_encoded_bytes());
            } else if e.file_type().is_dir() {
                feed("d", rel, &meta, b"");
            } else {
                feed("f", rel, &meta, &std::fs::read(e.path())?);
            }
        }
        if let Some(p) = self.provision_script() {
            let meta = p.metadata()?;
            feed("p", Path::new("provision.sh"), &meta, &std::fs::read(&p)?);
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Copies files/ into the tree, rendering templates. Returns how many files were written.
    pub fn copy_files(&self, tree: &Path, vars: &Variables) -> Result<usize> {
        let hb = self.renderer();
        let base = self.files_dir();
        let mut n = 0;
        for e in self.entries()? {
            let rel = e.path().strip_prefix(&base).unwrap_or(e.path());
            let ctx = || format!("overlay '{}': files/{}", self.name, rel.display());
            let is_template = e.file_type().is_file() && rel.to_string_lossy().ends_with(".hbs");
            let dest_rel = if is_template {
                let name = e.file_name().to_string_lossy();
                rel.with_file_name(name.trim_end_matches(".hbs"))
            } else {
                rel.to_path_buf()
            };
            let dest = rootpath::resolve(tree, &dest_rel).with_context(ctx)?;
            let meta = e.path().symlink_metadata().with_context(ctx)?;
            if e.file_type().is_dir() {
                if !dest.is_dir() {
                    std::fs::create_dir(&dest).with_context(ctx)?;
                    std::fs::set_permissions(&dest, meta.permissions()).with_context(ctx)?;
                }
                continue;
            }
            replace_any(&dest).with_context(ctx)?;
            if e.file_type().is_symlink() {
                let target = std::fs::read_link(e.path()).with_context(ctx)?;
                std::os::unix::fs::symlink(target, &dest).with_context(ctx)?;
            } else if is_template {
                let text = std::fs::read_to_string(e.path()).with_context(ctx)?;
                let out = self.render(&hb, rel, &text, vars)?;
                std::fs::write(&dest, out).with_context(ctx)?;
                std::fs::set_permissions(&dest, meta.permissions()).with_context(ctx)?;
            } else {
                std::fs::copy(e.path(), &dest).with_context(ctx)?;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Applies overlay.toml's modes and owners; names resolve in the tree's passwd and group.
    pub fn apply_attrs(&self, tree: &Path) -> Result<()> {
        for (p, a) in &self.spec.files {
            let dest = rootpath::resolve(tree, Path::new(p))?;
            if dest.symlink_metadata().is_err() {
                bail!(
                    "overlay '{}': overlay.toml: files.\"{p}\": not in the tree",
                    self.name
                );
            }
            set_attrs(tree, &dest, a)
                .with_context(|| format!("overlay '{}': overlay.toml: files.\"{p}\"", self.name))?;
        }
        Ok(())
    }
}

/// Renders `text`; an error says `where_` and the line.
fn render_at(hb: &Handlebars, where_: &str, text: &str, vars: &Variables) -> Result<String> {
    hb.render_template(text, vars).map_err(|e| {
        let line = e.line_no.map(|l| format!(", line {l}")).unwrap_or_default();
        match e.reason() {
            handlebars::RenderErrorReason::MissingVariable(Some(v)) => {
                anyhow!("{where_}{line}: unknown variable `{v}`")
            }
            handlebars::RenderErrorReason::TemplateError(t) => {
                let line = t
                    .pos()
                    .map(|(l, _)| format!(", line {l}"))
                    .unwrap_or_default();
                // pest's list of expected tokens helps nobody: keep the reason's first part.
                let reason = t.reason().to_string();
                let reason = reason
                    .split(": expected")
                    .next()
                    .unwrap_or(&reason)
                    .to_string();
                anyhow!("{where_}{line}: {reason}")
            }
            other => anyhow!("{where_}{line}: {other}"),
        }
    })
}

/// Installs late files into the tree.
pub fn install_late(tree: &Path, files: &[LateSource]) -> Result<()> {
    for f in files {
        let dest = rootpath::resolve(tree, Path::new(&f.dest))?;
        let ctx = || format!("installing late file {}", f.dest);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).with_context(ctx)?;
        }
        replace_any(&dest).with_context(ctx)?;
        std::fs::copy(&f.source, &dest).with_context(ctx)?;
        set_attrs(tree, &dest, &f.attrs).with_context(ctx)?;
    }
    Ok(())
}

/// Removes whatever is at `p` unless it is a directory (a file, a symlink, nothing).
fn replace_any(p: &Path) -> Result<()> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => bail!("{} is a directory in the tree", p.display()),
        Ok(_) => std::fs::remove_file(p).with_context(|| format!("replacing {}", p.display())),
        Err(_) => Ok(()),
    }
}

fn set_attrs(tree: &Path, dest: &Path, a: &FileAttrs) -> Result<()> {
    if let Some(m) = &a.mode {
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(parse_mode(m)?))?;
    }
    let uid = a
        .owner
        .as_deref()
        .map(|o| lookup_id(tree, "etc/passwd", o))
        .transpose()?;
    let gid = a
        .group
        .as_deref()
        .map(|g| lookup_id(tree, "etc/group", g))
        .transpose()?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::lchown(dest, uid, gid)?;
        // chown clears setuid/setgid bits: put the mode back.
        if let Some(m) = &a.mode {
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(parse_mode(m)?))?;
        }
    }
    Ok(())
}

/// A user or group id by name (or number) from the tree's own database, never the host's.
pub fn lookup_id(tree: &Path, db: &str, name: &str) -> Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(tree.join(db)).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.nth(1).and_then(|id| id.parse().ok()))?
        })
        .ok_or_else(|| anyhow!("no '{name}' in the tree's /{db}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(dir: &Path, name: &str, toml: &str) -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(d.join("files")).unwrap();
        std::fs::write(d.join("overlay.toml"), toml).unwrap();
        d
    }

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect()
    }

    #[test]
    fn files_are_copied_rendered_and_kept_inside_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let o = overlay(
            d.path(),
            "web",
            "[files.\"/etc/app.conf\"]\nmode = \"0640\"\nowner = \"app\"\ngroup = \"adm\"\n",
        );
        std::fs::create_dir_all(o.join("files/etc/x")).unwrap();
        std::fs::write(
            o.join("files/etc/app.conf.hbs"),
            "port={{port}}\n<{{name}}>\n",
        )
        .unwrap();
        std::fs::write(o.join("files/etc/x/plain"), "p").unwrap();
        std::fs::create_dir_all(o.join("files/lib/systemd")).unwrap();
        std::fs::write(o.join("files/lib/systemd/u.service"), "u").unwrap();
        std::os::unix::fs::symlink("/dev/null", o.join("files/etc/masked")).unwrap();

        let tree = d.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::os::unix::fs::symlink("usr/lib", tree.join("lib")).unwrap();
        std::fs::write(
            tree.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:901:901::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(tree.join("etc/group"), "root:x:0:\nadm:x:4:\n").unwrap();
        // An absolute symlink where a file goes: replaced, not followed to the host.
        std::os::unix::fs::symlink("/etc/hostname", tree.join("etc/masked")).unwrap();

        let ov = Overlay::load(d.path(), "web").unwrap();
        let v = vars(&[("port", "3000"), ("name", "a&b")]);
        assert_eq!(ov.check_templates(&v).unwrap(), 1);
        assert_eq!(ov.copy_files(&tree, &v).unwrap(), 4);
        assert_eq!(
            std::fs::read_to_string(tree.join("etc/app.conf")).unwrap(),
            "port=3000\n<a&b>\n"
        );
        assert_eq!(
            std::fs::read_to_string(tree.join("usr/lib/systemd/u.service")).unwrap(),
            "u"
        );
        assert_eq!(
            std::fs::read_link(tree.join("etc/masked")).unwrap(),
            Path::new("/dev/null")
        );
        ov.apply_attrs(&tree).unwrap();
        let m = tree.join("etc/app.conf").metadata().unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 901, 4));
    }

    #[test]
    fn template_errors_name_overlay_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let o = overlay(d.path(), "t", "");
        std::fs::create_dir_all(o.join("files/etc")).unwrap();
        std::fs::write(o.join("files/etc/a.hbs"), "ok {{port}}\nbad {{prot}}\n").unwrap();
        let ov = Overlay::load(d.path(), "t").unwrap();
        let e = ov.check_templates(&vars(&[("port", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "overlay 't': files/etc/a.hbs, line 2: unknown variable `prot`"
        );
        std::fs::write(o.join("files/etc/a.hbs"), "x\n{{#if}}\n").unwrap();
        let e = ov.check_templates(&vars(&[])).unwrap_err().to_string();
        assert!(e.starts_with("overlay 't': files/etc/a.hbs, line "), "{e}");
        assert!(e.ends_with(": invalid handlebars syntax"), "{e}");
    }

    #[test]
    fn bad_overlay_toml() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            ("dependz = []\n", "overlay 'o': "),
            ("[files.\"etc/x\"]\nmode = \"0644\"\n", "overlay 'o': overlay.toml: files.\"etc/x\": 'etc/x' is not an absolute path inside the tree"),
            ("[files.\"/etc/x\"]\nmode = \"rw\"\n", "overlay 'o': overlay.toml: files.\"/etc/x\".mode: mode 'rw' is not an octal mode like \"0644\""),
            ("[variables]\nx = [1]\n", "overlay 'o': overlay.toml: variables.x: must be a string, an integer or a boolean"),
        ];
        for (toml, want) in cases {
            overlay(d.path(), "o", toml);
            let e = format!("{:#}", Overlay::load(d.path(), "o").unwrap_err());
            assert!(e.starts_with(want), "\n got: {e}\nwant: {want}");
        }
        std::fs::write(d.path().join("o/overlay.toml"), "").unwrap();
        std::fs::write(d.path().join("o/provision.sh"), "apt-get install x\n").unwrap();
        assert_eq!(
            Overlay::load(d.path(), "o").unwrap_err().to_string(),
            "overlay 'o': provision.sh does not start with a #! line"
        );
    }

    #[test]
    fn content_hash_ignores_late_files_only() {
        let d = tempfile::tempdir().unwrap();
        let o = overlay(d.path(), "h", "[late.\"/usr/bin/x\"]\nsource = \"x\"\n");
        std::fs::write(o.join("files/a"), "1").unwrap();
        let h = |d: &Path| Overlay::load(d, "h").unwrap().content_hash().unwrap();
        let h0 = h(d.path());
        std::fs::write(
            o.join("overlay.toml"),
            "[late.\"/usr/bin/y\"]\nsource = \"y\"\n",
        )
        .unwrap();
        assert_eq!(h(d.path()), h0);
        std::fs::write(o.join("files/a"), "2").unwrap();
        let h1 = h(d.path());
        assert_ne!(h1, h0);
        std::fs::write(o.join("provision.sh"), "#!/bin/sh\n").unwrap();
        assert_ne!(h(d.path()), h1);
    }

    #[test]
    fn components_render_and_do_not_change_the_content_hash() {
        let d = tempfile::tempdir().unwrap();
        overlay(d.path(), "c", "");
        let h0 = Overlay::load(d.path(), "c")
            .unwrap()
            .content_hash()
            .unwrap();
        std::fs::write(
            d.path().join("c/overlay.toml"),
            "[components.node]\nversion = \"{{v}}\"\nurl = \"https://e.org/node-v{{v}}.tar.xz\"\nsha256 = \"{{sum}}\"\n",
        )
        .unwrap();
        let ov = Overlay::load(d.path(), "c").unwrap();
        assert_eq!(ov.content_hash().unwrap(), h0);
        let got = ov
            .components(&vars(&[("v", "14.21.3"), ("sum", "")]))
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (
                got[0].name.as_str(),
                got[0].overlay.as_str(),
                got[0].get("version"),
                got[0].get("url")
            ),
            (
                "node",
                "c",
                Some("14.21.3"),
                Some("https://e.org/node-v14.21.3.tar.xz")
            )
        );
        // An empty pin is left out, not shown as "".
        assert_eq!(got[0].get("sha256"), None);
        let e = ov.components(&vars(&[("v", "1")])).unwrap_err().to_string();
        assert_eq!(
            e,
            "overlay 'c': overlay.toml: components.node.sha256, line 1: unknown variable `sum`"
        );
        std::fs::write(
            d.path().join("c/overlay.toml"),
            "[components.node]\nversoin = \"1\"\n",
        )
        .unwrap();
        let e = format!("{:#}", Overlay::load(d.path(), "c").unwrap_err());
        assert_eq!(e, "overlay 'c': overlay.toml: components.node.versoin: unknown key, expected one of description, version, packages, url, sha256, signature, repository, key_url, key_fingerprint");
    }

    #[test]
    fn late_files_resolve_their_source() {
        let d = tempfile::tempdir().unwrap();
        let o = overlay(
            d.path(),
            "l",
            "[late.\"/usr/local/bin/fb\"]\nsource = \"{{bin}}\"\nmode = \"0755\"\n",
        );
        std::fs::write(o.join("fb"), "ELF").unwrap();
        let ov = Overlay::load(d.path(), "l").unwrap();
        let late = ov.late_sources(&vars(&[("bin", "fb")])).unwrap();
        late[0].require().unwrap();
        let tree = d.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        install_late(&tree, &late).unwrap();
        let m = tree.join("usr/local/bin/fb").metadata().unwrap();
        assert_eq!(m.mode() & 0o777, 0o755);
        // A profile may name a source that is not made yet; a build may not.
        let planned = ov.late_sources(&vars(&[("bin", "missing")])).unwrap();
        assert!(!planned[0].source.exists());
        assert!(planned[0].make.is_none());
        let e = planned[0].require().unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "overlay 'l': late file /usr/local/bin/fb: source {}/l/missing does not exist",
                d.path().display()
            )
        );
    }

    #[test]
    fn late_files_are_made_only_while_the_source_is_the_default() {
        let d = tempfile::tempdir().unwrap();
        overlay(
            d.path(),
            "m",
            "[variables]\nbin = \"../out/fb\"\n[late.\"/usr/bin/fb\"]\nsource = \"{{bin}}\"\nmake = [\"./mk\", \"fb\"]\n",
        );
        let ov = Overlay::load(d.path(), "m").unwrap();
        let own = ov.late_sources(&vars(&[("bin", "../out/fb")])).unwrap();
        assert_eq!(
            own[0].make,
            Some(vec!["./mk".to_string(), "fb".to_string()])
        );
        assert_eq!(own[0].make_dir, d.path().join("m"));
        // Normalized: no `m/../` in what messages show.
        assert_eq!(own[0].source, d.path().join("out/fb"));
        let other = ov.late_sources(&vars(&[("bin", "/opt/fb")])).unwrap();
        assert_eq!(other[0].make, None);
        assert_eq!(other[0].source, PathBuf::from("/opt/fb"));
    }
}
