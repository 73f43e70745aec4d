//! Running build steps that change a tree: overlay `provision.sh` scripts in a chroot, and
//! debootstrap.
//!
//! Every step runs in a sandbox of its own ([`crate::sandbox`]): its own process group and
//! mount, PID, UTS and IPC namespaces; nothing it starts outlives it. The chroot's /proc, /sys
//! and a minimal /dev are mounted inside that namespace only, so they are never visible to the
//! host and vanish with the step's last process: no error, Ctrl-C or even `kill -9` of the
//! builder can leave a mount behind, and removing a work tree can never reach the host's /dev.
//! Chroot steps keep only the capabilities [`crate::sandbox::KEPT_CAPS`]. The tree gets a
//! `policy-rc.d` that stops services from starting, the host's resolv.conf, and apt settings
//! for unattended runs; all are restored afterwards.
//!
//! Each step writes its output to its own log file. A failing step prints the log's last lines
//! and its path, and the error names the step.
//!
//! Where the inputs come from ([`Inputs`]) adds to that, for the provisioning steps only:
//! - with `--mirror`: the rules in `/run/appliance-build/mirrors` (`APPLIANCE_MIRRORS`),
//!   `appliance-mirror` (rewrites a URL; writes the tree's apt sources rewritten into
//!   `/run/appliance-build/apt`), and `apt-get`/`apt` wrappers first on PATH that make apt read
//!   those rewritten sources (`-o Dir::Etc::SourceList=...`). The tree's own sources are never
//!   changed, so the image ships them as they are. (apt has no URL rewriting of its own, and
//!   its `APT::Update::Pre-Invoke` hook runs after the sources are read, too late to rewrite
//!   the ones a step has just added.)
//! - `appliance fetch`: the bundle being made bound read-write at `/run/appliance-fetch`
//!   (`APPLIANCE_FETCH`), and an apt `DPkg::Pre-Install-Pkgs` hook that copies every .deb apt
//!   installs there (whatever the script does to apt's cache afterwards).
//! - a bundle: bound read-only at `/run/appliance-bundle` (`APPLIANCE_BUNDLE`); apt's
//!   `Dir::Etc::SourceList`/`SourceParts` point at a list with only the bundle's repository.
//!
//! All of it is in `/run/appliance-build` and one apt.conf.d file, removed by
//! [`Chroot::restore`].

use crate::inputs::{Inputs, BUNDLE_IN_CHROOT, FETCH_IN_CHROOT};
use crate::sandbox::{base_env, run, Step, PATH};
use crate::util::partial;
use crate::util::rootpath;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const POLICY_RC_D: &str = "#!/bin/sh\n# Installed by the appliance builder while provisioning: no service starts.\nexit 101\n";
const APT_CONF: &str = "// Installed by the appliance builder while provisioning.\n\
Dpkg::Options { \"--force-confdef\"; \"--force-confold\"; };\n\
APT::Get::Assume-Yes \"true\";\n\
Dpkg::Use-Pty \"0\";\n";
const SAVED: &str = ".appliance-build-saved";
/// The builder's own files in the tree while provisioning.
const BUILD_DIR: &str = "run/appliance-build";
const MIRROR_TOOL: &str = include_str!("../chroot/appliance-mirror");
const APT_MIRRORED: &str = include_str!("../chroot/apt-mirrored");
const SAVE_DEBS: &str = include_str!("../chroot/save-debs");

pub use crate::sandbox::Bind;

/// The chroot's temporary files, put in place by [`Chroot::prepare`] and taken out by
/// [`Chroot::restore`] (or on drop).
pub struct Chroot {
    root: PathBuf,
    /// (path in the tree, whether an original was saved beside it)
    placed: Vec<(PathBuf, bool)>,
    /// Directories made in the tree, removed on restore.
    made: Vec<PathBuf>,
    binds: Vec<Bind>,
    env: Vec<(String, String)>,
    restored: bool,
}

