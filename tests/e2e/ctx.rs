//! How a scenario runs `cargo-isotest`: as the current user, or, when the suite runs as
//! root, also as an unprivileged user, because that is what most users are.

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use libtest_mimic::Failed;

/// The unprivileged account: `ISOTEST_TEST_USER` (which `.ci/run` creates), else `nobody`.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl User {
    /// A named user that does not exist is a broken setup, not a reason to skip. With
    /// `ISOTEST_TEST_USER_RANGES=required` (as `.ci/run` sets), so is one without
    /// subordinate ranges or without newuidmap to use them.
    pub fn unprivileged() -> User {
        let name = std::env::var("ISOTEST_TEST_USER").unwrap_or_else(|_| "nobody".into());
        let user = User::named(&name, "ISOTEST_TEST_USER");
        if std::env::var("ISOTEST_TEST_USER_RANGES").as_deref() == Ok("required") {
            assert!(
                IdMode::of(Some(&user)) == IdMode::Subordinate,
                "ISOTEST_TEST_USER={name} needs ranges in /etc/subuid and /etc/subgid and \
                 newuidmap/newgidmap installed (see .ci/run)"
            );
        }
        user
    }

    /// A second unprivileged account, which must have no subordinate ranges:
    /// `ISOTEST_TEST_USER_NO_RANGES`, else `nobody`.
    pub fn without_ranges() -> User {
        let name = std::env::var("ISOTEST_TEST_USER_NO_RANGES").unwrap_or_else(|_| "nobody".into());
        let user = User::named(&name, "ISOTEST_TEST_USER_NO_RANGES");
        assert!(
            host_ranges(&user).is_none(),
            "ISOTEST_TEST_USER_NO_RANGES={name} has subordinate ranges; pick a user without"
        );
        user
    }

    fn named(name: &str, variable: &str) -> User {
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{variable}={name} does not exist; create it (see .ci/run)"));
        User {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        }
    }
}

/// The id mapping a sandbox should get for a scenario's user, worked out from the host's
/// files here, independently of the runtime's own probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdMode {
    /// Root: every id to itself.
    Full,
    /// The user plus its /etc/subuid and /etc/subgid ranges.
    Subordinate,
    /// The user's own ids only.
    Single,
}

impl IdMode {
    pub fn of(user: Option<&User>) -> IdMode {
        match user {
            None if nix::unistd::geteuid().is_root() => IdMode::Full,
            None => IdMode::Single,
            Some(user) => {
                let tools = ["newuidmap", "newgidmap"].iter().all(|tool| {
                    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                        .iter()
                        .any(|dir| Path::new(dir).join(tool).exists())
                });
                if tools && host_ranges(user).is_some() {
                    IdMode::Subordinate
                } else {
                    IdMode::Single
                }
            }
        }
    }
}

/// The user's first uid range and first gid range, as `(start, count)`.
pub fn host_ranges(user: &User) -> Option<((u32, u32), (u32, u32))> {
    let find = |file: &str, id: u32| {
        std::fs::read_to_string(file)
            .ok()?
            .lines()
            .find_map(|line| {
                let mut parts = line.trim().split(':');
                let owner = parts.next()?;
                let start: u32 = parts.next()?.parse().ok()?;
                let count: u32 = parts.next()?.parse().ok()?;
                (count > 0 && (owner == user.name || owner == id.to_string()))
                    .then_some((start, count))
            })
    };
    Some((
        find("/etc/subuid", user.uid)?,
        find("/etc/subgid", user.gid)?,
    ))
}

/// Binaries reachable by whoever runs the scenario.
struct Binaries {
    isotest: PathBuf,
    probe: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// Copies of the binaries in a world-readable directory: the checkout may sit below a
/// directory the unprivileged user cannot enter (such as /root).
fn shared_binaries() -> &'static Binaries {
    static SHARED: OnceLock<Binaries> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("isotest-e2e-bin")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let copy = |from: &Path, name: &str| {
            let to = dir.path().join(name);
            std::fs::copy(from, &to).expect("copy binary");
            to
        };
        Binaries {
            isotest: copy(
                Path::new(env!("CARGO_BIN_EXE_cargo-isotest")),
                "cargo-isotest",
            ),
            probe: copy(&std::env::current_exe().expect("current_exe"), "probe"),
            _dir: Some(dir),
        }
    })
}

fn own_binaries() -> &'static Binaries {
    static OWN: OnceLock<Binaries> = OnceLock::new();
    OWN.get_or_init(|| Binaries {
        isotest: PathBuf::from(env!("CARGO_BIN_EXE_cargo-isotest")),
        probe: std::env::current_exe().expect("current_exe"),
        _dir: None,
    })
}

/// One scenario's view: who runs, which binaries, and a scratch directory they can use.
pub struct Ctx {
    pub user: Option<User>,
    bins: &'static Binaries,
    pub scratch: tempfile::TempDir,
}

