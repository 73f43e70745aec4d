//! `appliance`: the command line. It only parses arguments and calls the library.

use anyhow::{Context, Result};
use appliance::assemble::{self, AssembleOptions, BootModes};
use appliance::export::Format;
use appliance::ext4::FeatureSet;
use appliance::progress::Reporter;
use appliance::progress::{self, Verbosity};
use appliance::size;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "appliance", version, about = "Build bootable cloud appliance images", long_about = None)]
struct Cli {
    /// Print only errors and results: no progress, no build log lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Also print every external command as it starts (`+ mke2fs ...`).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

#[derive(Args)]
struct ManArgs {
    /// Write appliance.1 and appliance-COMMAND.1 for every command into DIR instead.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The profile `build` and `plan` use when none is named: the product, the appliance users
/// download (issue 5). The test profile is named explicitly (scripts/run, scripts/test).
const PRODUCT_PROFILE: &str = "rocketchat-jitsi-bionic";

#[derive(Args)]
struct ProfileArgs {
    /// The profile: a .toml file, or a NAME (see `appliance profiles` for where it is found).
    #[arg(default_value = PRODUCT_PROFILE)]
    profile: String,
    /// Set a variable the profile or an overlay declares (NAME=VALUE); repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = appliance::profile::parse_var)]
    vars: Vec<(String, String)>,
    /// Directory for the outputs and logs. Default: build/<profile name>.
    #[arg(short, long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Use only cached downloads and bases; fail naming the first input that is missing.
    #[arg(long)]
    offline: bool,
    /// Rebuild the debootstrap base and the provisioned tree even when cached (and re-cache).
    #[arg(long)]
    no_cache: bool,
    /// Download from URL instead of the repository NAME of the profile's [mirrors] (an apt
    /// cache or a mirror: the URL prefix replaces the profile's); repeatable. The image keeps
    /// its original apt sources.
    #[arg(long = "mirror", value_name = "NAME=URL", value_parser = appliance::mirror::parse_mirror)]
    mirrors: Vec<(String, String)>,
}

#[derive(Args)]
struct BuildArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    /// Take every input from this bundle (made by `appliance fetch`), with no network: the
    /// bundle is checked file by file first, and apt and the overlays' helpers read only it.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Threads for compression (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print what was made as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FetchArgs {
    /// The profile: a .toml file, or a NAME (see `appliance profiles` for where it is found).
    profile: String,
    /// The bundle directory to make (it must not exist yet).
    #[arg(short, long, value_name = "DIR", alias = "to")]
    out: PathBuf,
    /// Set a variable the profile or an overlay declares (NAME=VALUE); repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = appliance::profile::parse_var)]
    vars: Vec<(String, String)>,
    /// Download from URL instead of the repository NAME of the profile's [mirrors];
    /// repeatable. The bundle holds what the mirror served, under the original URLs.
    #[arg(long = "mirror", value_name = "NAME=URL", value_parser = appliance::mirror::parse_mirror)]
    mirrors: Vec<(String, String)>,
    /// Print what was made as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ProfilesArgs {
    /// List only this directory's profiles.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print the list as JSON (name, description, path; error for one that does not parse).
    #[arg(long)]
    json: bool,
}

fn load_profile(
    a: &ProfileArgs,
    threads: Option<usize>,
    bundle: Option<PathBuf>,
) -> Result<(appliance::profile::Profile, appliance::build::BuildOptions)> {
    let path = appliance::profile::locate(&a.profile)?;
    let profile = appliance::profile::Profile::load(&path, &a.vars)?;
    let mirrors = appliance::mirror::Mirrors::new(&profile.mirrors, &a.mirrors)?;
    let opts = appliance::build::BuildOptions {
        out: a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("build").join(&profile.file.name)),
        offline: a.offline,
        no_cache: a.no_cache,
        cache: appliance::cache::Cache::from_env(),
        threads: threads.unwrap_or_else(default_threads),
        source_date_epoch: source_date_epoch()?,
        mirrors,
        bundle,
    };
    Ok((profile, opts))
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn run_build(a: BuildArgs) -> Result<()> {
    let (profile, opts) = load_profile(&a.profile, a.threads, a.bundle.clone())?;
    let built = appliance::build::build(&profile, &opts, &Reporter::new())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&built)?);
    } else {
        for art in &built.assembled.artifacts {
            println!("{}", art.path.display());
        }
        println!("{}", built.manifest.display());
        println!("{}", built.build_info.display());
    }
    Ok(())
}

