//! The serial console of a background VM: what the guest prints goes to the
//! serial log and to every client of the console socket; what clients type goes
//! to the guest. [`attach`] is the client (`kvmlab console`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Lines a client that attaches is shown of what came before: a screenful.
const SCREEN_LINES: usize = 24;
/// Bytes kept for that screenful.
const SCREEN_BYTES: usize = 4096;

/// The connected clients and the end of the output, which a client attaching late
/// sees first. One lock for both, so that a client sees each byte once.
#[derive(Default)]
struct Screen {
    clients: Vec<UnixStream>,
    tail: VecDeque<u8>,
}

impl Screen {
    /// The last [`SCREEN_LINES`] lines of the output (the last one may be
    /// unfinished, as a prompt is).
    fn last_lines(&self) -> Vec<u8> {
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let mut start = 0;
        let mut lines = 0;
        for (at, &byte) in tail.iter().enumerate().rev() {
            if byte == b'\n' && at + 1 < tail.len() {
                lines += 1;
                if lines == SCREEN_LINES {
                    start = at + 1;
                    break;
                }
            }
        }
        tail[start..].to_vec()
    }
}

type Shared = Arc<Mutex<Screen>>;

/// The console's output end: the log file and the connected clients.
pub struct ConsoleOut {
    log: std::fs::File,
    screen: Shared,
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.log.write_all(buf)?;
        let mut screen = self.screen.lock().unwrap_or_else(|p| p.into_inner());
        // A client that cannot keep up (or left) is dropped, never waited for long.
        screen.clients.retain_mut(|c| c.write_all(buf).is_ok());
        let keep = buf.len().min(SCREEN_BYTES);
        let overflow = (screen.tail.len() + keep).saturating_sub(SCREEN_BYTES);
        screen.tail.drain(..overflow);
        screen.tail.extend(&buf[buf.len() - keep..]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
    }
}

/// The console's input end of one boot of the VM: bytes from every client, in
/// arrival order. It ends (reads 0) once [`Console::retire`] hands the input to
/// the next boot.
pub struct ConsoleIn {
    rx: Arc<Mutex<Receiver<Vec<u8>>>>,
    /// The boot this end belongs to, and the console's current one.
    boot: u64,
    current: Arc<AtomicU64>,
    pending: Vec<u8>,
}

impl Read for ConsoleIn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
            if self.current.load(Ordering::SeqCst) != self.boot {
                return Ok(0);
            }
            match rx.recv() {
                // An empty message only wakes a reader to look at `current`.
                Ok(bytes) => self.pending = bytes,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

/// A VM's console, served for as long as the VM process lives: each boot of the
/// VM (a reboot builds it anew) takes its ends from here.
pub struct Console {
    log: std::fs::File,
    screen: Shared,
    rx: Arc<Mutex<Receiver<Vec<u8>>>>,
    /// Wakes a reader blocked on the last boot's input.
    wake: Sender<Vec<u8>>,
    current: Arc<AtomicU64>,
}

impl Console {
    /// The output and input ends for the current boot.
    pub fn ends(&self) -> io::Result<(ConsoleOut, ConsoleIn)> {
        Ok((
            ConsoleOut {
                log: self.log.try_clone()?,
                screen: self.screen.clone(),
            },
            ConsoleIn {
                rx: self.rx.clone(),
                boot: self.current.load(Ordering::SeqCst),
                current: self.current.clone(),
                pending: Vec::new(),
            },
        ))
    }

    /// Ends the current boot's input (its reader stops), so that the next boot's
    /// ends get the keys.
    pub fn retire(&self) {
        self.current.fetch_add(1, Ordering::SeqCst);
        let _ = self.wake.send(Vec::new());
    }
}

/// Serves the console on the unix socket `socket` (replacing a stale one), logging
/// output to `log`; each boot of the VM takes its ends with [`Console::ends`].
pub fn serve(socket: &Path, log: std::fs::File) -> io::Result<Console> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    let screen: Shared = Arc::default();
    let (tx, rx) = channel();
    let wake = tx.clone();
    let accepted = screen.clone();
    thread::Builder::new()
        .name("console-accept".into())
        .spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                let Ok(reader) = stream.try_clone() else {
                    continue;
                };
                // Whoever attaches late first sees the last screenful (the boot
                // report, the prompt), then everything that follows; the client's
                // keys are read only once it is among the clients, so that it
                // sees their echo.
                {
                    let mut screen = accepted.lock().unwrap_or_else(|p| p.into_inner());
                    if stream.write_all(&screen.last_lines()).is_err() {
                        continue;
                    }
                    screen.clients.push(stream);
                }
                spawn_reader(reader, tx.clone());
            }
        })?;
    Ok(Console {
        log,
        screen,
        rx: Arc::new(Mutex::new(rx)),
        wake,
        current: Arc::default(),
    })
}