impl Ctx {
    pub fn new(user: Option<User>) -> Ctx {
        let bins = if user.is_some() {
            shared_binaries()
        } else {
            own_binaries()
        };
        let scratch = tempfile::Builder::new()
            .prefix("isotest-e2e")
            .tempdir()
            .expect("tempdir");
        if let Some(user) = &user {
            nix::unistd::chown(
                scratch.path(),
                Some(nix::unistd::Uid::from_raw(user.uid)),
                Some(nix::unistd::Gid::from_raw(user.gid)),
            )
            .expect("chown scratch");
        }
        Ctx {
            user,
            bins,
            scratch,
        }
    }

    /// `cargo-isotest exec ARGS`, as this scenario's user, in the scratch directory.
    pub fn exec(&self, args: &[&str]) -> Command {
        let mut cmd = self.isotest(self.scratch.path());
        cmd.arg("exec").args(args);
        cmd
    }

    /// `cargo-isotest` as this scenario's user in `dir`, with a toolchain it can run.
    pub fn isotest(&self, dir: &Path) -> Command {
        self.command(&self.bins.isotest, dir)
    }

    /// The cargo-isotest binary this scenario's user can run.
    pub fn isotest_path(&self) -> &Path {
        &self.bins.isotest
    }

    /// `program` as this scenario's user in `dir`, with a toolchain it can run.
    pub fn command(&self, program: &Path, dir: &Path) -> Command {
        self.command_over_dev(program, dir, None)
    }

    /// As [`Ctx::isotest`], but when the suite runs as root, in a private mount namespace
    /// whose /dev is `dev` (a scratch copy): a case that would damage /dev damages only it.
    pub fn isotest_over_dev(&self, dir: &Path, dev: Option<&Path>) -> Command {
        self.command_over_dev(&self.bins.isotest, dir, dev)
    }

    fn command_over_dev(&self, program: &Path, dir: &Path, dev: Option<&Path>) -> Command {
        let dev = dev
            .filter(|_| nix::unistd::geteuid().is_root())
            .map(|d| CString::new(d.as_os_str().as_encoded_bytes()).expect("dev path"));
        let mut cmd = Command::new(program);
        cmd.current_dir(dir).stdin(Stdio::null());
        // The fixtures build into their own copies, never into this run's target dir.
        cmd.env_remove("CARGO_TARGET_DIR");
        if let Some(user) = &self.user {
            let toolchain = shared_toolchain();
            cmd.env("HOME", &user.home).env("USER", &user.name);
            cmd.env("CARGO", toolchain.visible.join("bin/cargo"));
            cmd.env("RUSTC", toolchain.visible.join("bin/rustc"));
            cmd.env("CARGO_HOME", user_cargo_home(user));
            cmd.env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/bin:/bin",
                    toolchain.visible.join("bin").display()
                ),
            );
            become_user(&mut cmd, user, toolchain, dev);
        } else if let Some(dev) = dev {
            // SAFETY: only async-signal-safe syscalls on a string prepared before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
                    make_mounts_private()?;
                    bind_over_dev(&dev)
                });
            }
        }
        cmd
    }

    /// `exec ARGS` as [`Ctx::exec`], over a scratch /dev (see [`Ctx::isotest_over_dev`]).
    pub fn exec_over_dev(&self, dev: &Path, args: &[&str]) -> Command {
        let mut cmd = self.isotest_over_dev(self.scratch.path(), Some(dev));
        cmd.arg("exec").args(args);
        cmd
    }

    /// `exec [options] --bind <probe dir> -- <probe> __probe NAME ARGS`.
    pub fn probe(&self, options: &[&str], probe: &[&str]) -> Command {
        let dir = self
            .bins
            .probe
            .parent()
            .expect("probe dir")
            .to_str()
            .expect("utf-8 path");
        let mut args: Vec<&str> = options.to_vec();
        args.extend(["--bind", dir, "--"]);
        args.push(self.bins.probe.to_str().expect("utf-8 path"));
        args.push(crate::probe::ARG);
        args.extend(probe);
        self.exec(&args)
    }

    /// A scratch path, as text for command lines.
    pub fn path(&self, name: &str) -> String {
        self.scratch
            .path()
            .join(name)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }
}

/// Runs and returns the output, failing with everything printed if it cannot start.
pub fn output(cmd: &mut Command) -> Result<Output, Failed> {
    cmd.output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()).into())
}

/// The probe's `key value` lines as a lookup.
pub fn probe_value(out: &Output, key: &str) -> Result<String, Failed> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
        .map(str::to_string)
        .ok_or_else(|| format!("probe printed no `{key}`; {}", describe(out)).into())
}

pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(message().into())
    }
}

