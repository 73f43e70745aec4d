//! VMDK through `qemu-img convert`: QEMU's writer is the reference for streamOptimized VMDK
//! (deflate-compressed grains and markers), and reads only the raw's data.

use crate::util::host;
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// Writes the VMDK streamOptimized (what VMware, OVA and AWS VM Import take) of `raw`.
pub fn stream_optimized_vmdk(raw: &Path, out: &Path) -> Result<()> {
    host::run(
        Command::new(host::require("qemu-img")?)
            .args([
                "convert",
                "-f",
                "raw",
                "-O",
                "vmdk",
                "-o",
                "subformat=streamOptimized,adapter_type=lsilogic",
            ])
            .arg(raw)
            .arg(out),
        "qemu-img convert to vmdk",
    )?;
    Ok(())
}
