//! Probe mode: this same test binary, run inside a sandbox, reports what it sees there.
//! Each probe prints plain `key value` lines for the scenario to check.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

pub const ARG: &str = "__probe";

pub fn main(args: &[String]) -> ! {
    let (name, rest) = args.split_first().expect("probe name");
    match name.as_str() {
        "pids" => pids(),
        "net" => net(),
        "connect" => connect(rest[0].parse().expect("port")),
        "write" => write(&rest[0]),
        "remount" => remount(&rest[0]),
        "fds" => fds(),
        "tiocsti" => tiocsti(),
        "caps" => caps(),
        "namespaces" => namespaces(),
        "session" => session(),
        "switch-ids" => switch_ids(&rest[0]),
        "writable" => writable(rest),
        "nest" => nest(rest[0].parse().expect("count")),
        "echo" => echo(&rest[0]),
        "fork-storm" => fork_storm(rest[0].parse().expect("count")),
        "parallelism" => println!(
            "parallelism {}",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        other => panic!("unknown probe {other}"),
    }
    std::process::exit(0)
}

fn errno_of(e: &std::io::Error) -> String {
    format!("{:?}", Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

fn pids() {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort();
    println!("pids {pids:?}");
}

fn net() {
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let names: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim()))
        .collect();
    println!("interfaces {}", names.join(","));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    println!("loopback {}", String::from_utf8_lossy(&buf));
}

fn connect(port: u16) {
    match TcpStream::connect(("127.0.0.1", port)) {
        Ok(_) => println!("connect ok"),
        Err(e) => println!("connect {}", errno_of(&e)),
    }
}

fn write(path: &str) {
    match std::fs::write(path, b"x") {
        Ok(()) => println!("write ok"),
        Err(e) => println!("write {}", errno_of(&e)),
    }
}

fn remount(path: &str) {
    let flags = nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_BIND;
    match nix::mount::mount(None::<&str>, path, None::<&str>, flags, None::<&str>) {
        Ok(()) => println!("remount ok"),
        Err(e) => println!("remount {e:?}"),
    }
}

fn fds() {
    let open: Vec<i32> = (0..1024)
        .filter(|&fd| {
            // SAFETY: only queried with F_GETFD; a closed descriptor yields EBADF.
            nix::fcntl::fcntl(
                unsafe { BorrowedFd::borrow_raw(fd) },
                nix::fcntl::FcntlArg::F_GETFD,
            )
            .is_ok()
        })
        .collect();
    println!("fds {open:?}");
}

/// Pushing a keystroke into a terminal needs one: stdio and /dev/tty must offer none.
fn tiocsti() {
    let attempt = |fd: i32| {
        let byte: libc::c_char = b'x' as libc::c_char;
        // SAFETY: TIOCSTI reads one byte from the pointer we pass.
        Errno::result(unsafe { libc::ioctl(fd, libc::TIOCSTI, &byte) }).map(drop)
    };
    for fd in 0..3 {
        println!("tiocsti-fd{fd} {:?}", attempt(fd));
    }
    match std::fs::File::open("/dev/tty") {
        Ok(tty) => println!("tiocsti-devtty {:?}", attempt(tty.as_raw_fd())),
        Err(e) => println!("tiocsti-devtty open {}", errno_of(&e)),
    }
}

fn caps() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    for line in status
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
    {
        let (key, value) = line.split_once(':').unwrap();
        println!("{key} {}", value.trim());
    }
}

fn namespaces() {
    for ns in ["user", "pid", "mnt", "net", "uts", "ipc", "cgroup"] {
        let link = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        println!("ns-{ns} {}", link.display());
    }
}

/// Who leads the session, and what opening a pty slave without O_NOCTTY does to us: as
/// a session leader, the slave would become our terminal and closing the master would
/// hang us up (this probe would die of SIGHUP before its last line).
fn session() {
    use nix::fcntl::OFlag;
    let pid = nix::unistd::getpid();
    println!("pid {pid}");
    println!("pgid {}", nix::unistd::getpgrp());
    println!("sid {}", nix::unistd::getsid(None).unwrap());
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
    nix::pty::grantpt(&master).unwrap();
    nix::pty::unlockpt(&master).unwrap();
    let name = nix::pty::ptsname_r(&master).unwrap();
    let slave =
        nix::fcntl::open(name.as_str(), OFlag::O_RDWR, nix::sys::stat::Mode::empty()).unwrap();
    let byte: libc::c_char = b'x' as libc::c_char;
    // SAFETY: TIOCSTI reads one byte from the pointer we pass.
    let sti = Errno::result(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSTI, &byte) });
    println!("tiocsti-own-pty {:?}", sti.map(drop));
    drop(slave);
    drop(master);
    println!("pty-closed survived");
}

