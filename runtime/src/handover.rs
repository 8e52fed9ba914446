//! What the supervisor takes from the handover socket. Only setup writes there (pid 1
//! closes its end before the program starts), but a descriptor is used with the
//! supervisor's privileges: an "upper layer" is read and copied out, a "listener" is
//! accepted on and relayed to the host. So each one must be what its tag says, for
//! something the plan asked for, and each at most once.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::fs::{FileType, OFlags};
use rustix::net::{AddressFamily, SocketType};

use crate::sys::Handed;

/// `statfs`'s `f_type` of a tmpfs, where every upper layer is made.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The descriptors still to come.
pub(crate) struct Expected {
    pending: Vec<Handed>,
    forwards: Vec<SocketAddr>,
}

/// Why a descriptor was not taken.
#[derive(Debug, thiserror::Error)]
#[error("setup handed over {what}, which the sandbox refuses: {why}")]
pub(crate) struct Refused {
    pub what: String,
    pub why: String,
}

impl Refused {
    /// A message that is not one descriptor with a known tag.
    pub fn malformed() -> Refused {
        Refused {
            what: "a message".into(),
            why: "not one descriptor with a known tag".into(),
        }
    }
}

impl Expected {
    /// A pty's master with `tty`, a listener per forwarded address, an upper layer per
    /// overlay (by its plan index).
    pub fn new(tty: bool, forwards: &[SocketAddr], overlays: &[usize]) -> Expected {
        let mut pending: Vec<Handed> = tty.then_some(Handed::Terminal).into_iter().collect();
        pending.extend((0..forwards.len() as u32).map(Handed::Listener));
        pending.extend(overlays.iter().map(|&index| Handed::Upper(index as u32)));
        Expected {
            pending,
            forwards: forwards.to_vec(),
        }
    }

    /// Whether everything has come: nothing more is taken.
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes `fd` for `handed` if the plan expects it still and it is of its kind.
    pub fn take(&mut self, handed: Handed, fd: &OwnedFd) -> Result<(), Refused> {
        let refuse = |why: String| Refused {
            what: format!("{handed:?}"),
            why,
        };
        let Some(position) = self.pending.iter().position(|&p| p == handed) else {
            return Err(refuse("not expected (again)".into()));
        };
        match handed {
            Handed::Terminal => check_pty_master(fd),
            Handed::Listener(index) => check_listener(fd, self.forwards[index as usize]),
            Handed::Upper(_) => check_upper_layer(fd),
        }
        .map_err(refuse)?;
        self.pending.swap_remove(position);
        Ok(())
    }
}

fn check_pty_master(fd: &OwnedFd) -> Result<(), String> {
    let stat = rustix::fs::fstat(fd).map_err(|e| format!("fstat: {e}"))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::CharacterDevice {
        return Err("not a character device".into());
    }
    // Only a pty's master answers TIOCGPTN.
    rustix::pty::ptsname(fd, Vec::new())
        .map(drop)
        .map_err(|e| format!("not a pty master: {e}"))
}

fn check_listener(fd: &OwnedFd, address: SocketAddr) -> Result<(), String> {
    let domain =
        rustix::net::sockopt::socket_domain(fd).map_err(|e| format!("not a socket: {e}"))?;
    let wanted = match address {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let stream = rustix::net::sockopt::socket_type(fd).map_err(|e| e.to_string())?;
    let listening = rustix::net::sockopt::socket_acceptconn(fd).map_err(|e| e.to_string())?;
    if domain != wanted || stream != SocketType::STREAM || !listening {
        return Err(format!("not a TCP socket listening for {address}"));
    }
    let bound = rustix::net::getsockname(fd)
        .ok()
        .and_then(|any| SocketAddr::try_from(any).ok());
    if bound != Some(address) {
        return Err(format!("bound to {bound:?}, not {address}"));
    }
    Ok(())
}

fn check_upper_layer(fd: &OwnedFd) -> Result<(), String> {
    let flags = rustix::fs::fcntl_getfl(fd).map_err(|e| format!("fcntl: {e}"))?;
    if flags.contains(OFlags::PATH) {
        return Err("an O_PATH descriptor".into());
    }
    let stat = rustix::fs::fstat(fd).map_err(|e| format!("fstat: {e}"))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Err("not a directory".into());
    }
    let fs = rustix::fs::fstatfs(fd).map_err(|e| format!("fstatfs: {e}"))?;
    if !is_tmpfs(&fs) {
        return Err("not on a tmpfs of the sandbox's".into());
    }
    Ok(())
}