pub fn ensure_eq<T: PartialEq + std::fmt::Debug>(
    actual: T,
    expected: T,
    what: &str,
) -> Result<(), Failed> {
    ensure(actual == expected, || {
        format!("{what}: expected {expected:?}, got {actual:?}")
    })
}

pub fn status_code(out: &Output) -> Option<i32> {
    out.status.code()
}

pub fn read_json(path: impl AsRef<OsStr>) -> Result<serde_json::Value, Failed> {
    let path = Path::new(path.as_ref());
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()).into())
}

/// The toolchain this suite was built with, made visible to the unprivileged user.
///
/// rustup keeps it under root's home, which others cannot enter. Rather than change the
/// host's permissions, each unprivileged command gets a private mount namespace in which
/// the toolchain is bound at a path anyone can reach; rustc finds its sysroot from there.
pub struct SharedToolchain {
    /// The toolchain's root (its sysroot) on the host.
    host: CString,
    /// Where the user sees it.
    pub visible: PathBuf,
}

fn shared_toolchain() -> &'static SharedToolchain {
    static TOOLCHAIN: OnceLock<SharedToolchain> = OnceLock::new();
    TOOLCHAIN.get_or_init(|| {
        let sysroot = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .args(["--print", "sysroot"])
            .output()
            .expect("rustc --print sysroot");
        let host = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
        let visible = shared_binaries().isotest.with_file_name("toolchain");
        std::fs::create_dir_all(&visible).expect("toolchain mountpoint");
        SharedToolchain {
            host: CString::new(host).expect("sysroot path"),
            visible,
        }
    })
}

/// In the child, as root still: a private mount namespace with the toolchain bound where
/// the user can reach it, then the user's identity.
fn become_user(
    cmd: &mut Command,
    user: &User,
    toolchain: &'static SharedToolchain,
    dev: Option<CString>,
) {
    let visible =
        CString::new(toolchain.visible.as_os_str().as_encoded_bytes()).expect("mountpoint path");
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(user.uid),
        nix::unistd::Gid::from_raw(user.gid),
    );
    // SAFETY: only async-signal-safe syscalls on strings prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            use nix::mount::{MsFlags, mount};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            make_mounts_private()?;
            mount(
                Some(toolchain.host.as_c_str()),
                visible.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&CStr>,
            )?;
            if let Some(dev) = &dev {
                bind_over_dev(dev)?;
            }
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
}

/// In a fresh mount namespace: nothing done in it propagates back to the host's.
fn make_mounts_private() -> std::io::Result<()> {
    nix::mount::mount(
        None::<&CStr>,
        c"/",
        None::<&CStr>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&CStr>,
    )?;
    Ok(())
}

/// `dev` in place of the host's /dev, in a private mount namespace.
fn bind_over_dev(dev: &CStr) -> std::io::Result<()> {
    use nix::mount::{MsFlags, mount};
    mount(
        Some(dev),
        c"/dev",
        None::<&CStr>,
        MsFlags::MS_BIND,
        None::<&CStr>,
    )?;
    Ok(())
}

/// A CARGO_HOME of the user's own: cargo takes locks and caches crates there.
fn user_cargo_home(user: &User) -> PathBuf {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = HOME.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("isotest-e2e-cargo-home")
            .tempdir()
            .expect("tempdir");
        chown_tree(dir.path(), user);
        dir
    });
    dir.path().to_path_buf()
}

pub fn chown_tree(path: &Path, user: &User) {
    let uid = Some(nix::unistd::Uid::from_raw(user.uid));
    let gid = Some(nix::unistd::Gid::from_raw(user.gid));
    nix::unistd::chown(path, uid, gid).expect("chown");
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).expect("read_dir").flatten() {
            chown_tree(&entry.path(), user);
        }
    }
}

/// A fixture copied (without its target dir) to a directory the user owns, once per user
/// for the whole run, so that scenarios share its build.
pub fn fixture(name: &str, user: Option<&User>) -> PathBuf {
    type Copies = std::sync::Mutex<std::collections::BTreeMap<(String, bool), tempfile::TempDir>>;
    static COPIES: OnceLock<Copies> = OnceLock::new();
    let mut copies = COPIES
        .get_or_init(Default::default)
        .lock()
        .expect("fixture lock");
    let dir = copies
        .entry((name.to_string(), user.is_some()))
        .or_insert_with(|| {
            let dir = tempfile::Builder::new()
                .prefix(&format!("isotest-fixture-{name}"))
                .tempdir()
                .expect("tempdir");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            let source = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures")
                .join(name);
            copy_tree(&source, &dir.path().join(name));
            if let Some(user) = user {
                chown_tree(dir.path(), user);
            }
            dir
        });
    dir.path().join(name)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&path, &target);
            }
        } else {
            std::fs::copy(&path, &target).expect("copy fixture file");
        }
    }
}
