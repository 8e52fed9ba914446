//! `cargo isotest archive`: build the tests, list the libtest binaries in their sandboxes,
//! and pack them, in cargo-nextest's archive format, for `run --archive-file` (ours or
//! nextest's) on other machines.

use std::path::PathBuf;
use std::time::Instant;

use cargo_metadata::camino::Utf8PathBuf;
use clap::Args;

use crate::cargo::CargoOptions;
use crate::cargo::archive::{self, Depth, Dirs, ExtraPath, OnMissing, PackInput, Platform, lists};
use crate::cargo::build::{self, rustc_print};
use crate::destination::Destination;
use crate::discover;
use crate::exit_code::{self, Failure};

#[derive(Args, Debug)]
pub struct ArchiveArgs {
    /// Where to write the archive (a zstd-compressed tar, conventionally `.tar.zst`).
    #[arg(long, value_name = "FILE")]
    archive_file: PathBuf,
    /// Also pack this file or directory (whole tree) of the target directory, given
    /// relative to it (see --archive-include-on-missing).
    #[arg(long, value_name = "PATH")]
    archive_include: Vec<Utf8PathBuf>,
    /// What a missing --archive-include path is: an error, a warning, or nothing.
    #[arg(long, value_enum, default_value_t = OnMissing::Error, value_name = "WHAT")]
    archive_include_on_missing: OnMissing,
    /// zstd's compression level, 1 (fastest) to 19 (smallest); 0 is zstd's default.
    #[arg(long, value_name = "LEVEL", default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    zstd_level: i32,
    #[command(flatten)]
    cargo: CargoOptions,
}

pub fn run(args: ArchiveArgs) -> i32 {
    execute(&args).unwrap_or_else(Failure::report)
}

fn execute(args: &ArchiveArgs) -> Result<i32, Failure> {
    let started = Instant::now();
    for path in &args.archive_include {
        if path.is_absolute() || archive::relative_path(path.as_str()).is_err() {
            return Err(Failure::new(
                exit_code::USAGE,
                format!(
                    "--archive-include {path}: give a path relative to the target directory, \
                     without `..`"
                ),
            ));
        }
    }
    let destination = Destination::Given(args.archive_file.clone());
    // Before the build, which takes long.
    destination
        .check()
        .map_err(|e| Failure::new(exit_code::USAGE, e))?;
    let mut built = build::build_for_archive(&args.cargo)?;
    // Before any thread: the host check is one sandbox.
    let lister = discover::Lister::start(&args.cargo, &built.build, &mut built.metadata)?;
    let target_dir = utf8(&built.build.target_dir)?;
    let build_dir = built
        .metadata
        .build_directory
        .clone()
        .unwrap_or_else(|| target_dir.clone());
    // Without --target the build's libdir is the host's: rustc need not be asked again.
    let host_libdir = match args.cargo.target {
        None => built.build.target_libdir.clone(),
        Some(_) => rustc_print("target-libdir", &built.build.workspace_root, None)?,
    };
    let host = Platform {
        triple: built.host_triple.clone(),
        libdir: Utf8PathBuf::from_path_buf(host_libdir).ok(),
    };
    let target = args.cargo.target.as_ref().map(|triple| Platform {
        triple: triple.clone(),
        libdir: Utf8PathBuf::from_path_buf(built.build.target_libdir.clone()).ok(),
    });
    let binary_list = archive::binary_list(
        &built.metadata,
        Dirs {
            target_dir: &target_dir,
            build_dir: &build_dir,
        },
        &built.artifacts,
        &built.scripts,
        archive::platforms(&host, target.as_ref()),
    );
    let extra: Vec<ExtraPath> = args
        .archive_include
        .iter()
        .map(|path| ExtraPath {
            path: path.clone(),
            depth: Depth::Infinite,
            on_missing: args.archive_include_on_missing,
        })
        .collect();
    let written = |e| Failure::new(exit_code::SETUP_FAILED, e);
    let sink = destination.open().map_err(written)?;
    let input = PackInput {
        binary_list: &binary_list,
        cargo_metadata_json: &built.metadata_json,
        extra: &extra,
        zstd_level: args.zstd_level,
    };
    // Each libtest binary listed once here, rather than by every shard that runs the
    // archive; while the files are packed, as only the last entry holds the lists.
    let (packing, lists) = std::thread::scope(|scope| {
        let packing = scope.spawn(|| archive::pack(&input, &args.archive_file, sink));
        let lists = match &lister {
            Some(lister) => lister.list(|b| {
                lists::lists_libtest(&b.manifest_dir.join("Cargo.toml"), &b.kind, &b.target_name)
            }),
            None => Ok(Default::default()),
        };
        let packing = packing.join().expect("the packing thread does not panic");
        (packing, lists)
    });
    let (packed, sink) = packing?.finish(lists?)?;
    sink.finish().map_err(written)?;
    for warning in &packed.warnings {
        anstream::eprintln!("warning: {warning}");
    }
    anstream::eprintln!(
        "{:>12} {} binaries ({} files) into {} in {:.2}s",
        "Archived",
        binary_list.rust_binaries.len(),
        packed.files,
        args.archive_file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn utf8(path: &std::path::Path) -> Result<Utf8PathBuf, Failure> {
    Utf8PathBuf::from_path_buf(path.to_path_buf()).map_err(|p| {
        Failure::new(
            exit_code::USAGE,
            format!(
                "the target directory `{}` is not UTF-8, which archives cannot record",
                p.display()
            ),
        )
    })
}
