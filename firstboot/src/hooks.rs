//! Test hooks: what the tests change about a run through environment variables, honoured only
//! when `--root` is not `/`, so that the appliance's own run (always on `/`) cannot be steered
//! by them.
//!
//! - `APPLIANCE_FIRSTBOOT_FAILPOINT=NAME[:N]`: abort the process (as `kill -9` would end it,
//!   no destructor or rollback runs) the Nth time (default first) the failpoint NAME is
//!   passed; the names are [`FAILPOINTS`].
//! - `APPLIANCE_FIRSTBOOT_TEST_SEED=TEXT`: secrets derived from TEXT and the instance id instead
//!   of the system's random source, so that two runs give the same files.
//! - `APPLIANCE_FIRSTBOOT_TEST_NOW=SECONDS`: the clock (seconds since the epoch) for validation,
//!   generated certificates and the state's time stamp.
//! - `APPLIANCE_FIRSTBOOT_FAKE_SERVICES=FILE`: instead of running systemctl, nginx -t, ufw and
//!   the like, append each step to FILE, one line each (see [`crate::txn::services::Recorder`]).
//! - `APPLIANCE_FIRSTBOOT_FAKE_FAIL=STEP`: with the fake, the step whose line is STEP fails.
//! - `APPLIANCE_FIRSTBOOT_TEST_NAMESERVER=IP:PORT`: the ACME client looks names up there
//!   instead of /etc/resolv.conf's servers (see [`crate::acme::http`]).
//! - `APPLIANCE_FIRSTBOOT_TEST_ADDRESS=IPV4`: the default route's interface address for IP mode
//!   (see [`crate::input::address`]), which is only asked of the kernel on the running system.
//!
//! Failpoints cost one relaxed atomic load when unarmed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every failpoint, in the order a run passes them. Those marked "each" are passed once per
/// file or step.
pub const FAILPOINTS: &[&str] = &[
    "recovered",  // after an interrupted run was rolled back or finished
    "planned",    // after the plan was made and compared with the tree
    "journal",    // after the journal was first written (phase staging)
    "staged",     // each: after a file was staged next to its target
    "swapping",   // after the journal moved to phase swapping
    "backed-up",  // each: after a target's backup was made
    "swapped",    // each: after a target was replaced or removed
    "restarting", // after the journal moved to phase restarting
    "restarted",  // each: after a restart step
    "done",       // after the journal moved to phase done
    "cleaned",    // each: after a backup was removed
    "finished",   // after the journal was removed
];

/// The hooks of one run.
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    pub seed: Option<String>,
    pub now: Option<SystemTime>,
    pub fake_services: Option<PathBuf>,
    pub fake_fail: Option<String>,
    pub failpoint: Option<(String, u32)>,
    pub name_server: Option<std::net::SocketAddr>,
    pub address: Option<std::net::Ipv4Addr>,
}

impl TestHooks {
    /// The hooks the environment asks for, none when `root` is `/`.
    pub fn from_env(root: &Path) -> TestHooks {
        if root == Path::new("/") {
            return TestHooks::default();
        }
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        TestHooks {
            seed: var("APPLIANCE_FIRSTBOOT_TEST_SEED"),
            now: var("APPLIANCE_FIRSTBOOT_TEST_NOW")
                .and_then(|s| s.parse::<u64>().ok())
                .map(|s| UNIX_EPOCH + Duration::from_secs(s)),
            fake_services: var("APPLIANCE_FIRSTBOOT_FAKE_SERVICES").map(PathBuf::from),
            fake_fail: var("APPLIANCE_FIRSTBOOT_FAKE_FAIL"),
            name_server: var("APPLIANCE_FIRSTBOOT_TEST_NAMESERVER").and_then(|s| s.parse().ok()),
            address: var("APPLIANCE_FIRSTBOOT_TEST_ADDRESS").and_then(|s| s.parse().ok()),
            failpoint: var("APPLIANCE_FIRSTBOOT_FAILPOINT").map(|spec| {
                match spec.split_once(':') {
                    Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
                    None => (spec, 1),
                }
            }),
        }
    }

    /// The clock of this run.
    pub fn now(&self) -> SystemTime {
        self.now.unwrap_or_else(SystemTime::now)
    }

    /// Arms the failpoint, if one is asked for, for the rest of the process.
    pub fn arm_failpoint(&self) {
        if let Some((name, n)) = &self.failpoint {
            if ARMED.set((name.clone(), *n)).is_ok() {
                ENABLED.store(true, Ordering::Relaxed);
            }
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static ARMED: OnceLock<(String, u32)> = OnceLock::new();
static PASSED: AtomicU32 = AtomicU32::new(0);

/// Passes the failpoint `name`: aborts the process if it is the armed one's Nth passage.
pub fn failpoint(name: &str) {
    debug_assert!(FAILPOINTS.contains(&name), "unknown failpoint {name}");
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if let Some((armed, n)) = ARMED.get() {
        if armed == name && PASSED.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("appliance-firstboot: failpoint {name}:{n}: aborting");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_on_the_real_root() {
        std::env::set_var("APPLIANCE_FIRSTBOOT_TEST_SEED", "x");
        assert!(TestHooks::from_env(Path::new("/")).seed.is_none());
        assert_eq!(
            TestHooks::from_env(Path::new("/tmp/t")).seed.as_deref(),
            Some("x")
        );
        std::env::remove_var("APPLIANCE_FIRSTBOOT_TEST_SEED");
    }
}
