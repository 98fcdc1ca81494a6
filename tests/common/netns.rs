//! Helpers for host tests: a uniquely named network namespace and state directory
//! per test, removed even when the test fails, and iproute2 as the observer.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

static NEXT: AtomicUsize = AtomicUsize::new(0);
static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// A private copy of the kvmlab binary, taken once per test process: worktrees that
/// share a cargo target directory rebuild the same binary path under our feet.
fn binary() -> &'static Path {
    BINARY.get_or_init(|| {
        // Copies left by earlier test processes that have exited go first.
        for entry in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix("kvmlab-test-bin-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("kvmlab-test-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("kvmlab");
        std::fs::copy(env!("CARGO_BIN_EXE_kvmlab"), &copy).unwrap();
        copy
    })
}

/// Fails the test with a clear message unless we are root with iproute2 at hand.
pub fn require_root() {
    let uid = nix::unistd::geteuid();
    assert!(
        uid.is_root(),
        "host tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run them as root"
    );
    let ip = Command::new("ip").arg("-V").output();
    assert!(
        ip.is_ok_and(|o| o.status.success()),
        "host tests need iproute2 (`apt-get install iproute2`)"
    );
}

/// A test's own namespace name and state directory; both removed on drop.
pub struct Sandbox {
    /// The namespace the lab runs in (kvmlab creates it with --netns).
    pub netns: String,
    /// The state root given to kvmlab through KVMLAB_STATE_DIR.
    pub state: PathBuf,
    /// A folder for edited topology files.
    pub files: PathBuf,
}

impl Sandbox {
    /// A fresh sandbox; nothing is created on the host yet.
    pub fn new() -> Sandbox {
        require_root();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let base = std::env::temp_dir().join(format!("kvmlab-test-{id}"));
        let sandbox = Sandbox {
            netns: format!("kvmlab-test-{id}"),
            state: base.join("state"),
            files: base.join("files"),
        };
        std::fs::create_dir_all(&sandbox.files).unwrap();
        sandbox
    }

    /// Runs kvmlab with `args` and this sandbox's state root.
    pub fn kvmlab(&self, args: &[&str]) -> Output {
        self.kvmlab_env(args, &[])
    }

    /// Runs kvmlab with extra environment variables.
    pub fn kvmlab_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(binary());
        command.args(args).env("KVMLAB_STATE_DIR", &self.state);
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("kvmlab runs")
    }

    /// `kvmlab up FILE --netns <ours>`, which must succeed; returns its JSON report.
    pub fn up(&self, file: &Path) -> Value {
        let out = self.kvmlab(&[
            "up",
            file.to_str().unwrap(),
            "--netns",
            &self.netns,
            "--output",
            "json",
        ]);
        assert_ok(&out, "up");
        serde_json::from_slice(&out.stdout).expect("up prints JSON")
    }

    /// `kvmlab down --lab LAB`, which must succeed.
    pub fn down(&self, lab: &str) -> Value {
        let out = self.kvmlab(&["down", "--lab", lab, "--output", "json"]);
        assert_ok(&out, "down");
        serde_json::from_slice(&out.stdout).expect("down prints JSON")
    }

    /// `kvmlab plan FILE --netns <ours>`: its exit code and JSON.
    pub fn plan(&self, file: &Path) -> (i32, Value) {
        let out = self.kvmlab(&[
            "plan",
            file.to_str().unwrap(),
            "--netns",
            &self.netns,
            "-o",
            "json",
        ]);
        let code = out.status.code().unwrap_or(-1);
        assert!(code == 0 || code == 2, "plan failed: {}", text(&out));
        (
            code,
            serde_json::from_slice(&out.stdout).expect("plan JSON"),
        )
    }

    /// Whether our namespace exists.
    pub fn netns_exists(&self) -> bool {
        Path::new("/run/netns").join(&self.netns).exists()
    }

    /// Runs `ip -n <ours> ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["-n", &self.netns])
            .args(args)
            .output()
            .unwrap();
        assert_ok(&out, &format!("ip {args:?}"));
    }

    /// `ip -j -d link show` in our namespace, by interface name.
    pub fn links(&self) -> Vec<Value> {
        json_of("ip", &["-n", &self.netns, "-j", "-d", "link", "show"])
    }

    /// `bridge -j link show` in our namespace: port -> master.
    pub fn bridge_ports(&self) -> Vec<(String, String)> {
        let mut ports: Vec<(String, String)> =
            json_of("bridge", &["-n", &self.netns, "-j", "link", "show"])
                .iter()
                .map(|p| {
                    (
                        p["ifname"].as_str().unwrap().to_string(),
                        p["master"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
        ports.sort();
        ports
    }

    /// Names of interfaces carrying lab `lab`'s marker, with their kinds, sorted.
    pub fn marked(&self, lab: &str) -> Vec<(String, String)> {
        let marker = format!("kvmlab:{lab}");
        let mut found: Vec<(String, String)> = self
            .links()
            .iter()
            .filter(|l| l["ifalias"].as_str() == Some(marker.as_str()))
            .map(|l| {
                let kind = l["linkinfo"]["info_kind"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                (l["ifname"].as_str().unwrap().to_string(), kind)
            })
            .collect();
        found.sort();
        found
    }

    /// The JSON of interface `name`.
    pub fn link(&self, name: &str) -> Option<Value> {
        self.links()
            .into_iter()
            .find(|l| l["ifname"].as_str() == Some(name))
    }

    /// The lab's state directory.
    pub fn lab_dir(&self, lab: &str) -> PathBuf {
        self.state.join(lab)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // VM processes are detached from the test: stop any a failed test left
        // (their pid files are under the sandbox's state directory).
        kill_vms_under(&self.state);
        if self.netns_exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns])
                .status();
        }
        if let Some(base) = self.files.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// Kills every process whose pid file (`vms/<vm>/pid`) lies under `dir`.
fn kill_vms_under(dir: &Path) {
    let Ok(labs) = std::fs::read_dir(dir) else {
        return;
    };
    for lab in labs.flatten() {
        let Ok(vms) = std::fs::read_dir(lab.path().join("vms")) else {
            continue;
        };
        for vm in vms.flatten() {
            let pid = std::fs::read_to_string(vm.path().join("pid")).unwrap_or_default();
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill only sends a signal; a stale pid at worst hits nothing.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Standard output and error of a finished command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a command succeeded.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", text(out));
}

fn json_of(program: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new(program).args(args).output().unwrap();
    assert_ok(&out, program);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// A fixture under tests/fixtures/net.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/net")
        .join(name)
}

/// The kvmlab binary the tests run (a private copy).
pub fn kvmlab_binary() -> &'static Path {
    binary()
}
