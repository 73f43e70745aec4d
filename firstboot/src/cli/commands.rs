//! What each subcommand does with the library, and how it reports: one line per problem on
//! stderr, a non-zero exit.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use firstboot::acme;
use firstboot::apply::{self, Options, Outcome};
use firstboot::hooks::TestHooks;
use firstboot::txn::services::{Recorder, ServiceManager, Systemd};
use firstboot::{ConfigError, Precedence, Sources};

use super::{AcmeArgs, Target};

/// Prints what the last apply set (`status`).
pub fn status(root: &Path, json: bool) -> ExitCode {
    match apply::status(root) {
        Ok(status) if json => {
            println!("{}", serde_json::json!(status));
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{status}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Who restarts services for `target`: systemd on `/`, the test recorder when asked for, or
/// nobody.
fn services<'a>(
    target: &Target,
    hooks: &TestHooks,
    systemd: &'a mut Systemd,
    recorder: &'a mut Recorder,
) -> Option<&'a mut dyn ServiceManager> {
    if target.no_restart {
        None
    } else if hooks.fake_services.is_some() {
        recorder.log = hooks.fake_services.clone();
        recorder.fail = hooks.fake_fail.clone();
        Some(recorder)
    } else if target.root == Path::new("/") {
        Some(systemd)
    } else {
        None
    }
}

pub fn run_acme(args: AcmeArgs) -> ExitCode {
    let hooks = TestHooks::from_env(&args.target.root);
    hooks.arm_failpoint();
    let (mut systemd, mut recorder) = (Systemd, Recorder::new());
    let services = services(&args.target, &hooks, &mut systemd, &mut recorder);
    let options = acme::Options {
        root: args.target.root.clone(),
        directory: if args.staging {
            Some(acme::LETSENCRYPT_STAGING.to_owned())
        } else {
            args.directory
        },
        ca_file: args.ca_file,
        scheduled: args.scheduled,
        first_retry: args.first_retry,
        hooks,
    };
    match acme::run(&options, services) {
        Ok(outcome) => {
            println!("{outcome}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(target: Target, reconfigure: bool) -> ExitCode {
    let hooks = TestHooks::from_env(&target.root);
    hooks.arm_failpoint();
    let (mut systemd, mut recorder) = (Systemd, Recorder::new());
    let services = services(&target, &hooks, &mut systemd, &mut recorder);
    let options = Options {
        root: target.root,
        reconfigure,
        hooks,
    };
    match apply::run(&options, services) {
        Ok(Outcome::UpToDate { state }) => {
            println!(
                "up to date: instance {} has configuration sha256:{}",
                state.instance_id,
                &state.config_sha256[..12.min(state.config_sha256.len())]
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::Applied {
            state,
            changed,
            steps,
            recovered,
        }) => {
            if let Some(r) = recovered {
                println!("recovered an apply interrupted while {:?}", r.phase);
            }
            println!(
                "applied {} for instance {}: {} file(s) changed{}",
                state.dns_name,
                state.instance_id,
                changed.len(),
                if steps.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; ran {}",
                        steps
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in e.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `check --json`'s summary of a valid configuration: what `check` prints, without secrets.
fn summary_json(config: &firstboot::Config, not_read: &[String]) -> serde_json::Value {
    use firstboot::input::config::CertificateMode;
    let certificate = match &config.certificate {
        CertificateMode::Provided { .. } => serde_json::json!({"mode": "provided"}),
        CertificateMode::SelfSigned => serde_json::json!({"mode": "self-signed"}),
        CertificateMode::LetsEncrypt { email, directory } => serde_json::json!({
            "mode": "letsencrypt", "email": email.to_string(), "directory": directory,
        }),
    };
    serde_json::json!({
        "valid": true,
        "dns_name": config.dns_name.to_string(),
        "root_url": config.root_url.to_string(),
        "certificate": certificate,
        "admin": config.admin.as_ref().map(|a| a.username.clone()),
        "mongo_url": config.mongo_url.as_ref().map(|m| m.redacted()),
        "rocketchat_registration_token": config
            .rocketchat_registration_token
            .as_ref()
            .map(|_| "redacted"),
        "not_read": not_read,
    })
}

pub fn check(user_data: &Path, config_file: Option<&Path>, json: bool) -> ExitCode {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| ConfigError::Io {
            file: path.display().to_string(),
            error: e.to_string(),
        })
    };
    let result = (|| -> Result<_, Vec<ConfigError>> {
        let user_data = read(user_data).map_err(|e| vec![e])?;
        let config_file = config_file.map(read).transpose().map_err(|e| vec![e])?;
        let sources = Sources::parse(&user_data, config_file.as_deref())?;
        let config = sources.validate(Precedence::UserData, SystemTime::now())?;
        Ok((config, sources))
    })();
    match result {
        Ok((config, sources)) if json => {
            println!(
                "{}",
                summary_json(&config, &sources.user_data.ignored_parts)
            );
            ExitCode::SUCCESS
        }
        Ok((config, sources)) => {
            println!("{config}");
            if !sources.user_data.ignored_parts.is_empty() {
                println!(
                    "not read:    {} (not cloud-config)",
                    sources.user_data.ignored_parts.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            let lines = firstboot::input::error::bounded_lines(errors);
            if json {
                println!("{}", serde_json::json!({"valid": false, "errors": lines}));
            }
            for line in lines {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
