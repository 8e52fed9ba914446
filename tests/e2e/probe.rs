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
        "proc-writable" => proc_writable(),
        "nest" => nest(rest[0].parse().expect("count")),
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

/// Opens every kernel-wide /proc file for writing, without writing: what could be written.
/// Opening a sysctl or /proc/sysrq-trigger does nothing until a write.
fn proc_writable() {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>, refused: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                walk(&path, found, refused);
            } else if kind.is_file() {
                match std::fs::OpenOptions::new().write(true).open(&path) {
                    Ok(_) => found.push(path.display().to_string()),
                    Err(e) => refused.push(errno_of(&e)),
                }
            }
        }
    }
    let (mut found, mut refused) = (Vec::new(), Vec::new());
    for top in ["sys", "sysrq-trigger", "irq", "bus", "fs"] {
        let path = std::path::Path::new("/proc").join(top);
        if path.is_dir() {
            walk(&path, &mut found, &mut refused);
        } else {
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(_) => found.push(path.display().to_string()),
                Err(e) => refused.push(errno_of(&e)),
            }
        }
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
