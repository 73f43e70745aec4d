//! The Ubuntu 18.04 appliance (profiles/rocketchat-jitsi-bionic.toml), checked without its
//! upstream hosts (Ubuntu's, MongoDB's, Jitsi's, nodejs.org and Rocket.Chat's are unreachable
//! from the machines this is developed on) and without QEMU:
//!
//! - `appliance plan` resolves with no network and names every pin of the profile's variables;
//! - every build-time template of its overlays renders in strict mode (loading fails on an
//!   unknown variable), to what the profile's variables say;
//! - every systemd unit and drop-in its overlays ship passes `systemd-analyze verify` in a root
//!   laid out by the builder's own overlay code, with stand-ins only for what packages and
//!   late files provide, also with the drop-ins appliance-firstboot writes;
//! - every unit a provision.sh enables exists;
//! - every script is POSIX sh within reach of the shellcheck run of scripts/test.
//!
//! The expected values are read from the profile and overlay files themselves, so the tests
//! follow the profile. The firstboot overlay's own units are verified by firstboot/tests/units.rs.

mod common;

use appliance::spec::profile::Profile;
use common::{appliance, stdout};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const NAME: &str = "rocketchat-jitsi-bionic";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn profile_path() -> PathBuf {
    repo().join(format!("profiles/{NAME}.toml"))
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The profile file as data: its overlays in order and its [variables] as strings.
struct ProfileData {
    table: toml::Table,
    overlays: Vec<String>,
    variables: BTreeMap<String, String>,
}

fn as_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn profile_data() -> ProfileData {
    profile_data_of(&profile_path())
}

fn profile_data_of(path: &Path) -> ProfileData {
    let table = read_toml(path);
    let overlays = table["overlays"]
        .as_array()
        .expect("overlays")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let variables = table["variables"]
        .as_table()
        .expect("[variables]")
        .iter()
        .map(|(k, v)| (k.clone(), as_text(v)))
        .collect();
    ProfileData {
        table,
        overlays,
        variables,
    }
}

/// The variables templates see, read from the files: each overlay's defaults in profile order,
/// then the profile's.
fn all_variables(p: &ProfileData, overlays_dir: &Path) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for o in &p.overlays {
        let spec = overlays_dir.join(o).join("overlay.toml");
        if spec.exists() {
            if let Some(t) = read_toml(&spec).get("variables").and_then(|v| v.as_table()) {
                vars.extend(t.iter().map(|(k, v)| (k.clone(), as_text(v))));
            }
        }
    }
    vars.extend(p.variables.clone());
    vars
}

/// The firstboot overlay's late file is a build output of this repository
/// (scripts/build-firstboot), not an input of the profile: a stand-in keeps these tests
/// independent of whether it was built.
fn firstboot_standin(dir: &Path) -> Vec<(String, String)> {
    let bin = dir.join("appliance-firstboot");
    std::fs::write(&bin, "#!/bin/sh\n").unwrap();
    vec![(
        "firstboot_binary".to_string(),
        bin.to_str().unwrap().to_string(),
    )]
}

/// Every path below `dir` (relative to it), sorted; symbolic links are not followed.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.extend(
                    walk(&path)
                        .into_iter()
                        .map(|p| Path::new(path.file_name().unwrap()).join(p)),
                );
            }
            out.push(PathBuf::from(path.file_name().unwrap()));
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for rel in walk(from) {
        let (src, dest) = (from.join(&rel), to.join(&rel));
        let meta = std::fs::symlink_metadata(&src).unwrap();
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if meta.file_type().is_symlink() {
            let _ = std::fs::remove_file(&dest);
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dest).unwrap();
        } else if meta.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(&src, &dest).unwrap();
        }
    }
}

/// `{{name}}` replaced by the variable, written independently of the builder's handlebars:
/// the templates of these overlays use nothing else (a new construct fails here, to be added).
fn render_plain(text: &str, vars: &BTreeMap<String, String>, what: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .unwrap_or_else(|| panic!("{what}: unclosed {{{{"))
            + start;
        let name = rest[start + 2..end].trim();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{what}: `{{{{{name}}}}}` is more than a variable: extend this test's renderer"
        );
        out.push_str(
            vars.get(name)
                .unwrap_or_else(|| panic!("{what}: no variable {name}")),
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The `*.hbs` of the profile's overlays: (overlay, path below files/).
fn templates(p: &ProfileData) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for o in &p.overlays {
        for rel in walk(&repo().join("overlays").join(o).join("files")) {
            if rel.to_string_lossy().ends_with(".hbs") {
                out.push((o.clone(), rel));
            }
        }
    }
    out
}

/// The pins among the profile's variables: every component's version, every URL (https) and
/// key fingerprint (all 40 hex digits).
fn assert_every_pin_is_complete(p: &ProfileData) {
    let pins: Vec<(&String, &String)> = p
        .variables
        .iter()
        .filter(|(k, _)| {
            ["_version", "_url", "_repo", "_fingerprint"]
                .iter()
                .any(|s| k.ends_with(s))
        })
        .collect();
    for (k, v) in &pins {
        assert!(!v.is_empty(), "the profile pins no {k}");
        if k.ends_with("_fingerprint") {
            assert!(
                v.len() == 40 && v.chars().all(|c| c.is_ascii_hexdigit()),
                "{k} = {v:?} is not a full fingerprint (40 hex digits)"
            );
        }
        if k.ends_with("_url") || k.ends_with("_repo") {
            assert!(v.starts_with("https://"), "{k} = {v:?} is not https");
        }
    }
    for component in [
        "mongodb",
        "node",
        "npm",
        "rocketchat",
        "jitsi_meet",
        "prosody",
    ] {
        assert!(
            p.variables.contains_key(&format!("{component}_version")),
            "no {component}_version in the profile"
        );
    }
    // The key issue 5 names, pinned.
    assert_eq!(
        p.variables["jitsi_key_fingerprint"],
        "66A9 CD05 95D6 AFA2 4729 0D3B EF8B 479E 2DC1 389C".replace(' ', "")
    );
}

