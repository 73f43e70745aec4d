//! `appliance-firstboot`: configures the appliance from cloud-init user-data at first boot.
//! This file only parses the command line; the work is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
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
    /// Apply the configuration to this machine (not implemented yet)
    Apply,
    /// Re-read and re-apply the configuration on demand (not implemented yet)
    Reconfigure,
    /// Print what is applied (not implemented yet)
    Status,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { user_data, config } => check(&user_data, config.as_deref()),
        Command::Apply => not_yet("apply"),
        Command::Reconfigure => not_yet("reconfigure"),
        Command::Status => not_yet("status"),
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

fn not_yet(command: &str) -> ExitCode {
    eprintln!("error: appliance-firstboot {command}: not implemented yet");
    ExitCode::from(2)
}
