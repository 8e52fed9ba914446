//! In the parent, before clone: turn a [`Spec`] into exactly what the child will need,
//! so that after clone the child only makes syscalls on data that is ready.
//!
//! Everything that can fail on bad input fails here, on the host, before any namespace
//! exists: the spec is validated, and paths, names, argv and the environment become the
//! C strings and map lines the kernel takes.

use std::ffi::{CString, OsStr};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sched::CloneFlags;

use crate::chaos::Chaos;
use rustix::termios::Winsize;

use crate::error::Error;
use crate::hostview::{self, CgroupMounts};
use crate::idmap::{Extent, IdMapping, Kind, inside_id};
use crate::spec::{Mount, Net, Pid, Spec, SpecError, Sys};

/// A spec turned into exactly what the child needs, prepared before clone.
pub(crate) struct Plan {
    pub clone_flags: CloneFlags,
    pub ids: IdMapping,
    pub uid_map: Vec<Extent>,
    pub gid_map: Vec<Extent>,
    /// The program keeps the capabilities that switch ids and own files, for when it runs
    /// as uid 0 among other mapped ids; otherwise it keeps none.
    pub keep_id_capabilities: bool,
    /// The program gets a pty of the sandbox's own instead of pipes.
    pub tty: bool,
    /// The caller's terminal size, given to the sandbox's own pty with `tty`.
    pub tty_size: Option<Winsize>,
    pub mounts: Vec<PlannedMount>,
    /// tmpfs options of /dev/shm, capped like the spec's /tmp.
    pub shm_options: String,
    pub hostname: String,
    pub loopback_up: bool,
    /// Addresses to listen on inside; setup hands each listener to the supervisor.
    pub forwards: Vec<SocketAddr>,
    pub program: Program,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub chaos: Chaos,
    /// Namespaces of each kind the program may create; user namespaces may have a limit
    /// of their own (`Limits::max_user_namespaces`).
    pub namespace_limit: u64,
    pub max_user_namespaces: u64,
    /// What /sys is; `None` for none at all.
    pub sys: Option<SysPlan>,
    /// Names below /dev of the block devices behind the binds, for empty placeholders.
    pub block_devices: Vec<PathBuf>,
    /// The host's /proc and pid namespace instead of our own.
    pub host_pid: bool,
    /// Where this process's argv lies, which pid 1 blanks.
    pub argument_area: Option<(usize, usize)>,
}

pub(crate) struct SysPlan {
    /// A fresh sysfs of our network namespace, rather than the host's bound.
    pub fresh: bool,
    pub cgroups: &'static CgroupMounts,
}

pub(crate) enum PlannedMount {
    Bind {
        src: PathBuf,
        dst: PathBuf,
        writable: bool,
    },
    Tmpfs {
        dst: PathBuf,
        options: String,
    },
    /// `src` read-only beneath, a private tmpfs with these options above.
    Overlay {
        src: PathBuf,
        dst: PathBuf,
        upper_options: String,
        upper_root: UpperRoot,
    },
    /// A socket bound read-only, `src` opened without following a symlink.
    Socket {
        src: PathBuf,
        dst: PathBuf,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
}

/// The owner (as ids inside, where mapped) and mode that an overlay's upper directory
/// takes from its host directory: the merged directory shows the upper one's, and made
/// by pid 1 it would be pid 1's (root's under the full map) with mode 0755. Worked out on
/// the host, where an id the namespace does not map is still told from the overflow id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UpperRoot {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: u32,
}

impl UpperRoot {
    fn of(src: &Path, uid_map: &[Extent], gid_map: &[Extent]) -> Result<UpperRoot, SpecError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(src).map_err(|source| SpecError::BindSource {
            path: src.to_path_buf(),
            source,
        })?;
        Ok(UpperRoot {
            uid: inside_id(uid_map, meta.uid()),
            gid: inside_id(gid_map, meta.gid()),
            mode: meta.mode() & 0o7777,
        })
    }
}

/// The program as execve will see it.
pub(crate) struct Program {
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Candidate paths for argv[0], in `PATH` order when it has no slash.
    pub candidates: Vec<CString>,
    pub cwd: CString,
    /// It keeps CAP_NET_ADMIN (over the sandbox's own network namespace).
    pub net_admin: bool,
}

