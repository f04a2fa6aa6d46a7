//! A small client of the GDB remote serial protocol, as QEMU's gdbstub
//! speaks it: checksummed packets, no-ack mode once negotiated, memory and
//! register access, software breakpoints, continue and stop replies.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Why the target stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// It received a signal (GDB's target-independent numbering).
    Signal(u8),
    /// The process exited with this status.
    Exited(u8),
    /// The process was terminated by this signal.
    Terminated(u8),
}

/// GDB signal numbers (`gdb/signals.def`).
pub(crate) mod signal {
    pub const INT: u8 = 2;
    pub const ILL: u8 = 4;
    pub const TRAP: u8 = 5;
    pub const FPE: u8 = 8;
    pub const BUS: u8 = 10;
    pub const SEGV: u8 = 11;
}

/// Largest memory transfer per packet, in bytes (QEMU's packet buffer holds
/// 4096 characters; `m`/`M` use two per byte).
const CHUNK: usize = 1024;

/// A connection to a GDB stub. QEMU 7.2 does not offer `QStartNoAckMode`,
/// so every packet is acknowledged.
pub(crate) struct Gdb {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    /// Acknowledgements are off (`QStartNoAckMode`).
    no_ack: bool,
    /// The process to send `SIGINT` to when a continue times out: QEMU's
    /// user-mode stub reads no Ctrl-C while the target runs, but reports
    /// the signal the process receives.
    pid: u32,
}

fn protocol(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The stub answered a memory read or write with an error reply: the
/// target's memory there is not accessible that way (unmapped, or not
/// writable), as opposed to a broken connection or a garbled reply.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Refused(message))
}

/// Whether `e` is the stub refusing a memory access (see [`Gdb::read_memory`]
/// and [`Gdb::write_memory`]), so the program's own access would fault.
pub(crate) fn is_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Refused>())
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Decode a hex string into bytes.
pub(crate) fn decode_hex(text: &[u8]) -> io::Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return Err(protocol(format!(
            "odd-length hex reply {:?}",
            String::from_utf8_lossy(text)
        )));
    }
    text.chunks_exact(2)
        .map(|pair| match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(protocol(format!(
                "bad hex reply {:?}",
                String::from_utf8_lossy(text)
            ))),
        })
        .collect()
}

