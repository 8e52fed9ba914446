//! `--explain`: which sandbox rule a failing test depends on. Each failing test runs again
//! once per relaxation, in a fixed order, until one makes it pass; what that means, and
//! the hints read from a failure's output alone, are decided here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isotest_runtime::{Mount, Net, Pid, Spec, Sys};
use serde::{Deserialize, Serialize};

use super::verdict;
use crate::sandbox::looks_secret;

mod rerun;
pub use rerun::explain_failures;

/// Bytes of each output stream a rerun keeps: only whether it passed matters.
const RERUN_CAPTURE: usize = 64 << 10;
/// A package directory larger than this is not copied for a writable-source rerun.
const COPY_AT_MOST: u64 = 256 << 20;

/// At most this many failed tests are explained, or a tenth of the run if that is more
/// (Chromium's test launcher stops retrying at the same bound): past it the run is broken
/// as a whole, and reruns would only make it slower.
const EXPLAIN_AT_MOST: usize = 20;

/// One sandbox rule lifted for one rerun.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relaxation {
    /// The host's network (and with it the host's /sys/class/net).
    HostNet,
    /// A private writable copy of the package directory in place of the read-only one.
    WritableSource,
    /// The host's /sys instead of the sandbox's own.
    HostSys,
    /// Every host variable but those named like secrets.
    HostEnv,
    /// The caller's real HOME (read-only) instead of an empty private one, and the toolchain.
    HostHome,
    /// No pid namespace: the host's processes and /proc.
    HostPid,
}

/// The order of the reruns: the commonest and cheapest first, the widest last.
pub const ORDER: &[Relaxation] = &[
    Relaxation::HostNet,
    Relaxation::WritableSource,
    Relaxation::HostSys,
    Relaxation::HostEnv,
    Relaxation::HostHome,
    Relaxation::HostPid,
];

/// A private copy of a package directory for a rerun to write into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritableCopy {
    pub dir: PathBuf,
    /// Paths of the package directory not copied (`target`, `.git`), to show as they are.
    pub left_out: Vec<PathBuf>,
}

/// Directories of a package that a writable copy leaves out: large, and not sources.
const NOT_COPIED: &[&str] = &["target", ".git"];

/// What the reruns need from the host, gathered once.
#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    /// The caller's environment.
    pub env: BTreeMap<String, String>,
    /// The caller's HOME.
    pub home: Option<PathBuf>,
    /// The toolchain paths the default sandbox shows, for a run that hid them.
    pub toolchain: Vec<PathBuf>,
}

