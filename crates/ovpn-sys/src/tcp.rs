//! Framed I/O on a TCP stream, as OpenVPN frames its packets over TCP: each
//! packet is preceded by its length as a 2-byte big-endian number
//! (`spec/kernel-behaviour.md` §3.4).
//!
//! [`FrameReader`] collects whole frames out of however the stream happens
//! to be cut into reads, without allocating per frame; [`FrameWriter`]
//! queues frames and resumes partial writes when the socket becomes
//! writable again. Both work on any `Read`/`Write` (for a socket, a
//! `TcpStream` or `&TcpStream`, blocking or not). What a frame means, and
//! which lengths are acceptable to the data channel, is the caller's call.

use std::io::{self, Read, Write};

use crate::{Error, Result};

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 2;

/// The largest frame payload the prefix can describe.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;

/// One complete frame, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    raw: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The packet, without the length prefix.
    pub fn payload(&self) -> &'a [u8] {
        &self.raw[PREFIX_LEN..]
    }

    /// The frame as it was on the wire, length prefix included (what the
    /// control plane expects to read, §3.4).
    pub fn with_prefix(&self) -> &'a [u8] {
        self.raw
    }
}

/// Reassembles frames from a byte stream.
pub struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl FrameReader {
    /// A reader whose buffer holds at least one maximal frame.
    pub fn new() -> Self {
        Self::with_capacity(2 * (PREFIX_LEN + MAX_FRAME_LEN))
    }

    /// A reader with a `capacity`-byte buffer (raised to one maximal frame);
    /// a larger buffer takes more frames per read.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(PREFIX_LEN + MAX_FRAME_LEN)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Reads once from `stream` into the buffer and returns the byte count;
    /// 0 means end of stream. Take the complete frames out with
    /// [`FrameReader::next_frame`] before reading again: a buffer full of
    /// frames nobody took cannot read more.
    ///
    /// # Errors
    ///
    /// The read failing (would-block on an empty non-blocking socket); the
    /// buffer being full of complete frames nobody took.
    pub fn read_from<R: Read>(&mut self, stream: &mut R) -> Result<usize> {
        self.make_room();
        if self.end == self.buf.len() {
            return Err(Error::InvalidArgument {
                call: "read(tcp)",
                reason: "frame buffer full: take frames before reading more",
            });
        }
        loop {
            match stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(Error::io("read(tcp)", err)),
            }
        }
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        let len = self.frame_len()?;
        let total = PREFIX_LEN + len;
        if self.end - self.start < total {
            return None;
        }
        let raw = &self.buf[self.start..self.start + total];
        self.start += total;
        Some(Frame { raw })
    }

    /// Bytes buffered but not yet returned as a frame. Non-zero at end of
    /// stream means the peer stopped in the middle of a frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The payload length announced by the buffered prefix, if complete.
    fn frame_len(&self) -> Option<usize> {
        let prefix = self.buf.get(self.start..self.start + PREFIX_LEN)?;
        if self.end - self.start < PREFIX_LEN {
            return None;
        }
        Some(usize::from(u16::from_be_bytes([prefix[0], prefix[1]])))
    }

    /// Moves the unread tail to the front when the current frame could not
    /// otherwise be completed in the space left.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            return;
        }
        let needed = self.frame_len().map_or(PREFIX_LEN, |len| PREFIX_LEN + len);
        if self.start > 0 && self.buf.len() - self.start < needed.max(self.buffered() + 1) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("capacity", &self.buf.len())
            .field("buffered", &self.buffered())
            .finish()
    }
}

/// Whether a flush emptied the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued has been written.
    Done,
    /// The socket is full; this many bytes wait for writability.
    Pending(usize),
}