fn run_plan(a: PlanArgs) -> Result<()> {
    let (profile, opts) = load_profile(&a.profile, None, None)?;
    let inputs = appliance::inputs::Inputs::Network(&opts.mirrors);
    let (plan, _) = appliance::build::make_plan(&profile, &opts, &inputs, false)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{plan}");
    }
    Ok(())
}

fn run_fetch(a: FetchArgs) -> Result<()> {
    let path = appliance::profile::locate(&a.profile)?;
    let profile = appliance::profile::Profile::load(&path, &a.vars)?;
    let opts = appliance::fetch::FetchOptions {
        to: a.out,
        mirrors: appliance::mirror::Mirrors::new(&profile.mirrors, &a.mirrors)?,
        cache: appliance::cache::Cache::from_env(),
        source_date_epoch: source_date_epoch()?,
    };
    let fetched = appliance::fetch::fetch(&profile, &opts, &Reporter::new())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&fetched)?);
    } else {
        println!("{}", fetched.bundle.display());
    }
    Ok(())
}

fn run_profiles(a: ProfilesArgs) -> Result<()> {
    let found = match &a.dir {
        Some(dir) => appliance::profile::list(dir)?,
        None => appliance::profile::available(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        let dirs = appliance::profile::search_dirs();
        anyhow::bail!(
            "no profiles in {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for p in found {
        let description = match &p.error {
            Some(e) => format!("invalid: {e}"),
            None => p.description,
        };
        println!("{:<24} {description}  ({})", p.name, p.path.display());
    }
    Ok(())
}

#[derive(Args)]
struct BootArgs {
    /// The image: .qcow2, .raw, .img, .vmdk or .vhd.
    image: PathBuf,
    /// A NoCloud seed volume (from `appliance seed`) to attach.
    #[arg(long, value_name = "FILE", conflicts_with = "user_data")]
    seed: Option<PathBuf>,
    /// User-data to hand to cloud-init (a seed is made for it).
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// Boot with UEFI (OVMF) instead of BIOS (SeaBIOS).
    #[arg(long)]
    uefi: bool,
    /// UEFI with Secure Boot enforcing and Microsoft's keys enrolled.
    #[arg(long)]
    secure_boot: bool,
    /// Forward 127.0.0.1:HOSTPORT to the guest's GUESTPORT (TCP); repeatable.
    #[arg(long, value_name = "HOSTPORT:GUESTPORT")]
    forward: Vec<appliance::qemu::Forward>,
    /// Guest memory in MiB (the appliance's Rocket.Chat, MongoDB and Jitsi need about 4 GiB).
    #[arg(long, default_value_t = appliance::qemu::DEFAULT_MEMORY_MIB)]
    memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// QEMU CPU model. Default: one with AVX (MongoDB needs it): `host` under KVM, `max`
    /// under TCG.
    #[arg(long, value_name = "MODEL")]
    cpu: Option<String>,
    /// Print the QEMU command line and exit without booting (with --accel auto, the
    /// accelerator known without a probe: TCG until KVM has been proven on this host).
    #[arg(long)]
    print_command: bool,
    /// Write the serial console to FILE instead of this terminal.
    #[arg(long, value_name = "FILE")]
    serial_log: Option<PathBuf>,
    /// Wait for a line containing TEXT on the serial console, print it and stop the VM
    /// (exit 0); fail if it does not come within --timeout.
    #[arg(long, value_name = "TEXT")]
    expect: Option<String>,
    /// Seconds to wait for --expect.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Keep what the guest writes in the image.
    #[arg(long)]
    persist: bool,
    /// Accelerator: auto (KVM where proven to work), kvm or tcg.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    accel: String,
}

fn run_boot(a: BootArgs) -> Result<()> {
    use appliance::qemu::{self, Accel, Firmware, Serial, Vm, VmSpec};
    let work = appliance::partial::WorkDir::create(&std::env::temp_dir(), "appliance-boot")?;
    let seed = match (&a.seed, &a.user_data) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(ud)) => {
            let data = read_input("user-data", ud)?;
            let path = work.path().join("seed.img");
            appliance::seed::write_seed(&path, (&ud.display().to_string(), &data), None, None, 0)?;
            Some(path)
        }
        (None, None) => None,
    };
    let serial = match (&a.serial_log, &a.expect) {
        (Some(p), _) => Serial::File(p.clone()),
        (None, Some(_)) => Serial::File(work.path().join("serial.log")),
        (None, None) => Serial::Terminal,
    };
    let spec = VmSpec {
        image: a.image.clone(),
        firmware: if a.uefi || a.secure_boot {
            Firmware::Uefi {
                secure_boot: a.secure_boot,
            }
        } else {
            Firmware::Bios
        },
        memory_mib: a.memory,
        cpus: a.cpus,
        cpu: a.cpu.clone(),
        seed,
        forwards: a.forward.clone(),
        snapshot: !a.persist,
        serial: serial.clone(),
    };
    // Check the command line before spending time on the probe.
    spec.command(Accel::Tcg, work.path())?;
    let accel = match a.accel.as_str() {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        _ if a.print_command => qemu::known_accel().unwrap_or(Accel::Tcg),
        _ => qemu::choose_accel(&spec, work.path())?,
    };
    let cmd = spec.command(accel, work.path())?;
    if a.print_command {
        println!("{}", progress::command_line(&cmd));
        return Ok(());
    }
    if progress::verbosity() > Verbosity::Quiet {
        eprintln!(
            "booting {} with {}, CPU {} ({:?})",
            a.image.display(),
            accel.name(),
            a.cpu.as_deref().unwrap_or(accel.default_cpu()),
            spec.firmware
        );
    }
    progress::show_command(&cmd);
    let mut vm = Vm::start(cmd)?;
    match (&a.expect, &serial) {
        (Some(text), Serial::File(log)) => {
            match vm.wait_for(log, text, std::time::Duration::from_secs(a.timeout)) {
                Some(line) => {
                    println!("{line}");
                    Ok(())
                }
                None => anyhow::bail!(
                    "no line with {text:?} on the serial console within {}s; it ended with: {}",
                    a.timeout,
                    qemu::tail(log, 3).replace('\n', " / ")
                ),
            }
        }
        _ => {
            let status = vm.wait()?;
            if !status.success() {
                anyhow::bail!("QEMU exited with {status}");
            }
            Ok(())
        }
    }
}

