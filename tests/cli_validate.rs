//! `kvmlab validate` (and `vm run --memory`) as a new user meets them: what a plain
//! number means, what is wrong with an address, every problem of a file in one pass,
//! inputs that are huge, deep or not UTF-8, and files a script must make first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Only a guard against a hang: a pass that is merely slow on a busy machine still
/// passes. Timings belong in benchmarks, not here.
const HANG_GUARD: Duration = Duration::from_secs(20);

/// Runs kvmlab in `dir`, killing it if it runs past [`HANG_GUARD`].
fn kvmlab_in(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvmlab"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvmlab runs");
    // Read both pipes on threads so that a large output cannot block the child.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).unwrap();
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buf).unwrap();
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kvmlab {args:?} still ran after {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch folder of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("kvmlab-cli-validate-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes `content` to `name` (which may have folders) and returns its path.
    fn file(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    fn validate(&self, file: &str) -> Output {
        kvmlab_in(&self.0, &["validate", file])
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An invalid file: exit 2, no panic, and the diagnostics on stderr.
fn assert_invalid(out: &Output) -> String {
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "kvmlab panicked:\n{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

const HEAD: &str = "version: 1\nname: lab\n";

#[test]
fn a_plain_memory_number_means_mib_in_a_file() {
    let scratch = Scratch::new("memory-mib");
    let file = scratch.file(
        "lab.yaml",
        format!("{HEAD}vms:\n  - name: pc1\n    memory: 64\n"),
    );
    let out = scratch.validate(&file);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // One MiB is below the 2 MiB a VM needs: said in MiB, not bytes.
    let file = scratch.file(
        "small.yaml",
        format!("{HEAD}vms:\n  - name: pc1\n    memory: 1\n"),
    );
    let err = assert_invalid(&scratch.validate(&file));
    assert!(err.contains("memory 1MiB is too small"), "{err}");

    // Units still work, bytes included.
    let file = scratch.file(
        "bytes.yaml",
        format!("{HEAD}vms:\n  - name: pc1\n    memory: 64B\n"),
    );
    let err = assert_invalid(&scratch.validate(&file));
    assert!(err.contains("memory 64B is too small"), "{err}");
}

#[test]
fn vm_run_reads_memory_as_the_file_does() {
    // A bad size is refused by the argument parser before any VM starts, with the
    // same words a topology file gets.
    let out = kvmlab_in(Path::new("."), &["vm", "run", "--memory", "64MB"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown unit `MB`"), "{err}");
}

#[test]
fn an_address_error_says_what_is_wrong_with_that_address() {
    let scratch = Scratch::new("address");
    let file = scratch.file(
        "lab.yaml",
        format!(
            "{HEAD}bridges: [{{ name: sw1, address: 10.0.0.254 }}]\nvms:\n  - name: pc1\n    nics: [{{ bridge: sw1, ip: 10.0.0.300/24 }}]\n"
        ),
    );
    let err = assert_invalid(&scratch.validate(&file));
    assert!(
        err.contains("invalid address `10.0.0.300/24`: octet 300 is out of range"),
        "{err}"
    );
    assert!(err.contains("300 is more than 255"), "{err}");
    assert!(
        !err.contains("write the address with its prefix length"),
        "{err}"
    );
    // The bridge's address does lack its prefix, and is told so.
    assert!(
        err.contains("invalid address `10.0.0.254`: no prefix length"),
        "{err}"
    );
    assert!(err.contains("like 10.0.0.254/24"), "{err}");
}

#[test]
fn validate_reports_an_unknown_key_and_an_unknown_bridge_in_one_pass() {
    let scratch = Scratch::new("one-pass");
    let file = scratch.file(
        "lab.yaml",
        format!(
            "{HEAD}bridges: [{{ name: sw1, colour: red }}]\nvms:\n  - name: pc1\n    nics: [{{ bridge: sw2 }}]\n"
        ),
    );
    let err = assert_invalid(&scratch.validate(&file));
    assert!(err.contains("unknown key `colour`"), "{err}");
    assert!(err.contains(&format!("{file}:6:22")), "{err}");
    assert!(err.contains("unknown bridge `sw2`"), "{err}");
    assert!(err.contains("has 2 problems"), "{err}");
}

/// Counts the problems shown in full: each starts with miette's `×`.
fn shown(err: &str) -> usize {
    err.matches('×').count()
}

#[test]
fn thousands_of_problems_show_the_first_fifty_and_a_count() {
    let scratch = Scratch::new("thousands");
    let trunk = vec!["10"; 5000].join(", ");
    let file = scratch.file(
        "lab.yaml",
        format!("{HEAD}bridges: [{{ name: sw1 }}]\ntaps:\n  - {{ name: t0, bridge: sw1, trunk: [{trunk}] }}\n"),
    );
    let err = assert_invalid(&scratch.validate(&file));
    // One undeclared VLAN, then 4,999 repeats of it.
    assert!(
        err.contains("has 5000 problems"),
        "{}",
        &err[err.len() - 500..]
    );
    assert_eq!(shown(&err), 50);
    assert!(
        err.contains("... and 4950 more problems not shown"),
        "{}",
        &err[err.len() - 500..]
    );
    // The long line is cut to a window around each problem, not printed 50 times.
    assert!(err.len() < 64 * 1024, "{} bytes of output", err.len());

    // A script asking for JSON gets them all.
    let out = kvmlab_in(&scratch.0, &["validate", "--output", "json", &file]);
    assert_eq!(out.status.code(), Some(2));
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["problems"].as_array().unwrap().len(), 5000);
}

#[test]
fn a_key_of_a_million_characters_is_a_short_located_error() {
    let scratch = Scratch::new("huge-key");
    let key = "k".repeat(1_000_000);
    // A plain key so long is a YAML syntax error; an explicit `? key` is a key.
    for (name, yaml, expect) in [
        (
            "plain.yaml",
            format!("{HEAD}{key}: 1\n"),
            "could not find expected ':'",
        ),
        (
            "explicit.yaml",
            format!("{HEAD}? {key}\n: 1\n"),
            "unknown key",
        ),
        (
            "value.yaml",
            format!("version: 1\nname: {key}\n"),
            "invalid lab name",
        ),
    ] {
        let file = scratch.file(name, yaml);
        let err = assert_invalid(&scratch.validate(&file));
        assert!(
            err.contains(expect),
            "{name}: {}",
            &err[..err.len().min(2000)]
        );
        assert!(
            err.contains(":3:") || err.contains(":2:"),
            "{name}: no position:\n{err}"
        );
        assert!(
            err.len() < 8 * 1024,
            "{name}: {} bytes of output",
            err.len()
        );
    }
}

#[test]
fn absurd_nesting_is_refused_where_it_starts() {
    let scratch = Scratch::new("deep");
    let n = 100_000;
    for (name, nested, line) in [
        (
            "flow-seq.yaml",
            format!(" {}{}", "[".repeat(n), "]".repeat(n)),
            3,
        ),
        (
            "flow-map.yaml",
            format!(" {}1{}", "{a: ".repeat(n), "}".repeat(n)),
            3,
        ),
        ("block-seq.yaml", format!("\n{}x", "- ".repeat(n)), 4),
    ] {
        let file = scratch.file(name, format!("{HEAD}vms:{nested}\n"));
        let err = assert_invalid(&scratch.validate(&file));
        assert!(err.contains("nests deeper than 64 levels"), "{name}: {err}");
        assert!(err.contains(&format!("{file}:{line}:")), "{name}: {err}");
        assert!(
            err.len() < 8 * 1024,
            "{name}: {} bytes of output",
            err.len()
        );
    }
}

#[test]
fn a_file_that_is_not_utf8_is_told_where_and_why() {
    let scratch = Scratch::new("latin1");
    // "café" in Latin-1: the é is the single byte 0xE9.
    let file = scratch.file("lab.yaml", b"version: 1\nname: lab\n# caf\xe9\n");
    let err = assert_invalid(&scratch.validate(&file));
    assert!(err.contains(&format!("{file}:3:6")), "{err}");
    assert!(
        err.contains("the file is not UTF-8: byte 0xE9 at byte offset 26"),
        "{err}"
    );
    assert!(err.contains("must be UTF-8"), "{err}");
    assert!(!err.contains("permissions"), "{err}");

    let out = kvmlab_in(&scratch.0, &["validate", "--output", "json", &file]);
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problem = &results[0]["problems"][0];
    assert_eq!(
        (problem["line"].as_u64(), problem["column"].as_u64()),
        (Some(3), Some(6))
    );
}

#[test]
fn a_missing_file_beside_a_prepare_script_names_the_script() {
    let scratch = Scratch::new("prepare");
    let lab = format!(
        "{HEAD}vms:\n  - name: web\n    kernel: images/vmlinuz\n    disks: [{{ path: other/disk.img }}]\n"
    );
    scratch.file("labs/lab.yaml", lab);
    scratch.file("labs/images/prepare.sh", "#!/bin/sh\n");
    std::fs::create_dir_all(scratch.0.join("labs/other")).unwrap();
    let err = assert_invalid(&scratch.validate("labs/lab.yaml"));
    assert!(err.contains("kernel file not found"), "{err}");
    assert!(
        err.contains("run labs/images/prepare.sh to fetch it"),
        "{err}"
    );
    // A folder without a script gets the help about relative paths.
    assert!(err.contains("disk file not found"), "{err}");
    assert!(
        err.contains("relative paths start from the topology file's folder"),
        "{err}"
    );

    // From the folder itself, a command that runs: not a bare name PATH would take.
    let out = kvmlab_in(&scratch.0.join("labs/images"), &["validate", "../lab.yaml"]);
    let err = assert_invalid(&out);
    assert!(err.contains("run ./prepare.sh to fetch it"), "{err}");
}

#[test]
fn a_router_with_one_interface_is_a_warning_not_an_error() {
    let scratch = Scratch::new("router-warning");
    let file = scratch.file(
        "lab.yaml",
        format!(
            "{HEAD}bridges: [{{ name: sw1 }}]\nvms:\n  - name: r1\n    forward: true\n    nics: [{{ bridge: sw1, ip: 10.0.0.1/24 }}]\n"
        ),
    );
    let out = scratch.validate(&file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: vms[0].forward: r1 forwards but has one interface"),
        "{err}"
    );
    let out = kvmlab_in(&scratch.0, &["validate", "-o", "json", &file]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["valid"], true, "{json}");
    assert_eq!(json[0]["warnings"].as_array().unwrap().len(), 1, "{json}");
}