/// Queues frames and writes them out, resuming partial writes.
pub struct FrameWriter {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl FrameWriter {
    /// A writer that can queue `capacity` bytes (raised to one maximal
    /// frame with its prefix).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(PREFIX_LEN + MAX_FRAME_LEN)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Queues `payload` behind a length prefix. Returns `false`, queueing
    /// nothing, if there is not enough room (flush first).
    ///
    /// # Errors
    ///
    /// A payload longer than [`MAX_FRAME_LEN`].
    pub fn push_frame(&mut self, payload: &[u8]) -> Result<bool> {
        let len = u16::try_from(payload.len()).map_err(|_| Error::InvalidArgument {
            call: "FrameWriter::push_frame",
            reason: "payload longer than 65535 bytes",
        })?;
        if !self.reserve(PREFIX_LEN + payload.len()) {
            return Ok(false);
        }
        self.buf[self.end..self.end + PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
        self.end += PREFIX_LEN;
        self.buf[self.end..self.end + payload.len()].copy_from_slice(payload);
        self.end += payload.len();
        Ok(true)
    }

    /// Queues bytes that are already framed (the control plane writes its
    /// own prefix, §3.4). Returns `false`, queueing nothing, if there is not
    /// enough room.
    pub fn push_raw(&mut self, framed: &[u8]) -> bool {
        if !self.reserve(framed.len()) {
            return false;
        }
        self.buf[self.end..self.end + framed.len()].copy_from_slice(framed);
        self.end += framed.len();
        true
    }

    /// Writes as much of the queue as `stream` takes.
    ///
    /// # Errors
    ///
    /// A write failing with anything but would-block or interruption, or
    /// writing zero bytes (`WriteZero`, the peer is gone).
    pub fn flush_to<W: Write>(&mut self, stream: &mut W) -> Result<Flush> {
        while self.start < self.end {
            match stream.write(&self.buf[self.start..self.end]) {
                Ok(0) => {
                    return Err(Error::io("write(tcp)", io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => self.start += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flush::Pending(self.pending()));
                }
                Err(err) => return Err(Error::io("write(tcp)", err)),
            }
        }
        self.start = 0;
        self.end = 0;
        Ok(Flush::Done)
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Drops everything queued (e.g. when the peer is removed).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Makes `len` bytes of room at the end, compacting if needed.
    fn reserve(&mut self, len: usize) -> bool {
        if self.buf.len() - self.end >= len {
            return true;
        }
        if self.buf.len() - self.pending() < len {
            return false;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        true
    }
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter")
            .field("capacity", &self.buf.len())
            .field("pending", &self.pending())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out the stream `chunk` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.chunk.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Takes at most `room` bytes, then reports would-block.
    struct Sink {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.room.min(buf.len());
            self.taken.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn stream_of(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&(f.len() as u16).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    fn read_all(reader: &mut FrameReader, src: &mut impl Read) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        // Bounded: one read per byte at worst, plus the final would-block.
        for _ in 0..100_000 {
            match reader.read_from(src) {
                Ok(_) => {}
                Err(err) if err.is_would_block() => break,
                Err(err) => panic!("{err}"),
            }
            while let Some(f) = reader.next_frame() {
                frames.push(f.payload().to_vec());
            }
        }
        frames
    }

    #[test]
    fn frames_split_byte_by_byte_are_reassembled() {
        let big = vec![0xab; 1500];
        let frames: [&[u8]; 4] = [b"\x48\x00\x00\x01hello", b"", &big, b"z"];
        let bytes = stream_of(&frames);
        assert_eq!(&bytes[..2], &[0, 9]);

        let mut reader = FrameReader::new();
        let got = read_all(
            &mut reader,
            &mut Trickle {
                data: &bytes,
                chunk: 1,
            },
        );
        assert_eq!(got, frames.map(<[u8]>::to_vec));
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn frames_survive_buffer_wraparound() {
        // Many maximal frames through a minimal buffer, in odd-sized reads.
        let max = vec![7u8; MAX_FRAME_LEN];
        let small = [1u8; 3];
        let frames: Vec<&[u8]> = (0..6).flat_map(|_| [&max[..], &small[..]]).collect();
        let bytes = stream_of(&frames);
        let mut reader = FrameReader::with_capacity(0);
        let got = read_all(
            &mut reader,
            &mut Trickle {
                data: &bytes,
                chunk: 40_000,
            },
        );
        assert_eq!(got.len(), frames.len());
        assert!(got.iter().zip(&frames).all(|(g, f)| g == f));
    }

    #[test]
    fn prefix_is_kept_for_the_control_plane() {
        let bytes = stream_of(&[b"\x38abc"]);
        let mut reader = FrameReader::new();
        reader.read_from(&mut &bytes[..]).unwrap();
        let frame = reader.next_frame().unwrap();
        assert_eq!(frame.with_prefix(), &[0, 4, 0x38, b'a', b'b', b'c']);
        assert_eq!(frame.payload(), b"\x38abc");
    }

    #[test]
    fn partial_frame_at_end_of_stream_stays_buffered() {
        let bytes = stream_of(&[b"complete", b"cut short"]);
        let cut = &bytes[..bytes.len() - 3];
        let mut reader = FrameReader::new();
        let mut src = cut;
        assert_eq!(reader.read_from(&mut src).unwrap(), cut.len());
        assert_eq!(reader.next_frame().unwrap().payload(), b"complete");
        assert!(reader.next_frame().is_none());
        assert_eq!(reader.read_from(&mut src).unwrap(), 0, "end of stream");
        assert_eq!(reader.buffered(), 2 + 6);
    }

    #[test]
    fn full_reader_refuses_to_read() {
        let bytes = stream_of(&vec![&[0u8; 100][..]; 700]);
        let mut reader = FrameReader::with_capacity(0);
        let mut src = &bytes[..];
        reader.read_from(&mut src).unwrap();
        assert!(matches!(
            reader.read_from(&mut src),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(reader.next_frame().is_some());
    }

    #[test]
    fn writer_resumes_partial_writes_in_order() {
        let mut writer = FrameWriter::with_capacity(0);
        assert!(writer.push_frame(b"first").unwrap());
        assert!(writer.push_raw(&[0, 2, b'o', b'k']));
        assert!(writer.push_frame(&[9u8; 1000]).unwrap());
        let total = writer.pending();
        assert_eq!(total, 7 + 4 + 1002);

        let mut sink = Sink {
            taken: Vec::new(),
            room: 3,
        };
        assert_eq!(
            writer.flush_to(&mut sink).unwrap(),
            Flush::Pending(total - 3)
        );
        // Byte-by-byte from here on.
        for _ in 0..total {
            sink.room = 1;
            if writer.flush_to(&mut sink).unwrap() == Flush::Done {
                break;
            }
        }
        assert_eq!(writer.pending(), 0);

        let mut reader = FrameReader::new();
        let got = read_all(
            &mut reader,
            &mut Trickle {
                data: &sink.taken,
                chunk: 5,
            },
        );
        assert_eq!(got, [b"first".to_vec(), b"ok".to_vec(), vec![9u8; 1000]]);
    }

    #[test]
    fn writer_reports_full_and_oversized() {
        let mut writer = FrameWriter::with_capacity(0);
        assert!(writer.push_frame(&vec![1u8; MAX_FRAME_LEN]).unwrap());
        assert!(!writer.push_frame(b"x").unwrap(), "no room left");
        assert!(writer.push_frame(&vec![0u8; MAX_FRAME_LEN + 1]).is_err());

        // Once part is written, the freed front is reused.
        let mut sink = Sink {
            taken: Vec::new(),
            room: 10,
        };
        writer.flush_to(&mut sink).unwrap();
        assert!(writer.push_frame(b"abcdefgh").unwrap());
        writer.clear();
        assert_eq!(writer.pending(), 0);
    }
}
