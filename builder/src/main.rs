//! `appliance`: the command line. It only parses arguments ([`cli`]) and dispatches to
//! [`commands`], which call the library.

mod cli;
mod commands;

use appliance::util::progress::{self, Verbosity};
use clap::Parser;
use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    progress::set_verbosity(match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    });
    if let Err(e) = appliance::util::partial::install_interrupt_handler() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    let result = match cli.command {
        Command::Build(a) => commands::run_build(a),
        Command::Fetch(a) => commands::run_fetch(a),
        Command::Plan(a) => commands::run_plan(a),
        Command::Profiles(a) => commands::run_profiles(a),
        Command::Assemble(a) => commands::run_assemble(a),
        Command::Seed(a) => commands::run_seed(a),
        Command::Boot(a) => commands::run_boot(a),
        Command::Completions(a) => commands::run_completions(a),
        Command::Man(a) => commands::run_man(a),
    };
    if let Err(e) = result {
        // A reader that stopped reading (`appliance man | head`) is not a failure of ours.
        let broken_pipe = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            std::process::exit(0);
        }
        // One line: the chain of what was being done, outermost first.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
