//! Precedence, inheritance, overrides and provenance.

use std::path::PathBuf;

use super::graph::{harness, package_id, runs_own_binary, test};
use super::{config, inputs, user, workspace};
use crate::config::{Config, Layer, Net, Source, user_config_path};

fn in_profile(source: &str) -> Source {
    Source::Profile {
        file: ".config/isotest.toml".into(),
        profile: source.into(),
    }
}

#[test]
fn defaults_apply_without_any_config() {
    let config = config(vec![], &[], None).unwrap();
    let settings = config.profile().unwrap().settings();
    let net = settings.net.unwrap();
    assert_eq!((net.value, net.source), (Net::Loopback, Source::Default));
    assert!(settings.timeout.is_none());
}

#[test]
fn command_line_beats_environment_beats_workspace_beats_user() {
    let files = || {
        vec![
            workspace("[profile.default]\nnet = \"host\"\nretries = 1\n"),
            user("[profile.default]\nnet = \"none\"\nretries = 2\ntty = true\n"),
        ]
    };
    let settings = config(files(), &[], None)
        .unwrap()
        .profile()
        .unwrap()
        .settings();
    assert_eq!(settings.net.as_ref().unwrap().value, Net::Host);
    assert_eq!(settings.retries.as_ref().unwrap().value.count, 1);
    let tty = settings.tty.unwrap();
    assert!(tty.value);
    assert!(matches!(tty.source, Source::Profile { file, .. } if file.ends_with("config.toml")));

    let env = [("ISOTEST_NET", "none"), ("ISOTEST_RETRIES", "3")];
    let settings = config(files(), &env, None)
        .unwrap()
        .profile()
        .unwrap()
        .settings();
    let net = settings.net.unwrap();
    assert_eq!(
        (net.value, net.source),
        (
            Net::None,
            Source::Env {
                var: "ISOTEST_NET".into()
            }
        )
    );
    assert_eq!(settings.retries.unwrap().value.count, 3);

    let cli = Layer {
        net: Some(Net::Loopback),
        ..Layer::default()
    };
    let config = Config::from_files(files(), inputs(&env, cli, None)).unwrap();
    let net = config.profile().unwrap().settings().net.unwrap();
    assert_eq!(
        (net.value, net.source),
        (Net::Loopback, Source::CommandLine)
    );
}

#[test]
fn a_profile_inherits_along_its_chain_and_the_nearest_value_wins() {
    let text = "[profile.default]\nnet = \"none\"\ntty = true\nretries = 1\n\n\
                [profile.base]\nnet = \"host\"\nretries = 2\n\n\
                [profile.ci]\ninherits = \"base\"\nretries = 3\n";
    let config = config(vec![workspace(text)], &[], Some("ci")).unwrap();
    let profile = config.profile().unwrap();
    assert_eq!(profile.chain(), ["ci", "base", "default"]);
    let settings = profile.settings();
    assert_eq!(settings.retries.unwrap().source, in_profile("ci"));
    assert_eq!(settings.net.unwrap().source, in_profile("base"));
    assert_eq!(settings.tty.unwrap().source, in_profile("default"));
    // Without `inherits`, a profile starts from `default`.
    let config = super::config(vec![workspace(text)], &[], Some("base")).unwrap();
    assert_eq!(config.profile().unwrap().chain(), ["base", "default"]);
}

#[test]
fn the_profile_is_picked_by_flag_then_variable_then_default() {
    let files = || vec![workspace("[profile.ci]\n[profile.local]\n")];
    let env = [("ISOTEST_PROFILE", "local")];
    assert_eq!(
        config(files(), &[], None)
            .unwrap()
            .profile()
            .unwrap()
            .chain()[0],
        "default"
    );
    assert_eq!(
        config(files(), &env, None)
            .unwrap()
            .profile()
            .unwrap()
            .chain()[0],
        "local"
    );
    assert_eq!(
        config(files(), &env, Some("ci"))
            .unwrap()
            .profile()
            .unwrap()
            .chain()[0],
        "ci"
    );
}