impl Relaxation {
    pub fn id(self) -> &'static str {
        match self {
            Relaxation::HostNet => "host-net",
            Relaxation::WritableSource => "writable-source",
            Relaxation::HostSys => "host-sys",
            Relaxation::HostEnv => "host-env",
            Relaxation::HostHome => "host-home",
            Relaxation::HostPid => "host-pid",
        }
    }

    /// The spec of the rerun, or `None` when the test's sandbox already allows this.
    /// `writable_copy` is the private copy of the package directory, for
    /// [`Relaxation::WritableSource`].
    pub fn apply(
        self,
        spec: &Spec,
        host: &HostFacts,
        package_dir: &Path,
        writable_copy: Option<&WritableCopy>,
    ) -> Option<Spec> {
        let mut relaxed = spec.clone();
        match self {
            Relaxation::HostNet if spec.net != Net::Host => relaxed.net = Net::Host,
            Relaxation::WritableSource => {
                let copy = writable_copy?;
                relaxed.mounts.push(Mount::Bind {
                    src: copy.dir.clone(),
                    dst: package_dir.to_path_buf(),
                    writable: true,
                });
                // What the copy left out (the build outputs) stays visible, read-only.
                relaxed
                    .mounts
                    .extend(copy.left_out.iter().map(|path| Mount::Bind {
                        src: path.clone(),
                        dst: path.clone(),
                        writable: false,
                    }));
            }
            Relaxation::HostSys if spec.sys != Sys::Host => relaxed.sys = Sys::Host,
            Relaxation::HostEnv => {
                let added = added_variables(spec, host);
                if added.is_empty() {
                    return None;
                }
                relaxed.env.pass.extend(added);
            }
            Relaxation::HostHome => {
                let home = host.home.as_ref().filter(|h| h.is_dir())?;
                relaxed.mounts.push(Mount::Bind {
                    src: home.clone(),
                    dst: spec.home.clone(),
                    writable: false,
                });
                relaxed.env.set.remove("HOME");
                for path in &host.toolchain {
                    if !relaxed.is_visible(path) {
                        relaxed.mounts.push(Mount::Bind {
                            src: path.clone(),
                            dst: path.clone(),
                            writable: false,
                        });
                    }
                }
            }
            Relaxation::HostPid if spec.pid != Pid::Host => relaxed.pid = Pid::Host,
            _ => return None,
        }
        Some(relaxed)
    }

    /// The sentence a pass with this relaxation earns: what the test needs, and how to
    /// allow it for this test alone. `output` is the failure's, which may name the
    /// variable a test missed.
    pub fn meaning(
        self,
        spec: &Spec,
        host: &HostFacts,
        package_dir: &Path,
        output: &str,
    ) -> String {
        match self {
            Relaxation::HostNet => match loopback_address(output) {
                Some(address) => format!(
                    "passes with --net host: this test connects to {address} on the host's \
                     loopback; forward just that address with --forward {address} (per test: \
                     forward = [\"{address}\"]), which keeps the sandbox's own network"
                ),
                None => "passes with --net host: this test needs the host's network \
                     interfaces; allow it per test with net = \"host\""
                    .to_string(),
            },
            Relaxation::WritableSource => format!(
                "passes with a writable source tree: this test writes into its package \
                 directory {}; make it write under $CARGO_TARGET_TMPDIR, or let it write into \
                 an overlay with --writable-source (per test: writable-source = true)",
                package_dir.display()
            ),
            Relaxation::HostSys => "passes with --sys host: this test reads host facts from \
                 /sys that the sandbox's own read-only view does not show; allow it per test \
                 with sys = \"host\""
                .to_string(),
            Relaxation::HostEnv => {
                let added = added_variables(spec, host);
                let named: Vec<&String> =
                    added.iter().filter(|name| mentions(output, name)).collect();
                if let [name] = named[..] {
                    return format!(
                        "passes with the host's environment: this test reads {name}, which the \
                         sandbox withholds; pass it with --env {name}, or per test with \
                         env-pass = [\"{name}\"]"
                    );
                }
                let shown: Vec<&str> = added.iter().take(8).map(String::as_str).collect();
                let more = added.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!(
                    "passes with the host's environment: this test reads a variable the \
                     sandbox withholds (one of {}{more}); pass it with --env NAME, or per test \
                     with env-pass = [\"NAME\"]",
                    shown.join(", ")
                )
            }
            Relaxation::HostHome => "passes with the host's HOME (read-only) and toolchain: \
                 this test reads files from $HOME; make them visible with --bind PATH, or per \
                 test with bind-ro = [\"PATH\"]"
                .to_string(),
            Relaxation::HostPid => "passes without a pid namespace: this test needs to see \
                 processes beyond its own (process lists, CPU use of other processes); allow \
                 it per test with pid = \"host\" (--pid host), which lets it see and signal \
                 the host's processes"
                .to_string(),
        }
    }
}

/// Whether `text` has `name` as a word of its own, not inside a longer identifier.
fn mentions(text: &str, name: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    text.match_indices(name).any(|(at, _)| {
        !word(text[..at].chars().next_back()) && !word(text[at + name.len()..].chars().next())
    })
}

/// Host variables the sandbox does not already pass or set, secrets left out.
fn added_variables(spec: &Spec, host: &HostFacts) -> Vec<String> {
    host.env
        .keys()
        .filter(|key| !spec.env.pass.contains(key) && !spec.env.set.contains_key(*key))
        .filter(|key| *key != "HOME" && !looks_secret(key))
        .cloned()
        .collect()
}

/// Whether a run with `failed` failures among `total` tests is explained at all, and if
/// not, why.
pub fn skip_reason(failed: usize, total: usize) -> Option<String> {
    let bound = EXPLAIN_AT_MOST.max(total.div_ceil(10));
    (failed > bound).then(|| {
        format!(
            "--explain skipped: {failed} of {total} tests failed, more than max({EXPLAIN_AT_MOST}, 10%) = {bound}; \
             that many failures are rarely each a sandbox rule"
        )
    })
}

/// What the reruns found for one test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The first relaxation that made it pass; `None` if none did.
    pub relaxation: Option<Relaxation>,
    /// Every rerun, in order, and whether it passed.
    pub tried: Vec<Tried>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tried {
    pub relaxation: Relaxation,
    pub passed: bool,
}

