//! GRUB for both firmware kinds, installed without a device: no loop device, no mount, no
//! `grub-install`. Everything is computed into bytes that assembly writes into the disk image.
//!
//! BIOS: `grub-mkimage -O i386-pc` with the tree's own modules gives core.img, whose embedded
//! configuration finds the root file system by UUID. core.img goes to the start of the BIOS
//! boot partition; the first 440 bytes of the tree's boot.img become the MBR's boot code. Two
//! sector numbers tie them together, patched here as grub-setup would (offsets from GRUB's
//! `include/grub/i386/pc/boot.h` and `diskboot.S`):
//! - boot.img at 0x5C: the sector where core.img starts (boot.img loads that one sector,
//!   diskboot.img, which loads the rest);
//! - boot.img at 0x66: the boot-drive check, replaced by two NOPs so the drive number the BIOS
//!   passes is used (what grub-setup does for hard disks);
//! - core.img at 0x1F4: the first blocklist entry of diskboot.img, the sector after the first.
//!   grub-mkimage already fills its length (0x1FC) and load segment (0x1FE).
//!
//! UEFI: at the removable-media path `EFI/BOOT/BOOTX64.EFI`, so no NVRAM entry is needed. When
//! the tree has shim and a signed GRUB, those (Secure Boot works); signed GRUB reads
//! `$prefix/grub.cfg` (prefix `/EFI/<distribution>`) or else the grub.cfg beside itself, so a
//! stub that finds the root file system by UUID goes in both places. Otherwise
//! `grub-mkimage -O x86_64-efi` with the tree's modules and the same embedded configuration
//! as BIOS. (That is what grub-mkstandalone does too, minus the memdisk of every module with
//! host timestamps, which would make the image bigger and not reproducible.)

use crate::disk::fat::FatFile;
use crate::disk::tree::{Kernel, TreeFacts};
use crate::util::host;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use uuid::Uuid;

/// Modules both GRUB images carry: enough to find and read the root file system and run
/// grub.cfg; normal.mod loads anything else from /boot/grub/<platform> when present.
const COMMON_MODULES: &[&str] = &[
    "part_gpt",
    "ext2",
    "search",
    "search_fs_uuid",
    "normal",
    "linux",
    "serial",
    "terminal",
    "configfile",
    "echo",
    "test",
];

/// Modules built into the BIOS core.img: the common ones and the BIOS disk driver.
pub fn bios_modules() -> Vec<&'static str> {
    [&["biosdisk"][..], COMMON_MODULES].concat()
}

/// Modules built into the unsigned EFI image: the common ones, FAT (the ESP) and the EFI
/// console.
pub fn efi_modules() -> Vec<&'static str> {
    [COMMON_MODULES, &["fat", "efi_gop"][..]].concat()
}

/// Offsets in boot.img and core.img (see the module docs).
const MBR_KERNEL_SECTOR: usize = 0x5C;
const MBR_DRIVE_CHECK: usize = 0x66;
const CORE_BLOCKLIST_START: usize = 0x1F4;
const CORE_BLOCKLIST_LEN: usize = 0x1FC;

/// The configuration built into core.img (and the unsigned EFI image): find the root file
/// system by UUID and continue with its /boot/grub.
pub fn embedded_config(root_uuid: Uuid) -> String {
    format!("search.fs_uuid {root_uuid} root\nset prefix=($root)/boot/grub\n")
}

/// The grub.cfg stub on the ESP for signed GRUB.
pub fn esp_stub_config(root_uuid: Uuid) -> String {
    format!("search.fs_uuid {root_uuid} root\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n")
}

/// The kernel command line: root by file system UUID, consoles on screen and serial (the
/// last console= is /dev/console, so boot messages reach the serial log clouds keep).
pub fn kernel_cmdline(root_uuid: Uuid) -> String {
    format!("root=UUID={root_uuid} ro console=tty1 console=ttyS0,115200n8")
}

/// /boot/grub/grub.cfg: one entry for the tree's newest kernel, on serial and screen. A later
/// `update-grub` in the running system replaces it with a generated one.
pub fn grub_cfg(root_uuid: Uuid, kernel: &Kernel, title: &str) -> String {
    let title = title.replace(['\'', '\n'], "");
    let initrd = kernel
        .initrd
        .as_ref()
        .map(|i| format!("\tinitrd {i}\n"))
        .unwrap_or_default();
    format!(
        "# Written by `appliance assemble`; update-grub replaces it.\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set default=0\n\
         set timeout=1\n\
         search --no-floppy --fs-uuid --set=root {root_uuid}\n\
         menuentry '{title}' {{\n\
         \tlinux {} {}\n\
         {initrd}}}\n",
        kernel.image,
        kernel_cmdline(root_uuid),
    )
}

