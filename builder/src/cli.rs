//! The command line of `appliance`: its commands and their arguments (clap), nothing run.

use anyhow::Result;
use appliance::disk::assemble::BootModes;
use appliance::disk::ext4::FeatureSet;
use appliance::export::Format;
use appliance::util::size;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "appliance", version, about = "Build bootable cloud appliance images", long_about = None)]
pub struct Cli {
    /// Print only errors and results: no progress, no build log lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also print every external command as it starts (`+ mke2fs ...`).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build the images a profile describes: base, overlays, provisioning, scrub, disk, exports.
    ///
    /// PROFILE is a file (profiles/debian12-test.toml) or a name in ./profiles. The provisioned
    /// tree is cached (in $APPLIANCE_CACHE, default /var/cache/appliance) under a key of the
    /// base, the overlays' content and the variables, so a rebuild that changes only the disk
    /// size, the formats or a late file (such as the firstboot binary) skips debootstrap and
    /// apt. Each step's output goes to OUT/logs/; a failing step shows its last lines and its
    /// log. Outputs appear only when complete: NAME.<format>, SHA256SUMS, NAME.manifest
    /// (packages and versions) and NAME.build.json (inputs, hashes, tool versions, timings).
    ///
    /// Inputs are downloaded (through --mirror NAME=URL where given) or, with --bundle DIR,
    /// taken only from a bundle made by `appliance fetch`, with no network. Without a network
    /// and neither, the build stops at its first download with one line saying so.
    Build(BuildArgs),
    /// Download every external input of a build into a bundle, for builds without a network.
    ///
    /// Runs the build's provisioning in a scratch tree and keeps what it downloads: the base
    /// (tarball with its signed SHA256SUMS, or debootstrap's .debs), every .deb apt installs
    /// (as a flat apt repository), and every file and key the overlays' helpers fetch. Every
    /// file is listed with its SHA-256 in DIR/bundle.json and DIR/SHA256SUMS. The bundle
    /// appears only when complete; logs are in DIR.logs/. Then, on a machine without network:
    /// `appliance build PROFILE --bundle DIR`.
    Fetch(FetchArgs),
    /// Show everything a build would do, without doing any of it.
    ///
    /// Every resolved input (base URL or suite and mirror, checksums and how they are
    /// verified), every overlay with its content hash, the variables, every external
    /// component (version, URL, checksum or pinned key fingerprint), the repositories and
    /// their mirrors, each step in order (marked when the cache will skip it) and every
    /// output file.
    Plan(PlanArgs),
    /// List the profiles a NAME finds, with their descriptions and files.
    ///
    /// Profiles named without a path are looked for in ./profiles, then in each directory of
    /// $APPLIANCE_PROFILES (colon-separated), then in the profiles/ of the source tree this
    /// binary was built from, then in /usr/share/appliance/profiles (an installed copy, with
    /// its overlays in /usr/share/appliance/overlays). A name in an earlier place hides the
    /// same name in a later one.
    Profiles(ProfilesArgs),
    /// Turn a root tree into a bootable disk image and export it to the requested formats.
    ///
    /// GPT, ext4 root, GRUB for BIOS and UEFI; every format with SHA256SUMS beside it.
    ///
    /// The disk is laid out like Ubuntu's cloud images: partition 14 BIOS boot (4 MiB),
    /// 15 EFI system (FAT32 "UEFI", 106 MiB), 1 root (ext4 "cloudimg-rootfs", the rest).
    /// Nothing is mounted and no loop device is used. Outputs appear only when all of them
    /// are complete; a failure or Ctrl-C leaves none behind. With SOURCE_DATE_EPOCH set,
    /// two runs on the same tree give bit-identical raw and qcow2 images.
    Assemble(AssembleArgs),
    /// Make a NoCloud seed volume that hands user-data to cloud-init outside a cloud.
    ///
    /// A small vfat volume labelled CIDATA with user-data and meta-data, which cloud-init
    /// reads when the image boots outside a cloud (attach it as a second disk). Without --meta-data, the instance id is derived from the user-data, so new
    /// user-data counts as a new instance.
    Seed(SeedArgs),
    /// Boot an image under QEMU (serial console here, ports on 127.0.0.1, user-data by seed).
    ///
    /// The serial console is on this terminal (Ctrl-A X quits) or in a file, TCP ports are
    /// forwarded on 127.0.0.1 only, and user-data goes in through a NoCloud seed. The image is booted as a
    /// snapshot unless --persist: what the guest writes is discarded and the artifact (and its
    /// SHA256SUMS) stays as built. KVM is used only where it is proven to boot the image's
    /// kernel; otherwise TCG (slower, always works).
    Boot(BootArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `appliance completions bash > /etc/bash_completion.d/appliance`; zsh: into a
    /// directory of $fpath as `_appliance`; fish: `~/.config/fish/completions/appliance.fish`.
    Completions(CompletionsArgs),
    /// Print the manual page appliance(1) (roff; `appliance man | man -l -`), or write one
    /// page per command into a directory.
    Man(ManArgs),
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write appliance.1 and appliance-COMMAND.1 for every command into DIR instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The profile `build` and `plan` use when none is named: the product, the appliance users
/// download (issue 5). The test profile is named explicitly (scripts/run, scripts/test).
pub const PRODUCT_PROFILE: &str = "rocketchat-jitsi-bionic";

/// `--var`, which `build`, `plan` and `fetch` share. (`--mirror` is declared by each: its help
/// says what the mirror is for in that command; `fetch` has no `--offline` or `--no-cache`,
/// and its `--out` is the bundle, required.)
#[derive(Args)]
pub struct VarArgs {
    /// Set a variable the profile or an overlay declares (NAME=VALUE); repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = appliance::spec::profile::parse_var)]
    pub vars: Vec<(String, String)>,
}

#[derive(Args)]
pub struct ProfileArgs {
    /// The profile: a .toml file, or a NAME (see `appliance profiles` for where it is found).
    #[arg(default_value = PRODUCT_PROFILE)]
    pub profile: String,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Directory for the outputs and logs. Default: build/<profile name>.
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Use only cached downloads and bases; fail naming the first input that is missing.
    #[arg(long)]
    pub offline: bool,
    /// Rebuild the debootstrap base and the provisioned tree even when cached (and re-cache).
    #[arg(long)]
    pub no_cache: bool,
    /// Download from URL instead of the repository NAME of the profile's [mirrors] (an apt
    /// cache or a mirror: the URL prefix replaces the profile's); repeatable. The image keeps
    /// its original apt sources.
    #[arg(long = "mirror", value_name = "NAME=URL", value_parser = appliance::inputs::mirror::parse_mirror)]
    pub mirrors: Vec<(String, String)>,
}

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Take every input from this bundle (made by `appliance fetch`), with no network: the
    /// bundle is checked file by file first, and apt and the overlays' helpers read only it.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Threads for compression (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print what was made as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct FetchArgs {
    /// The profile: a .toml file, or a NAME (see `appliance profiles` for where it is found).
    pub profile: String,
    /// The bundle directory to make (it must not exist yet).
    #[arg(short, long, value_name = "DIR", alias = "to")]
    pub out: PathBuf,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Download from URL instead of the repository NAME of the profile's [mirrors];
    /// repeatable. The bundle holds what the mirror served, under the original URLs.
    #[arg(long = "mirror", value_name = "NAME=URL", value_parser = appliance::inputs::mirror::parse_mirror)]
    pub mirrors: Vec<(String, String)>,
    /// Print what was made as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ProfilesArgs {
    /// List only this directory's profiles.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the list as JSON (name, description, path; error for one that does not parse).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BootArgs {
    /// The image: .qcow2, .raw, .img, .vmdk or .vhd.
    pub image: PathBuf,
    /// A NoCloud seed volume (from `appliance seed`) to attach.
    #[arg(long, value_name = "FILE", conflicts_with = "user_data")]
    pub seed: Option<PathBuf>,
    /// User-data to hand to cloud-init (a seed is made for it).
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<PathBuf>,
    /// Boot with UEFI (OVMF) instead of BIOS (SeaBIOS).
    #[arg(long)]
    pub uefi: bool,
    /// UEFI with Secure Boot enforcing and Microsoft's keys enrolled.
    #[arg(long)]
    pub secure_boot: bool,
    /// Forward 127.0.0.1:HOSTPORT to the guest's GUESTPORT (TCP); repeatable.
    #[arg(long, value_name = "HOSTPORT:GUESTPORT")]
    pub forward: Vec<appliance::qemu::Forward>,
    /// Guest memory in MiB (the appliance's Rocket.Chat, MongoDB and Jitsi need about 4 GiB).
    #[arg(long, default_value_t = appliance::qemu::DEFAULT_MEMORY_MIB)]
    pub memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// QEMU CPU model. Default: one with AVX (MongoDB needs it): `host` under KVM, `max`
    /// under TCG.
    #[arg(long, value_name = "MODEL")]
    pub cpu: Option<String>,
    /// Print the QEMU command line and exit without booting (with --accel auto, the
    /// accelerator known without a probe: TCG until KVM has been proven on this host).
    #[arg(long)]
    pub print_command: bool,
    /// Write the serial console to FILE instead of this terminal.
    #[arg(long, value_name = "FILE")]
    pub serial_log: Option<PathBuf>,
    /// Wait for a line containing TEXT on the serial console, print it and stop the VM
    /// (exit 0); fail if it does not come within --timeout.
    #[arg(long, value_name = "TEXT")]
    pub expect: Option<String>,
    /// Seconds to wait for --expect.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Keep what the guest writes in the image.
    #[arg(long)]
    pub persist: bool,
    /// Accelerator: auto (KVM where proven to work), kvm or tcg.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: String,
}

#[derive(Args)]
pub struct SeedArgs {
    /// The user-data: #cloud-config YAML, a script (#!...) or MIME multipart.
    #[arg(long, value_name = "FILE")]
    pub user_data: PathBuf,
    /// The meta-data (YAML with at least `instance-id:`).
    #[arg(long, value_name = "FILE")]
    pub meta_data: Option<PathBuf>,
    /// A network-config (netplan v2 or ENI) to put beside them.
    #[arg(long, value_name = "FILE")]
    pub network_config: Option<PathBuf>,
    /// Where to write the seed volume.
    #[arg(short, long, value_name = "FILE", alias = "output")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct AssembleArgs {
    /// Root tree: a directory, or a tarball (.tar, .tar.gz, .tar.xz, .tar.zst).
    #[arg(long, value_name = "DIR|TARBALL")]
    pub rootfs: PathBuf,
    /// Directory for the artifacts (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,
    /// Disk size, e.g. 10GiB or 2G (rounded up to a whole MiB). Default: what the tree needs
    /// plus room, rounded up to a whole GiB; the root grows to the real disk at first boot.
    #[arg(long, value_name = "SIZE", value_parser = size::parse_size)]
    pub size: Option<u64>,
    /// Firmware to boot with: bios, uefi, or both.
    #[arg(long, value_name = "MODES", default_value = "bios,uefi", value_parser = BootModes::parse)]
    pub boot: BootModes,
    /// Comma-separated outputs: raw, qcow2, vmdk, ova, gcp, vhd, raw.zst, raw.xz.
    #[arg(long, value_name = "LIST", default_value = "raw,qcow2", value_parser = parse_formats)]
    pub formats: Formats,
    /// Base name of the artifacts (NAME.raw, NAME.qcow2, ...).
    #[arg(long, default_value = "disk")]
    pub name: String,
    /// Seed for the disk, partition and file system ids. Default: derived from --name and
    /// SOURCE_DATE_EPOCH when that is set (reproducible), random otherwise.
    #[arg(long = "id-seed", value_name = "TEXT", alias = "seed")]
    pub id_seed: Option<String>,
    /// ext4 feature set: auto (from the tree's e2fsprogs and GRUB), compat (readable by
    /// Ubuntu 18.04's e2fsck and GRUB 2.02) or current (adds metadata_csum_seed, orphan_file).
    #[arg(long, value_name = "SET", default_value = "auto", value_parser = parse_ext4_features)]
    pub ext4_features: Ext4Choice,
    /// Threads for compression (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print what was made as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The parsed `--formats` list (a newtype, so clap takes it as one value).
#[derive(Clone)]
pub struct Formats(pub Vec<Format>);

pub fn parse_formats(text: &str) -> Result<Formats> {
    Format::parse_list(text).map(Formats)
}

/// `--ext4-features`: `None` for auto.
#[derive(Clone)]
pub struct Ext4Choice(pub Option<FeatureSet>);

pub fn parse_ext4_features(text: &str) -> Result<Ext4Choice> {
    match text {
        "auto" => Ok(Ext4Choice(None)),
        other => other.parse().map(|f| Ext4Choice(Some(f))),
    }
}