#[derive(Args)]
struct SeedArgs {
    /// The user-data: #cloud-config YAML, a script (#!...) or MIME multipart.
    #[arg(long, value_name = "FILE")]
    user_data: PathBuf,
    /// The meta-data (YAML with at least `instance-id:`).
    #[arg(long, value_name = "FILE")]
    meta_data: Option<PathBuf>,
    /// A network-config (netplan v2 or ENI) to put beside them.
    #[arg(long, value_name = "FILE")]
    network_config: Option<PathBuf>,
    /// Where to write the seed volume.
    #[arg(short, long, value_name = "FILE", alias = "output")]
    out: PathBuf,
}

fn read_input(what: &str, path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

fn run_seed(a: SeedArgs) -> Result<()> {
    let user_data = read_input("user-data", &a.user_data)?;
    let meta_data = a
        .meta_data
        .as_ref()
        .map(|p| read_input("meta-data", p))
        .transpose()?;
    let network = a
        .network_config
        .as_ref()
        .map(|p| read_input("network-config", p))
        .transpose()?;
    let names = |p: &PathBuf| p.display().to_string();
    let meta_name = a.meta_data.as_ref().map(names).unwrap_or_default();
    appliance::seed::write_seed(
        &a.out,
        (&names(&a.user_data), &user_data),
        meta_data.as_deref().map(|m| (meta_name.as_str(), m)),
        network.as_deref(),
        source_date_epoch()?.unwrap_or_else(assemble::now),
    )?;
    println!("{}", a.out.display());
    Ok(())
}

#[derive(Args)]
struct AssembleArgs {
    /// Root tree: a directory, or a tarball (.tar, .tar.gz, .tar.xz, .tar.zst).
    #[arg(long, value_name = "DIR|TARBALL")]
    rootfs: PathBuf,
    /// Directory for the artifacts (created if missing).
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
    /// Disk size, e.g. 10GiB or 2G (rounded up to a whole MiB). Default: what the tree needs
    /// plus room, rounded up to a whole GiB; the root grows to the real disk at first boot.
    #[arg(long, value_name = "SIZE", value_parser = size::parse_size)]
    size: Option<u64>,
    /// Firmware to boot with: bios, uefi, or both.
    #[arg(long, value_name = "MODES", default_value = "bios,uefi", value_parser = BootModes::parse)]
    boot: BootModes,
    /// Comma-separated outputs: raw, qcow2, vmdk, ova, gcp, vhd, raw.zst, raw.xz.
    #[arg(long, value_name = "LIST", default_value = "raw,qcow2", value_parser = parse_formats)]
    formats: Formats,
    /// Base name of the artifacts (NAME.raw, NAME.qcow2, ...).
    #[arg(long, default_value = "disk")]
    name: String,
    /// Seed for the disk, partition and file system ids. Default: derived from --name and
    /// SOURCE_DATE_EPOCH when that is set (reproducible), random otherwise.
    #[arg(long = "id-seed", value_name = "TEXT", alias = "seed")]
    id_seed: Option<String>,
    /// ext4 feature set: auto (from the tree's e2fsprogs and GRUB), compat (readable by
    /// Ubuntu 18.04's e2fsck and GRUB 2.02) or current (adds metadata_csum_seed, orphan_file).
    #[arg(long, value_name = "SET", default_value = "auto", value_parser = parse_ext4_features)]
    ext4_features: Ext4Choice,
    /// Threads for compression (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print what was made as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The parsed `--formats` list (a newtype, so clap takes it as one value).
#[derive(Clone)]
struct Formats(Vec<Format>);

fn parse_formats(text: &str) -> Result<Formats> {
    Format::parse_list(text).map(Formats)
}

/// `--ext4-features`: `None` for auto.
#[derive(Clone)]
struct Ext4Choice(Option<FeatureSet>);

fn parse_ext4_features(text: &str) -> Result<Ext4Choice> {
    match text {
        "auto" => Ok(Ext4Choice(None)),
        other => other.parse().map(|f| Ext4Choice(Some(f))),
    }
}

fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .with_context(|| format!("SOURCE_DATE_EPOCH '{v}' is not a whole number of seconds")),
        Err(_) => Ok(None),
    }
}