/// /etc/default/grub.d/ drop-in so `update-grub` in the running system keeps the serial
/// console.
pub fn default_grub_dropin() -> &'static str {
    "# Written by `appliance assemble`: keep the serial console when update-grub runs.\n\
     GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0,115200n8\"\n\
     GRUB_TERMINAL=\"serial console\"\n\
     GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n\
     GRUB_TIMEOUT=1\n"
}

fn mkimage(
    format: &str,
    modules_dir: &Path,
    root_uuid: Uuid,
    modules: &[&str],
    work: &Path,
) -> Result<Vec<u8>> {
    let tool = host::require("grub-mkimage")?;
    let cfg = work.join(format!("grub-early-{format}.cfg"));
    let out = work.join(format!("grub-{format}.img"));
    std::fs::write(&cfg, embedded_config(root_uuid))
        .context("writing GRUB's embedded configuration")?;
    host::run(
        Command::new(tool)
            .args(["-O", format, "-d"])
            .arg(modules_dir)
            .arg("-c")
            .arg(&cfg)
            .args(["-p", "/boot/grub", "-o"])
            .arg(&out)
            .args(modules),
        &format!("grub-mkimage ({format})"),
    )?;
    std::fs::read(&out).with_context(|| format!("reading {}", out.display()))
}

/// BIOS boot code: the MBR's first 440 bytes, and core.img patched to load from
/// `core_sector` (the first sector of the BIOS boot partition), which must fit in `room` bytes.
pub struct BiosBoot {
    pub mbr_code: [u8; 440],
    pub core: Vec<u8>,
}

pub fn bios_boot(
    modules_dir: &Path,
    root_uuid: Uuid,
    core_sector: u64,
    room: u64,
    work: &Path,
) -> Result<BiosBoot> {
    let boot_img = std::fs::read(modules_dir.join("boot.img"))
        .with_context(|| format!("reading {}/boot.img", modules_dir.display()))?;
    let mut core = mkimage("i386-pc", modules_dir, root_uuid, &bios_modules(), work)?;
    if core.len() as u64 > room {
        bail!(
            "GRUB's core.img ({} bytes) does not fit in the BIOS boot partition ({room} bytes)",
            core.len()
        );
    }
    let mbr_code = patch_bios(&boot_img, &mut core, core_sector)?;
    Ok(BiosBoot { mbr_code, core })
}

