//! How the sandbox's user namespace maps ids to the host's: the modes a host can give,
//! how to find out which one this host gives, and the map lines each mode writes.
//!
//! The kernel lets a process map only its own uid and gid into a namespace it made; more
//! than that needs `CAP_SETUID`/`CAP_SETGID` over the parent namespace, which root has and
//! which `newuidmap`/`newgidmap` (setuid helpers from shadow's `uidmap` package) lend to a
//! user within the ranges `/etc/subuid` and `/etc/subgid` grant. Either way the maps are
//! written from outside, by the supervisor, while the child waits.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::Identity;

/// The mapping mode of a sandbox, as recorded in its spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum IdMapping {
    /// The caller's uid and gid only (to themselves, or to 0 with [`Identity::Root`]);
    /// setgroups denied. Every other id shows as the overflow id, 65534.
    Single,
    /// Every id to itself, setgroups allowed: the host's ids, as outside. Root only.
    Full,
    /// The caller's ids plus its subordinate ranges, written by newuidmap and newgidmap;
    /// setgroups allowed.
    Subordinate {
        uids: SubordinateRange,
        gids: SubordinateRange,
    },
}

/// One line of `/etc/subuid` or `/etc/subgid`: `count` host ids from `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubordinateRange {
    pub start: u32,
    pub count: u32,
}

/// One line of a uid_map or gid_map: `count` ids from `inside` are host ids from `outside`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// Which map an extent list is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Uid,
    Gid,
}

impl Kind {
    pub fn map_file(self) -> &'static str {
        match self {
            Kind::Uid => "uid_map",
            Kind::Gid => "gid_map",
        }
    }

    /// The setuid helper that writes this map for an unprivileged caller.
    pub fn tool(self) -> &'static str {
        match self {
            Kind::Uid => "newuidmap",
            Kind::Gid => "newgidmap",
        }
    }

    fn ranges_file(self) -> &'static str {
        match self {
            Kind::Uid => "/etc/subuid",
            Kind::Gid => "/etc/subgid",
        }
    }
}

impl IdMapping {
    /// The mode every host gives.
    pub fn single() -> IdMapping {
        IdMapping::Single
    }

    /// Whether ids other than the caller's exist inside. The supervisor then writes the
    /// maps (the child cannot map more than itself), and a program running as uid 0
    /// there can switch to those ids, own files as them and set its groups.
    pub fn maps_other_ids(&self) -> bool {
        !matches!(self, IdMapping::Single)
    }

    /// The map lines for `caller` (the host uid or gid that created the sandbox).
    pub fn extents(&self, kind: Kind, identity: Identity, caller: u32) -> Vec<Extent> {
        let own = |inside| Extent {
            inside,
            outside: caller,
            count: 1,
        };
        match self {
            IdMapping::Single => vec![own(match identity {
                Identity::Caller => caller,
                Identity::Root => 0,
            })],
            IdMapping::Full => vec![Extent {
                inside: 0,
                outside: 0,
                count: u32::MAX,
            }],
            IdMapping::Subordinate { uids, gids } => {
                let range = match kind {
                    Kind::Uid => *uids,
                    Kind::Gid => *gids,
                };
                subordinate_extents(range, identity, caller)
            }
        }
    }
}

/// The caller plus its range, laid out so that inside ids start at 0 and leave no hole:
/// as itself, the caller keeps its own id and the range fills the ids below and above it
/// (podman's `keep-id`); as root, the caller is 0 and the range follows from 1.
fn subordinate_extents(range: SubordinateRange, identity: Identity, caller: u32) -> Vec<Extent> {
    let SubordinateRange { start, count } = range;
    let mut extents = Vec::new();
    match identity {
        Identity::Root => {
            extents.push(Extent {
                inside: 0,
                outside: caller,
                count: 1,
            });
            if count > 0 {
                extents.push(Extent {
                    inside: 1,
                    outside: start,
                    count: count.min(u32::MAX - 1),
                });
            }
        }
        Identity::Caller => {
            extents.push(Extent {
                inside: caller,
                outside: caller,
                count: 1,
            });
            let below = count.min(caller);
            if below > 0 {
                extents.push(Extent {
                    inside: 0,
                    outside: start,
                    count: below,
                });
            }
            let above = (count - below).min(u32::MAX - caller - 1);
            if above > 0 {
                extents.push(Extent {
                    inside: caller + 1,
                    outside: start + below,
                    count: above,
                });
            }
        }
    }
    extents
}

