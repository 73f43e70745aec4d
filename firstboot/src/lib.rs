//! `appliance-firstboot`: configures the appliance from cloud-init user-data at first boot.
//!
//! This library reads the settings ([`userdata`]), checks all of them before anything is
//! touched ([`config`], with [`cert`], [`names`], [`root_url`] and [`mongo_url`] for the
//! values), and reports every problem as one line ([`error`]).

pub mod cert;
pub mod config;
pub mod error;
pub mod mongo_url;
pub mod names;
pub mod root_url;
pub mod userdata;

pub use config::{CertificateMode, Config};
pub use error::ConfigError;
pub use userdata::{Precedence, Sources};
