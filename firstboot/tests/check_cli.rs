//! `appliance-firstboot check` as users run it: exit codes and one line per problem.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appliance-firstboot"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn check_file(dir: &Path, name: &str, contents: &[u8]) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    run(&["check", "--user-data", path.to_str().unwrap()])
}

#[test]
fn valid_user_data_exits_0_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["meet.example.com"]);
    let user_data = with_cert(
        "  admin: {username: admin, password: correct-horse-battery, email: ops@example.com}\n",
        &format!("{}{}", leaf.pem, ca.pem),
        &leaf.key_pem,
    );
    let mixed = mime(&[
        Part("text/cloud-config", "base64", user_data.as_bytes()),
        Part("text/x-shellscript", "7bit", b"#!/bin/sh\ntrue\n"),
    ]);
    let out = check_file(dir.path(), "user-data", &gzip(&mixed));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        "dns_name:    meet.example.com\n\
         root_url:    https://meet.example.com:3000/\n\
         certificate: provided, 2 certificate(s), leaf valid until 2040-01-01 00:00 UTC, names meet.example.com\n\
         admin:       admin <ops@example.com>\n\
         mongo_url:   local replica set\n\
         not read:    text/x-shellscript (not cloud-config)\n"
    );
    assert!(!text(&out.stdout).contains("correct-horse"));
}

#[test]
fn each_problem_on_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["meet.example.com"]);
    let other = ca.leaf(&["meet.example.com"]);
    let user_data = with_cert(
        "  root_url: https://chat.example.com:22/\n  admin: {username: admin}\n",
        &leaf.pem,
        &other.key_pem,
    );
    let out = check_file(dir.path(), "user-data", user_data.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "error: appliance.root_url: port 22 is taken: SSH listens there\n\
         error: appliance.certificate.key: does not match the leaf certificate's public key\n\
         error: appliance.admin.password: missing (admin needs username, password and email, or none of them)\n\
         error: appliance.admin.email: missing (admin needs username, password and email, or none of them)\n"
    );
    assert!(!text(&out.stderr).contains("PRIVATE KEY"));
}

#[test]
fn config_yaml_is_read_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "dns_name: meet.example.com\nmongo_url: mongodb://db\n",
    )
    .unwrap();
    let user_data = dir.path().join("user-data");
    std::fs::write(&user_data, "#cloud-config\npackages: [htop]\n").unwrap();
    let args = |c: &Path| {
        run(&[
            "check",
            "--user-data",
            user_data.to_str().unwrap(),
            "--config",
            c.to_str().unwrap(),
        ])
    };
    let out = args(&config);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: config.yaml:mongo_url: names no database: write mongodb://HOSTS/DATABASE\n"
    );
    std::fs::write(&config, "dns_name: meet.example.com\n").unwrap();
    let out = args(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("dns_name:    meet.example.com\n"));
}

#[test]
fn unreadable_file_is_one_line() {
    let out = run(&["check", "--user-data", "/nonexistent/user-data"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: /nonexistent/user-data: No such file or directory (os error 2)\n"
    );
}

#[test]
fn the_other_commands_take_a_root() {
    // Never on this machine's own root: on a temporary one, empty.
    let root = tempfile::tempdir().unwrap();
    let root = root.path().to_str().unwrap();
    let out = run(&["status", "--root", root]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "not applied yet\n");
    for command in ["apply", "reconfigure"] {
        let out = run(&[command, "--root", root, "--no-restart"]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert!(
            text(&out.stderr).starts_with("error: instance id: neither "),
            "{}",
            text(&out.stderr)
        );
    }
    // Command-line syntax errors exit 2, as clap has it.
    assert_eq!(run(&["check"]).status.code(), Some(2));
    assert_eq!(run(&[]).status.code(), Some(2));
}

#[test]
fn check_and_status_print_json() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  root_url: https://chat.example.com/\n  admin: {username: admin, password: correct-horse-battery, email: ops@example.com}\n",
    )
    .unwrap();
    let out = run(&["check", "--json", "--user-data", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["dns_name"], "meet.example.com");
    assert_eq!(v["root_url"], "https://chat.example.com/");
    assert_eq!(v["certificate"]["mode"], "self-signed");
    assert_eq!(v["admin"], "admin");
    assert_eq!(v["mongo_url"], serde_json::Value::Null);
    assert!(!text(&out.stdout).contains("correct-horse-battery"));
    assert_eq!(v["rocketchat_registration_token"], serde_json::Value::Null);

    // A registration token: said to be given, never shown, in either form.
    let with_token = dir.path().join("token.yaml");
    std::fs::write(
        &with_token,
        "#cloud-config\nappliance:\n  dns_name: meet.example.com\n  rocketchat_registration_token: rc-Tok3n-42\n",
    )
    .unwrap();
    let out = run(&[
        "check",
        "--json",
        "--user-data",
        with_token.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rocketchat_registration_token"], "redacted");
    let out_text = run(&["check", "--user-data", with_token.to_str().unwrap()]);
    assert_eq!(out_text.status.code(), Some(0));
    assert!(text(&out_text.stdout).contains("rocketchat_registration_token: redacted"));
    for out in [&out, &out_text] {
        assert!(!text(&out.stdout).contains("Tok3n"));
        assert!(!text(&out.stderr).contains("Tok3n"));
    }

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "#cloud-config\nappliance:\n  dns_name: -bad-\n  colour: red\n",
    )
    .unwrap();
    let out = run(&["check", "--json", "--user-data", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{v}");
    // The same lines as without --json, on stderr.
    let stderr: Vec<String> = text(&out.stderr)
        .lines()
        .map(|l| l.strip_prefix("error: ").unwrap().to_string())
        .collect();
    let json_lines: Vec<String> = errors
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(stderr, json_lines);

    // status: nothing applied yet on an empty root.
    let root = tempfile::tempdir().unwrap();
    let out = run(&["status", "--json", "--root", root.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"state": null, "interrupted": false, "last_failure": null})
    );
    let out = run(&["status", "--root", root.path().to_str().unwrap()]);
    assert_eq!(text(&out.stdout), "not applied yet\n");
}