/// Under every pin the profile sets (a version, URL, repository, checksum or key
/// fingerprint), the plan's `variables` section shows the profile's comment: the pin's evidence,
/// its own or its paragraph's (issue 18: "`appliance plan` shows every pin with its evidence").
fn assert_plan_shows_every_pins_evidence(p: &ProfileData, variables: &[&str]) {
    let pins = p.variables.iter().filter(|(k, v)| {
        !v.is_empty()
            && ["_version", "_url", "_repo", "_sha256", "_fingerprint"]
                .iter()
                .any(|s| k.ends_with(s))
    });
    let mut seen = 0;
    for (k, v) in pins {
        let line = format!("  {k} = {}", serde_json::Value::String(v.clone()));
        let at = variables.iter().position(|l| *l == line).unwrap();
        let evidence: Vec<&str> = variables[at + 1..]
            .iter()
            .take_while(|l| l.starts_with("      # "))
            .copied()
            .collect();
        assert!(
            !evidence.is_empty(),
            "the plan shows no evidence under `{line}`:\n{}",
            variables.join("\n")
        );
        // A paragraph's evidence is named by the key it stands above, which has its own.
        if let Some(head) = evidence
            .iter()
            .find_map(|l| l.strip_prefix("      # (and the comment above "))
        {
            let head = head.trim_end_matches(')');
            assert!(p.variables.contains_key(head), "{k}: no {head}");
        }
        seen += 1;
    }
    assert!(seen > 10, "only {seen} pins");
}

/// The same for the 24.04 sibling (issue 18), whose pins are all new.
#[test]
fn the_noble_plan_shows_every_pin_with_its_evidence() {
    let path = repo().join("profiles/rocketchat-jitsi-noble.toml");
    let p = profile_data_of(&path);
    let dir = tempfile::tempdir().unwrap();
    let text = stdout(&common::run_ok(
        appliance()
            .arg("plan")
            .arg(&path)
            .arg("--out")
            .arg(dir.path().join("out"))
            .arg("--var")
            .arg("firstboot_binary=/nonexistent/appliance-firstboot"),
    ));
    let variables: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "variables:")
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .collect();
    assert_plan_shows_every_pins_evidence(&p, &variables);
}

/// Every parameter of the profile's debootstrap base is in the plan's `text`.
fn assert_plan_names_the_base(p: &ProfileData, text: &str) {
    let base = p.table["base"].as_table().unwrap();
    for key in ["suite", "mirror", "keyring", "variant"] {
        let value = base[key].as_str().unwrap();
        assert!(
            text.contains(value),
            "the plan does not name base.{key} {value}:\n{text}"
        );
    }
    for key in ["components", "extra_suites", "packages"] {
        let list: Vec<&str> = base[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            text.contains(&list.join(",")),
            "the plan does not name base.{key} {list:?}:\n{text}"
        );
    }
}

