//! Progress for long steps: a bar or spinner on a terminal; a plain line per step (with its
//! duration) otherwise, so logs stay readable. How much is printed is the command line's
//! `-q`/`-v` ([`Verbosity`]), set once for the process.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// How much a run prints on stderr besides errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Errors only (and what the command prints on stdout).
    Quiet = 0,
    /// Progress and the steps of the build log.
    Normal = 1,
    /// Also every external command as it starts (`+ mke2fs ...`).
    Verbose = 2,
}

static LEVEL: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);

pub fn set_verbosity(v: Verbosity) {
    LEVEL.store(v as u8, Ordering::Relaxed);
}

pub fn verbosity() -> Verbosity {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Verbosity::Quiet,
        1 => Verbosity::Normal,
        _ => Verbosity::Verbose,
    }
}

/// Prints a command about to run, with `-v`.
pub fn show_command(cmd: &Command) {
    if verbosity() >= Verbosity::Verbose {
        eprintln!("+ {}", command_line(cmd));
    }
}

/// A command as a shell would take it: each argument quoted where it needs to be.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(a: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c);
    if !a.is_empty() && a.chars().all(plain) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// Reports the steps of one run.
#[derive(Clone)]
pub struct Reporter {
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter {
    /// Bars on a terminal stderr, plain lines otherwise; nothing with `-q`.
    pub fn new() -> Self {
        let quiet = verbosity() == Verbosity::Quiet;
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter { multi, quiet }
    }

    /// A step measured in bytes (`total` of them).
    pub fn bytes(&self, what: &str, total: u64) -> Step {
        self.start(what, Some(total))
    }

    /// A step without a measure (a spinner on a terminal).
    pub fn step(&self, what: &str) -> Step {
        self.start(what, None)
    }

    fn start(&self, what: &str, total: Option<u64>) -> Step {
        let bar = self.multi.as_ref().map(|m| {
            let bar = match total {
                Some(t) => {
                    let b = ProgressBar::new(t);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {msg:28} [{bar:30}] {bytes}/{total_bytes} {eta}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    b
                }
                None => {
                    let b = ProgressBar::new_spinner();
                    b.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .expect("valid template"),
                    );
                    b
                }
            };
            let bar = m.add(bar);
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() && !self.quiet {
            eprintln!("==> {what}");
        }
        Step {
            what: what.to_string(),
            bar,
            quiet: self.quiet,
            started: Instant::now(),
        }
    }
}

/// One step in progress; `done` (or drop) ends it.
pub struct Step {
    what: String,
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
}

impl Step {
    /// Sets how far the step is, in its unit.
    pub fn set(&self, position: u64) {
        if let Some(b) = &self.bar {
            b.set_position(position);
        }
    }

    pub fn done(self) {}
}

impl Drop for Step {
    fn drop(&mut self) {
        let secs = self.started.elapsed().as_secs_f64();
        match &self.bar {
            Some(b) => b.finish_with_message(format!("{} ({secs:.1}s)", self.what)),
            None if self.quiet => {}
            None => eprintln!("    {} took {secs:.1}s", self.what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-cpu", "max", "-drive", "file=/a b.qcow2", "it's", ""]);
        assert_eq!(
            command_line(&c),
            "qemu-system-x86_64 -cpu max -drive 'file=/a b.qcow2' 'it'\\''s' ''"
        );
    }
}