#[test]
fn for_each_setting_the_first_matching_override_wins() {
    let text = "[profile.default]\nretries = 1\nnet = \"none\"\n\n\
                [[profile.default.overrides]]\nfilter = 'test(runs_own)'\nretries = 5\n\n\
                [[profile.default.overrides]]\nfilter = 'binary(bin_exe)'\nretries = 4\nnet = \"host\"\n\n\
                [profile.ci]\n\n\
                [[profile.ci.overrides]]\nfilter = 'binary(bin_exe)'\nnet = \"loopback\"\n";
    let package = package_id();
    let runs_own = runs_own_binary(&package);
    let other = test(
        &package,
        "test",
        "bin_exe",
        "uses_runtime_bin_env",
        "harness::bin_exe",
    );
    let lib = test(&package, "lib", "harness", "config_env", "harness");

    let config = config(vec![workspace(text)], &[], Some("ci")).unwrap();
    let compiled = config.profile().unwrap().compile(harness()).unwrap();
    let settings = compiled.test_settings(&runs_own);
    assert_eq!(settings.retries.as_ref().unwrap().value.count, 5);
    assert!(
        matches!(&settings.retries.unwrap().source, Source::Override { index: 0, profile, .. } if profile == "default")
    );
    // The profile's own override comes before those of the profile it inherits.
    let net = settings.net.unwrap();
    assert_eq!(net.value, Net::Loopback);
    assert!(matches!(net.source, Source::Override { profile, .. } if profile == "ci"));
    assert_eq!(
        compiled.test_settings(&other).retries.unwrap().value.count,
        4
    );
    // A test no override matches has the profile's settings.
    let settings = compiled.test_settings(&lib);
    assert_eq!(settings.retries.unwrap().value.count, 1);
    assert_eq!(settings.net.unwrap().value, Net::None);
}

#[test]
fn the_environment_beats_an_override() {
    let text = "[[profile.default.overrides]]\nfilter = 'all()'\nretries = 5\n";
    let config = config(vec![workspace(text)], &[("ISOTEST_RETRIES", "0")], None).unwrap();
    let compiled = config.profile().unwrap().compile(harness()).unwrap();
    let package = package_id();
    let settings =
        compiled.test_settings(&test(&package, "lib", "harness", "config_env", "harness"));
    assert_eq!(settings.retries.unwrap().value.count, 0);
}

#[test]
fn lists_and_env_add_up_and_the_higher_layer_wins_an_item() {
    let text = "[profile.default]\nbind-ro = [\"data\", \"/etc/ssl:/ssl\"]\nenv = { A = \"1\", B = \"1\" }\n\n\
                [[profile.default.overrides]]\nfilter = 'kind(lib)'\nbind-ro = [\"/srv/ssl:/ssl\"]\nenv = { B = \"2\" }\n";
    let env = [
        ("ISOTEST_ENV_PASS", "[\"DATABASE_URL\"]"),
        ("ISOTEST_BIND_RW", "out"),
    ];
    let config = config(vec![workspace(text)], &env, None).unwrap();
    let compiled = config.profile().unwrap().compile(harness()).unwrap();
    let package = package_id();
    let settings =
        compiled.test_settings(&test(&package, "lib", "harness", "config_env", "harness"));
    let binds: Vec<String> = settings
        .bind_ro
        .iter()
        .map(|b| b.value.to_string())
        .collect();
    // Relative paths: to the workspace root in a file, to the current directory in a variable.
    assert_eq!(binds, ["/ws/data", "/srv/ssl:/ssl"]);
    assert_eq!(settings.bind_rw[0].value.src, PathBuf::from("/cwd/out"));
    let vars: Vec<(String, String)> = settings
        .env
        .iter()
        .map(|v| (v.value.name.clone(), v.value.value.clone()))
        .collect();
    assert_eq!(vars, [("A".into(), "1".into()), ("B".into(), "2".into())]);
    assert_eq!(settings.env_pass[0].value.0, "DATABASE_URL");
}