/// Patches the sector fields (see the module docs) and returns the MBR boot code.
pub fn patch_bios(boot_img: &[u8], core: &mut [u8], core_sector: u64) -> Result<[u8; 440]> {
    if boot_img.len() != 512 || boot_img[510..] != [0x55, 0xAA] {
        bail!("boot.img is not a 512-byte boot sector");
    }
    if core.len() < 512 {
        bail!("core.img is shorter than one sector");
    }
    let sectors = core.len().div_ceil(512) as u64;
    let listed =
        u16::from_le_bytes([core[CORE_BLOCKLIST_LEN], core[CORE_BLOCKLIST_LEN + 1]]) as u64;
    if listed + 1 != sectors {
        bail!("core.img lists {listed} sectors after its first, but is {sectors} sectors long: not an i386-pc core.img from grub-mkimage");
    }
    core[CORE_BLOCKLIST_START..CORE_BLOCKLIST_START + 8]
        .copy_from_slice(&(core_sector + 1).to_le_bytes());
    let mut code = [0u8; 440];
    code.copy_from_slice(&boot_img[..440]);
    code[MBR_KERNEL_SECTOR..MBR_KERNEL_SECTOR + 8].copy_from_slice(&core_sector.to_le_bytes());
    code[MBR_DRIVE_CHECK..MBR_DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    Ok(code)
}

/// What a tree must hold for `--boot uefi`.
pub const UEFI_NEEDS: &str = "--boot uefi needs shim and signed GRUB (shim-signed, grub-efi-amd64-signed) or GRUB's x86_64-efi modules (grub-efi-amd64-bin) in the tree";

/// The files the ESP holds for UEFI boot.
pub fn efi_files(facts: &TreeFacts, root_uuid: Uuid, work: &Path) -> Result<Vec<FatFile>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let file = |path: &str, contents: Vec<u8>| FatFile {
        path: path.to_string(),
        contents,
    };
    if let Some(shim) = &facts.shim {
        let stub = esp_stub_config(root_uuid).into_bytes();
        let mut files = vec![
            file("EFI/BOOT/BOOTX64.EFI", read(&shim.shim)?),
            file("EFI/BOOT/grubx64.efi", read(&shim.grub)?),
            file("EFI/BOOT/grub.cfg", stub.clone()),
            file(&format!("EFI/{}/grub.cfg", facts.os_id), stub),
        ];
        if let Some(mm) = &shim.mok_manager {
            files.push(file("EFI/BOOT/mmx64.efi", read(mm)?));
        }
        return Ok(files);
    }
    let Some(dir) = &facts.grub_efi else {
        bail!("{UEFI_NEEDS}");
    };
    let image = mkimage("x86_64-efi", dir, root_uuid, &efi_modules(), work)?;
    Ok(vec![file("EFI/BOOT/BOOTX64.EFI", image)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_images(core_sectors: usize) -> (Vec<u8>, Vec<u8>) {
        let mut boot = vec![0xAB; 512];
        boot[510] = 0x55;
        boot[511] = 0xAA;
        let mut core = vec![0xCD; core_sectors * 512 - 100];
        core[CORE_BLOCKLIST_LEN..CORE_BLOCKLIST_LEN + 2]
            .copy_from_slice(&((core_sectors - 1) as u16).to_le_bytes());
        (boot, core)
    }

    #[test]
    fn patches_sector_fields() {
        let (boot, mut core) = fake_images(290);
        let code = patch_bios(&boot, &mut core, 2048).unwrap();
        assert_eq!(
            u64::from_le_bytes(code[0x5C..0x64].try_into().unwrap()),
            2048
        );
        assert_eq!(&code[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(code[0x65], 0xAB, "bytes around the fields are kept");
        assert_eq!(
            u64::from_le_bytes(core[0x1F4..0x1FC].try_into().unwrap()),
            2049
        );
        assert_eq!(core[0x1F3], 0xCD);
    }

    #[test]
    fn refuses_what_is_not_grub() {
        let (boot, mut core) = fake_images(4);
        let mut bad_boot = boot.clone();
        bad_boot[511] = 0;
        assert_eq!(
            patch_bios(&bad_boot, &mut core, 2048)
                .unwrap_err()
                .to_string(),
            "boot.img is not a 512-byte boot sector"
        );
        core[CORE_BLOCKLIST_LEN] = 9;
        assert!(patch_bios(&boot, &mut core, 2048)
            .unwrap_err()
            .to_string()
            .contains("not an i386-pc core.img"));
    }

    #[test]
    fn real_core_img_from_host_modules() {
        // scripts/setup installs grub-pc-bin; this checks grub-mkimage's real layout.
        let dir = Path::new("/usr/lib/grub/i386-pc");
        let work = tempfile::tempdir().unwrap();
        let uuid = Uuid::from_u128(0x1234);
        let b = bios_boot(dir, uuid, 2048, 4 << 20, work.path()).unwrap();
        assert!(
            b.core.len() > 20_000 && b.core.len() < 400_000,
            "{}",
            b.core.len()
        );
        assert_eq!(
            u64::from_le_bytes(b.core[0x1F4..0x1FC].try_into().unwrap()),
            2049
        );
        let again = bios_boot(dir, uuid, 2048, 4 << 20, work.path()).unwrap();
        assert_eq!(b.core, again.core, "core.img is reproducible");
        let err = bios_boot(dir, uuid, 2048, 10_000, work.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("does not fit in the BIOS boot partition"),
            "{err}"
        );
    }

    #[test]
    fn grub_cfg_names_kernel_and_root() {
        let k = Kernel {
            version: "6.1".into(),
            image: "/boot/vmlinuz-6.1".into(),
            initrd: Some("/boot/initrd.img-6.1".into()),
        };
        let u = Uuid::from_u128(7);
        let cfg = grub_cfg(u, &k, "Debian 'x'");
        assert!(cfg.contains(&format!(
            "\tlinux /boot/vmlinuz-6.1 root=UUID={u} ro console=tty1 console=ttyS0,115200n8\n"
        )));
        assert!(cfg.contains("\tinitrd /boot/initrd.img-6.1\n"));
        assert!(cfg.contains("menuentry 'Debian x' {"));
        assert!(cfg.contains(&format!("search --no-floppy --fs-uuid --set=root {u}")));
    }
}
