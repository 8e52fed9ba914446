//! Bounded capture of a stream: the head and the tail are kept, the middle is counted.

use std::collections::VecDeque;

/// Default bytes kept per stream: half from the start, half from the end.
pub const DEFAULT_CAPTURE_LIMIT: usize = 4 << 20;

/// Raw bytes of a stream, bounded in memory however much the program prints.
#[derive(Clone, Debug, Default)]
pub struct Captured {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    half: usize,
    total: u64,
}

impl Captured {
    pub fn new(limit: usize) -> Captured {
        let half = limit / 2;
        Captured {
            head: Vec::new(),
            tail: VecDeque::new(),
            half,
            total: 0,
        }
    }

    /// Rebuilds a capture sent elsewhere as its kept head, kept tail and total length.
    pub fn from_parts(head: Vec<u8>, tail: Vec<u8>, total: u64) -> Captured {
        let half = head.len().max(tail.len());
        Captured {
            head,
            tail: tail.into(),
            half,
            total,
        }
    }

    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn tail(&self) -> Vec<u8> {
        self.tail.iter().copied().collect()
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.half.saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        bytes = rest;
        if bytes.len() >= self.half {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.half..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.half);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    /// Every byte the stream carried, kept or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes that were counted but not kept.
    pub fn dropped(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    pub fn truncated(&self) -> bool {
        self.dropped() > 0
    }

    /// The kept bytes, raw, with a marker line where the middle was dropped.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        if self.truncated() {
            let marker = format!("\n[isotest: {} bytes dropped]\n", self.dropped());
            out.extend_from_slice(marker.as_bytes());
        }
        out.extend(self.tail.iter());
        out
    }

    /// The kept bytes for display; invalid UTF-8 becomes U+FFFD.
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut c = Captured::new(16);
        c.push(b"hello ");
        c.push(b"you");
        assert_eq!(c.bytes(), b"hello you");
        assert!(!c.truncated());
    }

    #[test]
    fn large_output_keeps_head_and_tail() {
        let mut c = Captured::new(8);
        for chunk in [&b"abc"[..], b"defgh", b"ijklmnop", b"qr"] {
            c.push(chunk);
        }
        assert_eq!(c.total(), 18);
        assert_eq!(c.dropped(), 10);
        let text = c.lossy();
        assert!(
            text.starts_with("abcd\n[isotest: 10 bytes dropped]\n"),
            "{text}"
        );
        assert!(text.ends_with("opqr"), "{text}");
    }

    #[test]
    fn one_huge_chunk_is_capped() {
        let mut c = Captured::new(1024);
        c.push(&vec![b'x'; 10 << 20]);
        assert!(c.bytes().len() < 1100);
        assert_eq!(c.total(), 10 << 20);
    }

    #[test]
    fn non_utf8_is_kept_raw() {
        let mut c = Captured::new(64);
        c.push(&[0xff, b'a', 0xfe]);
        assert_eq!(c.bytes(), [0xff, b'a', 0xfe]);
        assert_eq!(c.lossy(), "\u{fffd}a\u{fffd}");
    }
}
