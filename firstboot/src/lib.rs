//! `appliance-firstboot`: configures the appliance from cloud-init user-data at first boot.
//!
//! The folders follow a run, imports pointing down only:
//! - [`input`]: the settings read ([`input::userdata`]) and all of them checked before
//!   anything is touched ([`input::config`]), every problem one line ([`input::error`]);
//! - [`plan`]: the [`plan::ApplyPlan`] (every file rendered in memory from the templates
//!   shipped in the image, [`render`], with the appliance's [`secrets`]), made by one module
//!   per configured part ([`plan::hostname`], [`plan::tls`], [`plan::ufw`], [`plan::prosody`],
//!   [`plan::debconf`]);
//! - [`txn`]: the plan swapped into place under a journal ([`txn::journal`]), then the
//!   services restarted ([`txn::services`]);
//! - [`apply`] runs the three all or nothing; [`state`] records what was applied, [`hooks`]
//!   lets tests interrupt a run anywhere, [`tree`] is the system under `--root`, and [`acme`]
//!   obtains and renews a Let's Encrypt certificate when asked for one.

pub mod acme;
pub mod apply;
pub mod hooks;
pub mod input;
pub mod plan;
pub mod render;
pub mod secrets;
pub mod state;
pub mod tree;
pub mod txn;

pub use input::config::{CertificateMode, Config};
pub use input::error::ConfigError;
pub use input::userdata::{Precedence, Sources};