#[test]
fn the_plan_resolves_offline_and_names_every_pin() {
    let p = profile_data();
    // A new network namespace holds only a loopback that is down: nothing is reachable. Root
    // makes one directly; anyone else where user namespaces are allowed (-r).
    let unshare: &[&str] = [&["-n"][..], &["-r", "-n"][..]]
        .into_iter()
        .find(|args| {
            Command::new("unshare")
                .args(*args)
                .arg("true")
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("`unshare -n` does not work here: this test runs the plan with no network");
    let dir = tempfile::tempdir().unwrap();
    // A firstboot binary named by --var (so the build does not make it) that is not there:
    // the plan says it is missing; the build stops on it before any download.
    let missing = dir.path().join("not-built/appliance-firstboot");
    let vars = vec![(
        "firstboot_binary".to_string(),
        missing.to_str().unwrap().to_string(),
    )];
    let plan = |json: bool| {
        let mut cmd = Command::new("unshare");
        cmd.args(unshare)
            .arg(env!("CARGO_BIN_EXE_appliance"))
            .arg("plan")
            .arg(profile_path())
            .arg("--out")
            .arg(dir.path().join("out"));
        for (k, v) in &vars {
            cmd.arg("--var").arg(format!("{k}={v}"));
        }
        if json {
            cmd.arg("--json");
        }
        common::run_ok(&mut cmd)
    };
    let text = stdout(&plan(false));
    assert!(
        text.contains(&format!(
            "late file /usr/local/sbin/appliance-firstboot (overlay firstboot) from {} [does not exist yet: the build needs it]",
            missing.display()
        )),
        "{text}"
    );
    let mut build = Command::new("unshare");
    build
        .args(unshare)
        .arg(env!("CARGO_BIN_EXE_appliance"))
        .arg("build")
        .arg(profile_path())
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg("--var")
        .arg(format!("firstboot_binary={}", missing.display()))
        .env("APPLIANCE_CACHE", dir.path().join("cache"));
    common::assert_one_error(
        &mut build,
        1,
        &format!(
            "error: overlay 'firstboot': late file /usr/local/sbin/appliance-firstboot: source {} does not exist",
            missing.display()
        ),
    );

    // What plan shows now: the profile, the base with its checks, the overlays in order, the
    // variables, the outputs.
    assert!(text.starts_with(&format!("profile {NAME} (")), "{text}");
    assert_plan_names_the_base(&p, &text);
    let section = |name: &str| -> Vec<&str> {
        text.lines()
            .skip_while(|l| *l != format!("{name}:"))
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .collect()
    };
    let overlays: Vec<&str> = section("overlays")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(overlays, p.overlays, "{text}");

    // Every variable of the profile, as the build will pass it: the pins among them are every
    // component's version, every URL (downloads, keys, apt repositories) and key fingerprint.
    let variables = section("variables");
    for (k, v) in &p.variables {
        let line = format!("  {k} = {}", serde_json::Value::String(v.clone()));
        assert!(
            variables.contains(&line.as_str()),
            "the plan does not show `{line}`:\n{text}"
        );
    }
    assert_every_pin_is_complete(&p);
    assert_plan_shows_every_pins_evidence(&p, &variables);
    let formats = p.table["output"]["formats"].as_array().unwrap();
    let outputs = section("outputs");
    for f in formats {
        let prefix = format!("{NAME}.{}", f.as_str().unwrap());
        assert!(
            outputs
                .iter()
                .any(|l| l.rsplit('/').next().is_some_and(|n| n.starts_with(&prefix))),
            "no output {prefix}:\n{text}"
        );
    }

    // The same variables in the JSON plan, which scripts read.
    let json: serde_json::Value = serde_json::from_slice(&plan(true).stdout).unwrap();
    for (k, v) in &p.variables {
        assert_eq!(json["variables"][k], serde_json::json!(v), "{k}");
    }
}

#[test]
fn loading_renders_every_template_in_strict_mode() {
    let p = profile_data();
    let dir = tempfile::tempdir().unwrap();
    let vars = firstboot_standin(dir.path());
    let hbs = templates(&p);
    assert!(!hbs.is_empty());

    // The real profile loads: every template rendered once against its variables.
    let profile = Profile::load(&profile_path(), &vars).unwrap();
    let checked: usize = profile
        .overlays
        .iter()
        .map(|o| o.check_templates(&profile.variables).unwrap())
        .sum();
    assert_eq!(checked, hbs.len());

    // A copy of the profile and its overlays loads the same; with one template naming a
    // variable nobody defines, loading (and so `plan` and `build`) fails naming the overlay,
    // the file, the line and the variable.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(copy.join("profiles")).unwrap();
    std::fs::copy(profile_path(), copy.join(format!("profiles/{NAME}.toml"))).unwrap();
    for o in &p.overlays {
        copy_dir(
            &repo().join("overlays").join(o),
            &copy.join("overlays").join(o),
        );
    }
    let copied_profile = copy.join(format!("profiles/{NAME}.toml"));
    Profile::load(&copied_profile, &vars).unwrap();
    for (overlay, rel) in &hbs {
        let path = copy.join("overlays").join(overlay).join("files").join(rel);
        let good = std::fs::read_to_string(&path).unwrap();
        let (line_no, line) = good
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains("{{"))
            .unwrap_or_else(|| panic!("{overlay}: {} uses no variable", rel.display()));
        let typo = line.replacen("}}", "_typo}}", 1);
        let name = typo[typo.find("{{").unwrap() + 2..typo.find("}}").unwrap()].trim();
        std::fs::write(&path, good.replacen(line, &typo, 1)).unwrap();
        let want = format!(
            "overlay '{overlay}': files/{}, line {}: unknown variable `{name}`",
            rel.display(),
            line_no + 1
        );
        let err = Profile::load(&copied_profile, &vars).unwrap_err();
        assert_eq!(format!("{err:#}"), want);
        let mut cmd = appliance();
        cmd.arg("plan").arg(&copied_profile);
        for (k, v) in &vars {
            cmd.arg("--var").arg(format!("{k}={v}"));
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("error: {want}\n")
        );
        std::fs::write(&path, good).unwrap();
    }
    Profile::load(&copied_profile, &vars).unwrap();
}

#[test]
fn every_template_renders_to_what_the_profile_says() {
    let p = profile_data();
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile::load(&profile_path(), &firstboot_standin(dir.path())).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for o in &profile.overlays {
        o.copy_files(&tree, &profile.variables).unwrap();
    }
    let vars = all_variables(&p, &repo().join("overlays"));
    for (overlay, rel) in templates(&p) {
        let what = format!("overlay {overlay}: files/{}", rel.display());
        let source = repo()
            .join("overlays")
            .join(&overlay)
            .join("files")
            .join(&rel);
        let text = std::fs::read_to_string(&source).unwrap();
        let dest = tree.join(rel.to_string_lossy().trim_end_matches(".hbs"));
        let rendered = std::fs::read_to_string(&dest)
            .unwrap_or_else(|e| panic!("{what}: {}: {e}", dest.display()));
        assert_eq!(rendered, render_plain(&text, &vars, &what), "{what}");
        assert!(!rendered.contains("{{"), "{what}");
        assert!(
            !tree.join(&rel).exists(),
            "{what}: the template itself is in the tree"
        );
    }

    // What each one is for.
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hostname")).unwrap(),
        format!("{}\n", vars["hostname"])
    );
}

/// The units and drop-ins of the profile's overlays: (overlay, path below files/).
fn unit_files(p: &ProfileData) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for o in &p.overlays {
        let files = repo().join("overlays").join(o).join("files");
        for rel in walk(&files) {
            let s = rel.to_string_lossy();
            let parent = rel.parent().unwrap().to_string_lossy().into_owned();
            let unit = s.ends_with(".service") || s.ends_with(".timer");
            let dropin = parent.ends_with(".d") && s.ends_with(".conf");
            if (unit || dropin) && s.starts_with("etc/systemd/system/") {
                out.push((o.clone(), rel));
            }
        }
    }
    out
}

fn write_exe(root: &Path, path: &str) {
    let full = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(&full, "#!/bin/sh\n# stand-in\n").unwrap();
    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The units that packages install, for the drop-ins of the overlays and the `systemctl
/// enable` of provision.sh: a reduced copy of each package's own unit.
const PACKAGE_UNITS: &[(&str, &str, &str)] = &[(
    "mongod.service",
    "mongodb-org-server",
    "[Unit]\nDescription=MongoDB Database Server\nAfter=network-online.target\n\
     Wants=network-online.target\n\n[Service]\nUser=mongodb\nGroup=mongodb\n\
     EnvironmentFile=-/etc/default/mongod\nExecStart=/usr/bin/mongod --config /etc/mongod.conf\n\
     RuntimeDirectory=mongodb\n\n[Install]\nWantedBy=multi-user.target\n",
)];

/// A root with the host's units (for the targets the units name), every file of the
/// profile's overlays as the build lays them down (the builder's own code, templates
/// rendered), the package units above, and stand-ins for the executables that packages,
/// provision.sh and late files provide. Nothing else: a unit naming a path that the overlays
/// do not ship fails.
fn unit_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let host_units = Path::new("/lib/systemd/system");
    assert!(
        host_units.join("multi-user.target").exists(),
        "no systemd units in {}: run scripts/setup",
        host_units.display()
    );
    copy_dir(host_units, &root.join("lib/systemd/system"));
    let profile = Profile::load(&profile_path(), &firstboot_standin(dir)).unwrap();
    for o in &profile.overlays {
        o.copy_files(&root, &profile.variables).unwrap();
    }
    for (name, _, text) in PACKAGE_UNITS {
        std::fs::write(root.join("lib/systemd/system").join(name), text).unwrap();
    }
    // mongodb-org-server; openssh-client; the late file of the firstboot overlay.
    for exe in [
        "/usr/bin/mongod",
        "/usr/bin/turnserver",
        "/usr/bin/ssh-keygen",
        "/usr/local/sbin/appliance-firstboot",
    ] {
        write_exe(&root, exe);
    }
    // Node.js as rocketchat's provision.sh installs it: unpacked in /opt, linked from
    // /usr/local/bin.
    let node_dir = format!(
        "/opt/node-v{}-linux-x64",
        profile.variables["node_version"].as_str().unwrap()
    );
    write_exe(&root, &format!("{node_dir}/bin/node"));
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::os::unix::fs::symlink(
        format!("{node_dir}/bin/node"),
        root.join("usr/local/bin/node"),
    )
    .unwrap();
    root
}

