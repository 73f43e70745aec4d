//! The specification of an image: a profile ([`profile`]) and the overlays it lists
//! ([`overlay`]), read from TOML ([`toml_file`]).

pub mod overlay;
pub mod profile;
pub mod toml_file;