// `f_type` is as wide as the architecture's `statfs` makes it.
#[allow(clippy::unnecessary_cast)]
fn is_tmpfs(fs: &rustix::fs::StatFs) -> bool {
    fs.f_type as i64 == TMPFS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_dir(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap()
    }

    fn listener(address: &str) -> (std::net::TcpListener, SocketAddr) {
        let listener = std::net::TcpListener::bind(address).unwrap();
        let address = listener.local_addr().unwrap();
        (listener, address)
    }

    #[test]
    fn only_what_the_plan_expects_and_only_once() {
        let (socket, address) = listener("127.0.0.1:0");
        let fd = OwnedFd::from(socket);
        let mut expected = Expected::new(false, &[address], &[]);
        let refused = expected.take(Handed::Terminal, &fd).unwrap_err();
        assert!(refused.why.contains("not expected"), "{refused}");
        assert!(expected.take(Handed::Listener(1), &fd).is_err());
        assert!(expected.take(Handed::Upper(0), &fd).is_err());
        expected.take(Handed::Listener(0), &fd).unwrap();
        assert!(expected.is_complete());
        assert!(expected.take(Handed::Listener(0), &fd).is_err());
    }

    #[test]
    fn a_listener_must_listen_on_its_own_address() {
        let (socket, address) = listener("127.0.0.1:0");
        let (other, _) = listener("127.0.0.1:0");
        let mut expected = Expected::new(false, &[address], &[]);
        let refused = expected
            .take(Handed::Listener(0), &OwnedFd::from(other))
            .unwrap_err();
        assert!(refused.why.contains("bound to"), "{refused}");
        let connected = std::net::TcpStream::connect(address).unwrap();
        let refused = expected
            .take(Handed::Listener(0), &OwnedFd::from(connected))
            .unwrap_err();
        assert!(refused.why.contains("listening"), "{refused}");
        let dir = tempfile::tempdir().unwrap();
        assert!(
            expected
                .take(Handed::Listener(0), &open_dir(dir.path()))
                .is_err()
        );
        expected
            .take(Handed::Listener(0), &OwnedFd::from(socket))
            .unwrap();
    }

    #[test]
    fn an_upper_layer_is_a_readable_directory_on_a_tmpfs() {
        let mut expected = Expected::new(false, &[], &[3]);
        // A host directory (the workspace) is refused: its files would be listed and
        // copied out with the supervisor's privileges.
        let host = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        if rustix::fs::statfs(host).is_ok_and(|fs| !is_tmpfs(&fs)) {
            let refused = expected
                .take(Handed::Upper(3), &open_dir(host))
                .unwrap_err();
            assert!(refused.why.contains("tmpfs"), "{refused}");
        }
        let (socket, _) = listener("127.0.0.1:0");
        assert!(
            expected
                .take(Handed::Upper(3), &OwnedFd::from(socket))
                .is_err()
        );
        let shm = std::path::Path::new("/dev/shm");
        if rustix::fs::statfs(shm).is_ok_and(|fs| is_tmpfs(&fs)) {
            let path_only = rustix::fs::open(
                shm,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            let refused = expected.take(Handed::Upper(3), &path_only).unwrap_err();
            assert!(refused.why.contains("O_PATH"), "{refused}");
            expected.take(Handed::Upper(3), &open_dir(shm)).unwrap();
        }
    }

    #[test]
    fn a_terminal_is_a_pty_master() {
        let mut expected = Expected::new(true, &[], &[]);
        let null = rustix::fs::open(
            "/dev/null",
            OFlags::RDWR | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let refused = expected.take(Handed::Terminal, &null).unwrap_err();
        assert!(refused.why.contains("pty master"), "{refused}");
        let Ok(master) =
            rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
        else {
            return;
        };
        expected.take(Handed::Terminal, &master).unwrap();
    }
}