impl Plan {
    pub fn new(spec: &Spec) -> Result<Plan, Error> {
        spec.validate()?;
        let mut clone_flags = CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWCGROUP;
        if spec.net != Net::Host {
            clone_flags |= CloneFlags::CLONE_NEWNET;
        }
        if spec.pid == Pid::Sandbox {
            clone_flags |= CloneFlags::CLONE_NEWPID;
        }
        // Only the owner of a network namespace may mount a sysfs for it.
        let sys = (spec.sys != Sys::None).then(|| SysPlan {
            fresh: spec.sys == Sys::Sandbox && spec.net != Net::Host,
            cgroups: hostview::host_cgroups(),
        });
        let bind_sources: Vec<PathBuf> = spec
            .mounts
            .iter()
            .filter_map(|m| match m {
                Mount::Bind { src, .. }
                | Mount::Overlay { src, .. }
                | Mount::Socket { src, .. } => Some(src.clone()),
                _ => None,
            })
            .collect();
        let block_devices = match spec.sys {
            Sys::None => Vec::new(),
            Sys::Sandbox | Sys::Host => hostview::host_block_devices(&bind_sources),
        };
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        if spec.ids == IdMapping::Full && !uid.is_root() {
            return Err(SpecError::FullMapNeedsRoot.into());
        }
        let uid_map = spec.ids.extents(Kind::Uid, spec.identity, uid.as_raw());
        let gid_map = spec.ids.extents(Kind::Gid, spec.identity, gid.as_raw());
        let mut mounts: Vec<(usize, PlannedMount)> = spec
            .mounts
            .iter()
            .map(|m| {
                let planned = match m {
                    Mount::Bind { src, dst, writable } => PlannedMount::Bind {
                        src: src.clone(),
                        dst: dst.clone(),
                        writable: *writable,
                    },
                    Mount::Tmpfs { dst, size } => {
                        let mode = if dst == Path::new("/tmp") || dst == Path::new("/var/tmp") {
                            "1777"
                        } else {
                            "0700"
                        };
                        PlannedMount::Tmpfs {
                            dst: dst.clone(),
                            options: format!("size={},mode={mode}", spec.tmpfs_size(*size)),
                        }
                    }
                    Mount::Overlay { src, dst, size } => PlannedMount::Overlay {
                        src: src.clone(),
                        dst: dst.clone(),
                        upper_options: format!("size={size},mode=0700"),
                        upper_root: UpperRoot::of(src, &uid_map, &gid_map)?,
                    },
                    Mount::Socket { src, dst } => PlannedMount::Socket {
                        src: src.clone(),
                        dst: dst.clone(),
                    },
                    Mount::Symlink { path, target } => PlannedMount::Symlink {
                        path: path.clone(),
                        target: target.clone(),
                    },
                };
                Ok((planned.dst().components().count(), planned))
            })
            .collect::<Result<_, SpecError>>()?;
        // Parents first, so that a bind inside HOME lands on the HOME tmpfs, not under it.
        mounts.sort_by_key(|(depth, _)| *depth);

        let env = spec.resolved_env(|key| std::env::var_os(key));
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Ok(Plan {
            clone_flags,
            shm_options: format!("size={},mode=1777", spec.shm_size()),
            ids: spec.ids.clone(),
            uid_map,
            gid_map,
            keep_id_capabilities: spec.ids.maps_other_ids(),
            tty: spec.tty,
            tty_size: spec
                .tty
                .then(|| rustix::termios::tcgetwinsize(std::io::stdin()).ok())
                .flatten(),
            mounts: mounts.into_iter().map(|(_, m)| m).collect(),
            hostname: spec.hostname.clone(),
            loopback_up: spec.net == Net::Loopback,
            forwards: spec.forwards.clone(),
            program: Program {
                net_admin: spec.net_admin,
                argv: spec.argv.iter().map(|a| cstring(a.as_bytes())).collect(),
                envp: env
                    .iter()
                    .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
                    .collect(),
                candidates: program_candidates(&spec.argv[0], &path_var),
                cwd: cstring(spec.cwd.as_os_str().as_bytes()),
            },
            timeout: spec.timeout_ms.map(Duration::from_millis),
            grace: Duration::from_millis(spec.grace_ms),
            namespace_limit: spec.namespace_limit.into(),
            max_user_namespaces: spec
                .limits
                .max_user_namespaces
                .unwrap_or(spec.namespace_limit.into()),
            sys,
            block_devices,
            host_pid: spec.pid == Pid::Host,
            argument_area: argument_area(),
            chaos: spec.chaos.clone(),
        })
    }
}

/// This process's `[arg_start, arg_end)`, read once: a runner's helper creates thousands
/// of sandboxes, and every pid 1 it forks has its argv at the same addresses.
fn argument_area() -> Option<(usize, usize)> {
    static AREA: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    *AREA.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        argument_area_of(&stat)
    })
}