/// The id inside that host id `outside` is under `extents`, if they map it.
pub fn inside_id(extents: &[Extent], outside: u32) -> Option<u32> {
    extents
        .iter()
        .find(|e| outside >= e.outside && outside - e.outside < e.count)
        .map(|e| e.inside + (outside - e.outside))
}

/// A map file's text: one `inside outside count` line per extent.
pub fn map_text(extents: &[Extent]) -> String {
    extents
        .iter()
        .map(|e| format!("{} {} {}\n", e.inside, e.outside, e.count))
        .collect()
}

/// newuidmap's and newgidmap's arguments after the pid: the extents' numbers in a row.
pub fn tool_args(extents: &[Extent]) -> Vec<String> {
    extents
        .iter()
        .flat_map(|e| [e.inside, e.outside, e.count])
        .map(|n| n.to_string())
        .collect()
}

/// The first range that `/etc/subuid`-style `text` grants to the user `name` or `id`.
pub fn parse_ranges(text: &str, name: &str, id: u32) -> Option<SubordinateRange> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let owner = fields.next()?;
            let start = fields.next()?.trim().parse().ok()?;
            let count = fields.next()?.trim().parse().ok()?;
            (owner == name || owner.parse::<u32>() == Ok(id))
                .then_some(SubordinateRange { start, count })
        })
        .find(|range| range.count > 0)
}

/// What this host gives the calling user, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIds {
    pub mapping: IdMapping,
    /// Why a better mode is not available, and what would make it so; `None` at the best.
    pub missing: Option<Missing>,
}

/// What stands between an unprivileged caller and [`IdMapping::Subordinate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// newuidmap or newgidmap is not installed.
    Tool(&'static str),
    /// This process has no_new_privs set, so a setuid newuidmap would gain nothing.
    NoNewPrivs,
    /// uid 0 of a user namespace that does not map every id: it can map only its own.
    PartialNamespace,
    /// The user has no range in this file.
    Ranges { file: &'static str, user: String },
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Tool(tool) => write!(
                f,
                "{tool} is not installed (Debian and Ubuntu: `apt-get install uidmap`; \
                 Fedora: `dnf install shadow-utils`)"
            ),
            Missing::NoNewPrivs => f.write_str(
                "this process runs with no_new_privs set (a container or a service with \
                 NoNewPrivileges=yes), under which the setuid newuidmap cannot work",
            ),
            Missing::PartialNamespace => f.write_str(
                "this is uid 0 of a user namespace that maps only some host ids \
                 (/proc/self/uid_map), so only its own ids can be mapped again",
            ),
            Missing::Ranges { file, user } => write!(
                f,
                "{file} grants `{user}` no range; as root: \
                 `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` \
                 (pick ranges no other user has)"
            ),
        }
    }
}

/// The mode this host gives the calling user: full as root, subordinate when the user has
/// ranges and the tools exist, else single. Looked up once per process.
pub fn host_ids() -> HostIds {
    static HOST: std::sync::OnceLock<HostIds> = std::sync::OnceLock::new();
    HOST.get_or_init(probe_host_ids).clone()
}

fn probe_host_ids() -> HostIds {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        let maps_all = |file| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            text.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
        };
        let (mapping, missing) = if maps_all("/proc/self/uid_map") && maps_all("/proc/self/gid_map")
        {
            (IdMapping::Full, None)
        } else {
            (IdMapping::Single, Some(Missing::PartialNamespace))
        };
        return HostIds { mapping, missing };
    }
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let gid = nix::unistd::getegid().as_raw();
    let single = |missing| HostIds {
        mapping: IdMapping::Single,
        missing: Some(missing),
    };
    for kind in [Kind::Uid, Kind::Gid] {
        if find_tool(kind).is_none() {
            return single(Missing::Tool(kind.tool()));
        }
    }
    if nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
        return single(Missing::NoNewPrivs);
    }
    let range = |kind: Kind, id| {
        let text = std::fs::read_to_string(kind.ranges_file()).unwrap_or_default();
        parse_ranges(&text, &name, id).ok_or_else(|| Missing::Ranges {
            file: kind.ranges_file(),
            user: name.clone(),
        })
    };
    match (range(Kind::Uid, uid.as_raw()), range(Kind::Gid, gid)) {
        (Ok(uids), Ok(gids)) => HostIds {
            mapping: IdMapping::Subordinate { uids, gids },
            missing: None,
        },
        (Err(missing), _) | (_, Err(missing)) => single(missing),
    }
}