fn run_assemble(a: AssembleArgs) -> Result<()> {
    let threads = a.threads.unwrap_or_else(default_threads);
    let opts = AssembleOptions {
        rootfs: a.rootfs,
        out: a.out,
        name: a.name,
        size: a.size,
        boot: a.boot,
        formats: a.formats.0,
        seed: a.id_seed,
        ext4_features: a.ext4_features.0,
        source_date_epoch: source_date_epoch()?,
        threads,
    };
    let done = assemble::assemble(&opts, &Reporter::new())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        if progress::verbosity() > Verbosity::Quiet {
            eprintln!(
                "assembled {} ({}, kernel {}, boots {}, ext4 {}):",
                done.name,
                size::human(done.disk_size),
                done.kernel,
                done.boot.join("+"),
                done.ext4_features
            );
        }
        for art in &done.artifacts {
            println!("{}", art.path.display());
        }
    }
    Ok(())
}

fn run_completions(a: CompletionsArgs) -> Result<()> {
    clap_complete::generate(
        a.shell,
        &mut Cli::command(),
        "appliance",
        &mut std::io::stdout(),
    );
    Ok(())
}

fn run_man(a: ManArgs) -> Result<()> {
    let cmd = Cli::command();
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing the manual pages into {}", dir.display()))?;
            println!("{}", dir.display());
        }
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .context("writing the manual page")?,
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    progress::set_verbosity(match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    });
    if let Err(e) = appliance::partial::install_interrupt_handler() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    let result = match cli.command {
        Command::Build(a) => run_build(a),
        Command::Fetch(a) => run_fetch(a),
        Command::Plan(a) => run_plan(a),
        Command::Profiles(a) => run_profiles(a),
        Command::Assemble(a) => run_assemble(a),
        Command::Seed(a) => run_seed(a),
        Command::Boot(a) => run_boot(a),
        Command::Completions(a) => run_completions(a),
        Command::Man(a) => run_man(a),
    };
    if let Err(e) = result {
        // A reader that stopped reading (`appliance man | head`) is not a failure of ours.
        let broken_pipe = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            std::process::exit(0);
        }
        // One line: the chain of what was being done, outermost first.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
