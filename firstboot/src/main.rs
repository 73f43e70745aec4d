//! `appliance-firstboot`: configures the appliance from cloud-init user-data at first boot.
//! This file only parses the command line and dispatches: the arguments are in [`cli`], what
//! each subcommand does in [`cli::commands`], the work in the library.

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::{commands, Cli, Command};

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check {
            user_data,
            config,
            json,
        } => commands::check(&user_data, config.as_deref(), json),
        Command::Apply(target) => commands::run(target, false),
        Command::Reconfigure(target) => commands::run(target, true),
        Command::Acme(args) => commands::run_acme(args),
        Command::Status { root, json } => commands::status(&root, json),
    }
}