impl Chroot {
    /// Puts the chroot's files in place for provisioning with inputs from `inputs`.
    pub fn prepare(root: &Path, inputs: &Inputs) -> Result<Chroot> {
        let mut c = Chroot {
            root: root.to_path_buf(),
            placed: Vec::new(),
            made: Vec::new(),
            binds: Vec::new(),
            env: Vec::new(),
            restored: false,
        };
        for d in ["proc", "sys", "dev", "dev/pts", "run", "tmp"] {
            let p = rootpath::resolve(root, Path::new(d))?;
            if !p.is_dir() {
                std::fs::create_dir_all(&p)
                    .with_context(|| format!("creating /{d} in the tree"))?;
            }
        }
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        c.place("usr/sbin/policy-rc.d", POLICY_RC_D.as_bytes(), 0o755)?;
        c.place("etc/resolv.conf", &resolv, 0o644)?;
        c.make_dir(BUILD_DIR)?;
        let mut apt_conf = APT_CONF.to_string();
        if let Some(m) = inputs.mirrors().filter(|m| !m.is_empty()) {
            c.make_dir(&format!("{BUILD_DIR}/bin"))?;
            c.place(
                &format!("{BUILD_DIR}/mirrors"),
                m.rules_text().as_bytes(),
                0o644,
            )?;
            c.place(
                &format!("{BUILD_DIR}/bin/appliance-mirror"),
                MIRROR_TOOL.as_bytes(),
                0o755,
            )?;
            for tool in ["apt-get", "apt", "apt-cache"] {
                c.place(
                    &format!("{BUILD_DIR}/bin/{tool}"),
                    APT_MIRRORED.as_bytes(),
                    0o755,
                )?;
            }
            c.env
                .push(("APPLIANCE_MIRRORS".into(), format!("/{BUILD_DIR}/mirrors")));
            c.env
                .push(("PATH".into(), format!("/{BUILD_DIR}/bin:{PATH}")));
        }
        match inputs {
            Inputs::Network(_) => {}
            Inputs::Fetch { staging, .. } => {
                c.make_dir(FETCH_IN_CHROOT)?;
                c.binds.push(Bind {
                    source: staging.to_path_buf(),
                    target: FETCH_IN_CHROOT.into(),
                    read_only: false,
                });
                c.place(
                    &format!("{BUILD_DIR}/save-debs"),
                    SAVE_DEBS.as_bytes(),
                    0o755,
                )?;
                apt_conf.push_str(&format!(
                    "DPkg::Pre-Install-Pkgs {{ \"/{BUILD_DIR}/save-debs\"; }};\n"
                ));
                c.env
                    .push(("APPLIANCE_FETCH".into(), format!("/{FETCH_IN_CHROOT}")));
            }
            Inputs::Bundle(bundle) => {
                c.make_dir(BUNDLE_IN_CHROOT)?;
                c.binds.push(Bind {
                    source: bundle.dir().to_path_buf(),
                    target: BUNDLE_IN_CHROOT.into(),
                    read_only: true,
                });
                let list = format!(
                    "# The appliance builder: only the bundle's packages while provisioning.\n\
                     deb [trusted=yes] file:/{BUNDLE_IN_CHROOT}/{} ./\n",
                    crate::inputs::bundle::APT
                );
                c.make_dir(&format!("{BUILD_DIR}/apt"))?;
                c.make_dir(&format!("{BUILD_DIR}/apt/sources.list.d"))?;
                c.place(
                    &format!("{BUILD_DIR}/apt/sources.list"),
                    list.as_bytes(),
                    0o644,
                )?;
                apt_conf.push_str(&format!(
                    "Dir::Etc::SourceList \"/{BUILD_DIR}/apt/sources.list\";\n\
                     Dir::Etc::SourceParts \"/{BUILD_DIR}/apt/sources.list.d\";\n\
                     Acquire::Languages \"none\";\n"
                ));
                c.env
                    .push(("APPLIANCE_BUNDLE".into(), format!("/{BUNDLE_IN_CHROOT}")));
            }
        }
        if rootpath::resolve(root, Path::new("etc/apt/apt.conf.d"))?.is_dir() {
            c.place(
                "etc/apt/apt.conf.d/00appliance-build",
                apt_conf.as_bytes(),
                0o644,
            )?;
        }
        Ok(c)
    }

