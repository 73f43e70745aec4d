//! What the appliance is told: user-data and config.yaml read ([`userdata`]) and checked
//! ([`config`]) before anything is touched, with the checkers of each kind of value
//! ([`cert`], [`names`], [`root_url`], [`mongo_url`]), the machine's address for IP mode
//! ([`address`]), and every problem as one line ([`error`]).

pub mod address;
pub mod cert;
pub mod config;
pub mod error;
pub mod mongo_url;
pub mod names;
pub mod root_url;
pub mod text;
pub mod userdata;
