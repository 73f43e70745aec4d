//! `appliance-firstboot`: configures the appliance from cloud-init user-data at first boot.
//!
//! This library reads the settings ([`userdata`]), checks all of them before anything is
//! touched ([`config`], with [`cert`], [`names`], [`root_url`] and [`mongo_url`] for the
//! values), and reports every problem as one line ([`error`]). It then applies the
//! configuration all or nothing ([`apply`]): an [`plan::ApplyPlan`] rendered from the
//! templates shipped in the image ([`render`]) with the appliance's own certificates and
//! secrets ([`tls`], [`secrets`], [`prosody`]), host name and firewall edits ([`hostname`],
//! [`ufw`]), swapped into place under a journal ([`journal`]), then the services restarted
//! ([`services`]); [`state`] records what was applied, and [`hooks`] lets tests interrupt a
//! run anywhere. [`acme`] obtains and renews a Let's Encrypt certificate when asked for one.

pub mod acme;
pub mod address;
pub mod apply;
pub mod cert;
pub mod config;
pub mod debconf;
pub mod error;
pub mod hooks;
pub mod hostname;
pub mod journal;
pub mod mongo_url;
pub mod names;
pub mod plan;
pub mod prosody;
pub mod render;
pub mod root_url;
pub mod secrets;
pub mod services;
pub mod state;
pub mod tls;
pub mod tree;
pub mod ufw;
pub mod userdata;

pub use config::{CertificateMode, Config};
pub use error::ConfigError;
pub use userdata::{Precedence, Sources};
