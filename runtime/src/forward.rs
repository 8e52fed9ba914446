//! The host end of `Spec::forwards`: listening sockets that setup created inside the
//! sandbox's network namespace arrive here, and each connection accepted on one is
//! relayed to the same address in the supervisor's (the host's) network namespace.
//!
//! The supervisor is single-threaded, so the relay lives in its poll loop: every socket is
//! non-blocking, each direction has one bounded buffer, and a side is read only while its
//! buffer has room. Under `--chaos net` each chunk read waits in its buffer until its
//! drawn delay is over ([`NetDelay`]): the loop polls again by [`Forwarder::next_due`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use rustix::io::Errno;
use rustix::net::{AddressFamily, Shutdown, SocketFlags, SocketType};

use crate::chaos::{NetDelay, RETRANSMIT_MS};

/// Bytes buffered per direction of one connection.
const BUFFER: usize = 64 * 1024;
/// Connections relayed at once; more wait in the listener's backlog.
const MAX_RELAYS: usize = 256;

/// Which descriptor of the forwarder a poll result is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Token {
    Listener(usize),
    Inside(usize),
    Outside(usize),
}

#[derive(Default)]
pub(crate) struct Forwarder {
    listeners: Vec<(OwnedFd, SocketAddr)>,
    relays: Vec<Option<Relay>>,
    net: Option<NetDelay>,
    /// Connections accepted so far: each draws its delays from the seed and its number.
    accepted: u64,
}

struct Relay {
    /// Accepted inside the sandbox.
    inside: OwnedFd,
    /// Connecting or connected to the host's address.
    outside: OwnedFd,
    connected: bool,
    to_outside: Buffer,
    to_inside: Buffer,
}

/// One direction: bytes read from one side, not yet written to the other.
struct Buffer {
    /// Due to be written.
    bytes: Vec<u8>,
    /// Read but held back by net chaos, each chunk until its time, in the order read.
    held: VecDeque<(Instant, Vec<u8>)>,
    delay: Option<Delay>,
    /// The reading side said EOF (or failed): once empty, the writing side is shut.
    closed: bool,
    shut: bool,
}

/// One direction's share of a [`NetDelay`], with its own draws.
struct Delay {
    net: NetDelay,
    rng: fastrand::Rng,
    /// When the last chunk held is due: a later one is never due before it.
    last_due: Instant,
}

impl Delay {
    fn due(&mut self, now: Instant) -> Instant {
        let mut ms = self.net.delay_ms + self.rng.u32(..=self.net.jitter_ms);
        if self.rng.u32(..100) < self.net.loss_percent {
            ms += RETRANSMIT_MS;
        }
        self.last_due = self
            .last_due
            .max(now + Duration::from_millis(u64::from(ms)));
        self.last_due
    }
}

impl Buffer {
    fn new(delay: Option<Delay>) -> Buffer {
        Buffer {
            bytes: Vec::with_capacity(BUFFER),
            held: VecDeque::new(),
            delay,
            closed: false,
            shut: false,
        }
    }

    fn len(&self) -> usize {
        self.bytes.len()
            + self
                .held
                .iter()
                .map(|(_, chunk)| chunk.len())
                .sum::<usize>()
    }

    fn wants_read(&self) -> bool {
        !self.closed && self.len() < BUFFER
    }

    fn wants_write(&self) -> bool {
        !self.bytes.is_empty()
    }

    fn done(&self) -> bool {
        self.shut
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.held.clear();
    }

    /// When the first chunk held back is due.
    fn next_due(&self) -> Option<Instant> {
        self.held.front().map(|(due, _)| *due)
    }

    /// Moves the chunks that are due to the bytes to write; whether any was.
    fn release(&mut self, now: Instant) -> bool {
        let mut released = false;
        while let Some((due, _)) = self.held.front()
            && *due <= now
        {
            let (_, chunk) = self.held.pop_front().expect("looked at above");
            self.bytes.extend_from_slice(&chunk);
            released = true;
        }
        released
    }

    /// Reads what fits from `from`.
    fn fill(&mut self, from: BorrowedFd<'_>) {
        let mut chunk = [0u8; 16 * 1024];
        while self.wants_read() {
            let room = (BUFFER - self.len()).min(chunk.len());
            match rustix::io::read(from, &mut chunk[..room]) {
                Ok(0) => self.closed = true,
                Ok(n) => match &mut self.delay {
                    Some(delay) => {
                        let due = delay.due(Instant::now());
                        self.held.push_back((due, chunk[..n].to_vec()));
                    }
                    None => self.bytes.extend_from_slice(&chunk[..n]),
                },
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return,
                Err(_) => self.closed = true,
            }
        }
    }