/// `systemd-analyze verify` of `units` in `root`: its complaints about them (it only fails
/// for some, and prints the rest as warnings).
fn verify(root: &Path, units: &[String]) -> Result<(), String> {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(units)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("systemd-analyze is not installed: run scripts/setup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let names: Vec<&str> = units
        .iter()
        .map(|u| u.rsplit('/').next().unwrap())
        .collect();
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("/etc/systemd/system/") || names.iter().any(|n| l.contains(n)))
        .collect();
    if out.status.success() && ours.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "systemd-analyze verify ({}):\n{stderr}",
            out.status
        ))
    }
}

/// What to verify: every unit of the overlays (the firstboot overlay's are verified by
/// firstboot/tests/units.rs) and every unit a drop-in of theirs belongs to.
fn units_to_verify(p: &ProfileData) -> Vec<String> {
    let mut units = Vec::new();
    for (overlay, rel) in unit_files(p) {
        let s = rel.to_string_lossy().into_owned();
        let parent = rel.parent().unwrap();
        let unit = match parent.to_string_lossy().strip_suffix(".d") {
            Some(owner) => {
                let name = Path::new(owner).file_name().unwrap().to_str().unwrap();
                if PACKAGE_UNITS.iter().any(|(n, _, _)| *n == name) {
                    format!("/lib/systemd/system/{name}")
                } else {
                    format!("/{owner}")
                }
            }
            None if parent.ends_with("multi-user.target.wants")
                || parent.ends_with("timers.target.wants") =>
            {
                continue
            }
            None => format!("/{s}"),
        };
        if overlay != "firstboot" && !units.contains(&unit) {
            units.push(unit);
        }
    }
    units
}

/// systemd 237 (18.04) refuses `systemctl enable` of a unit that has a symbolic link in its
/// drop-in directory ("Failed to lookup unit file state: Invalid argument"; newer systemd,
/// which the test above runs, accepts it), so the product's provisioning stopped at the
/// rocketchat overlay when the admin and Jitsi units shared rocketchat.service's drop-in that
/// way. Every unit and drop-in the overlays ship is a file of its own (links in *.wants/
/// enable units, as `systemctl enable` makes them).
#[test]
fn no_unit_or_drop_in_of_the_overlays_is_a_link() {
    let p = profile_data();
    let mut seen = 0;
    for (overlay, rel) in unit_files(&p) {
        // Links in *.wants/ are how a unit is enabled: those are systemd's own.
        if rel.parent().unwrap().to_string_lossy().ends_with(".wants") {
            continue;
        }
        let path = repo()
            .join("overlays")
            .join(&overlay)
            .join("files")
            .join(&rel);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "overlay {overlay}: /{} is not a regular file (systemd 237 cannot enable its unit)",
            rel.display()
        );
        seen += 1;
    }
    // Its directories too: a linked drop-in directory is the same link.
    for o in &p.overlays {
        let system = repo()
            .join("overlays")
            .join(o)
            .join("files/etc/systemd/system");
        for entry in std::fs::read_dir(&system).into_iter().flatten() {
            let entry = entry.unwrap();
            assert!(
                !entry.file_type().unwrap().is_symlink(),
                "overlay {o}: {} is a link",
                entry.path().display()
            );
        }
    }
    assert!(seen > 10, "only {seen} units and drop-ins found");
}