/// arg_start and arg_end are fields 48 and 49 of /proc/PID/stat; the fields after `)`
/// start at field 3. `None` for an empty area, which has nothing to blank.
fn argument_area_of(stat: &str) -> Option<(usize, usize)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(45);
    let start: usize = fields.next()?.parse().ok()?;
    let end: usize = fields.next()?.parse().ok()?;
    (end > start).then_some((start, end))
}

impl PlannedMount {
    fn dst(&self) -> &Path {
        match self {
            PlannedMount::Bind { dst, .. }
            | PlannedMount::Tmpfs { dst, .. }
            | PlannedMount::Overlay { dst, .. }
            | PlannedMount::Socket { dst, .. } => dst,
            PlannedMount::Symlink { path, .. } => path,
        }
    }
}

impl Plan {
    /// Whether setup has descriptors to hand the supervisor: a pty's master, listeners or
    /// upper layers.
    pub fn hands_over(&self) -> bool {
        self.tty
            || !self.forwards.is_empty()
            || self
                .mounts
                .iter()
                .any(|m| matches!(m, PlannedMount::Overlay { .. }))
    }
}

fn cstring(bytes: &[u8]) -> CString {
    // Spec validation rejects NUL bytes in paths and names; values lose theirs.
    CString::new(
        bytes
            .iter()
            .copied()
            .filter(|&b| b != 0)
            .collect::<Vec<u8>>(),
    )
    .expect("NUL bytes were removed")
}

/// execvp's search, but over the sandbox's PATH rather than the host's.
fn program_candidates(program: &str, path_var: &OsStr) -> Vec<CString> {
    if program.contains('/') {
        return vec![cstring(program.as_bytes())];
    }
    let path_var = if path_var.is_empty() {
        OsStr::new("/usr/local/bin:/usr/bin:/bin")
    } else {
        path_var
    };
    path_var
        .as_bytes()
        .split(|&b| b == b':')
        .filter(|dir| dir.starts_with(b"/"))
        .map(|dir| cstring(&[dir, b"/", program.as_bytes()].concat()))
        .collect()
}

/// The descriptors the child keeps from its supervisor.
pub(crate) struct ChildFds {
    /// Where init writes its one report.
    pub status: OwnedFd,
    /// Closed by the supervisor when it ends; lets the child see that it is already gone.
    pub lifeline: OwnedFd,
    /// With maps written from outside: one byte once they are written, EOF if they failed.
    pub maps_written: Option<OwnedFd>,
    /// Readable once the supervisor has placed pid 1 in its cgroups.
    pub placed: OwnedFd,
    /// The v1 cgroups' `tasks` files, which pid 1 joins by itself and then closes.
    pub cgroup_tasks: Vec<OwnedFd>,
    pub stdio: ChildStdio,
    /// A SEQPACKET socket to the supervisor on which setup hands over descriptors (the
    /// pty's master, forwarded listeners, overlays' upper layers), when the plan has any.
    pub handover: Option<OwnedFd>,
}

pub(crate) enum ChildStdio {
    Pipes {
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The pty is opened inside, from the sandbox's own devpts; its master goes back to
    /// the supervisor on the handover socket.
    Tty,
}

impl ChildFds {
    /// Every descriptor the child keeps; it closes all others.
    pub fn raw(&self) -> Vec<RawFd> {
        let mut fds = vec![
            self.status.as_raw_fd(),
            self.lifeline.as_raw_fd(),
            self.placed.as_raw_fd(),
        ];
        fds.extend(self.maps_written.iter().map(|fd| fd.as_raw_fd()));
        fds.extend(self.cgroup_tasks.iter().map(|fd| fd.as_raw_fd()));
        fds.extend(self.handover.iter().map(|fd| fd.as_raw_fd()));
        if let ChildStdio::Pipes { stdout, stderr } = &self.stdio {
            fds.extend([stdout.as_raw_fd(), stderr.as_raw_fd()]);
        }
        fds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_area_is_fields_48_and_49_of_stat() {
        let fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        let stat = format!("7 (a (b) c) {}", fields.join(" "));
        assert_eq!(argument_area_of(&stat), Some((48, 49)));
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (start, end) = argument_area_of(&own).unwrap();
        assert!(end > start);
        let empty = stat.replace(" 48 49 ", " 49 49 ");
        assert_eq!(argument_area_of(&empty), None);
    }
}