/// newuidmap or newgidmap, looked up where distributions install it.
pub fn find_tool(kind: Kind) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(kind.tool()))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: SubordinateRange = SubordinateRange {
        start: 100_000,
        count: 65_536,
    };

    fn sub() -> IdMapping {
        IdMapping::Subordinate {
            uids: RANGE,
            gids: RANGE,
        }
    }

    #[test]
    fn single_maps_the_caller_alone() {
        let text = map_text(&IdMapping::Single.extents(Kind::Uid, Identity::Caller, 1002));
        assert_eq!(text, "1002 1002 1\n");
        let text = map_text(&IdMapping::Single.extents(Kind::Gid, Identity::Root, 1002));
        assert_eq!(text, "0 1002 1\n");
    }

    #[test]
    fn full_maps_every_id_to_itself() {
        let text = map_text(&IdMapping::Full.extents(Kind::Uid, Identity::Caller, 0));
        assert_eq!(text, "0 0 4294967295\n");
    }

    #[test]
    fn subordinate_as_caller_keeps_its_id_and_fills_the_rest() {
        let text = map_text(&sub().extents(Kind::Uid, Identity::Caller, 1002));
        assert_eq!(text, "1002 1002 1\n0 100000 1002\n1003 101002 64534\n");
        let args = tool_args(&sub().extents(Kind::Uid, Identity::Caller, 1002));
        assert_eq!(args[..3], ["1002", "1002", "1"]);
    }

    #[test]
    fn subordinate_with_a_range_smaller_than_the_callers_id() {
        let small = IdMapping::Subordinate {
            uids: SubordinateRange {
                start: 200_000,
                count: 10,
            },
            gids: RANGE,
        };
        let text = map_text(&small.extents(Kind::Uid, Identity::Caller, 1002));
        assert_eq!(text, "1002 1002 1\n0 200000 10\n");
    }

    #[test]
    fn subordinate_as_root_puts_the_range_after_zero() {
        let text = map_text(&sub().extents(Kind::Gid, Identity::Root, 1002));
        assert_eq!(text, "0 1002 1\n1 100000 65536\n");
    }

    #[test]
    fn host_ids_are_found_inside_through_the_extents() {
        let extents = sub().extents(Kind::Uid, Identity::Caller, 1000);
        assert_eq!(inside_id(&extents, 1000), Some(1000));
        assert_eq!(inside_id(&extents, 100_000), Some(0));
        assert_eq!(inside_id(&extents, 100_000 + 1000), Some(1001));
        assert_eq!(inside_id(&extents, 0), None);
        let single = IdMapping::Single.extents(Kind::Uid, Identity::Root, 1000);
        assert_eq!(inside_id(&single, 1000), Some(0));
        assert_eq!(inside_id(&single, 65534), None);
    }

    #[test]
    fn ranges_are_found_by_name_or_uid() {
        let text = "# comment\nalice:100000:65536\n1002:300000:1000\nbob:165536:0\n";
        assert_eq!(parse_ranges(text, "alice", 1001), Some(RANGE));
        assert_eq!(
            parse_ranges(text, "carol", 1002),
            Some(SubordinateRange {
                start: 300_000,
                count: 1000
            })
        );
        assert_eq!(parse_ranges(text, "bob", 1003), None, "an empty range");
        assert_eq!(parse_ranges("garbage\n", "alice", 1), None);
    }

    #[test]
    fn the_mapping_round_trips_through_json() {
        let json = serde_json::to_string(&sub()).unwrap();
        assert_eq!(
            json,
            r#"{"mode":"subordinate","uids":{"start":100000,"count":65536},"gids":{"start":100000,"count":65536}}"#
        );
        assert_eq!(serde_json::from_str::<IdMapping>(&json).unwrap(), sub());
        let single: IdMapping = serde_json::from_str(r#"{"mode":"single"}"#).unwrap();
        assert_eq!(single, IdMapping::Single);
    }
}
