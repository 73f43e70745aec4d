//! The command line: its subcommands and their arguments (shared groups flattened).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use firstboot::acme;

pub mod commands;

/// Configures the appliance from cloud-init user-data.
#[derive(Parser)]
#[command(version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
pub struct Target {
    /// The root of the system to configure
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Write the files but restart nothing (services are only ever restarted when the root
    /// is /)
    #[arg(long)]
    pub no_restart: bool,
}

#[derive(Args)]
pub struct AcmeArgs {
    #[command(flatten)]
    pub target: Target,
    /// The ACME directory URL of the CA, instead of the configuration's
    /// (`letsencrypt.directory`; by default Let's Encrypt's)
    #[arg(long, value_name = "URL", conflicts_with = "staging")]
    pub directory: Option<String>,
    /// Use Let's Encrypt's staging directory (certificates browsers do not trust; for trials)
    #[arg(long)]
    pub staging: bool,
    /// Trust only the CA certificates of this PEM file for the CA's HTTPS (a private CA, or
    /// a test server)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Wait out the back-off after a failed attempt (the timer's runs; by hand, an attempt
    /// is made at once)
    #[arg(long)]
    pub scheduled: bool,
    /// Seconds to wait after a first failed attempt before a scheduled run tries again;
    /// doubled after each further failure, up to 12 hours
    #[arg(long, value_name = "SECONDS", default_value_t = acme::RETRY_FIRST,
          value_parser = clap::value_parser!(i64).range(1..=acme::RETRY_MAX))]
    pub first_retry: i64,
}