#[test]
fn systemd_analyze_verifies_every_unit_of_the_overlays() {
    let p = profile_data();
    let dir = tempfile::tempdir().unwrap();
    let root = unit_root(dir.path());
    let units = units_to_verify(&p);
    for u in &units {
        assert!(root.join(&u[1..]).is_file(), "no unit {u} in the root");
    }
    for want in [
        "/etc/systemd/system/appliance-ssh-keygen.service",
        "/etc/systemd/system/appliance-mongo-rs.service",
        "/lib/systemd/system/mongod.service",
        "/etc/systemd/system/rocketchat.service",
        "/etc/systemd/system/appliance-rocketchat-jitsi.service",
        "/etc/systemd/system/coturn.service",
    ] {
        assert!(units.iter().any(|u| u == want), "{want} not in {units:?}");
    }
    verify(&root, &units).unwrap();
    // The firstboot overlay's units are in the root (the others name them) and verified by
    // firstboot/tests/units.rs: each one must be in its list.
    let firstboot_test = std::fs::read_to_string(repo().join("firstboot/tests/units.rs")).unwrap();
    for (overlay, rel) in unit_files(&p) {
        let parent = rel.parent().unwrap();
        if overlay == "firstboot" && parent == Path::new("etc/systemd/system") {
            let unit = format!("\"/{}\"", rel.display());
            assert!(
                firstboot_test.contains(&unit),
                "firstboot/tests/units.rs does not verify {unit}"
            );
        }
    }

    // The drop-in appliance-firstboot writes for rocketchat.service: its golden files, from an
    // external MongoDB with credentials to an administrator's password with quotes and `%`.
    let golden = repo().join("firstboot/tests/golden");
    let dropin = root.join("etc/systemd/system/rocketchat.service.d/appliance.conf");
    let mut seen = 0;
    for case in walk(&golden) {
        let written = golden
            .join(&case)
            .join("etc/systemd/system/rocketchat.service.d/appliance.conf");
        if case.components().count() == 1 && written.is_file() {
            std::fs::copy(&written, &dropin).unwrap();
            verify(&root, &units).unwrap_or_else(|e| panic!("with {}: {e}", written.display()));
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "no golden rocketchat drop-ins in {}",
        golden.display()
    );
}

#[test]
fn systemd_analyze_catches_a_broken_unit() {
    let p = profile_data();
    let dir = tempfile::tempdir().unwrap();
    let root = unit_root(dir.path());
    let units = units_to_verify(&p);
    let breakages: &[(&str, &str, &str, &str)] = &[
        // A typo in a path the overlays ship.
        (
            "etc/systemd/system/appliance-mongo-rs.service",
            "ExecStart=/usr/local/lib/appliance/mongodb-rs-initiate",
            "ExecStart=/usr/local/lib/appliance/mongodb-rs-initate",
            "is not executable",
        ),
        // A typo in a key, which systemd only warns about.
        (
            "etc/systemd/system/rocketchat.service",
            "\nType=simple\n",
            "\nTpye=simple\n",
            "Unknown key",
        ),
        // A drop-in of a package's unit.
        (
            "etc/systemd/system/mongod.service.d/appliance.conf",
            "\nConditionPathExists=!/etc/appliance/external-mongodb\n",
            "\nConditionPathExists=!/etc/appliance/external-mongodb\nConditionPathExist=/x\n",
            "Unknown key",
        ),
    ];
    for (file, from, to, want) in breakages {
        let path = root.join(file);
        let good = std::fs::read_to_string(&path).unwrap();
        assert!(good.contains(from), "{file}: no {from:?}");
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let err = verify(&root, &units).expect_err(file);
        assert!(err.contains(want), "{file}: {err}");
        std::fs::write(&path, good).unwrap();
    }
    verify(&root, &units).unwrap();
}

#[test]
fn every_unit_that_provisioning_enables_exists() {
    let p = profile_data();
    let shipped: Vec<String> = unit_files(&p)
        .iter()
        .map(|(_, rel)| rel.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // A script installs a package it names, or one in the value (for this profile) of a
    // variable it reads (`need NAME` or $APPLIANCE_VAR_NAME: mongodb_packages).
    let vars = all_variables(&p, &repo().join("overlays"));
    let installs = |text: &str, package: &str| {
        text.contains(package)
            || vars.iter().any(|(k, v)| {
                let var = k.to_uppercase();
                (text.contains(&format!("need {var}"))
                    || text.contains(&format!("APPLIANCE_VAR_{var}")))
                    && v.split_whitespace()
                        .any(|w| w.split('=').next() == Some(package))
            })
    };
    for o in &p.overlays {
        let script = repo().join("overlays").join(o).join("provision.sh");
        let Ok(text) = std::fs::read_to_string(&script) else {
            continue;
        };
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("systemctl enable ") else {
                continue;
            };
            for unit in rest.split_whitespace() {
                if let Some((_, package, _)) = PACKAGE_UNITS.iter().find(|(n, _, _)| *n == unit) {
                    assert!(
                        installs(&text, package),
                        "{o}: enables {unit} without installing {package}"
                    );
                    continue;
                }
                assert!(
                    shipped.iter().any(|s| s == unit),
                    "{o}/provision.sh enables {unit}, which no overlay ships"
                );
                let path = p
                    .overlays
                    .iter()
                    .map(|d| repo().join(format!("overlays/{d}/files/etc/systemd/system/{unit}")))
                    .find(|f| f.is_file())
                    .unwrap();
                let unit_text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    unit_text.contains("\n[Install]\nWantedBy="),
                    "{unit} has no [Install] section to enable"
                );
            }
        }
    }
}

/// scripts/test runs shellcheck on every overlay file named provision.sh or executable by
/// its owner. Here: every script of the profile's overlays is within that selection, and is
/// POSIX sh (`#!/bin/sh`, which shellcheck then checks as sh; the builder runs provision.sh
/// with /bin/sh, dash on Ubuntu).
#[test]
fn every_script_is_posix_sh_and_shellchecked_by_scripts_test() {
    let p = profile_data();
    let ci = std::fs::read_to_string(repo().join("scripts/test")).unwrap();
    assert!(
        ci.contains("find overlays -type f \\( -name provision.sh -o -perm -u+x \\)")
            && ci.contains("shellcheck \"${overlay_scripts[@]}\""),
        "scripts/test no longer shellchecks the overlay scripts as this test expects"
    );
    let mut scripts = 0;
    for o in &p.overlays {
        let dir = repo().join("overlays").join(o);
        let mut files: Vec<PathBuf> = walk(&dir.join("files"))
            .into_iter()
            .map(|r| dir.join("files").join(r))
            .collect();
        files.push(dir.join("provision.sh"));
        for path in files {
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            let head = std::fs::read(&path).unwrap();
            let is_provision = path.file_name().unwrap() == "provision.sh";
            let executable = meta.permissions().mode() & 0o100 != 0;
            if !head.starts_with(b"#!") {
                assert!(
                    !executable,
                    "{} is executable but no script",
                    path.display()
                );
                assert!(!is_provision);
                continue;
            }
            let first = String::from_utf8_lossy(&head);
            let first = first.lines().next().unwrap();
            assert_eq!(first, "#!/bin/sh", "{}", path.display());
            assert!(
                is_provision || executable,
                "{} is a script that scripts/test's shellcheck does not see (not executable)",
                path.display()
            );
            scripts += 1;
        }
    }
    assert!(scripts >= 13, "{scripts}");
}

