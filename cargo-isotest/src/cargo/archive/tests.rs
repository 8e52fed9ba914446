//! Archives of the fixtures' real builds, packed and unpacked by us and by the installed
//! cargo-nextest, each reading the other's.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cargo_metadata::camino::Utf8Path;
use nextest_metadata::BinaryListSummary;

use super::*;
use crate::nextest_fixture::{self, Built};

fn our_list(built: &Built) -> BinaryListSummary {
    binary_list(
        &built.metadata,
        Dirs {
            target_dir: &built.target_dir,
            build_dir: &built.target_dir,
        },
        &built.artifacts,
        &built.scripts,
        platforms(&nextest_fixture::host_platform(), None),
    )
}

/// Packs in memory and writes the archive only when packing succeeded, as the command's
/// destination puts it in place only at the end.
fn pack_file(input: &PackInput<'_>, output: &Path) -> Result<Packed, ArchiveError> {
    let (packed, bytes) = pack(input, output, Vec::new())?.finish(BTreeMap::new())?;
    std::fs::write(output, bytes).expect("write the archive");
    Ok(packed)
}

/// As `cargo isotest archive` packs a build, with a test list recorded for every binary
/// (what they hold is no matter to nextest, which must only unpack the file).
fn pack_ours(built: &Built, output: &Path) -> Packed {
    let binary_list = our_list(built);
    let input = PackInput {
        binary_list: &binary_list,
        cargo_metadata_json: &built.metadata_json,
        extra: &[],
        zstd_level: 0,
    };
    let lists = binary_list
        .rust_binaries
        .keys()
        .map(|id| (id.to_string(), lists::TestList::default()))
        .collect();
    let (packed, bytes) = pack(&input, output, Vec::new())
        .and_then(|packing| packing.finish(lists))
        .expect("pack");
    std::fs::write(output, bytes).expect("write the archive");
    packed
}

/// One file of an archive, read without unpacking it.
fn entry(archive: &Path, name: &str) -> Option<Vec<u8>> {
    let decoder = zstd::Decoder::new(std::fs::File::open(archive).unwrap()).unwrap();
    let mut tar = tar::Archive::new(decoder);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path_bytes().as_ref() == name.as_bytes() {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).unwrap();
            return Some(contents);
        }
    }
    None
}

fn entry_names(archive: &Path) -> Vec<String> {
    let decoder = zstd::Decoder::new(std::fs::File::open(archive).unwrap()).unwrap();
    let mut names: Vec<String> = tar::Archive::new(decoder)
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect();
    names.sort();
    names
}

fn nextest_archive(fixture: &str, output: &Path) -> Option<()> {
    let target_dir = nextest_fixture::target_dir(fixture);
    nextest_fixture::output(
        nextest_fixture::nextest(fixture)?
            .arg("archive")
            .arg("--target-dir")
            .arg(&target_dir)
            .arg("--archive-file")
            .arg(output),
    );
    Some(())
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                stack.push(entry.path());
            }
            files.insert(
                entry.path().display().to_string(),
                (metadata.len(), metadata.modified().unwrap()),
            );
        }
    }
    files
}

/// The fixture's build archived by nextest and by us, in a scratch directory.
struct BothArchives {
    scratch: tempfile::TempDir,
    theirs: std::path::PathBuf,
    ours: std::path::PathBuf,
}

fn both_archives(fixture: &str) -> Option<BothArchives> {
    let built = nextest_fixture::build(fixture);
    let scratch = tempfile::tempdir().unwrap();
    let theirs = scratch.path().join("theirs.tar.zst");
    nextest_archive(fixture, &theirs)?;
    let ours = scratch.path().join("ours.tar.zst");
    pack_ours(&built, &ours);
    Some(BothArchives {
        scratch,
        theirs,
        ours,
    })
}

#[test]
fn our_binary_list_is_the_one_nextest_archives() {
    for fixture in ["harness", "dylib"] {
        // The scratch directory must outlive the reads.
        let Some(BothArchives {
            scratch: _scratch,
            theirs,
            ours,
        }) = both_archives(fixture)
        else {
            return;
        };
        let theirs: BinaryListSummary =
            serde_json::from_slice(&entry(&theirs, BINARIES_METADATA).unwrap()).unwrap();
        let ours: BinaryListSummary =
            serde_json::from_slice(&entry(&ours, BINARIES_METADATA).unwrap()).unwrap();
        assert_eq!(ours, theirs, "{fixture}");
    }
}