fn spawn_reader(mut stream: UnixStream, tx: Sender<Vec<u8>>) {
    let _ = thread::Builder::new()
        .name("console-client".into())
        .spawn(move || {
            let mut buf = [0u8; 256];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
}

/// The byte Ctrl-] sends, which detaches from the console.
pub const DETACH: u8 = 0x1d;

/// Connects this terminal to the console socket `socket` until Ctrl-] or until the
/// VM goes away. The terminal is in raw mode meanwhile (when it is a terminal).
/// `connected` runs once the connection stands, so that "connected" is never said
/// of a console that then refuses the connection.
pub fn attach(socket: &Path, connected: impl FnOnce()) -> io::Result<()> {
    let stream = UnixStream::connect(socket)?;
    connected();
    let mut from_vm = stream.try_clone()?;
    let raw = RawTerminal::enter();
    let output = thread::spawn(move || {
        let mut out = io::stdout();
        let mut buf = [0u8; 1024];
        while let Ok(n) = from_vm.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    let mut to_vm = stream;
    let mut input = io::stdin();
    let mut buf = [0u8; 256];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (send, detach) = match buf[..n].iter().position(|&b| b == DETACH) {
            Some(at) => (&buf[..at], true),
            None => (&buf[..n], false),
        };
        if to_vm.write_all(send).is_err() || detach {
            break;
        }
        if output.is_finished() {
            break;
        }
    }
    let _ = to_vm.shutdown(std::net::Shutdown::Both);
    drop(raw);
    Ok(())
}

/// Raw mode on stdin for as long as it lives (nothing when stdin is no terminal).
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(&stdin, SetArg::TCSANOW, &raw).is_err() {
            return RawTerminal(None);
        }
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(text: &str) -> Screen {
        Screen {
            clients: Vec::new(),
            tail: text.bytes().collect(),
        }
    }

    #[test]
    fn a_late_client_sees_the_last_screenful_and_the_unfinished_line() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect::<String>() + "pc1> ";
        let shown = String::from_utf8(screen(&text).last_lines()).unwrap();
        assert!(shown.starts_with("line 8\n"), "{shown}");
        assert!(shown.ends_with("line 30\npc1> "), "{shown}");
        assert_eq!(shown.lines().count(), 24);
        assert_eq!(screen("short\n").last_lines(), b"short\n");
        assert_eq!(screen("").last_lines(), b"");
    }

    #[test]
    fn the_tail_keeps_the_newest_bytes_only() {
        let dir = std::env::temp_dir().join(format!("kvmlab-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let (mut out, _input) = serve(&dir.join("sock"), log).unwrap().ends().unwrap();
        out.write_all(&vec![b'a'; SCREEN_BYTES]).unwrap();
        out.write_all(b"\nend").unwrap();
        let screen = out.screen.lock().unwrap();
        assert_eq!(screen.tail.len(), SCREEN_BYTES);
        assert!(screen.tail.iter().rev().take(4).eq(b"dne\n".iter()));
        drop(screen);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
