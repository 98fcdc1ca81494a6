//! The guest's machine-readable report lines, one per start-up task:
//!
//! ```text
//! kvmlab-report {"type":"ping","target":"10.0.0.2","sent":3,"received":3,"loss_pct":0}
//! kvmlab-report {"type":"arping","target":"1.2.3.4","sent":0,"received":0,"loss_pct":100,"error":"no interface"}
//! kvmlab-report {"type":"disk","index":0,"sectors":2048,"fnv1a64":"0xaf63dc4c8601ec8c"}
//! kvmlab-report {"type":"disk","index":1,"sectors":0,"error":"empty disk"}
//! kvmlab-report {"type":"done"}
//! ```
//!
//! Each line is [`REPORT_PREFIX`] and a JSON object whose keys always come in the
//! order shown. The guest writes a line through `core::fmt::Write`
//! ([`ProbeReport::write_line`], [`DiskReport::write_line`]) or, for the last one,
//! as the bytes of [`DONE_LINE`]; the host reads lines back with [`Report::parse`],
//! a parser of exactly this shape (no JSON library needed).

use core::fmt;

use crate::ipv4::{Dotted, Ipv4, parse_ipv4};
use crate::text::cut;

/// What every report line starts with.
pub const REPORT_PREFIX: &str = "kvmlab-report ";
/// The line the guest prints once every other report line is out.
pub const DONE_LINE: &str = "kvmlab-report {\"type\":\"done\"}";

/// Lost probes in percent, rounded down (100 when nothing was sent).
pub fn loss_pct(sent: u32, received: u32) -> u32 {
    if sent == 0 {
        return 100;
    }
    (u64::from(sent.saturating_sub(received)) * 100 / u64::from(sent)) as u32
}

/// The kind of a probe: the report's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// ICMP echo requests (`kvmlab.ping`): `"ping"`.
    Ping,
    /// ARP requests (`kvmlab.arping`): `"arping"`.
    Arping,
}

impl ProbeKind {
    /// The report's `type` for this kind.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Ping => "ping",
            ProbeKind::Arping => "arping",
        }
    }

    /// The kind whose [`name`](Self::name) is `name`.
    pub fn from_name(name: &str) -> Option<ProbeKind> {
        [ProbeKind::Ping, ProbeKind::Arping]
            .into_iter()
            .find(|kind| kind.name() == name)
    }
}

/// Why a probe could not be sent at all: the report's `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The guest has no address on any NIC to send from: `"no interface"`.
    NoInterface,
}

impl ProbeError {
    /// The report's `error` for this error.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeError::NoInterface => "no interface",
        }
    }

    /// The error whose [`as_str`](Self::as_str) is `text`.
    pub fn parse(text: &str) -> Option<ProbeError> {
        (text == ProbeError::NoInterface.as_str()).then_some(ProbeError::NoInterface)
    }
}

/// The report of a ping or arping of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// Ping or arping.
    pub kind: ProbeKind,
    /// The address probed.
    pub target: Ipv4,
    /// Probes sent.
    pub sent: u32,
    /// Probes answered.
    pub received: u32,
    /// Why nothing could be sent, if so.
    pub error: Option<ProbeError>,
}

impl ProbeReport {
    /// Lost probes in percent (see [`loss_pct`]): the line's `loss_pct`.
    pub fn loss_pct(&self) -> u32 {
        loss_pct(self.sent, self.received)
    }

    /// Writes the report line, ended by a line feed.
    pub fn write_line(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.write_fields(out)?;
        out.write_str("}\n")
    }

    /// Writes the line up to its closing brace.
    fn write_fields(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let (kind, sent, received) = (self.kind.name(), self.sent, self.received);
        write!(
            out,
            "kvmlab-report {{\"type\":\"{kind}\",\"target\":\"{}\",\"sent\":{sent},\"received\":{received},\"loss_pct\":{}",
            Dotted(self.target),
            self.loss_pct()
        )?;
        if let Some(error) = self.error {
            write!(out, ",\"error\":\"{}\"", error.as_str())?;
        }
        Ok(())
    }

    /// Reads a line that [`write_line`](Self::write_line) wrote (with or without
    /// its line ending). `None` for any other line, including one whose `loss_pct`
    /// does not match its counts.
    pub fn parse(line: &str) -> Option<ProbeReport> {
        let mut line = Cursor::new(line);
        line.literal("kvmlab-report {\"type\":\"")?;
        let kind = ProbeKind::from_name(line.string()?)?;
        line.literal(",\"target\":\"")?;
        let target = parse_ipv4(line.string()?)?;
        line.literal(",\"sent\":")?;
        let sent = line.number()?;
        line.literal(",\"received\":")?;
        let received = line.number()?;
        line.literal(",\"loss_pct\":")?;
        let loss = line.number::<u32>()?;
        let error = match line.literal(",\"error\":\"") {
            Some(()) => Some(ProbeError::parse(line.string()?)?),
            None => None,
        };
        line.literal("}")?;
        line.end()?;
        (loss == loss_pct(sent, received)).then_some(ProbeReport {
            kind,
            target,
            sent,
            received,
            error,
        })
    }
}