/// The next relaxation to try after `tried`, from those that change the test's sandbox;
/// `None` once one passed or all were tried.
pub fn next_relaxation(applicable: &[Relaxation], tried: &[Tried]) -> Option<Relaxation> {
    if tried.iter().any(|t| t.passed) {
        return None;
    }
    applicable
        .iter()
        .copied()
        .find(|r| !tried.iter().any(|t| t.relaxation == *r))
}

/// The verdict of the reruns: the first pass, or that none passed.
pub fn verdict(tried: Vec<Tried>, meaning: impl Fn(Relaxation) -> String) -> Explanation {
    let relaxation = tried.iter().find(|t| t.passed).map(|t| t.relaxation);
    let message = match relaxation {
        Some(r) => meaning(r),
        None if tried.is_empty() => {
            "--explain found no sandbox rule to relax for this test".to_string()
        }
        None => {
            let ids: Vec<&str> = tried.iter().map(|t| t.relaxation.id()).collect();
            format!(
                "fails with each sandbox rule relaxed on its own ({}): most likely the failure \
                 is the test's own, not the sandbox's, or it needs several rules relaxed at once",
                ids.join(", ")
            )
        }
    };
    Explanation {
        relaxation,
        tried,
        message,
    }
}

/// A hint from a failure's output alone, for the host facts the sandbox hides: /sys paths
/// in errors, missing network interfaces, empty disk lists.
pub fn output_hint(text: &str) -> Option<String> {
    let explain = " Run with --explain to find out which rule the test depends on.";
    if let Some(path) = sys_path(text) {
        let missing = text.contains("No such file or directory") || text.contains("os error 2)");
        let what = if missing {
            format!("the output shows {path} missing")
        } else {
            format!("the output mentions {path}")
        };
        return Some(format!(
            "{what}. In the sandbox /sys is its own read-only view: the sandbox's network \
             interfaces and cgroups, the host's devices; nothing under it is writable. For the \
             host's /sys, pass --sys host (per test: sys = \"host\").{explain}"
        ));
    }
    let refused = ["Connection refused", "os error 111)", "ECONNREFUSED"];
    if let Some(address) = loopback_address(text)
        && refused.iter().any(|r| text.contains(r))
    {
        return Some(format!(
            "the output shows a connection to {address} refused. The sandbox's loopback is its \
             own, where nothing of the host listens; to reach a service on the host's \
             loopback, pass --forward {address} (per test: forward = [\"{address}\"]).{explain}"
        ));
    }
    let lower = text.to_ascii_lowercase();
    let interfaces = [
        "eth0",
        "enp",
        "wlan",
        "ens",
        "docker0",
        "mac address",
        "mac_addr",
    ];
    if text.contains("No such device")
        || text.contains("os error 19)")
        || (lower.contains("network") || lower.contains("interface"))
            && interfaces.iter().any(|i| lower.contains(i))
    {
        return Some(format!(
            "the output mentions a network interface. In the sandbox the only interface is \
             lo; for the host's interfaces, pass --net host (per test: net = \"host\").{explain}"
        ));
    }
    let cpu_of_processes = lower.contains("process") && lower.contains("cpu_usage");
    if cpu_of_processes || lower.contains("no cpu") {
        return Some(format!(
            "the output mentions the CPU use of processes. In the sandbox a test sees only its \
             own processes (a pid namespace of its own, whose pid 1 is the sandbox's init), so \
             no other process's CPU use is visible; for the host's processes, pass --pid host \
             (per test: pid = \"host\").{explain}"
        ));
    }
    if lower.contains("disk") && (lower.contains("is_empty") || lower.contains("no disk")) {
        return Some(format!(
            "the output mentions an empty disk list. The sandbox shows only the disks behind \
             its own mounts, with an unreadable placeholder in /dev for each.{explain}"
        ));
    }
    None
}

/// The first loopback address with a port in `text` (`127.0.0.1:5432`, `[::1]:6379`,
/// `localhost:8080`), as `--forward` takes it.
fn loopback_address(text: &str) -> Option<std::net::SocketAddr> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .filter_map(|word| {
            let word = word.trim_end_matches(['.', ':']);
            match word.strip_prefix("localhost:") {
                Some(port) => format!("127.0.0.1:{port}").parse().ok(),
                None => word.parse().ok(),
            }
        })
        .find(|address: &std::net::SocketAddr| address.ip().is_loopback() && address.port() != 0)
}

/// The first `/sys/...` path in `text`.
fn sys_path(text: &str) -> Option<&str> {
    let start = text
        .match_indices("/sys/")
        .map(|(i, _)| i)
        .find(|&i| i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric())?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || "\"'`),:;".contains(c))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests;
