//! The shell on the serial console: a prompt (`pc1> `), line editing, and commands
//! whose output reads like iproute2's and iputils', because students should learn
//! the real tools' habits. It starts once the start-up tasks have reported; keys
//! typed before wait for it.

mod arping;
mod ip;
mod iperf;
mod line;
mod nc;
mod ping;
mod trace;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use arping::Arping;
use iperf::Iperf;
use line::{Edit, LineEditor};
use nc::Nc;
use ping::Ping;
use trace::Trace;

use crate::clock;
use crate::net::Net;
use crate::power;
use crate::serial::Serial;

/// The commands, with the line `help` prints for each.
const COMMANDS: &[(&str, &str)] = &[
    ("help", "this list"),
    (
        "ip",
        "ip [-s] addr | ip [-s] link | ip route [add|del] | ip neigh [flush]",
    ),
    (
        "ping",
        "ping [-c COUNT] [-i SECONDS] [-s SIZE] [-t TTL] [-W SECONDS] ADDRESS",
    ),
    (
        "arping",
        "arping [-c COUNT] ADDRESS: who answers ARP for an address",
    ),
    (
        "traceroute",
        "traceroute [-m MAX_HOPS] [-w SECONDS] ADDRESS: the routers on the way",
    ),
    (
        "nc",
        "nc [-u] -l PORT | nc [-u] ADDRESS PORT: typed lines over TCP (UDP with -u)",
    ),
    (
        "iperf",
        "iperf -s | iperf -c ADDRESS [-t SECONDS]: TCP throughput",
    ),
    ("hostname", "this computer's name"),
    ("uptime", "how long this computer has been running"),
    ("poweroff", "turn this computer off"),
    ("reboot", "start this computer again"),
];

/// Keys kept while the shell is not yet started.
const TYPEAHEAD: usize = 256;

/// A command that runs until it is done or interrupted.
enum Job {
    Ping(Ping),
    Trace(Trace),
    Nc(Nc),
    Iperf(Iperf),
    Arping(Arping),
}

/// The console's shell.
pub struct Shell {
    prompt: String,
    editor: LineEditor,
    started: bool,
    typeahead: Vec<u8>,
    job: Option<Job>,
}

impl Shell {
    /// A shell whose prompt names `hostname`.
    pub fn new(hostname: &str) -> Shell {
        let mut prompt = String::from(hostname);
        prompt.push_str("> ");
        Shell {
            prompt,
            editor: LineEditor::new(),
            started: false,
            typeahead: Vec::new(),
            job: None,
        }
    }

    /// Shows the first prompt, then takes the keys typed before it.
    pub fn start(&mut self, net: &mut Net, out: &mut Serial) {
        self.started = true;
        self.prompt(out);
        for byte in core::mem::take(&mut self.typeahead) {
            self.key(byte, net, out);
        }
    }

    fn prompt(&self, out: &mut Serial) {
        out.write_bytes(self.prompt.as_bytes());
        out.flush();
    }

    /// Takes one key from the console.
    pub fn key(&mut self, byte: u8, net: &mut Net, out: &mut Serial) {
        if !self.started {
            if self.typeahead.len() < TYPEAHEAD {
                self.typeahead.push(byte);
            }
            return;
        }
        if let Some(job) = &mut self.job {
            // A running command takes Ctrl-C, and `nc` the lines typed for it.
            if byte == 0x03 {
                out.write_bytes(b"^C");
                match job {
                    Job::Ping(ping) => ping.interrupt(net, clock::now_us(), out),
                    Job::Trace(trace) => trace.interrupt(net, out),
                    Job::Nc(nc) => {
                        out.write_bytes(b"\n");
                        nc.close(net);
                    }
                    Job::Iperf(iperf) => {
                        out.write_bytes(b"\n");
                        iperf.close(net);
                    }
                    Job::Arping(arping) => {
                        out.write_bytes(b"\n");
                        arping.finish(net, out);
                    }
                }
                self.job = None;
                self.prompt(out);
            } else if let Job::Nc(nc) = job {
                nc.key(byte, net, out);
            }
            return;
        }
        match self.editor.key(byte, out) {
            Edit::Pending => {}
            Edit::Interrupt => self.prompt(out),
            Edit::Line(line) => {
                self.run(&line, net, out);
                if self.job.is_none() {
                    self.prompt(out);
                }
            }
        }
    }

