//! The test lists an archive records (`target/nextest/isotest-test-lists.json`): each
//! libtest binary's tests and ignored tests, listed in its sandbox when the archive was
//! made, with the size and hash of the binary they were listed from. A run from the
//! archive takes a binary's list from here instead of listing it again, once the unpacked
//! binary is the one listed. nextest unpacks the file with the rest and never reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The format this build writes and reads; a file of another is ignored.
pub const FORMAT: u32 = 1;

/// One test as a binary lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedTest {
    pub name: String,
    pub kind: TestKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    Test,
    Bench,
}

/// A binary's tests as listed (`--list --format terse`), and the names of those of them
/// that `--ignored` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestList {
    pub tests: Vec<ListedTest>,
    pub ignored: BTreeSet<String>,
}

/// The file: by binary id, what each binary listed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TestLists {
    pub format: u32,
    pub binaries: BTreeMap<String, Recorded>,
}

/// What one binary listed, and which bytes it was listed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Recorded {
    pub size: u64,
    /// `xxh64` (seed 0) of the binary, 16 lowercase hex digits.
    pub xxh64: String,
    pub tests: Vec<ListedTest>,
    pub ignored: BTreeSet<String>,
}

/// What a file of the archive was: its size and content hash, as packed or unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub size: u64,
    pub xxh64: u64,
}

impl Recorded {
    pub fn new(list: TestList, binary: Fingerprint) -> Recorded {
        Recorded {
            size: binary.size,
            xxh64: format!("{:016x}", binary.xxh64),
            tests: list.tests,
            ignored: list.ignored,
        }
    }

    /// The list, when `binary` is the file it was listed from.
    pub fn list_of(self, binary: Fingerprint) -> Option<TestList> {
        (self.size == binary.size && self.xxh64 == format!("{:016x}", binary.xxh64)).then_some(
            TestList {
                tests: self.tests,
                ignored: self.ignored,
            },
        )
    }
}

/// Reads the file: `Ok(None)` for a format this build does not know, which a run treats
/// as no file (it lists every binary).
pub fn parse(json: &str) -> Result<Option<TestLists>, String> {
    #[derive(Deserialize)]
    struct Versioned {
        format: u32,
    }
    let versioned: Versioned = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if versioned.format != FORMAT {
        return Ok(None);
    }
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Whether the target's tests are libtest's (`harness` is not `false` in its manifest):
/// then what `--list` prints is compiled into the binary, and a list made on another
/// machine is the one this machine would make. A custom harness may list by what it finds
/// at run time, so it is listed where it runs; so is a target whose manifest cannot be
/// read, or whose entry cannot be told apart from one with `harness = false`.
pub fn lists_libtest(manifest: &Path, kind: &str, target_name: &str) -> bool {
    let Some(manifest) = std::fs::read_to_string(manifest)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
    else {
        return false;
    };
    let no_harness =
        |entry: &toml::Value| entry.get("harness").and_then(toml::Value::as_bool) == Some(false);
    let table = match kind {
        "lib" | "proc-macro" => return !manifest.get("lib").is_some_and(no_harness),
        "bin" => "bin",
        "test" => "test",
        "bench" => "bench",
        "example" => "example",
        _ => return false,
    };
    let entries = manifest
        .get(table)
        .and_then(toml::Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    // An entry without a name takes one from its path, by rules cargo has changed before.
    !entries.iter().any(|entry| {
        let named = entry.get("name").and_then(toml::Value::as_str);
        no_harness(entry) && named.is_none_or(|name| name == target_name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn only_targets_without_a_custom_harness_list_libtest() {
        let file = manifest(
            "[package]\nname = \"p\"\n\n[lib]\nharness = false\n\n\
             [[test]]\nname = \"mimic\"\nharness = false\n\n\
             [[test]]\nname = \"plain\"\n\n\
             [[bench]]\npath = \"benches/unnamed.rs\"\nharness = false\n",
        );
        let lists = |kind, name| lists_libtest(file.path(), kind, name);
        assert!(!lists("lib", "p"));
        assert!(!lists("proc-macro", "p"));
        assert!(!lists("test", "mimic"));
        assert!(lists("test", "plain"));
        assert!(
            lists("test", "discovered"),
            "auto-discovered targets are libtest's"
        );
        assert!(lists("bin", "p"));
        assert!(
            !lists("bench", "anything"),
            "an unnamed custom harness may be any bench"
        );
        assert!(!lists("no-such-kind", "p"));
    }

    #[test]
    fn an_unreadable_manifest_lists_where_it_runs() {
        assert!(!lists_libtest(
            Path::new("/nonexistent/Cargo.toml"),
            "test",
            "t"
        ));
        let file = manifest("[package\n");
        assert!(!lists_libtest(file.path(), "test", "t"));
    }

    #[test]
    fn a_list_serves_only_the_binary_it_was_listed_from() {
        let list = TestList {
            tests: vec![ListedTest {
                name: "a::b".into(),
                kind: TestKind::Test,
            }],
            ignored: BTreeSet::from(["a::b".to_string()]),
        };
        let binary = Fingerprint {
            size: 10,
            xxh64: 0xabc,
        };
        let recorded = Recorded::new(list.clone(), binary);
        assert_eq!(recorded.xxh64, "0000000000000abc");
        assert_eq!(recorded.clone().list_of(binary), Some(list));
        let other = |size, xxh64| Fingerprint { size, xxh64 };
        assert_eq!(recorded.clone().list_of(other(11, 0xabc)), None);
        assert_eq!(recorded.list_of(other(10, 0xabd)), None);
    }

    #[test]
    fn the_file_round_trips_and_another_format_is_ignored() {
        let lists = TestLists {
            format: FORMAT,
            binaries: BTreeMap::from([(
                "p::it".to_string(),
                Recorded {
                    size: 1,
                    xxh64: "0000000000000001".into(),
                    tests: vec![ListedTest {
                        name: "b".into(),
                        kind: TestKind::Bench,
                    }],
                    ignored: BTreeSet::new(),
                },
            )]),
        };
        let json = serde_json::to_string(&lists).unwrap();
        assert!(json.contains(r#""kind":"bench""#), "{json}");
        let read = parse(&json).unwrap().unwrap();
        assert_eq!(read.binaries, lists.binaries);
        assert!(parse(r#"{"format": 2, "anything": []}"#).unwrap().is_none());
        assert!(parse(r#"{"format": 1, "binaries": {"x": {"size": 1}}}"#).is_err());
        assert!(parse("[]").is_err());
    }
}
