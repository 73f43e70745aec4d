//! qcow2 and VMDK through `qemu-img convert`: QEMU's own writer is the reference for both
//! formats, reads only the raw's data (holes stay holes), and is deterministic for qcow2.

use crate::host;
use anyhow::Result;
use std::path::Path;
use std::process::Command;

#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// qcow2, compat 1.1 (QEMU 1.1+; what OpenStack and Proxmox expect).
    Qcow2,
    /// VMDK streamOptimized: what VMware, OVA and AWS VM Import take.
    StreamOptimizedVmdk,
}

pub fn convert(raw: &Path, out: &Path, target: Target) -> Result<()> {
    let (fmt, opts) = match target {
        Target::Qcow2 => ("qcow2", "compat=1.1"),
        Target::StreamOptimizedVmdk => ("vmdk", "subformat=streamOptimized,adapter_type=lsilogic"),
    };
    host::run(
        Command::new(host::require("qemu-img")?)
            .args(["convert", "-f", "raw", "-O", fmt, "-o", opts])
            .arg(raw)
            .arg(out),
        &format!("qemu-img convert to {fmt}"),
    )?;
    Ok(())
}