    /// Writes what `to` takes; at the end of the stream, and once nothing is held back,
    /// shuts `to`'s sending side.
    fn drain(&mut self, to: BorrowedFd<'_>) {
        while !self.bytes.is_empty() {
            match rustix::io::write(to, &self.bytes) {
                Ok(n) => {
                    self.bytes.drain(..n);
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return,
                Err(_) => {
                    // The receiver is gone: nothing more can be delivered.
                    self.clear();
                    self.closed = true;
                }
            }
        }
        if self.closed && self.held.is_empty() && !self.shut {
            let _ = rustix::net::shutdown(to, Shutdown::Write);
            self.shut = true;
        }
    }
}

impl Forwarder {
    /// A relay that holds every chunk back as `net` says, if it says.
    pub fn new(net: Option<NetDelay>) -> Forwarder {
        Forwarder {
            net,
            ..Forwarder::default()
        }
    }

    /// When a chunk held back by net chaos is due to be written: the supervisor's poll
    /// must return by then and call [`Forwarder::release`].
    pub fn next_due(&self) -> Option<Instant> {
        self.relays
            .iter()
            .flatten()
            .filter(|relay| relay.connected)
            .flat_map(|relay| [relay.to_outside.next_due(), relay.to_inside.next_due()])
            .flatten()
            .min()
    }

    /// Writes what has become due since the last poll, on the connections it came due on.
    pub fn release(&mut self, now: Instant) {
        for index in 0..self.relays.len() {
            if let Some(relay) = self.relays[index].as_mut() {
                let outside = relay.to_outside.release(now);
                let inside = relay.to_inside.release(now);
                if outside || inside {
                    self.pump(index);
                }
            }
        }
    }

    /// Takes a listening socket made inside the sandbox for `address`. Only a loopback
    /// address is ever relayed to: the spec's validation allows no other, and the relay
    /// holds to it too, since it connects from the host's network namespace.
    pub fn add_listener(&mut self, listener: OwnedFd, address: SocketAddr) {
        if !address.ip().is_loopback() {
            return;
        }
        // Accepted until none waits, in the poll loop: it must never block.
        if rustix::io::ioctl_fionbio(&listener, true).is_ok() {
            self.listeners.push((listener, address));
        }
    }

    /// The descriptors to poll now, with what to poll them for.
    pub fn interest(&self) -> Vec<(Token, BorrowedFd<'_>, PollFlags)> {
        let mut interest = Vec::new();
        if self.relays.iter().flatten().count() < MAX_RELAYS {
            for (index, (listener, _)) in self.listeners.iter().enumerate() {
                interest.push((Token::Listener(index), listener.as_fd(), PollFlags::POLLIN));
            }
        }
        for (index, relay) in self.relays.iter().enumerate() {
            let Some(relay) = relay else { continue };
            let mut inside = PollFlags::empty();
            let mut outside = PollFlags::empty();
            if !relay.connected {
                outside |= PollFlags::POLLOUT;
            } else {
                if relay.to_outside.wants_read() {
                    inside |= PollFlags::POLLIN;
                }
                if relay.to_inside.wants_read() {
                    outside |= PollFlags::POLLIN;
                }
                if relay.to_outside.wants_write() {
                    outside |= PollFlags::POLLOUT;
                }
                if relay.to_inside.wants_write() {
                    inside |= PollFlags::POLLOUT;
                }
            }
            // Always polled, for POLLHUP and POLLERR, which need no flag.
            interest.push((Token::Inside(index), relay.inside.as_fd(), inside));
            interest.push((Token::Outside(index), relay.outside.as_fd(), outside));
        }
        interest
    }

    /// Acts on a descriptor poll found ready with `events`.
    pub fn ready(&mut self, token: Token, events: PollFlags) {
        let hung_up = events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR);
        match token {
            Token::Listener(index) => self.accept(index),
            Token::Inside(index) | Token::Outside(index) => {
                if hung_up && let Some(relay) = self.relays[index].as_mut() {
                    // Nothing more can be written to a side that hung up.
                    let buffer = match token {
                        Token::Inside(_) => &mut relay.to_inside,
                        _ => &mut relay.to_outside,
                    };
                    if relay.connected || matches!(token, Token::Inside(_)) {
                        buffer.clear();
                        buffer.closed = true;
                    }
                }
                self.pump(index)
            }
        }
    }

    fn accept(&mut self, index: usize) {
        let (listener, address) = &self.listeners[index];
        let address = *address;
        loop {
            let inside = match rustix::net::accept_with(
                listener,
                SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            ) {
                Ok(fd) => fd,
                Err(Errno::INTR) => continue,
                Err(_) => return,
            };
            // A host that refuses reads as a reset connection inside, as it would there.
            let Ok(outside) = connect_to(address) else {
                continue;
            };
            let relay = Relay {
                inside,
                outside,
                connected: false,
                to_outside: Buffer::new(self.delay(0)),
                to_inside: Buffer::new(self.delay(1)),
            };
            self.accepted += 1;
            match self.relays.iter().position(Option::is_none) {
                Some(free) => self.relays[free] = Some(relay),
                None => self.relays.push(Some(relay)),
            }
            if self.relays.iter().flatten().count() >= MAX_RELAYS {
                return;
            }
        }
    }

    /// Direction `direction` of the next connection's delays, if net chaos is on.
    fn delay(&self, direction: u64) -> Option<Delay> {
        let net = self.net?;
        let stream = net.seed ^ (self.accepted * 2 + direction).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Some(Delay {
            net,
            rng: fastrand::Rng::with_seed(stream),
            last_due: Instant::now(),
        })
    }

