//! Restarting what an apply changed: the steps, their order, and who runs them.
//!
//! Steps run in this order, each only when a file it depends on changed:
//! 1. `nginx -t`: checks the new nginx configuration before anything is restarted, so a bad
//!    one fails the apply (and is rolled back) while every service still runs the old files;
//! 2. `hostname NAME`: the running host name (the file alone takes effect at the next boot);
//! 3. `systemctl daemon-reload`: the Rocket.Chat drop-in;
//! 4. `ufw reload`: the rule files;
//! 5. `update-ca-certificates --fresh`: prosody's internal certificate is trusted by jicofo
//!    (also through Java's store, which the hook of ca-certificates-java rebuilds);
//! 6. prosody, then its clients jicofo and jitsi-videobridge2, then rocketchat;
//! 7. nginx, last, since it fronts all of them.
//!
//! Services are restarted with `systemctl try-restart` (nginx: `try-reload-or-restart`): at
//! boot firstboot runs before them (its unit is ordered `Before=` them), and asking systemd
//! to start a unit that waits for firstboot would wait forever; `try-` acts only on running
//! units, so at boot it does nothing and the units start afterwards with the new files. A
//! unit the tree does not have is not asked for at all.
//!
//! [`Systemd`] runs the commands; [`Recorder`] only records them (tests, and `--root` runs
//! with `APPLIANCE_FIRSTBOOT_FAKE_SERVICES`).

use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// One thing to do after the files are in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    NginxTest,
    SetHostname(String),
    DaemonReload,
    UfwReload,
    UpdateCaCertificates,
    TryRestart(String),
    ReloadNginx,
}

impl Step {
    /// The command line.
    pub fn argv(&self) -> Vec<String> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Step::NginxTest => v(&["nginx", "-t", "-q"]),
            Step::SetHostname(name) => v(&["hostname", name]),
            Step::DaemonReload => v(&["systemctl", "daemon-reload"]),
            Step::UfwReload => v(&["ufw", "reload"]),
            Step::UpdateCaCertificates => v(&["update-ca-certificates", "--fresh"]),
            Step::TryRestart(unit) => v(&["systemctl", "try-restart", unit]),
            Step::ReloadNginx => v(&["systemctl", "try-reload-or-restart", "nginx.service"]),
        }
    }

    /// A check, which changes nothing and is not repeated when rolling back.
    pub fn is_check(&self) -> bool {
        matches!(self, Step::NginxTest)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.argv().join(" "))
    }
}

/// Who runs the steps.
pub trait ServiceManager {
    /// Runs `step`; on failure, one line saying why.
    fn run(&mut self, step: &Step) -> Result<(), String>;
}

/// The real system: runs each step's command.
#[derive(Debug, Default)]
pub struct Systemd;

impl ServiceManager for Systemd {
    fn run(&mut self, step: &Step) -> Result<(), String> {
        let argv = step.argv();
        let output = Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .map_err(|e| format!("{}: {e}", argv[0]))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no message");
        Err(format!("{}: {last}", output.status))
    }
}

/// Records the steps instead of running them; `fail` makes the step whose line it equals
/// fail. With `log`, each step is also appended to that file as it runs, so that a process
/// killed midway leaves its record.
#[derive(Debug, Default)]
pub struct Recorder {
    pub steps: Vec<Step>,
    pub fail: Option<String>,
    pub log: Option<PathBuf>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    pub fn failing(step: &str) -> Recorder {
        Recorder {
            fail: Some(step.to_owned()),
            ..Recorder::default()
        }
    }

    /// The recorded steps as their command lines.
    pub fn lines(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.to_string()).collect()
    }
}

impl ServiceManager for Recorder {
    fn run(&mut self, step: &Step) -> Result<(), String> {
        self.steps.push(step.clone());
        let failed = self.fail.as_deref() == Some(step.to_string().as_str());
        if let Some(log) = &self.log {
            let line = format!("{step}{}\n", if failed { " (fails)" } else { "" });
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .map_err(|e| format!("recording to {}: {e}", log.display()))?;
        }
        if failed {
            return Err("failed (as the test asked)".into());
        }
        Ok(())
    }
}