#[test]
fn a_real_build_round_trips_to_a_checkout_at_another_path() {
    let built = nextest_fixture::build("harness");
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("tests.tar.zst");
    let packed = pack_ours(&built, &archive);
    assert!(packed.warnings.is_empty(), "{:?}", packed.warnings);
    let names = entry_names(&archive);
    assert!(names.iter().all(|n| n.starts_with("target/")), "{names:?}");
    assert!(
        names.contains(&"target/debug/greeter".to_string()),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("target/nextest/libdirs/host/libstd-"))
    );
    let checkout = scratch.path().join("elsewhere/harness");
    std::fs::create_dir_all(checkout.parent().unwrap()).unwrap();
    nextest_fixture::copy_checkout("harness", &checkout);
    let before = snapshot(&checkout);

    let unpacked = unpack(&archive, &scratch.path().join("unpacked"), Some(&checkout)).unwrap();
    assert_eq!(
        snapshot(&checkout),
        before,
        "unpack wrote into the checkout"
    );
    assert_eq!(packed.files, unpacked.files);
    let checkout = Utf8Path::from_path(&checkout)
        .unwrap()
        .canonicalize_utf8()
        .unwrap();
    assert_eq!(unpacked.workspace_root, checkout);
    assert_eq!(
        unpacked.original_workspace_root,
        built.metadata.workspace_root
    );
    assert_eq!(unpacked.original_target_dir, built.target_dir);
    assert_eq!(unpacked.target_dir, unpacked.dir.join("target"));

    // Every binary is where the list says, byte for byte the one built, and runs.
    let ours = our_list(&built);
    assert_eq!(
        unpacked
            .binary_list
            .rust_binaries
            .keys()
            .collect::<Vec<_>>(),
        ours.rust_binaries.keys().collect::<Vec<_>>()
    );
    for (id, binary) in &unpacked.binary_list.rust_binaries {
        assert!(binary.binary_path.starts_with(&unpacked.target_dir), "{id}");
        let original = &ours.rust_binaries[id].binary_path;
        assert_eq!(
            std::fs::read(&binary.binary_path).unwrap(),
            std::fs::read(original).unwrap(),
            "{id}"
        );
        let mode = std::fs::metadata(&binary.binary_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{id} is executable");
    }
    let mimic =
        &unpacked.binary_list.rust_binaries[&nextest_metadata::RustBinaryId::new("harness::mimic")];
    let listing = nextest_fixture::output(Command::new(&mimic.binary_path).arg("--list"));
    assert!(listing.contains("mimic_passes: test"), "{listing}");

    // The build script's output and the binary the tests run came along.
    let meta = &unpacked.binary_list.rust_build_meta;
    let out_dir = meta
        .build_script_out_dirs
        .values()
        .next()
        .expect("an OUT_DIR");
    let generated = unpacked.target_dir.join(out_dir).join("generated.txt");
    assert_eq!(
        std::fs::read(&generated).unwrap(),
        std::fs::read(built.target_dir.join(out_dir).join("generated.txt")).unwrap()
    );
    let greeter = meta
        .non_test_binaries
        .values()
        .flatten()
        .next()
        .expect("greeter");
    let greeting =
        nextest_fixture::output(&mut Command::new(unpacked.target_dir.join(&greeter.path)));
    assert!(greeting.contains("hello from greeter"), "{greeting}");

    // The metadata points at the checkout and the unpacked target directory.
    let metadata = &unpacked.cargo_metadata;
    assert_eq!(metadata.workspace_root, checkout);
    assert_eq!(metadata.target_directory, unpacked.target_dir);
    let package = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "harness")
        .unwrap();
    assert_eq!(package.manifest_path, checkout.join("Cargo.toml"));
    assert!(
        package
            .targets
            .iter()
            .all(|t| t.src_path.starts_with(&checkout))
    );
    let libdir = unpacked.host_libdir.as_ref().expect("libstd unpacked");
    assert!(std::fs::read_dir(libdir).unwrap().next().is_some());
}