/// Issue 13, points 8 and 11, in the laid-out root: `systemctl --root enable` as provision.sh
/// does; the oneshots of Rocket.Chat's start are wanted by rocketchat.service, not by
/// multi-user.target, and rocketchat.service has no default dependencies, so
/// multi-user.target (the boot, cloud-init's final stage) is not ordered after them; the
/// local mongod and the replica-set unit are conditioned on the file appliance-firstboot
/// leaves for an external mongo_url; systemd-analyze verifies the enabled root.
#[test]
fn rocketchat_start_does_not_hold_the_boot_and_external_mongo_stops_the_local_one() {
    let p = profile_data();
    let dir = tempfile::tempdir().unwrap();
    let root = unit_root(dir.path());
    let units = units_to_verify(&p);
    let enable = |unit: &str| {
        let out = Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args(["enable", unit])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemctl enable {unit}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for u in [
        "rocketchat.service",
        "appliance-rocketchat-admin.service",
        "appliance-rocketchat-jitsi.service",
        "appliance-mongo-rs.service",
        "mongod.service",
        "coturn.service",
    ] {
        enable(u);
    }
    let wants = |target: &str| -> Vec<String> {
        let d = root
            .join("etc/systemd/system")
            .join(format!("{target}.wants"));
        let mut v: Vec<String> = std::fs::read_dir(&d)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let rc = wants("rocketchat.service");
    for u in [
        "appliance-mongo-rs.service",
        "appliance-rocketchat-admin.service",
        "appliance-rocketchat-jitsi.service",
    ] {
        assert!(
            rc.contains(&u.to_string()),
            "{u} not wanted by rocketchat: {rc:?}"
        );
        assert!(
            !wants("multi-user.target").contains(&u.to_string()),
            "{u} is wanted by multi-user.target"
        );
    }
    let mu = wants("multi-user.target");
    for u in ["rocketchat.service", "mongod.service", "coturn.service"] {
        assert!(mu.contains(&u.to_string()), "{u} not enabled: {mu:?}");
    }
    let unit = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let rocketchat = unit("etc/systemd/system/rocketchat.service");
    let lines: Vec<&str> = rocketchat.lines().collect();
    for want in [
        "DefaultDependencies=no",
        "Requires=sysinit.target",
        "After=sysinit.target basic.target",
        "Conflicts=shutdown.target",
        "Before=shutdown.target",
    ] {
        assert!(lines.contains(&want), "rocketchat.service lacks {want}");
    }
    // Nothing the boot waits for is ordered after the oneshots (only rocketchat.service is,
    // for the replica set, and the Jitsi settings are ordered after it).
    let jitsi = unit("etc/systemd/system/appliance-rocketchat-jitsi.service");
    assert!(jitsi.contains("\nAfter=rocketchat.service "), "{jitsi}");
    assert!(!jitsi.contains("Before="), "{jitsi}");
    let rs = unit("etc/systemd/system/appliance-mongo-rs.service");
    assert!(rs.contains("\nBefore=rocketchat.service\n"), "{rs}");
    // The external MongoDB file: the one appliance-firstboot writes.
    let marker = "/etc/appliance/external-mongodb";
    let plan_rs = std::fs::read_to_string(repo().join("firstboot/src/plan.rs")).unwrap();
    assert!(
        plan_rs.contains(&format!("pub const EXTERNAL_MONGODB: &str = \"{marker}\";")),
        "firstboot writes another file for an external MongoDB"
    );
    let condition = format!("\nConditionPathExists=!{marker}\n");
    assert!(rs.contains(&condition), "{rs}");
    let mongod_dropin = unit("etc/systemd/system/mongod.service.d/appliance.conf");
    assert!(mongod_dropin.contains(&condition), "{mongod_dropin}");
    verify(&root, &units).unwrap();
}

/// Issue 13, point 5: the TURN ports coturn listens on (turnserver.conf) and prosody
/// advertises are open in ufw and in the README's list for cloud security groups.
#[test]
fn turn_ports_are_open_in_ufw_and_listed_in_the_readme() {
    let p = profile_data();
    let vars = all_variables(&p, &repo().join("overlays"));
    let allow: Vec<&str> = vars["ufw_allow"].split_whitespace().collect();
    let templates = repo().join("overlays/firstboot/files/etc/appliance/templates");
    let turn = std::fs::read_to_string(templates.join("turnserver.conf.handlebars")).unwrap();
    let prosody =
        std::fs::read_to_string(templates.join("prosody-jitsi.cfg.lua.handlebars")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (key, rule) in [
        ("listening-port=3478", "3478/udp"),
        ("tls-listening-port=5349", "5349/tcp"),
    ] {
        assert!(
            turn.lines().any(|l| l == key),
            "turnserver.conf lacks {key}"
        );
        let port = rule.split('/').next().unwrap();
        assert!(prosody.contains(&format!("port = {port}")), "{port}");
        assert!(allow.contains(&rule), "ufw_allow lacks {rule}: {allow:?}");
        assert!(
            readme.contains(&format!("`{rule}`")),
            "README.md does not list `{rule}`"
        );
    }
    let provision = std::fs::read_to_string(repo().join("overlays/jitsi/provision.sh")).unwrap();
    assert!(provision.contains("apt-get install -q --no-install-recommends coturn"));
    assert!(provision.contains("usermod -a -G ssl-cert turnserver"));
}

fn run_script(script: &str, args: &[&str], path_prefix: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new("sh");
    cmd.arg(repo().join(script)).args(args);
    if let Some(dir) = path_prefix {
        cmd.env(
            "PATH",
            format!("{}:{}", dir.display(), std::env::var("PATH").unwrap()),
        );
    }
    cmd.output().unwrap()
}

/// Issue 13, point 6: the bundle's Node.js is compared as Rocket.Chat compares it (the major
/// version), so 14.21.4 recorded by a Meteor 2.13 bundle runs on the pinned 14.18.3.
#[test]
fn node_version_check_compares_the_major_version() {
    let script = "overlays/rocketchat/files/usr/local/lib/appliance/node-major-matches";
    for (wanted, have, code) in [
        ("v14.21.4", "14.18.3", 0),
        ("14.18.3", "14.18.3", 0),
        ("v12.22.1", "14.18.3", 1),
        ("v16.14.0", "14.18.3", 1),
        ("v14", "14.18.3", 2),
        ("x.1.2", "14.18.3", 2),
    ] {
        let out = run_script(script, &[wanted, have], None);
        assert_eq!(out.status.code(), Some(code), "{wanted:?} {have:?}");
    }
    let provision =
        std::fs::read_to_string(repo().join("overlays/rocketchat/provision.sh")).unwrap();
    assert!(provision.contains("\"$lib/node-major-matches\" \"$wants\" \"$node_version\""));
}

/// Issue 13, point 9: a pin an apt repository no longer serves is named, with what the
/// repository has and how to refresh the pin.
#[test]
fn apt_pin_check_names_the_pin_a_repository_dropped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("apt-cache"),
        "#!/bin/sh\ncase \"$2\" in\nprosody) printf ' prosody | 0.12.4-1~bionic1 | https://packages.prosody.im/debian bionic/main amd64 Packages\\n' ;;\n\
         jicofo) printf ' jicofo | 1.0-996-1 | x\\n jicofo | 1.0-1000-1 | x\\n' ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join("apt-cache"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let script = "overlays/appliance-common/files/usr/local/lib/appliance/apt-pin-check";
    let ok = run_script(
        script,
        &["jicofo_version", "1.0-996-1", "jicofo"],
        Some(dir.path()),
    );
    assert!(ok.status.success(), "{ok:?}");
    let gone = run_script(
        script,
        &["prosody_version", "0.12.3-1~bionic1", "prosody"],
        Some(dir.path()),
    );
    assert_eq!(gone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(
        err.contains("the pin prosody_version = \"0.12.3-1~bionic1\" is no longer served: the repositories serve prosody in: 0.12.4-1~bionic1"),
        "{err}"
    );
    assert!(err.contains("Refreshing a pin"), "{err}");
    let none = run_script(script, &["x_version", "1", "nothing"], Some(dir.path()));
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing in: no version at all"));
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("Refreshing a pin"),
        "the README has no section the message names"
    );
}

/// A stand-in for Rocket.Chat 4.8's REST API on 127.0.0.1: login, settings (GET, and POST
/// only with the token and the password as second factor), logout; every request is logged
/// as one JSON line. Its port goes to the file named by its first argument.
const FAKE_ROCKETCHAT: &str = r#"
import hashlib, json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
portfile, log = sys.argv[1], open(sys.argv[2], "a")
settings = {"Jitsi_Enabled": False, "Jitsi_Domain": "meet.jit.si", "Jitsi_URL_Room_Prefix": "RocketChat",
            "Jitsi_SSL": True, "Jitsi_Open_New_Window": False, "Jitsi_Enable_Channels": False}
PASS = "s3cret pass"
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def handle_any(self, method):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        log.write(json.dumps({"method": method, "path": self.path, "body": body}) + "\n"); log.flush()
        authed = self.headers.get("X-Auth-Token") == "tok" and self.headers.get("X-User-Id") == "uid"
        if self.path == "/chat/api/info": return self.reply(200, {"version": "4.8.7"})
        if self.path == "/chat/api/v1/login":
            b = json.loads(body)
            if b == {"user": "boss", "password": PASS}:
                return self.reply(200, {"status": "success", "data": {"authToken": "tok", "userId": "uid"}})
            return self.reply(401, {"error": "Unauthorized"})
        if not authed: return self.reply(401, {"error": "You must be logged in"})
        if self.path == "/chat/api/v1/logout": return self.reply(200, {"status": "success"})
        name = self.path[len("/chat/api/v1/settings/"):]
        if not self.path.startswith("/chat/api/v1/settings/") or name not in settings:
            return self.reply(404, {"error": "not found"})
        if method == "GET": return self.reply(200, {"_id": name, "value": settings[name], "success": True})
        if self.headers.get("x-2fa-method") != "password" or \
           self.headers.get("x-2fa-code") != hashlib.sha256(PASS.encode()).hexdigest():
            return self.reply(400, {"error": "totp-required"})
        settings[name] = json.loads(body)["value"]
        return self.reply(200, {"success": True})
    def do_GET(self): self.handle_any("GET")
    def do_POST(self): self.handle_any("POST")
s = HTTPServer(("127.0.0.1", 0), H)
open(portfile + ".tmp", "w").write(str(s.server_port)); __import__("os").rename(portfile + ".tmp", portfile)
s.serve_forever()
"#;

/// Starts FAKE_ROCKETCHAT in `d`, logging requests to `log`: the process and its port.
fn start_fake_rocketchat(d: &Path, log: &Path) -> (std::process::Child, String) {
    std::fs::write(d.join("fake.py"), FAKE_ROCKETCHAT).unwrap();
    let portfile = d.join("port");
    let server = Command::new("python3")
        .arg(d.join("fake.py"))
        .arg(&portfile)
        .arg(log)
        .spawn()
        .expect("python3 is not installed: run scripts/setup");
    let mut waited = 0;
    while !portfile.exists() {
        assert!(waited < 600, "the fake Rocket.Chat did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    let port = std::fs::read_to_string(&portfile).unwrap();
    (server, port)
}

/// Issue 13, points 1, 2 and 7: appliance-rocketchat-jitsi sets Rocket.Chat 4.8's own Jitsi
/// settings over REST (logged in, the password as second factor), only those that differ, once
/// per domain; with `"jitsi": false` in firstboot's state it does nothing at all (the jq case:
/// `.jitsi // true` could not see false).
#[test]
fn rocketchat_jitsi_sets_the_jitsi_settings_over_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("requests.log");
    let (mut server, port) = start_fake_rocketchat(d, &log);
    let state = d.join("state.json");
    let own_state = d.join("rocketchat-jitsi.state");
    let run = || {
        Command::new("sh")
            .arg(repo().join("overlays/rocketchat/files/usr/local/lib/appliance/rocketchat-jitsi"))
            .env("APPLIANCE_FIRSTBOOT_STATE", &state)
            .env("APPLIANCE_ROCKETCHAT_JITSI_STATE", &own_state)
            .env("ROCKETCHAT_JITSI_INTEGRATION", "settings")
            .env("PORT", port.trim())
            .env("ROOT_URL", "https://chat.example.com/chat/")
            .env("ADMIN_USERNAME", "boss")
            .env("ADMIN_PASS", "s3cret pass")
            .output()
            .unwrap()
    };
    let requests = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let posts = || -> Vec<(String, String)> {
        requests()
            .iter()
            .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().contains("/settings/"))
            .map(|r| {
                (
                    r["path"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_string(),
                    r["body"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    // "jitsi": false: nothing to do, no request.
    std::fs::write(&state, r#"{"dns_name":"meet.example.com","jitsi":false}"#).unwrap();
    let out = run();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("configured no Jitsi Meet"));
    assert!(requests().is_empty(), "{:?}", requests());

    // "jitsi": true: the settings that differ are set, for the DNS name.
    std::fs::write(&state, r#"{"dns_name":"meet.example.com","jitsi":true}"#).unwrap();
    let out = run();
    assert!(out.status.success(), "{out:?}");
    let want: Vec<(String, String)> = [
        ("Jitsi_Enabled", "true"),
        ("Jitsi_Domain", "\"meet.example.com\""),
        ("Jitsi_Open_New_Window", "true"),
        ("Jitsi_Enable_Channels", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), format!("{{\"value\":{v}}}")))
    .collect();
    assert_eq!(posts(), want);
    let paths: Vec<String> = requests()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect();
    assert!(paths.contains(&"POST /chat/api/v1/login".to_string()));
    assert_eq!(paths.last().unwrap(), "POST /chat/api/v1/logout");
    for get in ["Jitsi_URL_Room_Prefix", "Jitsi_SSL"] {
        assert!(
            paths.contains(&format!("GET /chat/api/v1/settings/{get}")),
            "{paths:?}"
        );
    }
    let recorded = std::fs::read_to_string(&own_state).unwrap();
    assert!(
        recorded.starts_with("domain=meet.example.com "),
        "{recorded}"
    );

    // The next start: recorded, nothing asked.
    let before = requests().len();
    let out = run();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(requests().len(), before);

    // No "jitsi" key (an older state): Jitsi is assumed, and a new domain is set.
    std::fs::write(&state, r#"{"dns_name":"new.example.com"}"#).unwrap();
    let out = run();
    assert!(out.status.success(), "{out:?}");
    let (name, value) = posts().pop().unwrap();
    assert_eq!(name, "Jitsi_Domain");
    assert_eq!(value, r#"{"value":"new.example.com"}"#);
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Issue 14: a disk booted with no cloud-init datasource gets DHCP from the base overlay's
/// fallback (cloud-init, disabled by ds-identify, writes none), and only when the machine has
/// no network configuration of its own: cloud-init's from an earlier boot with a datasource
/// (netplan on Ubuntu, ifupdown on Debian) or an administrator's stays the only one.
#[test]
fn network_fallback_only_without_a_datasource_and_without_own_configuration() {
    let script = "overlays/base/files/usr/local/lib/appliance/network-fallback";
    let written = "run/systemd/network/90-appliance-fallback.network";
    let run = |root: &Path| {
        let out = run_script(script, &[root.to_str().unwrap()], None);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let put = |root: &Path, path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    // Nothing configured (Debian's interfaces file as debootstrap leaves it, loopback lines
    // included): DHCP on the Ethernet NICs, and a second run keeps it.
    for interfaces in [
        None,
        Some("source /etc/network/interfaces.d/*\n"),
        Some("auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n"),
    ] {
        let root = tempfile::tempdir().unwrap();
        if let Some(text) = interfaces {
            put(root.path(), "etc/network/interfaces", text);
        }
        for _ in 0..2 {
            let said = run(root.path());
            assert!(said.contains("DHCP on en* and eth*"), "{said}");
            let network = std::fs::read_to_string(root.path().join(written)).unwrap();
            assert!(network.contains("[Match]\nName=en* eth*\n"), "{network}");
            assert!(network.contains("[Network]\nDHCP=ipv4\n"), "{network}");
        }
        assert_eq!(
            std::fs::read_dir(root.path().join("run/systemd/network"))
                .unwrap()
                .count(),
            1,
            "a temporary file was left"
        );
    }
    // The machine's own configuration: nothing written.
    for (path, text) in [
        (
            "etc/netplan/50-cloud-init.yaml",
            "network:\n  version: 2\n  ethernets:\n    ens3:\n      dhcp4: true\n",
        ),
        (
            "run/systemd/network/10-netplan-ens3.network",
            "[Match]\nName=ens3\n",
        ),
        (
            "etc/systemd/network/20-wired.network",
            "[Match]\nName=en*\n",
        ),
        (
            "etc/network/interfaces.d/50-cloud-init",
            "auto ens3\niface ens3 inet dhcp\n",
        ),
        (
            "etc/network/interfaces",
            "auto lo\niface lo inet loopback\nallow-hotplug ens3\niface ens3 inet static\n",
        ),
    ] {
        let root = tempfile::tempdir().unwrap();
        put(root.path(), path, text);
        let said = run(root.path());
        assert!(
            said.contains("not needed") && said.contains(path),
            "{path}: {said}"
        );
        assert!(!root.path().join(written).exists(), "{path}");
    }
    // Only when cloud-init found no datasource, before systemd-networkd reads its files, and
    // before appliance-firstboot reads the default route.
    let unit = std::fs::read_to_string(
        repo().join("overlays/base/files/etc/systemd/system/appliance-network-fallback.service"),
    )
    .unwrap();
    assert!(unit.contains("\nConditionPathExists=/run/cloud-init/disabled\n"));
    assert!(unit.contains("\nBefore=network-pre.target systemd-networkd.service\n"));
    assert!(unit.contains("\nExecStart=/usr/local/lib/appliance/network-fallback\n"));
    let firstboot = std::fs::read_to_string(
        repo().join("overlays/firstboot/files/etc/systemd/system/appliance-firstboot.service"),
    )
    .unwrap();
    assert!(firstboot.contains("\nWants=network-online.target\n"));
    assert!(firstboot
        .contains("\nAfter=cloud-init.service cloud-config.service network-online.target\n"));
    let provision = std::fs::read_to_string(repo().join("overlays/base/provision.sh")).unwrap();
    assert!(provision.contains("appliance-network-fallback.service"));
}