/// Writes the line without its line ending.
impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_fields(f)?;
        f.write_str("}")
    }
}

/// Why a disk's first sector has no checksum: the disk report's `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The virtio-blk driver did not come up: `"virtio-blk init failed"`.
    InitFailed,
    /// The disk has no sectors: `"empty disk"`.
    Empty,
    /// Reading the sector failed: `"read failed"`.
    ReadFailed,
}

impl DiskError {
    /// The report's `error` for this error.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskError::InitFailed => "virtio-blk init failed",
            DiskError::Empty => "empty disk",
            DiskError::ReadFailed => "read failed",
        }
    }

    /// The error whose [`as_str`](Self::as_str) is `text`.
    pub fn parse(text: &str) -> Option<DiskError> {
        [
            DiskError::InitFailed,
            DiskError::Empty,
            DiskError::ReadFailed,
        ]
        .into_iter()
        .find(|error| error.as_str() == text)
    }
}

/// The report of a disk's first sector (`kvmlab.disk-checksum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskReport {
    /// The disk's index among the guest's virtio-blk devices, in command-line order.
    pub index: usize,
    /// The disk's size in 512-byte sectors (0 when unknown).
    pub sectors: u64,
    /// The FNV-1a 64 of sector 0 ([`crate::checksum::fnv1a64`]), written as
    /// `0x` and 16 hexadecimal digits, or why there is none.
    pub checksum: Result<u64, DiskError>,
}

impl DiskReport {
    /// Writes the report line, ended by a line feed.
    pub fn write_line(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.write_fields(out)?;
        out.write_str("}\n")
    }

    /// Writes the line up to its closing brace.
    fn write_fields(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let (index, sectors) = (self.index, self.sectors);
        write!(
            out,
            "kvmlab-report {{\"type\":\"disk\",\"index\":{index},\"sectors\":{sectors}"
        )?;
        match self.checksum {
            Ok(hash) => write!(out, ",\"fnv1a64\":\"{hash:#018x}\""),
            Err(error) => write!(out, ",\"error\":\"{}\"", error.as_str()),
        }
    }

    /// Reads a line that [`write_line`](Self::write_line) wrote (with or without
    /// its line ending); `None` for any other line.
    pub fn parse(line: &str) -> Option<DiskReport> {
        let mut line = Cursor::new(line);
        line.literal("kvmlab-report {\"type\":\"disk\",\"index\":")?;
        let index = line.number()?;
        line.literal(",\"sectors\":")?;
        let sectors = line.number()?;
        let checksum = if line.literal(",\"fnv1a64\":\"0x").is_some() {
            let digits = line.string()?;
            let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            if digits.len() != 16 || !digits.bytes().all(lower_hex) {
                return None;
            }
            Ok(u64::from_str_radix(digits, 16).ok()?)
        } else {
            line.literal(",\"error\":\"")?;
            Err(DiskError::parse(line.string()?)?)
        };
        line.literal("}")?;
        line.end()?;
        Some(DiskReport {
            index,
            sectors,
            checksum,
        })
    }
}

/// Writes the line without its line ending.
impl fmt::Display for DiskReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_fields(f)?;
        f.write_str("}")
    }
}

/// Any report line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// A ping's or arping's report.
    Probe(ProbeReport),
    /// A disk's report.
    Disk(DiskReport),
    /// [`DONE_LINE`]: every other report is out.
    Done,
}

impl Report {
    /// Reads a report line (with or without its line ending); `None` for any line
    /// that is not one the guest writes.
    pub fn parse(line: &str) -> Option<Report> {
        if without_line_ending(line) == DONE_LINE {
            return Some(Report::Done);
        }
        ProbeReport::parse(line)
            .map(Report::Probe)
            .or_else(|| DiskReport::parse(line).map(Report::Disk))
    }
}

/// Writes the line without its line ending.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Probe(report) => report.fmt(f),
            Report::Disk(report) => report.fmt(f),
            Report::Done => f.write_str(DONE_LINE),
        }
    }
}

/// `line` without its line ending (LF or CR LF), if it has one.
fn without_line_ending(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// Reads a report line from left to right.
struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    /// A cursor at the start of `line`, without its line ending.
    fn new(line: &'a str) -> Self {
        Cursor(without_line_ending(line))
    }

    /// Steps over `text`, if the line goes on with it.
    fn literal(&mut self, text: &str) -> Option<()> {
        self.0 = self.0.strip_prefix(text)?;
        Some(())
    }

    /// The rest of a string whose opening quote is behind us, and steps over its
    /// closing quote. (The guest writes no escapes.)
    fn string(&mut self) -> Option<&'a str> {
        let (text, rest) = cut(self.0, b'"')?;
        self.0 = rest;
        Some(text)
    }

    /// A decimal number without sign or leading zeros, as `Display` writes it.
    fn number<T: core::str::FromStr>(&mut self) -> Option<T> {
        let digits = self.0.bytes().take_while(u8::is_ascii_digit).count();
        let text = &self.0[..digits];
        if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
            return None;
        }
        self.0 = &self.0[digits..];
        text.parse().ok()
    }

    /// Whether the whole line has been read.
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests;
