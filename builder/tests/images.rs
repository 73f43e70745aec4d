//! `appliance assemble` on the Debian 12 test tree, every output checked with tools that share
//! no code with ours: sgdisk, blkid, fsck.fat, mtools, e2fsck, debugfs, qemu-img,
//! GNU tar, gzip, zstd, xz, sha256sum.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const EPOCH: &str = "1700000000";

struct Built {
    _dir: tempfile::TempDir,
    out: PathBuf,
    json: serde_json::Value,
}

impl Built {
    fn path(&self, file: &str) -> PathBuf {
        self.out.join(file)
    }
}

fn assemble(dir: &Path, formats: &str) -> serde_json::Value {
    let out = run_ok(
        appliance()
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args([
                "assemble",
                "--name",
                "t",
                "--json",
                "--formats",
                formats,
                "--rootfs",
            ])
            .arg(test_tree())
            .arg("--out")
            .arg(dir),
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

/// One assembly with every format, shared by the tests in this file.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = scratch("images");
        let out = dir.path().join("out");
        let json = assemble(&out, "raw,qcow2,vmdk,ova,gcp,vhd,raw.zst,raw.xz");
        Built {
            _dir: dir,
            out,
            json,
        }
    })
}

fn disk_size() -> u64 {
    built().json["disk_size"].as_u64().unwrap()
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn outputs_and_sums() {
    let b = built();
    assert_eq!(
        dir_names(&b.out),
        [
            "SHA256SUMS",
            "t.gcp.tar.gz",
            "t.ova",
            "t.qcow2",
            "t.raw",
            "t.raw.xz",
            "t.raw.zst",
            "t.vhd",
            "t.vmdk"
        ],
        "exactly the artifacts, no leftovers"
    );
    let check = run_ok(
        tool("sha256sum")
            .arg("-c")
            .arg("SHA256SUMS")
            .current_dir(&b.out),
    );
    assert_eq!(
        stdout(&check)
            .lines()
            .filter(|l| l.ends_with(": OK"))
            .count(),
        8
    );
    assert_eq!(disk_size() % (1 << 20), 0);
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn partition_table() {
    let raw = built().path("t.raw");
    let verify = stdout(&run_ok(tool("sgdisk").arg("-v").arg(&raw)));
    assert!(verify.contains("No problems found"), "{verify}");
    let expect = [
        (
            14,
            "21686148-6449-6E6F-744E-656564454649",
            2048,
            10239,
            "BIOS boot",
        ),
        (
            15,
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            10240,
            227327,
            "EFI system",
        ),
        (
            1,
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            227328,
            disk_size() / 512 - 34,
            "cloudimg-rootfs",
        ),
    ];
    for (n, type_guid, first, last, name) in expect {
        let info = stdout(&run_ok(
            tool("sgdisk").arg("-i").arg(n.to_string()).arg(&raw),
        ));
        assert!(
            info.contains(&format!("Partition GUID code: {type_guid}")),
            "p{n}: {info}"
        );
        assert!(
            info.contains(&format!("First sector: {first} ")),
            "p{n}: {info}"
        );
        assert!(
            info.contains(&format!("Last sector: {last} ")),
            "p{n}: {info}"
        );
        assert!(
            info.contains(&format!("Partition name: '{name}'")),
            "p{n}: {info}"
        );
    }
    let listing = stdout(&run_ok(tool("sgdisk").arg("-p").arg(&raw)));
    let numbers: Vec<&str> = listing
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(numbers, ["1", "14", "15"]);
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn esp_is_fat32_with_the_boot_files() {
    let b = built();
    let raw = b.path("t.raw");
    let offset = partition_offset(&raw, 15);
    let esp = b.out.parent().unwrap().join("esp.img");
    run_ok(
        tool("dd")
            .arg(format!("if={}", raw.display()))
            .arg(format!("of={}", esp.display()))
            .args([
                "bs=1M".to_string(),
                format!("skip={}", offset >> 20),
                "count=106".to_string(),
                "status=none".to_string(),
            ]),
    );
    run_ok(tool("fsck.fat").arg("-n").arg(&esp));
    let blkid = stdout(&run_ok(tool("blkid").arg("-p").arg(&esp)));
    assert!(
        blkid.contains("LABEL=\"UEFI\"") && blkid.contains("VERSION=\"FAT32\""),
        "{blkid}"
    );
    let id = b.json["esp_volume_id"].as_str().unwrap();
    assert!(blkid.contains(&format!("UUID=\"{id}\"")), "{blkid} vs {id}");
    let listing = stdout(&run_ok(
        tool("mdir")
            .arg("-b")
            .arg("-/")
            .arg("-i")
            .arg(&esp)
            .arg("::/"),
    ));
    for f in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/EFI/BOOT/grubx64.efi",
        "::/EFI/BOOT/mmx64.efi",
        "::/EFI/BOOT/grub.cfg",
        "::/EFI/debian/grub.cfg",
    ] {
        assert!(
            listing.lines().any(|l| l == f),
            "{f} missing from {listing}"
        );
    }
    let shim = std::fs::read(test_tree().join("usr/lib/shim/shimx64.efi.signed")).unwrap();
    let copy = run_ok(
        tool("mtype")
            .arg("-i")
            .arg(&esp)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    )
    .stdout;
    assert!(copy == shim, "BOOTX64.EFI is the tree's signed shim");
    let stub = stdout(&run_ok(
        tool("mtype")
            .arg("-i")
            .arg(&esp)
            .arg("::/EFI/debian/grub.cfg"),
    ));
    let uuid = b.json["root_fs_uuid"].as_str().unwrap();
    assert!(
        stub.starts_with(&format!("search.fs_uuid {uuid} root\n")),
        "{stub}"
    );
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn root_is_clean_ext4_for_the_target() {
    let b = built();
    let raw = b.path("t.raw");
    let dev = format!("{}?offset={}", raw.display(), partition_offset(&raw, 1));
    let fsck = run_ok(tool("e2fsck").arg("-fn").arg(&dev));
    assert!(
        stdout(&fsck).contains("cloudimg-rootfs:"),
        "{}",
        stdout(&fsck)
    );
    let uuid = b.json["root_fs_uuid"].as_str().unwrap();
    let blkid = stdout(&run_ok(
        tool("blkid")
            .arg("-p")
            .arg("-O")
            .arg(partition_offset(&raw, 1).to_string())
            .arg(&raw),
    ));
    assert!(
        blkid.contains("LABEL=\"cloudimg-rootfs\"")
            && blkid.contains(&format!("UUID=\"{uuid}\""))
            && blkid.contains("TYPE=\"ext4\""),
        "{blkid}"
    );
    let header = stdout(&run_ok(tool("debugfs").arg("-R").arg("stats").arg(&dev)));
    let features = header
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap();
    // The Debian 12 tree has GRUB 2.06: no metadata_csum_seed, no orphan_file.
    assert_eq!(b.json["ext4_features"], "compat");
    assert!(
        features.contains("metadata_csum")
            && features.contains("64bit")
            && features.contains("extent"),
        "{features}"
    );
    assert!(
        !features.contains("metadata_csum_seed") && !features.contains("orphan_file"),
        "{features}"
    );

    assert_superblock_is_one_grub_2_02_reads(&raw);

    let cat = |path: &str| {
        stdout(&run_ok(
            tool("debugfs")
                .arg("-R")
                .arg(format!("cat {path}"))
                .arg(&dev),
        ))
    };
    let fstab = cat("/etc/fstab");
    assert!(
        fstab.contains(&format!("UUID={uuid}\t/\text4\t")),
        "{fstab}"
    );
    assert!(
        fstab.contains(&format!(
            "UUID={}\t/boot/efi\tvfat\t",
            b.json["esp_volume_id"].as_str().unwrap()
        )),
        "{fstab}"
    );
    let grub = cat("/boot/grub/grub.cfg");
    let kernel = b.json["kernel"].as_str().unwrap();
    assert!(
        grub.contains(&format!(
            "linux /boot/vmlinuz-{kernel} root=UUID={uuid} ro console=tty1 console=ttyS0,115200n8"
        )),
        "{grub}"
    );
    assert!(
        grub.contains(&format!("initrd /boot/initrd.img-{kernel}")),
        "{grub}"
    );
    let efi_dir = stdout(&run_ok(
        tool("debugfs").arg("-R").arg("stat /boot/efi").arg(&dev),
    ));
    assert!(efi_dir.contains("Type: directory"), "{efi_dir}");
    // Owners and modes of the tree survive: a setuid binary stays setuid root.
    let passwd = stdout(&run_ok(
        tool("debugfs")
            .arg("-R")
            .arg("stat /usr/bin/passwd")
            .arg(&dev),
    ));
    assert!(
        passwd.contains("Mode:  04755") && passwd.contains("User:     0"),
        "{passwd}"
    );
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn bios_boot_code_points_at_core_img() {
    let raw = std::fs::read(built().path("t.raw")).unwrap();
    let boot_img = std::fs::read(test_tree().join("usr/lib/grub/i386-pc/boot.img")).unwrap();
    // MBR: boot.img's code, with the core.img sector at 0x5C; signature and protective entry.
    assert_eq!(&raw[..0x5C], &boot_img[..0x5C]);
    assert_eq!(
        u64::from_le_bytes(raw[0x5C..0x64].try_into().unwrap()),
        2048
    );
    assert_eq!(&raw[510..512], &[0x55, 0xAA]);
    assert_eq!(raw[446 + 4], 0xEE, "protective MBR partition type");
    // core.img at p14 starts with diskboot.img, whose blocklist points at the next sector.
    let diskboot = std::fs::read(test_tree().join("usr/lib/grub/i386-pc/diskboot.img")).unwrap();
    let core = &raw[2048 * 512..];
    assert_eq!(&core[..0x100], &diskboot[..0x100]);
    assert_eq!(
        u64::from_le_bytes(core[0x1F4..0x1FC].try_into().unwrap()),
        2049
    );
}

fn qemu_img_compare(format: &str, image: &Path) {
    let raw = built().path("t.raw");
    let out = run_ok(
        tool("qemu-img")
            .args(["compare", "-f", "raw", "-F", format])
            .arg(&raw)
            .arg(image),
    );
    assert!(
        stdout(&out).contains("Images are identical"),
        "{}",
        stdout(&out)
    );
}

fn qemu_img_info(format: &str, image: &Path) -> serde_json::Value {
    let out = run_ok(
        tool("qemu-img")
            .args(["info", "--output=json", "-f", format])
            .arg(image),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn qcow2_checks_and_matches_raw() {
    let q = built().path("t.qcow2");
    run_ok(tool("qemu-img").args(["check", "-f", "qcow2"]).arg(&q));
    let info = qemu_img_info("qcow2", &q);
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
    assert_eq!(info["virtual-size"].as_u64().unwrap(), disk_size());
    qemu_img_compare("qcow2", &q);
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn vmdk_is_stream_optimized_and_matches_raw() {
    let v = built().path("t.vmdk");
    run_ok(tool("qemu-img").args(["check", "-f", "vmdk"]).arg(&v));
    let info = qemu_img_info("vmdk", &v);
    assert_eq!(
        info["format-specific"]["data"]["create-type"],
        "streamOptimized"
    );
    qemu_img_compare("vmdk", &v);
    // Its descriptor names the artifact itself, not the temporary file it was written as.
    let bytes = std::fs::read(&v).unwrap();
    let text = String::from_utf8_lossy(&bytes[..64 << 10]);
    assert!(text.contains(" SPARSE \"t.vmdk\"\n"), "{text}");
    assert!(!text.contains("partial"));
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn ova_members_in_order_with_valid_manifest() {
    let b = built();
    let ova = b.path("t.ova");
    let listing = stdout(&run_ok(tool("tar").arg("-tf").arg(&ova)));
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["t.ovf", "t.mf", "t.vmdk"]
    );
    let x = b.out.parent().unwrap().join("ova-x");
    std::fs::create_dir_all(&x).unwrap();
    run_ok(tool("tar").arg("-xf").arg(&ova).arg("-C").arg(&x));
    // The manifest's SHA256 lines, checked with sha256sum.
    let mf = std::fs::read_to_string(x.join("t.mf")).unwrap();
    let as_sums: String = mf
        .lines()
        .map(|l| {
            let (name, hash) = l
                .strip_prefix("SHA256(")
                .unwrap()
                .split_once(")= ")
                .unwrap();
            format!("{hash}  {name}\n")
        })
        .collect();
    std::fs::write(x.join("sums"), as_sums).unwrap();
    let ok = stdout(&run_ok(
        tool("sha256sum").arg("-c").arg("sums").current_dir(&x),
    ));
    assert_eq!(
        ok.lines().filter(|l| l.ends_with(": OK")).count(),
        2,
        "{ok}"
    );
    // The descriptor is well-formed XML and names the disk with its real sizes.
    let ovf = std::fs::read_to_string(x.join("t.ovf")).unwrap();
    run_ok(
        tool("python3")
            .args([
                "-c",
                "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])",
            ])
            .arg(x.join("t.ovf")),
    );
    let vmdk_len = std::fs::metadata(x.join("t.vmdk")).unwrap().len();
    assert!(ovf.contains(&format!(
        "ovf:href=\"t.vmdk\" ovf:id=\"file1\" ovf:size=\"{vmdk_len}\""
    )));
    assert!(ovf.contains(&format!("ovf:capacity=\"{}\"", disk_size())));
    qemu_img_compare("vmdk", &x.join("t.vmdk"));
    assert!(
        std::fs::read(x.join("t.vmdk")).unwrap() == std::fs::read(b.path("t.vmdk")).unwrap(),
        "the OVA carries the VMDK as is"
    );
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn gcp_tarball_is_oldgnu_sparse_whole_gib() {
    let b = built();
    let tgz = b.path("t.gcp.tar.gz");
    run_ok(tool("gzip").arg("-t").arg(&tgz));
    let listing = stdout(&run_ok(tool("tar").arg("-tvf").arg(&tgz)));
    let line = listing.lines().next().unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert_eq!(fields[0], "-rw-r--r--", "{line}");
    assert_eq!(fields[1], "root/root", "{line}");
    let size: u64 = fields[2].parse().unwrap();
    assert_eq!(
        size % (1 << 30),
        0,
        "disk.raw is a whole number of GiB: {line}"
    );
    assert!(size >= disk_size());
    assert_eq!(fields[5], "disk.raw");
    // oldgnu: the "ustar  \0" magic of GNU's old format and a sparse ('S') entry.
    let head = run_ok(
        tool("sh")
            .arg("-c")
            .arg(format!("gzip -dc {} | head -c 512", tgz.display())),
    )
    .stdout;
    assert_eq!(&head[257..265], b"ustar  \0");
    assert_eq!(head[156], b'S');
    // Extracting keeps holes and gives back the raw.
    let x = b.out.parent().unwrap().join("gcp-x");
    std::fs::create_dir_all(&x).unwrap();
    run_ok(tool("tar").arg("-xSf").arg(&tgz).arg("-C").arg(&x));
    let disk = x.join("disk.raw");
    let meta = std::fs::metadata(&disk).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.len(), size);
    assert!(
        meta.blocks() * 512 < size / 2,
        "extracted disk.raw is sparse"
    );
    run_ok(
        tool("cmp")
            .arg("-n")
            .arg(disk_size().to_string())
            .arg(&disk)
            .arg(b.path("t.raw")),
    );
    run_ok(
        tool("cmp")
            .arg("-i")
            .arg(disk_size().to_string())
            .arg(&disk)
            .arg("/dev/zero")
            .arg("-n")
            .arg((size - disk_size()).to_string()),
    );
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn vhd_has_a_valid_fixed_footer() {
    let v = built().path("t.vhd");
    let bytes = std::fs::read(&v).unwrap();
    let len = bytes.len() as u64;
    assert_eq!(
        (len - 512) % (1 << 20),
        0,
        "data is a whole MiB, then the footer"
    );
    let footer = &bytes[bytes.len() - 512..];
    assert_eq!(&footer[..8], b"conectix");
    assert_eq!(
        u32::from_be_bytes(footer[60..64].try_into().unwrap()),
        2,
        "fixed disk"
    );
    assert_eq!(
        u64::from_be_bytes(footer[48..56].try_into().unwrap()),
        len - 512,
        "current size"
    );
    let sum: u32 = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .map(|(_, b)| *b as u32)
        .sum();
    assert_eq!(
        !sum,
        u32::from_be_bytes(footer[64..68].try_into().unwrap()),
        "checksum"
    );
    assert_eq!(
        qemu_img_info("vpc", &v)["virtual-size"].as_u64().unwrap(),
        len - 512
    );
    qemu_img_compare("vpc", &v);
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn compressed_raws_decompress_to_the_raw() {
    let b = built();
    let raw = b.path("t.raw");
    for (tool_name, file) in [("zstd", "t.raw.zst"), ("xz", "t.raw.xz")] {
        run_ok(tool(tool_name).arg("-t").arg(b.path(file)));
        let script = format!(
            "{tool_name} -dc {} | cmp - {}",
            b.path(file).display(),
            raw.display()
        );
        run_ok(tool("sh").arg("-c").arg(script));
    }
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn reproducible_with_source_date_epoch() {
    let a = scratch("repro-a");
    let b = scratch("repro-b");
    let ja = assemble(a.path(), "raw,qcow2");
    let jb = assemble(b.path(), "raw,qcow2");
    assert_eq!(ja["root_fs_uuid"], jb["root_fs_uuid"]);
    for f in ["t.raw", "t.qcow2"] {
        run_ok(tool("cmp").arg(a.path().join(f)).arg(b.path().join(f)));
    }
    assert_eq!(
        std::fs::read(a.path().join("SHA256SUMS")).unwrap(),
        std::fs::read(b.path().join("SHA256SUMS")).unwrap()
    );
    // Without SOURCE_DATE_EPOCH, ids are random: two images never share a file system UUID.
    let c = scratch("repro-c");
    let jc = serde_json::from_slice::<serde_json::Value>(
        &run_ok(
            appliance()
                .env_remove("SOURCE_DATE_EPOCH")
                .args([
                    "assemble",
                    "--name",
                    "t",
                    "--json",
                    "--formats",
                    "raw",
                    "--boot",
                    "bios",
                    "--rootfs",
                ])
                .arg(test_tree())
                .arg("--out")
                .arg(c.path()),
        )
        .stdout,
    )
    .unwrap();
    assert_ne!(jc["root_fs_uuid"], ja["root_fs_uuid"]);
}

/// The superblock's feature bits, read raw: every incompat bit is one GRUB 2.02's ext2
/// driver supports (filetype, meta_bg, extents, 64bit, flex_bg) or ignores (recover,
/// journal_dev, mmp), per its fs/ext2.c; no orphan_file (compat 0x1000), which e2fsck
/// before 1.47 does not know.
fn assert_superblock_is_one_grub_2_02_reads(raw: &std::path::Path) {
    let mut sb = [0u8; 1024];
    use std::os::unix::fs::FileExt;
    std::fs::File::open(raw)
        .unwrap()
        .read_exact_at(&mut sb, partition_offset(raw, 1) + 1024)
        .unwrap();
    let word = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().unwrap());
    assert_eq!(
        u16::from_le_bytes([sb[0x38], sb[0x39]]),
        0xEF53,
        "ext superblock magic"
    );
    let (compat, incompat) = (word(0x5C), word(0x60));
    let grub_2_02 = 0x0002 | 0x0010 | 0x0040 | 0x0080 | 0x0200 | 0x0004 | 0x0008 | 0x0100;
    assert_eq!(
        incompat & !grub_2_02,
        0,
        "incompat features {incompat:#x} beyond GRUB 2.02's"
    );
    assert_eq!(compat & 0x1000, 0, "orphan_file");
}