#[test]
fn variables_take_toml_values_or_plain_strings_and_ignore_non_settings() {
    let env = [
        (
            "ISOTEST_SLOW_TIMEOUT",
            "{ period = \"30s\", terminate-after = 2 }",
        ),
        ("ISOTEST_TIMEOUT", "90s"),
        ("ISOTEST_FAIL_FAST", "false"),
        ("ISOTEST_BINARY_ID", "pkg::test"),
        ("ISOTEST_ATTEMPT", "2"),
    ];
    let settings = config(vec![], &env, None)
        .unwrap()
        .profile()
        .unwrap()
        .settings();
    let slow = settings.slow_timeout.unwrap().value;
    assert_eq!(
        (
            slow.period.0.as_secs(),
            slow.terminate_after.map(|n| n.get())
        ),
        (30, Some(2))
    );
    assert_eq!(settings.timeout.unwrap().value.0.as_secs(), 90);
    assert_eq!(
        settings.fail_fast.unwrap().value.max_fail,
        crate::config::MaxFail::All
    );
}

#[test]
fn show_config_lists_each_value_with_what_set_it() {
    let text = "[profile.default]\nnet = \"host\"\ntimeout = \"5m\"\njunit = \"target/junit.xml\"\n\n\
                [test-groups.db]\nmax-threads = 1\n\n\
                [[profile.default.overrides]]\nfilter = 'test(runs_own)'\nretries = { backoff = \"exponential\", count = 3, delay = \"1s\" }\ntest-group = \"db\"\nenv = { PGHOST = \"127.0.0.1\" }\n";
    let config = config(vec![workspace(text)], &[("ISOTEST_TTY", "true")], None).unwrap();
    let compiled = config.profile().unwrap().compile(harness()).unwrap();
    let package = package_id();
    let settings = compiled.test_settings(&runs_own_binary(&package));
    let lines: Vec<String> = settings.entries().iter().map(|e| e.to_string()).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn the_user_config_follows_xdg() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.into())
        }
    };
    let xdg = user_config_path(env(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")]));
    assert_eq!(xdg, Some("/xdg/isotest/config.toml".into()));
    let home = user_config_path(env(&[("XDG_CONFIG_HOME", ""), ("HOME", "/home/u")]));
    assert_eq!(home, Some("/home/u/.config/isotest/config.toml".into()));
    assert_eq!(user_config_path(env(&[])), None);
}

#[test]
fn loading_reads_the_workspace_file_and_not_a_missing_user_file() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join(".config")).unwrap();
    std::fs::write(
        root.path().join(".config/isotest.toml"),
        "schema-version = 1\n[profile.ci]\nnet = \"none\"\n",
    )
    .unwrap();
    let mut inputs = inputs(&[], Layer::default(), Some("ci"));
    inputs.workspace_root = root.path().to_path_buf();
    inputs.user_config = Some(root.path().join("no/such/config.toml"));
    let config = Config::load(inputs).unwrap();
    assert_eq!(
        config.profile().unwrap().settings().net.unwrap().value,
        Net::None
    );
}

