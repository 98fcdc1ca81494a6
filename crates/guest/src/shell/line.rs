//! The line editor of the console: what a raw serial line needs for a person to
//! type at it (echo, backspace, Ctrl-U, Ctrl-C, a short history on the arrows).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use crate::serial::Serial;

/// Lines the up arrow goes back through.
const HISTORY: usize = 16;
/// Longest line kept; further keys are ignored (and the bell rings).
const LINE_MAX: usize = 200;

const CTRL_C: u8 = 0x03;
const CTRL_U: u8 = 0x15;
const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const ESC: u8 = 0x1b;
const BELL: &[u8] = b"\x07";
/// Back one column, blank it, back again.
const RUB_OUT: &[u8] = b"\x08 \x08";

/// What a key did to the line.
pub enum Edit {
    /// Nothing to act on yet.
    Pending,
    /// Enter: the line, to run (may be empty).
    Line(String),
    /// Ctrl-C.
    Interrupt,
}

/// Where in an escape sequence (an arrow key is `ESC [ A`) the input is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Esc,
    Csi,
}

/// The line being typed and the lines typed before.
pub struct LineEditor {
    line: Vec<u8>,
    history: VecDeque<String>,
    /// Position in `history` while the arrows browse it (0 is the newest).
    recall: Option<usize>,
    escape: Escape,
    /// The last key was a carriage return: a line feed right after it (a terminal
    /// that sends CR LF) is the same Enter.
    after_cr: bool,
}

impl LineEditor {
    /// An empty line with no history.
    pub fn new() -> LineEditor {
        LineEditor {
            line: Vec::new(),
            history: VecDeque::new(),
            recall: None,
            escape: Escape::None,
            after_cr: false,
        }
    }

    /// Takes one key, echoing on `out` what the person should see.
    pub fn key(&mut self, byte: u8, out: &mut Serial) -> Edit {
        let after_cr = core::mem::replace(&mut self.after_cr, byte == b'\r');
        match (self.escape, byte) {
            (Escape::Esc, b'[' | b'O') => {
                self.escape = Escape::Csi;
                return Edit::Pending;
            }
            (Escape::Csi, b'A') => {
                self.escape = Escape::None;
                self.browse(true, out);
                return Edit::Pending;
            }
            (Escape::Csi, b'B') => {
                self.escape = Escape::None;
                self.browse(false, out);
                return Edit::Pending;
            }
            // Other sequences (left, right, function keys) are swallowed whole:
            // their last byte is a letter or `~`.
            (Escape::Csi, b) => {
                if b.is_ascii_alphabetic() || b == b'~' {
                    self.escape = Escape::None;
                }
                return Edit::Pending;
            }
            (Escape::Esc, _) => self.escape = Escape::None,
            (Escape::None, _) => {}
        }
        match byte {
            b'\n' if after_cr => Edit::Pending,
            b'\r' | b'\n' => {
                out.write_bytes(b"\n");
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                self.recall = None;
                let trimmed = line.trim();
                if !trimmed.is_empty() && self.history.front().map(String::as_str) != Some(trimmed)
                {
                    if self.history.len() == HISTORY {
                        self.history.pop_back();
                    }
                    self.history.push_front(String::from(trimmed));
                }
                Edit::Line(line)
            }
            CTRL_C => {
                out.write_bytes(b"^C\n");
                self.line.clear();
                self.recall = None;
                Edit::Interrupt
            }
            CTRL_U => {
                self.erase(out);
                Edit::Pending
            }
            BACKSPACE | DELETE => {
                if self.line.pop().is_some() {
                    out.write_bytes(RUB_OUT);
                    out.flush();
                }
                Edit::Pending
            }
            ESC => {
                self.escape = Escape::Esc;
                Edit::Pending
            }
            0x20..=0x7e => {
                if self.line.len() < LINE_MAX {
                    self.line.push(byte);
                    out.write_bytes(&[byte]);
                } else {
                    out.write_bytes(BELL);
                }
                out.flush();
                Edit::Pending
            }
            _ => Edit::Pending,
        }
    }

    /// Rubs out the whole line on screen and in memory.
    fn erase(&mut self, out: &mut Serial) {
        for _ in 0..self.line.len() {
            out.write_bytes(RUB_OUT);
        }
        out.flush();
        self.line.clear();
    }

    /// Replaces the line with an older (`back`) or newer history entry.
    fn browse(&mut self, back: bool, out: &mut Serial) {
        let next = match (self.recall, back) {
            (None, true) if !self.history.is_empty() => Some(0),
            (Some(i), true) if i + 1 < self.history.len() => Some(i + 1),
            (Some(i), true) => Some(i),
            (Some(0), false) | (None, false) => None,
            (Some(i), false) => Some(i - 1),
            (None, true) => None,
        };
        if next == self.recall && next.is_some() {
            out.write_bytes(BELL);
            out.flush();
            return;
        }
        self.erase(out);
        self.recall = next;
        if let Some(entry) = next.and_then(|i| self.history.get(i)) {
            self.line.extend_from_slice(entry.as_bytes());
            out.write_bytes(entry.as_bytes());
            out.flush();
        }
    }
}