/// As root inside: set groups, chown a file to other ids, then become another uid and gid.
fn switch_ids(dir: &str) {
    use nix::unistd::{Gid, Uid};
    let show = |key: &str, result: nix::Result<()>| match result {
        Ok(()) => println!("{key} ok"),
        Err(e) => println!("{key} {e:?}"),
    };
    println!("uid {}", nix::unistd::getuid());
    show(
        "setgroups",
        nix::unistd::setgroups(&[Gid::from_raw(1), Gid::from_raw(2)]),
    );
    let file = format!("{dir}/owned");
    std::fs::write(&file, b"x").unwrap();
    show(
        "chown",
        nix::unistd::chown(
            file.as_str(),
            Some(Uid::from_raw(1234)),
            Some(Gid::from_raw(5678)),
        ),
    );
    let meta = std::fs::metadata(&file).unwrap();
    println!(
        "owner {}:{}",
        std::os::unix::fs::MetadataExt::uid(&meta),
        std::os::unix::fs::MetadataExt::gid(&meta)
    );
    show("setgid", nix::unistd::setgid(Gid::from_raw(1000)));
    show("setuid", nix::unistd::setuid(Uid::from_raw(1000)));
    println!("now {}:{}", nix::unistd::getuid(), nix::unistd::getgid());
}

/// Opens every regular file below `roots` for writing, without writing (links are not
/// followed): what could be written. Opening a sysctl, /proc/sysrq-trigger or a sysfs
/// attribute does nothing until a write.
fn writable(roots: &[String]) {
    fn walk(path: &std::path::Path, found: &mut Vec<String>, refused: &mut Vec<String>) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(path) else {
                return;
            };
            for entry in entries.flatten() {
                walk(&entry.path(), found, refused);
            }
        } else if meta.is_file() {
            match std::fs::OpenOptions::new().write(true).open(path) {
                Ok(_) => found.push(path.display().to_string()),
                Err(e) => refused.push(errno_of(&e)),
            }
        }
    }
    let (mut found, mut refused) = (Vec::new(), Vec::new());
    for root in roots {
        walk(std::path::Path::new(root), &mut found, &mut refused);
    }
    refused.sort();
    refused.dedup();
    println!("writable {}", found.len());
    println!(
        "first-writable {}",
        found.first().map_or("-", String::as_str)
    );
    println!("refused-with {}", refused.join(","));
}

/// Creates up to `count` network namespaces, each kept alive by a descriptor, from one
/// new user namespace (which gives the capability to), and says how many it got.
fn nest(count: u32) {
    let mut held = Vec::new();
    let mut error = String::from("-");
    match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
        Err(e) => error = format!("user {e:?}"),
        Ok(()) => {
            while held.len() < count as usize {
                match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                    Ok(()) => held.push(std::fs::File::open("/proc/self/ns/net").unwrap()),
                    Err(e) => {
                        error = format!("{e:?}");
                        break;
                    }
                }
            }
        }
    }
    println!("namespaces {}", held.len());
    println!("nest-error {error}");
}

/// Sends `ping` to an echo server (a TCP address, or a Unix socket's path) and prints
/// what came back, or the errno.
fn echo(target: &str) {
    fn round_trip<S: Read + Write>(
        mut stream: S,
        shut: impl Fn(&S) -> std::io::Result<()>,
    ) -> std::io::Result<String> {
        stream.write_all(b"ping")?;
        shut(&stream)?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    }
    let write = std::net::Shutdown::Write;
    let reply = if target.starts_with('/') {
        std::os::unix::net::UnixStream::connect(target)
            .and_then(|s| round_trip(s, |s| s.shutdown(write)))
    } else {
        TcpStream::connect(target).and_then(|s| round_trip(s, |s| s.shutdown(write)))
    };
    match reply {
        Ok(reply) => println!("echo {reply}"),
        Err(e) => println!("echo {}", errno_of(&e)),
    }
}

/// Starts `count` sleepers (each gone after 30 s), stopping at the first refused fork.
/// Hostile: run only as a sandbox's program, where a process limit holds.
fn fork_storm(count: usize) {
    let mut sleepers = Vec::new();
    for n in 0..count {
        match std::process::Command::new("sleep").arg("30").spawn() {
            Ok(child) => sleepers.push(child),
            Err(e) => {
                println!("refused-at {n} {}", errno_of(&e));
                std::process::exit(1);
            }
        }
    }
    println!("started {count}");
}
