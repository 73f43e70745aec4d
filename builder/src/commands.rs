//! What each command of `appliance` does with its parsed arguments: calls into the library.

use crate::cli::*;
use anyhow::{Context, Result};
use appliance::disk::assemble::{self, AssembleOptions};
use appliance::util::progress::{self, Reporter, Verbosity};
use appliance::util::size;
use clap::CommandFactory;
use std::path::PathBuf;

fn load_profile(
    a: &ProfileArgs,
    threads: Option<usize>,
    bundle: Option<PathBuf>,
) -> Result<(
    appliance::spec::profile::Profile,
    appliance::stages::build::BuildOptions,
)> {
    let path = appliance::spec::profile::locate(&a.profile)?;
    let profile = appliance::spec::profile::Profile::load(&path, &a.vars.vars)?;
    let mirrors = appliance::inputs::mirror::Mirrors::new(&profile.mirrors, &a.mirrors)?;
    let opts = appliance::stages::build::BuildOptions {
        out: a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("build").join(&profile.file.name)),
        offline: a.offline,
        no_cache: a.no_cache,
        cache: appliance::stages::cache::Cache::from_env(),
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

pub fn run_build(a: BuildArgs) -> Result<()> {
    let (profile, opts) = load_profile(&a.profile, a.threads, a.bundle.clone())?;
    let built = appliance::stages::build::build(&profile, &opts, &Reporter::new())?;
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

pub fn run_plan(a: PlanArgs) -> Result<()> {
    let (profile, opts) = load_profile(&a.profile, None, None)?;
    let inputs = appliance::inputs::Inputs::Network(&opts.mirrors);
    let (plan, _) = appliance::stages::build::make_plan(&profile, &opts, &inputs, false)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{plan}");
    }
    Ok(())
}

pub fn run_fetch(a: FetchArgs) -> Result<()> {
    let path = appliance::spec::profile::locate(&a.profile)?;
    let profile = appliance::spec::profile::Profile::load(&path, &a.vars.vars)?;
    let opts = appliance::stages::fetch::FetchOptions {
        to: a.out,
        mirrors: appliance::inputs::mirror::Mirrors::new(&profile.mirrors, &a.mirrors)?,
        cache: appliance::stages::cache::Cache::from_env(),
        source_date_epoch: source_date_epoch()?,
    };
    let fetched = appliance::stages::fetch::fetch(&profile, &opts, &Reporter::new())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&fetched)?);
    } else {
        println!("{}", fetched.bundle.display());
    }
    Ok(())
}

pub fn run_profiles(a: ProfilesArgs) -> Result<()> {
    let found = match &a.dir {
        Some(dir) => appliance::spec::profile::list(dir)?,
        None => appliance::spec::profile::available(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        let dirs = appliance::spec::profile::search_dirs();
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

pub fn run_boot(a: BootArgs) -> Result<()> {
    use appliance::qemu::{self, Firmware, Serial, VmSpec};
    let work = appliance::util::partial::WorkDir::create(&std::env::temp_dir(), "appliance-boot")?;
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
    let accel = qemu::accel_for(&spec, &a.accel, a.print_command, work.path())?;
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
    qemu::run_vm(
        cmd,
        &serial,
        a.expect.as_deref(),
        std::time::Duration::from_secs(a.timeout),
    )
}

fn read_input(what: &str, path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

pub fn run_seed(a: SeedArgs) -> Result<()> {
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

pub fn run_assemble(a: AssembleArgs) -> Result<()> {
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

pub fn run_completions(a: CompletionsArgs) -> Result<()> {
    clap_complete::generate(
        a.shell,
        &mut Cli::command(),
        "appliance",
        &mut std::io::stdout(),
    );
    Ok(())
}

pub fn run_man(a: ManArgs) -> Result<()> {
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
