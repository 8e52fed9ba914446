use super::*;

fn spec() -> Spec {
    let mut spec = Spec::new(vec!["/t/bin".into()]);
    spec.env.pass = vec!["PATH".into()];
    spec
}

fn host() -> HostFacts {
    HostFacts {
        env: [
            ("PATH", "/usr/bin"),
            ("MY_SETTING", "1"),
            ("GITHUB_TOKEN", "x"),
            ("HOME", "/root"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        home: Some("/".into()),
        toolchain: vec!["/opt/rust".into()],
    }
}

#[test]
fn each_relaxation_changes_only_its_rule() {
    let (spec, host, pkg) = (spec(), host(), Path::new("/w/pkg"));
    let net = Relaxation::HostNet.apply(&spec, &host, pkg, None).unwrap();
    assert_eq!((net.net, net.sys, net.pid), (Net::Host, spec.sys, spec.pid));
    assert_eq!(net.mounts, spec.mounts);
    let sys = Relaxation::HostSys.apply(&spec, &host, pkg, None).unwrap();
    assert_eq!((sys.net, sys.sys), (spec.net, Sys::Host));
    let pid = Relaxation::HostPid.apply(&spec, &host, pkg, None).unwrap();
    assert_eq!(pid.pid, Pid::Host);
    let env = Relaxation::HostEnv.apply(&spec, &host, pkg, None).unwrap();
    assert_eq!(env.env.pass, ["PATH", "MY_SETTING"]);
    let copy = WritableCopy {
        dir: "/scratch/copy".into(),
        left_out: vec!["/w/pkg/target".into()],
    };
    let source = Relaxation::WritableSource
        .apply(&spec, &host, pkg, Some(&copy))
        .unwrap();
    assert_eq!(
        source.mounts[spec.mounts.len()..],
        [
            Mount::Bind {
                src: "/scratch/copy".into(),
                dst: pkg.into(),
                writable: true
            },
            Mount::Bind {
                src: "/w/pkg/target".into(),
                dst: "/w/pkg/target".into(),
                writable: false
            }
        ]
    );
    let home = Relaxation::HostHome.apply(&spec, &host, pkg, None).unwrap();
    assert!(home.mounts.contains(&Mount::Bind {
        src: "/".into(),
        dst: spec.home.clone(),
        writable: false
    }));
    assert!(home.is_visible(Path::new("/opt/rust")));
}

#[test]
fn a_relaxation_already_in_the_sandbox_is_not_rerun() {
    let (mut spec, host, pkg) = (spec(), host(), Path::new("/w/pkg"));
    spec.net = Net::Host;
    spec.sys = Sys::Host;
    spec.pid = Pid::Host;
    spec.env.pass.push("MY_SETTING".into());
    for r in [
        Relaxation::HostNet,
        Relaxation::HostSys,
        Relaxation::HostPid,
        Relaxation::HostEnv,
    ] {
        assert_eq!(r.apply(&spec, &host, pkg, None), None, "{r:?}");
    }
    assert_eq!(
        Relaxation::WritableSource.apply(&spec, &host, pkg, None),
        None
    );
}

#[test]
fn secrets_never_reach_a_rerun() {
    for name in [
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "npm_config__auth",
    ] {
        assert!(looks_secret(name), "{name}");
    }
    for name in ["PATH", "MY_SETTING", "RUST_LOG", "CI"] {
        assert!(!looks_secret(name), "{name}");
    }
    let host = host();
    let meaning = Relaxation::HostEnv.meaning(&spec(), &host, Path::new("/w"), "");
    assert!(meaning.contains("MY_SETTING") && !meaning.contains("GITHUB_TOKEN"));
    let named = Relaxation::HostEnv.meaning(
        &spec(),
        &host,
        Path::new("/w"),
        "MY_SETTING is set: NotPresent (see PATH_X and x_MY_SETTING)",
    );
    assert!(
        named.contains("reads MY_SETTING") && named.contains("--env MY_SETTING"),
        "{named}"
    );
}

#[test]
fn too_many_failures_skip_the_reruns() {
    assert_eq!(skip_reason(20, 30), None);
    assert!(skip_reason(21, 30).is_some());
    assert_eq!(skip_reason(50, 500), None);
    let text = skip_reason(51, 500).unwrap();
    assert!(
        text.contains("51 of 500") && text.contains("= 50"),
        "{text}"
    );
}

#[test]
fn reruns_go_in_order_and_stop_at_the_first_pass() {
    let applicable = [
        Relaxation::HostNet,
        Relaxation::HostSys,
        Relaxation::HostPid,
    ];
    assert_eq!(next_relaxation(&applicable, &[]), Some(Relaxation::HostNet));
    let failed_net = [Tried {
        relaxation: Relaxation::HostNet,
        passed: false,
    }];
    assert_eq!(
        next_relaxation(&applicable, &failed_net),
        Some(Relaxation::HostSys)
    );
    let passed_sys = [
        failed_net[0].clone(),
        Tried {
            relaxation: Relaxation::HostSys,
            passed: true,
        },
    ];
    assert_eq!(next_relaxation(&applicable, &passed_sys), None);
    let explanation = verdict(passed_sys.to_vec(), |r| r.id().to_string());
    assert_eq!(explanation.relaxation, Some(Relaxation::HostSys));
    assert_eq!(explanation.message, "host-sys");
}

#[test]
fn no_pass_says_the_failure_is_likely_the_tests_own() {
    let tried = vec![Tried {
        relaxation: Relaxation::HostNet,
        passed: false,
    }];
    let explanation = verdict(tried, |_| unreachable!());
    assert_eq!(explanation.relaxation, None);
    assert!(
        explanation.message.contains("host-net"),
        "{}",
        explanation.message
    );
    assert!(explanation.message.contains("the test's own"));
}

#[test]
fn the_net_hint_names_the_flag_and_the_per_test_key() {
    let text = Relaxation::HostNet.meaning(&spec(), &host(), Path::new("/w"), "");
    assert_eq!(
        text,
        "passes with --net host: this test needs the host's network interfaces; allow it \
         per test with net = \"host\""
    );
}

#[test]
fn a_host_service_on_loopback_is_forwarded_rather_than_the_host_network() {
    let output = "called `Result::unwrap()` on an `Err` value: Os { code: 111, kind: \
                  ConnectionRefused, message: \"Connection refused\" } connecting to 127.0.0.1:5432.";
    let text = Relaxation::HostNet.meaning(&spec(), &host(), Path::new("/w"), output);
    assert!(text.contains("--forward 127.0.0.1:5432"), "{text}");
    let hint = output_hint(output).unwrap();
    assert!(hint.contains("--forward 127.0.0.1:5432"), "{hint}");
    let hint = output_hint("error: Connection refused (os error 111) at localhost:6379").unwrap();
    assert!(hint.contains("--forward 127.0.0.1:6379"), "{hint}");
    let hint = output_hint("ECONNREFUSED [::1]:8080").unwrap();
    assert!(hint.contains("--forward [::1]:8080"), "{hint}");
    assert_eq!(output_hint("Connection refused by 10.0.0.5:5432"), None);
    assert_eq!(output_hint("listening on 127.0.0.1:0"), None);
}

#[test]
fn output_hints_name_sys_paths_interfaces_and_disks() {
    let enoent = "Error: Os { code: 2, kind: NotFound, message: \"No such file or directory\" } reading \"/sys/class/net/eth0/address\"";
    let hint = output_hint(enoent).unwrap();
    assert!(
        hint.starts_with("the output shows /sys/class/net/eth0/address missing"),
        "{hint}"
    );
    assert!(hint.contains("--sys host") && hint.contains("--explain"));
    let mention = output_hint("cannot parse /sys/fs/cgroup/cpu.max: bad").unwrap();
    assert!(
        mention.starts_with("the output mentions /sys/fs/cgroup/cpu.max."),
        "{mention}"
    );
    let nic = output_hint(
        "assertion failed: networks.iter().any(|(name, _)| name == \"eth0\")\n network list",
    )
    .unwrap();
    assert!(nic.contains("--net host"), "{nic}");
    let disks = output_hint("assertion failed: !disks.list().is_empty()").unwrap();
    assert!(disks.contains("disk"), "{disks}");
    for cpu in [
        "assertion failed: s.processes().iter().any(|(_, p)| p.cpu_usage() > 0.0)",
        "using NO CPU: failed at iteration 0",
    ] {
        let hint = output_hint(cpu).unwrap();
        assert!(hint.contains("--pid host"), "{hint}");
    }
    assert_eq!(output_hint("assertion failed: 1 == 2"), None);
    assert_eq!(output_hint("see /usr/sys/x and mysys/y"), None);
}