#[test]
fn each_sandbox_key_of_a_test_goes_command_line_then_override_then_profile_then_default() {
    use crate::config::{Bytes, Chaos, IdMap, Sys};
    use crate::sandbox::SandboxOptions;
    use isotest_runtime::{IdMapping, Identity};

    let text = "[profile.default]\nmemory-max = \"512M\"\nsys = \"host\"\npids-max = 300\n\
                chaos = \"cpus\"\nstrays = \"fail\"\n\n\
                [[profile.default.overrides]]\nfilter = 'test(runs_own)'\nmemory-max = \"64M\"\n\
                sys = \"none\"\npids-max = 50\nchaos = \"none\"\nid-map = \"single\"\nroot = true\n\
                tmpfs-size = \"16M\"\n";
    let cli = Layer {
        pids_max: std::num::NonZeroU32::new(20),
        ..Layer::default()
    };
    let config = Config::from_files(vec![workspace(text)], inputs(&[], cli, None)).unwrap();
    let compiled = config.profile().unwrap().compile(harness()).unwrap();
    let package = package_id();
    let overridden = compiled.test_settings(&runs_own_binary(&package));
    let plain = compiled.test_settings(&test(&package, "lib", "harness", "config_env", "harness"));
    let source = |s: &Option<crate::config::Sourced<Bytes>>| s.as_ref().unwrap().source.clone();
    assert!(matches!(
        source(&overridden.memory_max),
        Source::Override { index: 0, .. }
    ));
    assert_eq!(source(&plain.memory_max), in_profile("default"));
    assert_eq!(plain.tmpfs_size.as_ref().unwrap().source, Source::Default);

    let options = SandboxOptions::from_settings(&overridden).unwrap();
    assert_eq!(options.limits.memory_max, Some(64 << 20), "the override");
    assert_eq!(
        options.limits.pids_max,
        Some(20),
        "the command line beats it"
    );
    assert_eq!(options.sys, isotest_runtime::Sys::None);
    assert_eq!(options.tmpfs_size, 16 << 20);
    assert!(options.chaos.is_empty());
    assert_eq!(options.ids, IdMapping::Single);
    assert_eq!(options.identity, Identity::Root);
    assert_eq!(overridden.id_map.as_ref().unwrap().value, IdMap::Single);

    let options = SandboxOptions::from_settings(&plain).unwrap();
    assert_eq!(options.limits.memory_max, Some(512 << 20), "the profile");
    assert_eq!(options.limits.pids_max, Some(20));
    assert_eq!(options.sys, isotest_runtime::Sys::Host);
    assert_eq!(
        options.tmpfs_size,
        isotest_runtime::DEFAULT_TMPFS_SIZE,
        "the default"
    );
    assert_eq!(options.chaos, [crate::chaos::Kind::Cpus]);
    assert_eq!(
        options.ids,
        isotest_runtime::host_ids().mapping,
        "id-map = auto"
    );
    assert_eq!(options.identity, Identity::Caller);
    assert_eq!(plain.sys.unwrap().value, Sys::Host);
    assert_eq!(
        plain.chaos.unwrap().value,
        Chaos(vec![crate::chaos::Kind::Cpus])
    );
}

#[test]
fn nesting_and_pass_credentials_go_command_line_then_environment_then_override_then_profile() {
    use crate::sandbox::SandboxOptions;

    let text = "[profile.default]\nnesting = 4\n\n\
                [[profile.default.overrides]]\nfilter = 'test(runs_own)'\nnesting = 64\n\
                pass-credentials = true\n";
    let compile = |env: &[(&str, &str)], cli: Layer| {
        let config = Config::from_files(vec![workspace(text)], inputs(env, cli, None)).unwrap();
        let compiled = config.profile().unwrap().compile(harness()).unwrap();
        let package = package_id();
        let options = |settings| SandboxOptions::from_settings(&settings).unwrap();
        (
            options(compiled.test_settings(&runs_own_binary(&package))),
            options(compiled.test_settings(&test(
                &package,
                "lib",
                "harness",
                "config_env",
                "harness",
            ))),
        )
    };
    let (overridden, plain) = compile(&[], Layer::default());
    assert_eq!(
        (overridden.namespace_limit, overridden.pass_credentials),
        (64, true),
        "the override"
    );
    assert_eq!(
        (plain.namespace_limit, plain.pass_credentials),
        (4, false),
        "the profile, and the default"
    );
    let (overridden, _) = compile(&[("ISOTEST_NESTING", "8")], Layer::default());
    assert_eq!(
        overridden.namespace_limit, 8,
        "the environment beats the override"
    );
    let cli = Layer {
        nesting: Some(2),
        pass_credentials: Some(true),
        ..Layer::default()
    };
    let (overridden, plain) = compile(&[("ISOTEST_NESTING", "8")], cli);
    assert_eq!(overridden.namespace_limit, 2, "the command line beats all");
    assert!(
        plain.pass_credentials,
        "--pass-credentials is for every test"
    );

    let defaults = SandboxOptions::from_settings(&Default::default()).unwrap();
    assert_eq!(
        (defaults.namespace_limit, defaults.pass_credentials),
        (isotest_runtime::DEFAULT_NAMESPACE_LIMIT, false)
    );
}

#[test]
fn a_zero_timeout_is_refused_naming_what_set_it() {
    use crate::sandbox::SandboxOptions;

    let config = config(
        vec![workspace("[profile.default]\ntimeout = \"0s\"\n")],
        &[],
        None,
    )
    .unwrap();
    let settings = config.profile().unwrap().settings();
    let error = SandboxOptions::from_settings(&settings).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("`timeout`") && message.contains(".config/isotest.toml"),
        "{message}"
    );
}