    fn pump(&mut self, index: usize) {
        let Some(relay) = self.relays[index].as_mut() else {
            return;
        };
        if !relay.connected {
            match rustix::net::sockopt::socket_error(&relay.outside) {
                Ok(Ok(())) => {
                    // Still in progress unless the socket now has a peer.
                    if rustix::net::getpeername(&relay.outside).is_err() {
                        return;
                    }
                    relay.connected = true;
                }
                _ => {
                    self.relays[index] = None;
                    return;
                }
            }
        }
        relay.to_outside.fill(relay.inside.as_fd());
        relay.to_inside.fill(relay.outside.as_fd());
        relay.to_outside.drain(relay.outside.as_fd());
        relay.to_inside.drain(relay.inside.as_fd());
        if relay.to_outside.done() && relay.to_inside.done() {
            self.relays[index] = None;
        }
    }
}

/// A non-blocking connect to `address`, in this process's network namespace.
fn connect_to(address: SocketAddr) -> Result<OwnedFd, Errno> {
    let family = match address {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&socket, &address) {
        Ok(()) | Err(Errno::INPROGRESS) => Ok(socket),
        Err(errno) => Err(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> OwnedFd {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        OwnedFd::from(socket)
    }

    #[test]
    fn only_loopback_addresses_are_relayed_to() {
        let mut forwarder = Forwarder::default();
        forwarder.add_listener(listener(), "10.0.0.1:5432".parse().unwrap());
        forwarder.add_listener(listener(), "[::ffff:127.0.0.1]:5432".parse().unwrap());
        assert!(forwarder.listeners.is_empty());
        forwarder.add_listener(listener(), "127.0.0.2:5432".parse().unwrap());
        forwarder.add_listener(listener(), "[::1]:5432".parse().unwrap());
        assert_eq!(forwarder.listeners.len(), 2);
    }

    /// Relays one ping through `forwarder` to an upper-casing server on the host and
    /// returns the reply and how long the client waited for it, as the supervisor's loop
    /// would drive the relay.
    fn ping_through(mut forwarder: Forwarder) -> (String, Duration) {
        use std::io::{Read, Write};
        let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = host.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = host.accept().unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).unwrap();
            stream.write_all(text.to_uppercase().as_bytes()).unwrap();
        });
        let inside = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inside_address = inside.local_addr().unwrap();
        forwarder.add_listener(OwnedFd::from(inside), address);
        let client = std::thread::spawn(move || {
            let started = Instant::now();
            let mut stream = std::net::TcpStream::connect(inside_address).unwrap();
            stream.write_all(b"ping").unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).unwrap();
            (reply, started.elapsed())
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client.is_finished() && Instant::now() < deadline {
            let interest = forwarder.interest();
            let tokens: Vec<Token> = interest.iter().map(|(t, _, _)| *t).collect();
            let mut fds: Vec<nix::poll::PollFd<'_>> = interest
                .iter()
                .map(|(_, fd, events)| nix::poll::PollFd::new(*fd, *events))
                .collect();
            let wait = forwarder.next_due().map_or(100, |due| {
                due.saturating_duration_since(Instant::now()).as_millis() as u16 + 1
            });
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(wait.min(100))).unwrap();
            let events: Vec<PollFlags> = fds
                .iter()
                .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);
            drop(interest);
            forwarder.release(Instant::now());
            for (token, events) in tokens.into_iter().zip(events) {
                if !events.is_empty() {
                    forwarder.ready(token, events);
                }
            }
        }
        let reply = client.join().unwrap();
        server.join().unwrap();
        reply
    }

    #[test]
    fn a_connection_is_relayed_both_ways_until_both_ends_close() {
        let (reply, _) = ping_through(Forwarder::default());
        assert_eq!(reply, "PING");
    }

    #[test]
    fn net_chaos_holds_every_chunk_back_in_each_direction() {
        let net = NetDelay {
            delay_ms: 60,
            jitter_ms: 0,
            loss_percent: 0,
            seed: 3,
        };
        let (reply, took) = ping_through(Forwarder::new(Some(net)));
        assert_eq!(reply, "PING");
        // The ping, its end and the reply each wait 60 ms; the ping's end and the
        // reply's may overlap with the ping's wait, the reply's cannot.
        assert!(took >= Duration::from_millis(120), "{took:?}");
    }

    #[test]
    fn a_lost_chunk_comes_a_retransmission_later_and_in_order() {
        let mut delay = Delay {
            net: NetDelay {
                delay_ms: 10,
                jitter_ms: 0,
                loss_percent: 100,
                seed: 1,
            },
            rng: fastrand::Rng::with_seed(1),
            last_due: Instant::now(),
        };
        let now = Instant::now();
        let first = delay.due(now);
        assert!(first >= now + Duration::from_millis(u64::from(10 + RETRANSMIT_MS)));
        delay.net.loss_percent = 0;
        assert_eq!(
            delay.due(now),
            first,
            "never before the chunk held before it"
        );
    }
}
