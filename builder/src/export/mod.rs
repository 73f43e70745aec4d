//! Exports: the assembled raw disk converted to every format users import.
//!
//! Each export is written under a temporary name ([`crate::util::partial::PartialFile`]) and only
//! renamed by the caller once every export has succeeded. Independent exports run in parallel.

pub mod compress;
pub mod gcp;
pub mod ova;
pub mod qcow2;
pub mod qemu_img;
pub mod sums;
pub mod vhd;
pub mod vmdk;

use crate::util::partial::PartialFile;
use crate::util::progress::Reporter;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// An output format of `appliance assemble`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Raw,
    Qcow2,
    Vmdk,
    Ova,
    Gcp,
    Vhd,
    RawZst,
    RawXz,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::Raw,
        Format::Qcow2,
        Format::Vmdk,
        Format::Ova,
        Format::Gcp,
        Format::Vhd,
        Format::RawZst,
        Format::RawXz,
    ];

    /// The name used on the command line and in `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Ova => "ova",
            Format::Gcp => "gcp",
            Format::Vhd => "vhd",
            Format::RawZst => "raw.zst",
            Format::RawXz => "raw.xz",
        }
    }

    /// The artifact's file name for image `base`.
    pub fn file_name(self, base: &str) -> String {
        match self {
            // GCE's image import wants a .tar.gz holding disk.raw.
            Format::Gcp => format!("{base}.gcp.tar.gz"),
            other => format!("{base}.{}", other.name()),
        }
    }

    /// Parses a comma-separated list (`raw,qcow2`), keeping the order of `ALL` and no repeats.
    pub fn parse_list(text: &str) -> Result<Vec<Format>> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim) {
            let Some(f) = Format::ALL.iter().find(|f| f.name() == word) else {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
                bail!(
                    "unknown format '{word}' (expected any of {})",
                    names.join(", ")
                );
            };
            out.push(*f);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// What every export needs.
pub struct ExportContext<'a> {
    /// The finished raw disk image (possibly still under its temporary name).
    pub raw: &'a Path,
    pub disk_size: u64,
    /// Base name of the artifacts.
    pub name: &'a str,
    pub out_dir: &'a Path,
    /// Timestamp written into archives and footers (SOURCE_DATE_EPOCH or now).
    pub mtime: u64,
    pub vhd_unique_id: [u8; 16],
    /// The VMDK's content id.
    pub vmdk_cid: u32,
    /// CIM operating system id for the OVF descriptor.
    pub ovf_os: ova::OvfOs,
    pub threads: usize,
    pub reporter: &'a Reporter,
}

impl ExportContext<'_> {
    fn dest(&self, format: Format) -> std::path::PathBuf {
        self.out_dir.join(format.file_name(self.name))
    }

    /// A byte bar for exports that report progress, a spinner for qemu-img's.
    fn progress(&self, format: Format) -> crate::util::progress::Step {
        let what = format!("exporting {}", format.name());
        match format {
            Format::Vmdk => self.reporter.step(&what),
            _ => self.reporter.bytes(&what, self.disk_size),
        }
    }
}

/// An export, written but not yet renamed into place, with its SHA-256.
pub struct Exported {
    pub format: Format,
    pub file: PartialFile,
    pub sha256: String,
}

/// Writes every format in `formats` but raw (which is the input), in parallel, each hashed
/// by the thread that wrote it while the others still run, and returns them uncommitted.
pub fn export_all(ctx: &ExportContext, formats: &[Format]) -> Result<Vec<Exported>> {
    let wants = |f| formats.contains(&f);
    let mut done = Vec::new();
    let vmdk = std::thread::scope(|s| -> Result<Option<Exported>> {
        let mut jobs = Vec::new();
        for f in [
            Format::Qcow2,
            Format::Gcp,
            Format::Vhd,
            Format::RawZst,
            Format::RawXz,
        ] {
            if wants(f) {
                jobs.push(s.spawn(move || export_one(ctx, f)));
            }
        }
        // The OVA carries the same streamOptimized VMDK: make it once.
        let vmdk =
            (wants(Format::Vmdk) || wants(Format::Ova)).then(|| export_one(ctx, Format::Vmdk));
        for j in jobs {
            done.push(j.join().expect("export thread panicked")?);
        }
        vmdk.transpose()
    })?;
    if let Some(vmdk) = vmdk {
        if wants(Format::Ova) {
            let step = ctx.reporter.step("exporting ova");
            let ova = PartialFile::create(&ctx.dest(Format::Ova))?;
            let info = ova::OvaInfo {
                name: ctx.name,
                disk_name: Format::Vmdk.file_name(ctx.name),
                disk_size: ctx.disk_size,
                os: ctx.ovf_os,
                mtime: ctx.mtime,
            };
            ova::write_ova(vmdk.file.path(), &vmdk.sha256, &info, ova.file())
                .with_context(|| format!("writing {}", ova.dest().display()))?;
            step.done();
            let sha256 = crate::util::hash::sha256_file(ova.path())?;
            done.push(Exported {
                format: Format::Ova,
                file: ova,
                sha256,
            });
        }
        if wants(Format::Vmdk) {
            done.push(vmdk);
        }
    }
    done.sort_by_key(|e| e.format);
    Ok(done)
}

fn export_one(ctx: &ExportContext, format: Format) -> Result<Exported> {
    let mut out = PartialFile::create(&ctx.dest(format))?;
    let step = ctx.progress(format);
    let report = |n: u64| step.set(n);
    match format {
        Format::Qcow2 => qcow2::write_qcow2(ctx.raw, ctx.disk_size, out.file(), &report)?,
        Format::Vmdk => {
            qemu_img::stream_optimized_vmdk(ctx.raw, out.path())?;
            vmdk::set_descriptor(out.path(), &Format::Vmdk.file_name(ctx.name), ctx.vmdk_cid)?;
        }
        Format::Gcp => gcp::write_gcp_tarball(
            ctx.raw,
            ctx.disk_size,
            out.file_mut(),
            ctx.mtime,
            ctx.threads,
            &report,
        )?,
        Format::Vhd => vhd::write_fixed_vhd(
            ctx.raw,
            ctx.disk_size,
            out.file(),
            ctx.mtime,
            ctx.vhd_unique_id,
            &report,
        )?,
        Format::RawZst => compress::zstd(ctx.raw, out.file(), ctx.threads, &report)?,
        Format::RawXz => compress::xz(ctx.raw, out.file(), ctx.threads, &report)?,
        Format::Raw | Format::Ova => unreachable!("not exported by export_one"),
    }
    step.done();
    let sha256 = crate::util::hash::sha256_file(out.path())?;
    Ok(Exported {
        format,
        file: out,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_lists() {
        assert_eq!(
            Format::parse_list("qcow2,raw,qcow2").unwrap(),
            vec![Format::Raw, Format::Qcow2]
        );
        assert_eq!(Format::parse_list("raw.zst").unwrap(), vec![Format::RawZst]);
        assert_eq!(
            Format::parse_list("raw,iso").unwrap_err().to_string(),
            "unknown format 'iso' (expected any of raw, qcow2, vmdk, ova, gcp, vhd, raw.zst, raw.xz)"
        );
        assert_eq!(Format::Gcp.file_name("x"), "x.gcp.tar.gz");
        assert_eq!(Format::RawXz.file_name("x"), "x.raw.xz");
    }
}