#[test]
fn dylibs_and_libstd_come_along_for_prefer_dynamic() {
    let built = nextest_fixture::build("dylib");
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("tests.tar.zst");
    pack_ours(&built, &archive);
    let unpacked = unpack(&archive, &scratch.path().join("unpacked"), None).unwrap();
    let libdir = unpacked.host_libdir.as_ref().expect("libstd unpacked");
    let user =
        &unpacked.binary_list.rust_binaries[&nextest_metadata::RustBinaryId::new("dylib-user")];
    // As nextest runs it: the unpacked libstd and the target dir's base output dirs.
    let base = unpacked
        .binary_list
        .rust_build_meta
        .base_output_directories
        .iter()
        .map(|b| {
            format!(
                "{}:{}",
                unpacked.target_dir.join(b),
                unpacked.target_dir.join(b).join("deps")
            )
        })
        .collect::<Vec<_>>()
        .join(":");
    let out = nextest_fixture::output(
        Command::new(&user.binary_path).env("LD_LIBRARY_PATH", format!("{libdir}:{base}")),
    );
    assert!(out.contains("test result: ok. 1 passed"), "{out}");
    // Without them it cannot start: the test above proves the archive's copies.
    let bare = Command::new(&user.binary_path)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(!bare.status.success());
}

#[test]
fn we_unpack_nextests_archive() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("theirs.tar.zst");
    if nextest_archive("harness", &archive).is_none() {
        return;
    }
    let checkout = scratch.path().join("harness");
    nextest_fixture::copy_checkout("harness", &checkout);
    let unpacked = unpack(&archive, &scratch.path().join("unpacked"), Some(&checkout)).unwrap();
    let ids: Vec<&str> = unpacked
        .binary_list
        .rust_binaries
        .keys()
        .map(|id| id.as_str())
        .collect();
    // nextest's order: by the id's components, `bin/greeter` after the integration tests.
    assert_eq!(
        ids,
        [
            "harness",
            "harness::bin_exe",
            "harness::mimic",
            "harness::bin/greeter"
        ]
    );
    for binary in unpacked.binary_list.rust_binaries.values() {
        assert!(binary.binary_path.is_file(), "{}", binary.binary_path);
    }
    let out_dir = unpacked
        .binary_list
        .rust_build_meta
        .build_script_out_dirs
        .values()
        .next()
        .unwrap();
    assert!(
        unpacked
            .target_dir
            .join(out_dir)
            .join("generated.txt")
            .is_file()
    );
    assert!(unpacked.host_libdir.is_some());
    assert_eq!(
        unpacked.cargo_metadata.workspace_root,
        checkout.canonicalize().unwrap()
    );
}

/// nextest's per-test outcomes, from its human output: `PASS [...] (1/7) binary test`.
fn nextest_outcomes(stderr: &str) -> BTreeMap<String, String> {
    stderr
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let status = *words.first()?;
            let known = ["PASS", "FAIL", "SIGSEGV", "SIGABRT", "TIMEOUT", "ABORT"];
            if !known.contains(&status) || words.len() < 3 {
                return None;
            }
            let test = words[words.len() - 2..].join(" ");
            Some((test, status.to_string()))
        })
        .collect()
}

