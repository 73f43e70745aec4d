//! Progress for long steps: a bar or spinner on a terminal; a plain line per step (with its
//! duration) otherwise, so logs stay readable.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Reports the steps of one run.
#[derive(Clone)]
pub struct Reporter {
    multi: Option<MultiProgress>,
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter {
    /// Bars on a terminal stderr, plain lines otherwise.
    pub fn new() -> Self {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter { multi }
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
        if bar.is_none() {
            eprintln!("==> {what}");
        }
        Step {
            what: what.to_string(),
            bar,
            started: Instant::now(),
        }
    }
}

/// One step in progress; `done` (or drop) ends it.
pub struct Step {
    what: String,
    bar: Option<ProgressBar>,
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
            None => eprintln!("    {} took {secs:.1}s", self.what),
        }
    }
}