    /// Makes a directory in the tree (with its parents), to be removed on restore.
    fn make_dir(&mut self, rel: &str) -> Result<()> {
        let p = rootpath::resolve(&self.root, Path::new(rel))?;
        if !p.is_dir() {
            std::fs::create_dir_all(&p).with_context(|| format!("creating /{rel} in the tree"))?;
            self.made.push(p);
        }
        Ok(())
    }

    /// The environment of a provisioning step: [`base_env`] with what the inputs add.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = base_env();
        for (k, v) in &self.env {
            env.retain(|(e, _)| e != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }

    /// Writes `data` at `rel`, moving whatever was there (file or symlink) aside.
    fn place(&mut self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let p = rootpath::resolve(&self.root, Path::new(rel))?;
        let saved = p.symlink_metadata().is_ok();
        if saved {
            std::fs::rename(&p, saved_name(&p))
                .with_context(|| format!("moving /{rel} aside in the tree"))?;
        }
        self.placed.push((p.clone(), saved));
        std::fs::write(&p, data).with_context(|| format!("writing /{rel} in the tree"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Puts back what [`Chroot::prepare`] moved aside.
    pub fn restore(mut self) -> Result<()> {
        self.restore_all()
    }

    fn restore_all(&mut self) -> Result<()> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        for (p, saved) in self.placed.drain(..).rev() {
            // A step that replaced a placed file with a symlink made the tree's own choice,
            // which stays: systemd-resolved's postinst links /etc/resolv.conf to its stub
            // (Ubuntu 18.04's systemd, 24.04's systemd-resolved). Restoring the tree's old file
            // over it would leave an image whose resolv.conf scrub empties.
            let replaced = p
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink());
            if replaced {
                if saved {
                    let _ = std::fs::remove_file(saved_name(&p));
                }
                continue;
            }
            let _ = std::fs::remove_file(&p);
            if saved {
                std::fs::rename(saved_name(&p), &p)
                    .with_context(|| format!("restoring {}", p.display()))?;
            }
        }
        // What steps left in the builder's directories (the mirrored sources) goes with them;
        // never below a mount (the binds are the steps' own, gone with them).
        for d in self.made.drain(..).rev() {
            if partial::mounts_below(&d).is_empty() {
                let _ = std::fs::remove_dir_all(&d);
            }
        }
        Ok(())
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let _ = self.restore_all();
    }
}

fn saved_name(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(SAVED);
    PathBuf::from(s)
}

impl Chroot {
    /// Runs an overlay's provision.sh in the tree; `env` comes on top of [`Chroot::env`].
    pub fn run_script(
        &self,
        overlay: &str,
        script: &Path,
        env: Vec<(String, String)>,
        log: &Path,
    ) -> Result<()> {
        let dir = rootpath::resolve(&self.root, Path::new(BUILD_DIR))?;
        std::fs::create_dir_all(&dir).context("creating /run/appliance-build in the tree")?;
        let inside = format!("/{BUILD_DIR}/{overlay}.sh");
        let copy = dir.join(format!("{overlay}.sh"));
        std::fs::copy(script, &copy).with_context(|| format!("copying {}", script.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
        let mut all = self.env();
        all.extend(env);
        let result = run(&Step {
            what: format!("provision.sh of overlay '{overlay}'"),
            program: &inside,
            args: Vec::new(),
            env: all,
            chroot: Some(&self.root),
            binds: &self.binds,
            cwd: None,
            log,
        });
        let _ = std::fs::remove_file(&copy);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn chroot_files_are_placed_and_restored() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(r.join("etc/apt/apt.conf.d")).unwrap();
        std::os::unix::fs::symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            r.join("etc/resolv.conf"),
        )
        .unwrap();
        let mirrors = crate::inputs::mirror::Mirrors::default();
        let c = Chroot::prepare(r, &Inputs::Network(&mirrors)).unwrap();
        assert_eq!(
            std::fs::read_to_string(r.join("usr/sbin/policy-rc.d")).unwrap(),
            POLICY_RC_D
        );
        assert!(r
            .join("etc/resolv.conf")
            .symlink_metadata()
            .unwrap()
            .is_file());
        assert!(r.join("etc/apt/apt.conf.d/00appliance-build").exists());
        c.restore().unwrap();
        assert!(!r.join("usr/sbin/policy-rc.d").exists());
        assert!(!r.join("etc/apt/apt.conf.d/00appliance-build").exists());
        assert_eq!(
            std::fs::read_link(r.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/systemd/resolve/stub-resolv.conf")
        );
        let names: Vec<_> = std::fs::read_dir(r.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !names.iter().any(|n| n.to_string_lossy().contains(SAVED)),
            "{names:?}"
        );
    }

    /// systemd-resolved's postinst replaces /etc/resolv.conf (the host's copy the chroot put
    /// there) with a link to its stub: the link stays, the tree's old file goes.
    #[test]
    fn a_link_a_step_put_in_place_of_a_placed_file_stays() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
        let mirrors = crate::inputs::mirror::Mirrors::default();
        let c = Chroot::prepare(r, &Inputs::Network(&mirrors)).unwrap();
        std::fs::remove_file(r.join("etc/resolv.conf")).unwrap();
        std::os::unix::fs::symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            r.join("etc/resolv.conf"),
        )
        .unwrap();
        c.restore().unwrap();
        assert_eq!(
            std::fs::read_link(r.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/systemd/resolve/stub-resolv.conf")
        );
        let names: Vec<_> = std::fs::read_dir(r.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !names.iter().any(|n| n.to_string_lossy().contains(SAVED)),
            "{names:?}"
        );
        // Without a step's link, the tree's own file comes back.
        let c = Chroot::prepare(r, &Inputs::Network(&mirrors)).unwrap();
        std::fs::remove_file(r.join("etc/resolv.conf")).unwrap();
        std::fs::write(r.join("etc/resolv.conf"), "nameserver 192.0.2.9\n").unwrap();
        c.restore().unwrap();
        assert_eq!(
            std::fs::read_link(r.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/systemd/resolve/stub-resolv.conf")
        );
    }

    fn mirrors() -> crate::inputs::mirror::Mirrors {
        let profile = [
            ("debian", "http://deb.debian.org/debian"),
            ("debian-security", "http://deb.debian.org/debian-security"),
            ("github", "https://github.com"),
            ("apps", "https://github.com/RocketChat"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let over = [
            ("debian", "http://127.0.0.1:3142/deb.debian.org/debian"),
            ("github", "https://gh.example"),
            ("apps", "https://apps.example/rc"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>();
        crate::inputs::mirror::Mirrors::new(&profile, &over).unwrap()
    }

    #[test]
    fn the_chroot_mirror_tool_rewrites_as_the_builder_does() {
        let d = tempfile::tempdir().unwrap();
        let m = mirrors();
        let rules = d.path().join("mirrors");
        std::fs::write(&rules, m.rules_text()).unwrap();
        let tool = d.path().join("appliance-mirror");
        std::fs::write(&tool, MIRROR_TOOL).unwrap();
        for url in [
            "http://deb.debian.org/debian/dists/bookworm/InRelease",
            "http://deb.debian.org/debian",
            "http://deb.debian.org/debian-security/dists/x",
            "https://github.com/a/b?c=d",
            "https://github.com/RocketChat/Apps.Jitsi/x.zip",
            "https://github.company.example/x",
            "https://example.org/",
        ] {
            let out = Command::new("sh")
                .arg(&tool)
                .args(["url", url])
                .env("APPLIANCE_MIRRORS", &rules)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{}\n", m.apply(url)),
                "{url}"
            );
        }
    }

    /// The bundle part of the test above: a bundle's apt sources, bound read-only.
    fn bundle_inputs_set_up_the_chroot(d: &Path, r: &Path, conf: &Path) {
        let made = d.join("made");
        std::fs::create_dir_all(made.join("apt")).unwrap();
        crate::inputs::bundle::seal(
            &made,
            &d.join("bundle"),
            "p",
            &"0".repeat(64),
            &Default::default(),
            Default::default(),
            0,
        )
        .unwrap();
        let bundle = crate::inputs::bundle::Bundle::open(
            &d.join("bundle"),
            &crate::util::progress::Reporter::new(),
        )
        .unwrap();
        let c = Chroot::prepare(r, &Inputs::Bundle(&bundle)).unwrap();
        let text = std::fs::read_to_string(conf).unwrap();
        assert!(
            text.contains("Dir::Etc::SourceList \"/run/appliance-build/apt/sources.list\";"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_to_string(r.join("run/appliance-build/apt/sources.list")).unwrap(),
            "# The appliance builder: only the bundle's packages while provisioning.\ndeb [trusted=yes] file:/run/appliance-bundle/apt ./\n"
        );
        assert!(c.binds[0].read_only);
        assert!(c
            .env()
            .iter()
            .any(|(k, v)| k == "APPLIANCE_BUNDLE" && v == "/run/appliance-bundle"));
        c.restore().unwrap();
    }

    #[test]
    fn each_kind_of_inputs_sets_up_the_chroot_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("tree");
        std::fs::create_dir_all(r.join("etc/apt/apt.conf.d")).unwrap();
        std::fs::create_dir_all(r.join("usr/sbin")).unwrap();
        let before = |r: &Path| {
            let mut v: Vec<_> = walkdir::WalkDir::new(r)
                .into_iter()
                .map(|e| e.unwrap().path().to_path_buf())
                .collect();
            v.sort();
            v
        };
        let conf = r.join("etc/apt/apt.conf.d/00appliance-build");

        let m = mirrors();
        let c = Chroot::prepare(&r, &Inputs::Network(&m)).unwrap();
        assert!(r.join("run/appliance-build/bin/apt-get").is_file());
        assert_eq!(
            std::fs::read_to_string(r.join("run/appliance-build/mirrors")).unwrap(),
            m.rules_text()
        );
        let env = c.env();
        let path = env.iter().find(|(k, _)| k == "PATH").unwrap();
        assert!(
            path.1
                .starts_with("/run/appliance-build/bin:/usr/local/sbin:"),
            "{path:?}"
        );
        assert!(env
            .iter()
            .any(|(k, v)| k == "APPLIANCE_MIRRORS" && v == "/run/appliance-build/mirrors"));
        assert!(c.binds.is_empty());
        c.restore().unwrap();
        assert!(!r.join("run/appliance-build").exists());

        let staging = d.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let c = Chroot::prepare(
            &r,
            &Inputs::Fetch {
                mirrors: &crate::inputs::mirror::Mirrors::default(),
                staging: &staging,
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(
            text.contains("DPkg::Pre-Install-Pkgs { \"/run/appliance-build/save-debs\"; };"),
            "{text}"
        );
        assert!(!text.contains("Dir::Etc"), "{text}");
        assert!(
            !r.join("run/appliance-build/bin").exists(),
            "no mirrors, no wrappers"
        );
        assert!(c
            .env()
            .iter()
            .any(|(k, v)| k == "APPLIANCE_FETCH" && v == "/run/appliance-fetch"));
        assert_eq!(c.binds.len(), 1);
        assert!(!c.binds[0].read_only && r.join("run/appliance-fetch").is_dir());
        c.restore().unwrap();

        bundle_inputs_set_up_the_chroot(d.path(), &r, &conf);
        // Only what the tree had (and the directories a chroot needs) is left.
        let left: Vec<String> = before(&r)
            .iter()
            .map(|p| p.strip_prefix(&r).unwrap().display().to_string())
            .collect();
        assert_eq!(
            left,
            [
                "",
                "dev",
                "dev/pts",
                "etc",
                "etc/apt",
                "etc/apt/apt.conf.d",
                "proc",
                "run",
                "sys",
                "tmp",
                "usr",
                "usr/sbin"
            ]
        );
    }
}