#[test]
fn chaos_reads_as_the_flag_does_and_isotest_chaos_is_not_a_setting() {
    use crate::config::Chaos;
    let text = "[profile.default]\nchaos = \"sched, cpus\"\n\n[profile.all]\nchaos = true\n\n\
                [profile.off]\nchaos = false\n";
    let chaos = |profile| {
        let env = [("ISOTEST_CHAOS", "uptime")];
        config(vec![workspace(text)], &env, Some(profile))
            .unwrap()
            .profile()
            .unwrap()
            .settings()
            .chaos
            .unwrap()
            .value
    };
    use crate::chaos::Kind;
    assert_eq!(chaos("default"), Chaos(vec![Kind::Cpus, Kind::Sched]));
    assert_eq!(chaos("all"), Chaos(crate::chaos::ALL.to_vec()));
    assert_eq!(chaos("off"), Chaos(Vec::new()));
    let bad = super::file(
        ".config/isotest.toml",
        "[profile.default]\nchaos = \"cpus,bogus\"\n",
    )
    .unwrap_err();
    let message = crate::config::render(&bad, false);
    assert!(message.contains("unknown chaos kind `bogus`"), "{message}");
}

#[test]
fn the_layer_and_forward_keys_go_command_line_then_environment_then_override_then_profile_then_default()
 {
    use crate::config::Forward;
    use crate::sandbox::SandboxOptions;
    use isotest_runtime::Mount;

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("db.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let text = format!(
        "[profile.default]\nnet-admin = true\nforward = [\"127.0.0.1:5432\"]\n\
         keep-writes = \"target/kept\"\nshow-writes = true\n\n\
         [[profile.default.overrides]]\nfilter = 'test(runs_own)'\nwritable-source = true\n\
         net-admin = false\nforward = [\"[::1]:6379\"]\nforward-unix = [{:?}]\n",
        socket.display().to_string()
    );
    let env = [
        ("ISOTEST_FORWARD", "127.0.0.1:7000"),
        ("ISOTEST_KEEP_WRITES", "env-kept"),
    ];
    let compiled = |cli: Layer| {
        let config = Config::from_files(vec![workspace(&text)], inputs(&env, cli, None)).unwrap();
        let config: &'static Config = Box::leak(Box::new(config));
        config.profile().unwrap().compile(harness()).unwrap()
    };
    let package = package_id();
    let own = runs_own_binary(&package);
    let other = test(&package, "lib", "harness", "config_env", "harness");

    let profile = compiled(Layer::default());
    let overridden = profile.test_settings(&own);
    let plain = profile.test_settings(&other);
    let writable = |s: &crate::config::Effective| {
        let w = s.writable_source.clone().unwrap();
        (w.value, w.source)
    };
    assert!(matches!(
        writable(&overridden),
        (true, Source::Override { index: 0, .. })
    ));
    assert_eq!(writable(&plain), (false, Source::Default));
    let admin = overridden.net_admin.clone().unwrap();
    assert!(!admin.value && matches!(admin.source, Source::Override { .. }));
    assert_eq!(
        plain.net_admin.clone().unwrap().source,
        in_profile("default")
    );
    // A list adds up, lowest layer first: the profile's, the override's, the variable's.
    let forwards = |s: &crate::config::Effective| -> Vec<String> {
        s.forward.iter().map(|f| f.value.to_string()).collect()
    };
    assert_eq!(
        forwards(&overridden),
        ["127.0.0.1:5432", "[::1]:6379", "127.0.0.1:7000"]
    );
    assert_eq!(forwards(&plain), ["127.0.0.1:5432", "127.0.0.1:7000"]);
    assert_eq!(
        plain.forward[1].source,
        Source::Env {
            var: "ISOTEST_FORWARD".into()
        }
    );

    let options = SandboxOptions::from_settings(&overridden).unwrap();
    assert!(options.writable_source);
    assert!(!options.net_admin);
    assert_eq!(options.forwards.len(), 3);
    assert!(options.binds.contains(&Mount::Socket {
        src: socket.canonicalize().unwrap(),
        dst: socket.clone(),
    }));
    let options = SandboxOptions::from_settings(&plain).unwrap();
    assert!(!options.writable_source);
    assert!(options.net_admin, "the profile");
    assert!(options.binds.is_empty());

    // The run's keys: a file's path is relative to the workspace, a variable's and a
    // flag's to the current directory.
    let run = profile.profile().settings();
    let keep = run.keep_writes.clone().unwrap();
    assert_eq!(
        (keep.value, keep.source),
        (
            PathBuf::from("/cwd/env-kept"),
            Source::Env {
                var: "ISOTEST_KEEP_WRITES".into()
            }
        )
    );
    assert!(run.show_writes.clone().unwrap().value);

    let cli = Layer {
        net_admin: Some(true),
        keep_writes: Some("cli-kept".into()),
        forward: Some(vec![Forward("127.0.0.1:5432".parse().unwrap())]),
        ..Layer::default()
    };
    let profile = compiled(cli);
    let overridden = profile.test_settings(&own);
    let admin = overridden.net_admin.clone().unwrap();
    assert_eq!((admin.value, admin.source), (true, Source::CommandLine));
    // The same address from a higher layer replaces the profile's.
    assert_eq!(overridden.forward[0].source, Source::CommandLine);
    assert_eq!(
        profile.profile().settings().keep_writes.unwrap().value,
        PathBuf::from("/cwd/cli-kept")
    );
    let in_file = config(vec![workspace(&text)], &[], None)
        .unwrap()
        .profile()
        .unwrap()
        .settings()
        .keep_writes
        .unwrap();
    assert_eq!(
        (in_file.value, in_file.source),
        (PathBuf::from("/ws/target/kept"), in_profile("default"))
    );
}