    /// Advances a running command; returns when it wants to run again (µs since
    /// boot), if it does.
    pub fn step(&mut self, net: &mut Net, out: &mut Serial) -> Option<u64> {
        let now_us = clock::now_us();
        let next = match self.job.as_mut()? {
            Job::Ping(ping) => ping.step(net, now_us, out),
            Job::Trace(trace) => trace.step(net, now_us, out),
            // Sockets wake the guest through the network, and their timers
            // through the interfaces' poll delay: no deadline of their own.
            Job::Nc(nc) => {
                let running = nc.step(net, out);
                if !running {
                    nc.close(net);
                }
                running.then_some(u64::MAX)
            }
            Job::Iperf(iperf) => iperf.step(net, now_us, out).then_some(u64::MAX),
            Job::Arping(arping) => arping.step(net, now_us, out),
        };
        match next {
            Some(deadline) => Some(deadline),
            None => {
                self.job = None;
                self.prompt(out);
                None
            }
        }
    }

    /// Whether a command is running (and may have queued packets).
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    fn run(&mut self, line: &str, net: &mut Net, out: &mut Serial) {
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some((&command, args)) = words.split_first() else {
            return;
        };
        match command {
            "help" | "?" => {
                for (name, what) in COMMANDS {
                    let _ = writeln!(out, "  {name:<10} {what}");
                }
            }
            "ip" => {
                ip::run(args, net, out);
            }
            "ping" => match ping::parse(args, net) {
                Ok(args) => self.job = Some(Job::Ping(Ping::start(args, clock::now_us(), out))),
                Err(why) => {
                    let _ = writeln!(out, "ping: {why}");
                }
            },
            "traceroute" | "tracert" => match trace::parse(args, net) {
                Ok(trace) => {
                    trace.start(out);
                    self.job = Some(Job::Trace(trace));
                }
                Err(why) => {
                    let _ = writeln!(out, "traceroute: {why}");
                }
            },
            "nc" | "netcat" => match nc::parse(args).and_then(|args| Nc::start(args, net)) {
                Ok(nc) => self.job = Some(Job::Nc(nc)),
                Err(why) => {
                    let _ = writeln!(out, "nc: {why}");
                }
            },
            "iperf" => match iperf::parse(args).and_then(|args| Iperf::start(args, net, out)) {
                Ok(iperf) => self.job = Some(Job::Iperf(iperf)),
                Err(why) => {
                    let _ = writeln!(out, "iperf: {why}");
                }
            },
            "arping" => match arping::parse(args, net) {
                Ok(arping) => {
                    arping.start(net, out);
                    self.job = Some(Job::Arping(arping));
                }
                Err(why) => {
                    let _ = writeln!(out, "arping: {why}");
                }
            },
            "hostname" => {
                let name = self.prompt.trim_end_matches("> ");
                let _ = writeln!(out, "{name}");
            }
            "uptime" => {
                let seconds = clock::now_us() / 1_000_000;
                let _ = writeln!(
                    out,
                    "up {}:{:02}:{:02}",
                    seconds / 3600,
                    seconds / 60 % 60,
                    seconds % 60
                );
            }
            "reboot" => {
                out.write_bytes(b"kvmlab-guest: rebooting\n");
                power::reboot();
            }
            "poweroff" => {
                out.write_bytes(b"kvmlab-guest: powering off\n");
                power::power_off();
            }
            _ => {
                let _ = write!(out, "{command}: command not found");
                if let Some(near) = nearest(command) {
                    let _ = write!(out, "; did you mean `{near}`?");
                }
                let _ = writeln!(out, " (`help` lists the commands)");
            }
        }
    }
}

/// The command closest to `typed`, if it is close enough to be a typo.
fn nearest(typed: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .map(|(name, _)| (distance(typed, name), *name))
        .filter(|&(d, name)| d <= 2 && d < name.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, name)| name)
}

/// Levenshtein distance between two short ASCII words.
fn distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}
