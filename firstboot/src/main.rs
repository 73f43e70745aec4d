//! `appliance-firstboot`: configures the appliance from cloud-init user-data at first boot.
//! This file only parses the command line; the work is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use firstboot::acme;
use firstboot::apply::{self, Options, Outcome};
use firstboot::hooks::TestHooks;
use firstboot::services::{Recorder, ServiceManager, Systemd};
use firstboot::{ConfigError, Precedence, Sources};

/// Configures the appliance from cloud-init user-data.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check user-data before launching an instance: every problem on its own line
    ///
    /// Exits 0 and prints a summary when the configuration is valid, 1 otherwise. With
    /// --config, the file is read as /etc/appliance/config.yaml would be, and the user-data
    /// wins key by key, as on an instance's first boot.
    Check {
        /// The user-data file: #cloud-config, MIME multipart, or either gzip-compressed
        #[arg(long, value_name = "FILE")]
        user_data: PathBuf,
        /// A config.yaml to read as well
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the result as JSON on stdout: {"valid": true, the settings (no secrets)} or
        /// {"valid": false, "errors": [...]}
        #[arg(long)]
        json: bool,
    },
    /// Apply the configuration to this machine, once per instance (what the boot runs)
    ///
    /// Does nothing when this instance already has this configuration. Otherwise every file
    /// is rendered first and then swapped in all together; if anything fails, the previous
    /// files are restored.
    Apply(Target),
    /// Re-read user-data and /etc/appliance/config.yaml and apply them, even if applied
    ///
    /// config.yaml wins over the user-data on an instance that was configured before, so
    /// edit it and run this to change the appliance.
    Reconfigure(Target),
    /// Obtain or renew the Let's Encrypt certificate (what appliance-acme.timer runs)
    ///
    /// Only with `certificate: {letsencrypt: ...}`, and only when no certificate from the CA
    /// is in place yet or it has fewer than 30 days left: then an ACME order for every
    /// served name, answered over HTTP-01 from /var/www/acme through nginx; the certificate
    /// is checked, swapped in and nginx reloaded. On failure the certificate served before
    /// stays and the state records the error and when to try again.
    Acme(AcmeArgs),
    /// Print what the last apply set
    Status {
        /// The root of the system to look at
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// Print it as JSON: {"state": state.json or null, "interrupted", "last_failure"}
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct Target {
    /// The root of the system to configure
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Write the files but restart nothing (services are only ever restarted when the root
    /// is /)
    #[arg(long)]
    no_restart: bool,
}

#[derive(Args)]
struct AcmeArgs {
    #[command(flatten)]
    target: Target,
    /// The ACME directory URL of the CA, instead of the configuration's
    /// (`letsencrypt.directory`; by default Let's Encrypt's)
    #[arg(long, value_name = "URL", conflicts_with = "staging")]
    directory: Option<String>,
    /// Use Let's Encrypt's staging directory (certificates browsers do not trust; for trials)
    #[arg(long)]
    staging: bool,
    /// Trust only the CA certificates of this PEM file for the CA's HTTPS (a private CA, or
    /// a test server)
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Wait out the back-off after a failed attempt (the timer's runs; by hand, an attempt
    /// is made at once)
    #[arg(long)]
    scheduled: bool,
    /// Seconds to wait after a first failed attempt before a scheduled run tries again;
    /// doubled after each further failure, up to 12 hours
    #[arg(long, value_name = "SECONDS", default_value_t = acme::RETRY_FIRST,
          value_parser = clap::value_parser!(i64).range(1..=acme::RETRY_MAX))]
    first_retry: i64,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check {
            user_data,
            config,
            json,
        } => check(&user_data, config.as_deref(), json),
        Command::Apply(target) => run(target, false),
        Command::Reconfigure(target) => run(target, true),
        Command::Acme(args) => run_acme(args),
        Command::Status { root, json } => match apply::status(&root) {
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
        },
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

fn run_acme(args: AcmeArgs) -> ExitCode {
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

fn run(target: Target, reconfigure: bool) -> ExitCode {
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
    use firstboot::config::CertificateMode;
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
        "not_read": not_read,
    })
}

fn check(user_data: &Path, config_file: Option<&Path>, json: bool) -> ExitCode {
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
            let lines = firstboot::error::bounded_lines(errors);
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