#[test]
fn a_forward_needs_the_loopback_network_and_a_loopback_address() {
    use crate::sandbox::SandboxOptions;

    let text = "[profile.default]\nforward = [\"127.0.0.1:5432\"]\n\n\
                [[profile.default.overrides]]\nfilter = 'test(runs_own)'\nnet = \"host\"\n";
    let config = config(vec![workspace(text)], &[], None).unwrap();
    let config: &'static Config = Box::leak(Box::new(config));
    let compiled = config.profile().unwrap().compile(harness()).unwrap();
    let package = package_id();
    let own = compiled.test_settings(&runs_own_binary(&package));
    let error = SandboxOptions::from_settings(&own).unwrap_err().to_string();
    for wanted in [
        "`forward` = \"127.0.0.1:5432\" (set by .config/isotest.toml [profile.default])",
        "`net` is \"host\"",
        "(filter = \"test(runs_own)\")",
        "`net = \"loopback\"`",
    ] {
        assert!(error.contains(wanted), "`{wanted}` missing from: {error}");
    }

    for address in ["10.0.0.5:5432", "127.0.0.1:0", "localhost:5432"] {
        let text = format!("[profile.default]\nforward = [\"{address}\"]\n");
        let error = super::file(".config/isotest.toml", &text).unwrap_err();
        let message = crate::config::render(&error, false);
        assert!(
            message.contains("`profile.default.forward[0]`"),
            "{message}"
        );
        assert!(
            message.contains("127.0.0."),
            "says what is allowed: {message}"
        );
    }
    let error = super::file(
        ".config/isotest.toml",
        "[profile.default]\nforward = [\"10.0.0.5:5432\"]\n",
    )
    .unwrap_err();
    let message = crate::config::render(&error, false);
    assert!(message.contains("net = \"host\""), "{message}");
}

#[test]
fn forward_unix_takes_only_a_socket_and_says_which_key_named_it() {
    use crate::sandbox::SandboxOptions;

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[profile.default]\nforward-unix = [{:?}]\n",
        dir.path().display().to_string()
    );
    let settings = config(vec![workspace(&text)], &[], None)
        .unwrap()
        .profile()
        .unwrap()
        .settings();
    let error = format!(
        "{:#}",
        SandboxOptions::from_settings(&settings).unwrap_err()
    );
    assert!(error.starts_with("`forward-unix` = "), "{error}");
    assert!(error.contains("[profile.default]"), "{error}");
    assert!(error.contains("is not a Unix socket"), "{error}");
}
