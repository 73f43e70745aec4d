//! `appliance-firstboot`: configures the appliance from cloud-init user-data at first boot.
//! This file only parses the command line; the work is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use firstboot::apply::{self, ApplyError, Options, Outcome};
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
    /// Print what the last apply set
    Status {
        /// The root of the system to look at
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
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

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { user_data, config } => check(&user_data, config.as_deref()),
        Command::Apply(target) => run(target, false),
        Command::Reconfigure(target) => run(target, true),
        Command::Status { root } => match apply::status(&root) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(target: Target, reconfigure: bool) -> ExitCode {
    let hooks = TestHooks::from_env(&target.root);
    hooks.arm_failpoint();
    let mut systemd = Systemd;
    let mut recorder = Recorder {
        log: hooks.fake_services.clone(),
        fail: hooks.fake_fail.clone(),
        ..Recorder::default()
    };
    let services: Option<&mut dyn ServiceManager> = if target.no_restart {
        None
    } else if hooks.fake_services.is_some() {
        Some(&mut recorder)
    } else if target.root == Path::new("/") {
        Some(&mut systemd)
    } else {
        None
    };
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
        Err(ApplyError::Invalid(errors)) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            eprintln!("error: nothing was changed; the machine keeps its last good configuration");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(user_data: &Path, config_file: Option<&Path>) -> ExitCode {
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
            for error in errors {
                eprintln!("error: {error}");
            }
            ExitCode::FAILURE
        }
    }
}