/// Encode bytes as lower-case hex.
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Gdb {
    /// Speak the protocol over `stream`; negotiates no-ack mode.
    /// `pid` is the target process, interrupted by `SIGINT` on a timeout.
    pub(crate) fn new(stream: UnixStream, pid: u32) -> io::Result<Gdb> {
        let reader = BufReader::new(stream.try_clone()?);
        let mut gdb = Gdb {
            writer: stream,
            reader,
            no_ack: false,
            pid,
        };
        gdb.request("qSupported:swbreak+")?;
        if gdb.request("QStartNoAckMode")? == b"OK" {
            gdb.no_ack = true;
        }
        // QEMU answers `p`/`P` only to a client that has read the target
        // description.
        let reply = gdb.request("qXfer:features:read:target.xml:0,ffb")?;
        if !matches!(reply.first(), Some(b'l' | b'm')) {
            return Err(protocol(format!(
                "reading target.xml: {:?}",
                String::from_utf8_lossy(&reply)
            )));
        }
        Ok(gdb)
    }

    fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        let sum = payload.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        let mut packet = Vec::with_capacity(payload.len() + 4);
        packet.push(b'$');
        packet.extend_from_slice(payload);
        packet.extend_from_slice(format!("#{sum:02x}").as_bytes());
        loop {
            self.writer.write_all(&packet)?;
            if self.no_ack {
                return Ok(());
            }
            match self.read_byte()? {
                b'+' => return Ok(()),
                b'-' => continue,
                other => {
                    return Err(protocol(format!(
                        "expected an acknowledgement, got {:?}",
                        other as char
                    )));
                }
            }
        }
    }

    fn read_byte(&mut self) -> io::Result<u8> {
        let mut byte = [0];
        self.reader.read_exact(&mut byte)?;
        Ok(byte[0])
    }

    /// Receive one packet's payload, checksum verified, run-length encoding
    /// expanded.
    fn receive(&mut self) -> io::Result<Vec<u8>> {
        loop {
            // Skip stray acknowledgements up to the packet start.
            while self.read_byte()? != b'$' {}
            let mut raw = Vec::new();
            self.reader.read_until(b'#', &mut raw)?;
            if raw.pop() != Some(b'#') {
                return Err(protocol("connection closed inside a packet"));
            }
            let mut sum = [0; 2];
            self.reader.read_exact(&mut sum)?;
            let expected = decode_hex(&sum)?[0];
            let actual = raw.iter().fold(0u8, |s, &b| s.wrapping_add(b));
            if expected != actual {
                if self.no_ack {
                    return Err(protocol("packet checksum mismatch"));
                }
                self.writer.write_all(b"-")?;
                continue;
            }
            if !self.no_ack {
                self.writer.write_all(b"+")?;
            }
            let mut payload = Vec::with_capacity(raw.len());
            let mut i = 0;
            while i < raw.len() {
                match raw[i] {
                    b'*' if !payload.is_empty() && i + 1 < raw.len() => {
                        let count = raw[i + 1].wrapping_sub(29);
                        let last = *payload.last().unwrap_or(&0);
                        payload.extend(std::iter::repeat_n(last, count as usize));
                        i += 2;
                    }
                    b => {
                        payload.push(b);
                        i += 1;
                    }
                }
            }
            return Ok(payload);
        }
    }

    /// Send `payload` and return the reply's payload.
    pub(crate) fn request(&mut self, payload: &str) -> io::Result<Vec<u8>> {
        self.send(payload.as_bytes())?;
        self.receive()
    }

    /// Send `payload`, which must be answered `OK`.
    fn expect_ok(&mut self, payload: &str) -> io::Result<()> {
        let reply = self.request(payload)?;
        if reply == b"OK" {
            Ok(())
        } else {
            Err(protocol(format!(
                "{:?} answered {:?}",
                payload.split(':').next().unwrap_or(payload),
                String::from_utf8_lossy(&reply)
            )))
        }
    }

    /// Read `buf.len()` bytes at `address`; an error reply (no readable
    /// memory) is an error [`is_refused`] recognises.
    pub(crate) fn read_memory(&mut self, address: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut at = address;
        for chunk in buf.chunks_mut(CHUNK) {
            let reply = self.request(&format!("m{at:x},{:x}", chunk.len()))?;
            if reply.first() == Some(&b'E') {
                return Err(refused(format!(
                    "no readable memory at {at:#x} ({})",
                    String::from_utf8_lossy(&reply)
                )));
            }
            let bytes = decode_hex(&reply)?;
            if bytes.len() != chunk.len() {
                return Err(protocol(format!(
                    "read {} of {} bytes at {at:#x}",
                    bytes.len(),
                    chunk.len()
                )));
            }
            chunk.copy_from_slice(&bytes);
            at = at.wrapping_add(chunk.len() as u64);
        }
        Ok(())
    }

    /// Write `data` at `address`; an error reply (no writable memory) is an
    /// error [`is_refused`] recognises. A write spanning several packets
    /// may have written the first ones.
    pub(crate) fn write_memory(&mut self, address: u64, data: &[u8]) -> io::Result<()> {
        let mut at = address;
        for chunk in data.chunks(CHUNK) {
            let reply =
                self.request(&format!("M{at:x},{:x}:{}", chunk.len(), encode_hex(chunk)))?;
            match reply.first() {
                _ if reply == b"OK" => {}
                Some(b'E') => {
                    return Err(refused(format!(
                        "no writable memory at {at:#x} ({})",
                        String::from_utf8_lossy(&reply)
                    )));
                }
                _ => {
                    return Err(protocol(format!(
                        "writing memory at {at:#x}: answered {:?}",
                        String::from_utf8_lossy(&reply)
                    )));
                }
            }
            at = at.wrapping_add(chunk.len() as u64);
        }
        Ok(())
    }

    /// The raw bytes of register `number` (target byte order).
    pub(crate) fn read_register(&mut self, number: usize) -> io::Result<Vec<u8>> {
        let reply = self.request(&format!("p{number:x}"))?;
        if reply.first() == Some(&b'E') || reply.is_empty() {
            return Err(protocol(format!(
                "reading register {number}: {:?}",
                String::from_utf8_lossy(&reply)
            )));
        }
        decode_hex(&reply)
    }

    /// Set register `number` to `bytes` (target byte order).
    pub(crate) fn write_register(&mut self, number: usize, bytes: &[u8]) -> io::Result<()> {
        self.expect_ok(&format!("P{number:x}={}", encode_hex(bytes)))
    }

    /// Insert a software breakpoint.
    pub(crate) fn insert_breakpoint(&mut self, address: u64, kind: u32) -> io::Result<()> {
        self.expect_ok(&format!("Z0,{address:x},{kind:x}"))
    }

    /// Why the target is stopped now.
    pub(crate) fn stop_reason(&mut self) -> io::Result<Stop> {
        let reply = self.request("?")?;
        parse_stop(&reply)?.ok_or_else(|| protocol("no stop reply to '?'"))
    }

    /// Continue (dropping any pending signal) and wait for the next stop;
    /// after `timeout`, interrupt the target and fail.
    pub(crate) fn resume(&mut self, timeout: Option<Duration>) -> io::Result<Stop> {
        self.send(b"c")?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut interrupted = false;
        loop {
            let wait = match deadline {
                Some(d) if !interrupted => Some(
                    d.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ),
                _ => None,
            };
            self.writer.set_read_timeout(wait)?;
            let packet = self.receive();
            self.writer.set_read_timeout(None)?;
            let packet = match packet {
                Ok(packet) => packet,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Not Ctrl-C, which QEMU's user-mode stub reads only
                    // once the target has stopped (and then answers with
                    // a second stop reply): SIGINT, which it reports.
                    if let Ok(pid) = libc::pid_t::try_from(self.pid) {
                        // SAFETY: sending a signal to our own child.
                        unsafe { libc::kill(pid, libc::SIGINT) };
                    }
                    interrupted = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(stop) = parse_stop(&packet)? {
                if interrupted {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "timed out after {:?} (stopped: {stop:?})",
                            timeout.unwrap_or_default()
                        ),
                    ));
                }
                return Ok(stop);
            }
            // `O` console output and anything else: keep waiting.
        }
    }

    /// Kill the target (no reply is expected).
    pub(crate) fn kill(&mut self) {
        let _ = self.send(b"k");
    }
}