fn nextest_run(fixture: &str, archive: &Path, checkout: &Path) -> Option<(bool, String)> {
    let mut nextest = nextest_fixture::nextest(fixture)?;
    nextest
        .current_dir(checkout)
        .args([
            "run",
            "--no-fail-fast",
            "--status-level",
            "pass",
            "--archive-file",
        ])
        .arg(archive)
        .arg("--workspace-remap")
        .arg(checkout)
        .env("NO_COLOR", "1");
    if fixture == "harness" {
        // nextest cannot list libtest-mimic's `bench` kind (`mimic_bench: bench`).
        nextest.args(["-E", "not binary(=mimic)"]);
    }
    let output = nextest.output().unwrap();
    Some((
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[test]
fn nextest_runs_our_archive_as_it_runs_its_own() {
    for fixture in ["harness", "dylib"] {
        let Some(BothArchives {
            scratch,
            theirs,
            ours,
        }) = both_archives(fixture)
        else {
            return;
        };
        let checkout = scratch.path().join("moved").join(fixture);
        std::fs::create_dir_all(checkout.parent().unwrap()).unwrap();
        nextest_fixture::copy_checkout(fixture, &checkout);

        let (their_success, their_log) = nextest_run(fixture, &theirs, &checkout).unwrap();
        let (our_success, our_log) = nextest_run(fixture, &ours, &checkout).unwrap();
        let their_outcomes = nextest_outcomes(&their_log);
        let our_outcomes = nextest_outcomes(&our_log);
        assert!(
            !their_outcomes.is_empty(),
            "{fixture}: nextest ran nothing:\n{their_log}"
        );
        assert_eq!(
            our_outcomes, their_outcomes,
            "{fixture}:\n{our_log}\n---\n{their_log}"
        );
        assert_eq!(our_success, their_success, "{fixture}");
        // The tests really ran: the ones that do not compare build-time paths pass.
        let passed = |test: &str| our_outcomes.get(test).map(String::as_str) == Some("PASS");
        match fixture {
            "harness" => {
                for test in ["harness::bin_exe runs_own_binary", "harness config_env"] {
                    assert!(passed(test), "{test}: {our_log}");
                }
            }
            _ => assert!(
                our_success && our_outcomes.values().all(|s| s == "PASS"),
                "{our_log}"
            ),
        }
    }
}

/// A binary list with no binaries, over a target directory of our own.
fn empty_list(target_dir: &Utf8Path) -> BinaryListSummary {
    BinaryListSummary {
        rust_build_meta: nextest_metadata::RustBuildMetaSummary {
            target_directory: target_dir.to_path_buf(),
            ..Default::default()
        },
        rust_binaries: BTreeMap::new(),
    }
}

fn minimal_metadata(workspace_root: &Utf8Path) -> String {
    serde_json::json!({
        "packages": [],
        "workspace_members": [],
        "resolve": { "nodes": [], "root": null },
        "workspace_root": workspace_root,
        "target_directory": workspace_root.join("target"),
        "version": 1,
        "metadata": null,
    })
    .to_string()
}

/// A scratch directory and its canonical UTF-8 path.
fn scratch_root() -> (tempfile::TempDir, cargo_metadata::camino::Utf8PathBuf) {
    let scratch = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(scratch.path())
        .unwrap()
        .canonicalize_utf8()
        .unwrap();
    (scratch, root)
}

#[test]
fn extra_paths_follow_their_depth_and_on_missing() {
    let (_scratch, root) = scratch_root();
    let target = root.join("target");
    let extra = target.join("extra");
    std::fs::create_dir_all(extra.join("sub/deeper")).unwrap();
    std::fs::write(extra.join("a.txt"), "a").unwrap();
    std::fs::write(extra.join("sub/b.txt"), "b").unwrap();
    std::fs::write(extra.join("sub/deeper/c.txt"), "c").unwrap();
    std::os::unix::fs::symlink(extra.join("a.txt"), extra.join("to-a")).unwrap();
    std::os::unix::fs::symlink(extra.join("sub"), extra.join("to-sub")).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere"), extra.join("dangling")).unwrap();
    let extra_path = |path: &str, depth, on_missing| ExtraPath {
        path: path.into(),
        depth,
        on_missing,
    };
    let extras = [
        extra_path("extra", Depth::Finite(2), OnMissing::Error),
        extra_path("missing", Depth::Infinite, OnMissing::Warn),
        extra_path("ignored", Depth::Infinite, OnMissing::Ignore),
    ];
    let list = empty_list(&target);
    let metadata = minimal_metadata(&root);
    let archive = root.join("x.tar.zst");
    let input = PackInput {
        binary_list: &list,
        cargo_metadata_json: &metadata,
        extra: &extras,
        zstd_level: 0,
    };
    let packed = pack_file(&input, archive.as_std_path()).unwrap();
    assert_eq!(
        entry_names(archive.as_std_path()),
        [
            "target/extra/a.txt",
            "target/extra/sub/b.txt",
            "target/extra/to-a",
            BINARIES_METADATA,
            CARGO_METADATA,
        ]
    );
    let mut warnings: Vec<String> = packed.warnings.iter().map(ToString::to_string).collect();
    warnings.sort();
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert!(warnings[0].contains("extra/dangling") && warnings[0].contains("not a regular file"));
    assert!(warnings[1].contains("extra/sub/deeper") && warnings[1].contains("beyond the depth"));
    assert!(warnings[2].contains("extra/to-sub") && warnings[2].contains("a link to a directory"));
    assert!(warnings[3].contains("target/missing") && warnings[3].contains("does not exist"));
    assert!(packed.warnings.contains(&PackWarning::ExtraMissing(
        target.join("missing").into_std_path_buf()
    )));
    // The same build packs to the same bytes.
    let again = root.join("y.tar.zst");
    pack_file(&input, again.as_std_path()).unwrap();
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(&again).unwrap()
    );

    let strict = [extra_path("missing", Depth::Infinite, OnMissing::Error)];
    let error = pack_file(
        &PackInput {
            extra: &strict,
            ..input
        },
        root.join("z.tar.zst").as_std_path(),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("target/missing` does not exist"),
        "{error}"
    );
    assert!(!root.join("z.tar.zst").exists());

    let unpacked: Unpacked = unpack(
        archive.as_std_path(),
        &root.join("out").into_std_path_buf(),
        None,
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(unpacked.target_dir.join("extra/to-a")).unwrap(),
        "a"
    );
    assert_eq!(unpacked.workspace_root, root);
    // No platforms in the list, so no standard library to unpack.
    assert_eq!((unpacked.host_libdir, unpacked.target_libdir), (None, None));
}

/// Test binaries share most of their bytes (std, the dependencies, their debug info), megabytes
/// apart: the archive stores a repeat once, however far back it is.
#[test]
fn a_file_repeated_megabytes_later_is_stored_once() {
    let scratch = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(scratch.path()).unwrap();
    let target = root.join("target");
    std::fs::create_dir_all(target.join("bins")).unwrap();
    // Incompressible on its own, and longer than level 3's 2 MiB window.
    let mut rng = fastrand::Rng::with_seed(7);
    let bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
        .take(6 << 20)
        .collect();
    for name in ["a", "b"] {
        std::fs::write(target.join("bins").join(name), &bytes).unwrap();
    }
    let extras = [ExtraPath {
        path: "bins".into(),
        depth: Depth::Infinite,
        on_missing: OnMissing::Error,
    }];
    let archive = root.join("x.tar.zst");
    pack_file(
        &PackInput {
            binary_list: &empty_list(&target),
            cargo_metadata_json: &minimal_metadata(root),
            extra: &extras,
            zstd_level: 0,
        },
        archive.as_std_path(),
    )
    .unwrap();
    let size = std::fs::metadata(&archive).unwrap().len();
    assert!(size < (7 << 20), "two copies of 6 MiB took {size} bytes");
    // A decoder with zstd's default window limit, as nextest's is, reads it back.
    let unpacked = unpack(
        archive.as_std_path(),
        &root.join("out").into_std_path_buf(),
        None,
    )
    .unwrap();
    assert_eq!(
        std::fs::read(unpacked.target_dir.join("bins/b")).unwrap(),
        bytes
    );

    // Cut in the middle of a file: the decoding thread's error ends the unpacking.
    let whole = std::fs::read(&archive).unwrap();
    let cut = root.join("cut.tar.zst");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let error = unpack(
        cut.as_std_path(),
        &root.join("cut").into_std_path_buf(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("is not a zstd-compressed tar"), "{error}");
}

#[test]
fn metadata_without_the_dependency_graph_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(scratch.path()).unwrap();
    let mut metadata: serde_json::Value = serde_json::from_str(&minimal_metadata(root)).unwrap();
    metadata["resolve"] = serde_json::Value::Null;
    let error = pack_file(
        &PackInput {
            binary_list: &empty_list(&root.join("target")),
            cargo_metadata_json: &metadata.to_string(),
            extra: &[],
            zstd_level: 0,
        },
        &root.join("x.tar.zst").into_std_path_buf(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("--no-deps"), "{error}");
}

/// An archive with entries written as given, bypassing tar-rs's own path checks.
/// An entry's raw name, its type and its link target (empty for none).
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a str);

fn raw_archive(path: &Path, entries: &[RawEntry<'_>]) {
    let encoder = zstd::Encoder::new(std::fs::File::create(path).unwrap(), 0).unwrap();
    let mut builder = tar::Builder::new(encoder);
    for &(name, kind, link) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(kind);
        header.set_mode(0o644);
        if !link.is_empty() {
            header.set_link_name(link).unwrap();
        }
        let data: &[u8] = if kind == tar::EntryType::Regular {
            b"data"
        } else {
            b""
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn unsafe_archives_are_refused_before_anything_is_written_outside() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let binaries = BINARIES_METADATA.as_bytes();
    let cases: &[(&[RawEntry], &str)] = &[
        (
            &[(b"../evil", Regular, "")],
            "entry `../evil` has the path component `..`",
        ),
        (&[(b"/tmp/evil", Regular, "")], "has an absolute path"),
        (
            &[(b"target/../../evil", Regular, "")],
            "has the path component `..`",
        ),
        (&[(b"src/lib.rs", Regular, "")], "is not under `target/`"),
        (&[(b"target/link", Symlink, "/")], "is a symbolic link"),
        (
            &[
                (b"target/dir", Directory, ""),
                (b"target/dir/x", Link, "/etc/passwd"),
            ],
            "is a hard link",
        ),
        (
            &[(b"target/a", Regular, ""), (b"target/a", Regular, "")],
            "`target/a` appears twice",
        ),
        (
            &[(binaries, Regular, "")],
            "has no `target/nextest/cargo-metadata.json`",
        ),
    ];
    for (entries, needle) in cases {
        let scratch = tempfile::tempdir().unwrap();
        let archive = scratch.path().join("bad.tar.zst");
        raw_archive(&archive, entries);
        let dest = scratch.path().join("deep/dest");
        let error = unpack(&archive, &dest, None).unwrap_err().to_string();
        assert!(error.contains(needle), "{needle}: {error}");
        assert!(!scratch.path().join("deep/evil").exists());
        assert!(!scratch.path().join("evil").exists());
        assert!(!dest.join("target/link").exists());
    }
    let scratch = tempfile::tempdir().unwrap();
    let not_zstd = scratch.path().join("plain.tar.zst");
    std::fs::write(&not_zstd, b"not an archive").unwrap();
    let error = unpack(&not_zstd, &scratch.path().join("d"), None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("is not a zstd-compressed tar"), "{error}");
}

#[test]
fn the_remap_and_destination_are_checked() {
    let (_scratch, root) = scratch_root();
    let archive = root.join("x.tar.zst");
    pack_file(
        &PackInput {
            binary_list: &empty_list(&root.join("target")),
            cargo_metadata_json: &minimal_metadata(&root.join("gone")),
            extra: &[],
            zstd_level: 0,
        },
        archive.as_std_path(),
    )
    .unwrap();
    let archive = archive.as_std_path();
    let error = |dest: &str, remap: Option<&Utf8Path>| {
        unpack(
            archive,
            root.join(dest).as_std_path(),
            remap.map(Utf8Path::as_std_path),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(error("a", None).contains("give the checkout's path with --workspace-remap"));
    let checkout = root.join("checkout");
    std::fs::create_dir(&checkout).unwrap();
    assert!(error("b", Some(&checkout)).contains("it has no Cargo.toml"));
    assert!(error("c", Some(&root.join("nope"))).contains("--workspace-remap"));
    std::fs::write(checkout.join("Cargo.toml"), "").unwrap();
    assert!(error("checkout/dest", Some(&checkout)).contains("inside the checkout"));
    std::fs::create_dir_all(root.join("used/target")).unwrap();
    assert!(error("used", Some(&checkout)).contains("already has a `target` directory"));
    let unpacked = unpack(
        archive,
        root.join("ok").as_std_path(),
        Some(checkout.as_std_path()),
    )
    .unwrap();
    assert_eq!(unpacked.workspace_root, checkout);
    assert_eq!(unpacked.original_workspace_root, root.join("gone"));
}

/// `archive` (the bytes of one) with the entry `name` holding `contents` instead, as a
/// tool that packs an unpacked archive again after changing a file would leave it.
fn repacked(archive: &Path, name: &str, contents: &[u8]) -> Vec<u8> {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(zstd::Decoder::new(file).unwrap());
    let mut builder = tar::Builder::new(zstd::Encoder::new(Vec::new(), 0).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if path == name {
            data = contents.to_vec();
        }
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append_data(&mut header, &path, &data[..]).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn recorded_lists_serve_only_the_binaries_unpacked_as_they_were_listed() {
    use lists::{ListedTest, TestKind, TestList};
    let (_scratch, root) = scratch_root();
    let deps = root.join("target/debug/deps");
    std::fs::create_dir_all(&deps).unwrap();
    let mut list = empty_list(&root.join("target"));
    for (name, contents) in [("kept", "one"), ("changed", "two")] {
        std::fs::write(deps.join(name), contents).unwrap();
        let id = nextest_metadata::RustBinaryId::new(&format!("pkg::{name}"));
        list.rust_binaries.insert(
            id.clone(),
            nextest_metadata::RustTestBinarySummary {
                binary_id: id,
                binary_name: name.into(),
                package_id: "pkg".into(),
                kind: nextest_metadata::RustTestBinaryKind::TEST,
                binary_path: deps.join(name),
                build_platform: nextest_metadata::BuildPlatform::Target,
            },
        );
    }
    let listed = |name: &str| TestList {
        tests: vec![ListedTest {
            name: format!("{name}::works"),
            kind: TestKind::Test,
        }],
        ignored: Default::default(),
    };
    let lists = BTreeMap::from([
        ("pkg::kept".to_string(), listed("kept")),
        ("pkg::changed".to_string(), listed("changed")),
        ("pkg::not-in-the-archive".to_string(), listed("gone")),
    ]);
    let archive = root.join("a.tar.zst");
    let metadata = minimal_metadata(&root);
    let input = PackInput {
        binary_list: &list,
        cargo_metadata_json: &metadata,
        extra: &[],
        zstd_level: 0,
    };
    let (_, bytes) = pack(&input, archive.as_std_path(), Vec::new())
        .unwrap()
        .finish(lists)
        .unwrap();
    std::fs::write(&archive, bytes).unwrap();
    let decoder = zstd::Decoder::new(std::fs::File::open(&archive).unwrap()).unwrap();
    let last = tar::Archive::new(decoder)
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .last();
    assert_eq!(
        last.as_deref(),
        Some(TEST_LISTS),
        "only isotest reads it: last"
    );
    let recorded = entry(archive.as_std_path(), TEST_LISTS).unwrap();
    let recorded = lists::parse(std::str::from_utf8(&recorded).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        recorded.binaries.keys().collect::<Vec<_>>(),
        ["pkg::changed", "pkg::kept"],
        "only the archive's binaries are recorded"
    );

    let unpacked = unpack(archive.as_std_path(), root.join("x").as_std_path(), None).unwrap();
    assert_eq!(
        unpacked.recorded,
        BTreeMap::from([
            ("pkg::changed".to_string(), listed("changed")),
            ("pkg::kept".to_string(), listed("kept")),
        ])
    );
    // Same size, other bytes: the list is not the changed binary's.
    let changed = repacked(archive.as_std_path(), "target/debug/deps/changed", b"2wo");
    std::fs::write(&archive, changed).unwrap();
    let unpacked = unpack(archive.as_std_path(), root.join("y").as_std_path(), None).unwrap();
    assert_eq!(
        unpacked.recorded,
        BTreeMap::from([("pkg::kept".to_string(), listed("kept"))])
    );
    let unpacked_binary = unpacked.target_dir.join("debug/deps/kept");
    assert_eq!(std::fs::read(&unpacked_binary).unwrap(), b"one");
}
