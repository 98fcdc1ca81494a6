//! The serial console of a background VM: what the guest prints goes to the
//! serial log and to every client of the console socket; what clients type goes
//! to the guest. [`attach`] is the client (`kvmlab console`).

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

type Clients = Arc<Mutex<Vec<UnixStream>>>;

/// The console's output end: the log file and the connected clients.
pub struct ConsoleOut {
    log: std::fs::File,
    clients: Clients,
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.log.write_all(buf)?;
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        // A client that cannot keep up (or left) is dropped, never waited for long.
        clients.retain_mut(|c| c.write_all(buf).is_ok());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
    }
}

/// The console's input end: bytes from every client, in arrival order.
pub struct ConsoleIn {
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
}

impl Read for ConsoleIn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            match self.rx.recv() {
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

/// Serves the console on the unix socket `socket` (replacing a stale one), logging
/// output to `log`. Returns the two ends to give the VM's serial port.
pub fn serve(socket: &Path, log: std::fs::File) -> io::Result<(ConsoleOut, ConsoleIn)> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    let clients: Clients = Arc::default();
    let (tx, rx) = channel();
    let accepted = clients.clone();
    thread::Builder::new()
        .name("console-accept".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                if let Ok(reader) = stream.try_clone() {
                    spawn_reader(reader, tx.clone());
                }
                accepted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(stream);
            }
        })?;
    Ok((
        ConsoleOut { log, clients },
        ConsoleIn {
            rx,
            pending: Vec::new(),
        },
    ))
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
