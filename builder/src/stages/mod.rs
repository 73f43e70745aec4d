//! The build's stages: [`build`] (the plan and the run, stage by stage), the [`base`] tree,
//! provisioning in a chroot ([`provision`]), [`scrub`] and audit, the stage [`cache`], and
//! `appliance fetch` ([`fetch`]), which runs the same stages to make a bundle.

pub mod base;
pub mod build;
pub mod cache;
pub mod fetch;
pub mod provision;
pub mod scrub;