/// The stop a reply reports, `None` for other packets (console output).
fn parse_stop(reply: &[u8]) -> io::Result<Option<Stop>> {
    let number = || -> io::Result<u8> {
        let digits = reply
            .get(1..3)
            .ok_or_else(|| protocol("short stop reply"))?;
        Ok(decode_hex(digits)?[0])
    };
    Ok(match reply.first() {
        Some(b'T' | b'S') => Some(Stop::Signal(number()?)),
        Some(b'W') => Some(Stop::Exited(number()?)),
        Some(b'X') => Some(Stop::Terminated(number()?)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(encode_hex(&bytes), "00017f80ff");
        assert_eq!(decode_hex(b"00017f80ff").unwrap(), bytes);
        assert!(decode_hex(b"0").is_err());
        assert!(decode_hex(b"zz").is_err());
    }

    #[test]
    fn stop_replies_parse() {
        assert_eq!(parse_stop(b"T05thread:01;").unwrap(), Some(Stop::Signal(5)));
        assert_eq!(parse_stop(b"S0b").unwrap(), Some(Stop::Signal(11)));
        assert_eq!(parse_stop(b"W00").unwrap(), Some(Stop::Exited(0)));
        assert_eq!(parse_stop(b"X09").unwrap(), Some(Stop::Terminated(9)));
        assert_eq!(parse_stop(b"O6869").unwrap(), None);
        assert!(parse_stop(b"T").is_err());
    }
}
