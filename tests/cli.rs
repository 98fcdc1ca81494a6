//! The `validate`, `schema` and `graph` commands as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kvmlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvmlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kvmlab runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch folder of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kvmlab-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, content: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lab_files() -> Vec<String> {
    let labs = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs");
    let mut files: Vec<String> = std::fs::read_dir(labs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_lab_is_valid() {
    let files = lab_files();
    assert!(files.len() >= 5, "labs/ holds {} labs", files.len());
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = kvmlab(&args);
    assert!(
        out.status.success(),
        "kvmlab validate labs/*.yaml failed (labs/images/prepare.sh makes the kernel and disk of linux-disk.yaml):\n{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains(&format!("{0} of {0} files valid", files.len())));
}

#[test]
fn schema_command_matches_the_committed_schema() {
    let out = kvmlab(&["schema"]);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/kvmlab.schema.json"),
    )
    .unwrap();
    assert!(
        text(&out.stdout) == committed,
        "schemas/kvmlab.schema.json is stale: run `cargo run -- schema > schemas/kvmlab.schema.json`"
    );
}

/// Checks every lab against the committed schema with Python's `jsonschema`, an
/// implementation independent of the Rust code that wrote the schema.
#[test]
fn example_labs_conform_to_the_schema_per_an_independent_validator() {
    let script = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
bad = 0
for path in sys.argv[2:]:
    doc = json.loads(json.dumps(yaml.safe_load(open(path)), default=str))
    for error in validator.iter_errors(doc):
        print(f"{path}: {error.json_path}: {error.message}")
        bad += 1
# The validator must also reject: a lab with an unknown key fails.
if not list(validator.iter_errors({"version": 1, "name": "x", "bridgez": []})):
    print("the schema accepted an unknown key")
    bad += 1
print(f"checked {len(sys.argv) - 2} labs")
sys.exit(1 if bad else 0)
"#;
    let mut args = vec![
        "-c".to_string(),
        script.to_string(),
        format!("{}/schemas/kvmlab.schema.json", env!("CARGO_MANIFEST_DIR")),
    ];
    args.extend(lab_files());
    let out = Command::new("/usr/bin/python3")
        .args(&args)
        .output()
        .expect("/usr/bin/python3 runs (apt-get install python3-jsonschema python3-yaml)");
    assert!(
        out.status.success(),
        "schema validation failed (needs apt packages python3-jsonschema and python3-yaml):\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("checked {} labs", lab_files().len())));
}

#[test]
fn misspelt_key_is_shown_where_it_is_with_a_suggestion() {
    let scratch = Scratch::new("misspelt");
    let file = scratch.file(
        "bad.yaml",
        "version: 1\nname: lab\nbridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics:\n      - { bridg: sw1 }\n",
    );
    let out = kvmlab(&["validate", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{file}:7:11")), "{err}");
    assert!(err.contains("unknown key `bridg`"), "{err}");
    assert!(err.contains("did you mean `bridge`?"), "{err}");
}

#[test]
fn unknown_bridge_is_shown_with_the_likely_one() {
    let scratch = Scratch::new("unknown-bridge");
    let file = scratch.file(
        "bad.yaml",
        "version: 1\nname: lab\nbridges: [{ name: sw1 }, { name: sw2 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw3 }]\n  - name: pc2\n    nics: [{ bridge: sw2, vlan: 5 }]\n",
    );
    let out = kvmlab(&["validate", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{file}:6:22")), "{err}");
    assert!(err.contains("unknown bridge `sw3`"), "{err}");
    assert!(err.contains("did you mean `sw1` or `sw2`?"), "{err}");
    // Every problem of the file, not only the first.
    assert!(
        err.contains("VLAN 5 is not declared on bridge `sw2`"),
        "{err}"
    );
    assert!(err.contains("has 2 problems"), "{err}");
}

#[test]
fn validate_prints_json_for_scripts() {
    let scratch = Scratch::new("json");
    let file = scratch.file("bad.yaml", "version: 1\nname: Bad\n");
    let out = kvmlab(&["validate", "--output", "json", &file]);
    assert_eq!(out.status.code(), Some(2));
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problem = &results[0]["problems"][0];
    assert_eq!(results[0]["valid"], false);
    assert_eq!(problem["message"], "invalid lab name `Bad`");
    assert_eq!(
        (problem["line"].as_u64(), problem["column"].as_u64()),
        (Some(2), Some(7))
    );
    assert_eq!(problem["path"], "name");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = kvmlab(&["validate", "/nonexistent/lab.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read topology file /nonexistent/lab.yaml"));
}

#[test]
fn graph_draws_dot_and_mermaid() {
    let dot = kvmlab(&["graph", "labs/trunk.yaml"]);
    assert!(dot.status.success(), "{}", text(&dot.stderr));
    let dot = text(&dot.stdout);
    assert!(dot.starts_with("graph \"trunk\" {"), "{dot}");
    assert_eq!(
        dot.matches(" -- ").count(),
        5,
        "four NICs and one link:\n{dot}"
    );
    let mermaid = kvmlab(&["graph", "--format", "mermaid", "labs/stp-loop.yaml"]);
    assert!(mermaid.status.success());
    let mermaid = text(&mermaid.stdout);
    assert!(mermaid.starts_with("flowchart LR"));
    assert_eq!(
        mermaid.matches("===").count(),
        3,
        "three links in the loop:\n{mermaid}"
    );
}

#[test]
fn graph_refuses_an_invalid_lab() {
    let scratch = Scratch::new("graph");
    let file = scratch.file(
        "bad.yaml",
        "version: 1\nname: lab\nvms: [{ name: pc1, nics: [{ bridge: nope }] }]\n",
    );
    let out = kvmlab(&["graph", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("unknown bridge `nope`"));
}

#[test]
fn every_command_explains_itself_with_an_example() {
    for command in [
        "validate",
        "schema",
        "graph",
        "plan",
        "up",
        "down",
        "status",
        "vm",
        "vm run",
        "console",
        "logs",
        "stats",
        "inspect",
        "completions",
        "manpage",
    ] {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let out = kvmlab(&args);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(
            help.contains("kvmlab "),
            "{command} --help has no example:\n{help}"
        );
    }
}

/// Runs kvmlab with its standard output a pipe whose reader has already gone, as
/// in `kvmlab status | head -0`: the reader closes before kvmlab writes anything.
fn kvmlab_into_closed_pipe(args: &[&str], state_dir: &Path) -> Output {
    let (reader, writer) = nix::unistd::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_kvmlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KVMLAB_STATE_DIR", state_dir)
        .stdout(std::process::Stdio::from(writer))
        .output()
        .expect("kvmlab runs")
}

#[test]
fn every_command_ends_quietly_when_its_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt;
    let scratch = Scratch::new("pipe");
    for args in [
        &["status"][..],
        &["status", "-o", "json"],
        &["schema"],
        &["graph", "labs/stp-loop.yaml"],
        &["validate", "labs/two-pcs.yaml", "-o", "json"],
        &["--help"],
        &["down", "--help"],
    ] {
        let out = kvmlab_into_closed_pipe(args, &scratch.0);
        let stderr = text(&out.stderr);
        // As `ip` and `git` do: killed by SIGPIPE, no message, no panic (101).
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "kvmlab {args:?} into a closed pipe: {:?}\n{stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "kvmlab {args:?} said:\n{stderr}");
    }
}

/// A lab's state as `up` leaves it, without bringing anything up: `lab.json` of
/// lab `lab` (from `file`, in namespace `netns`) and one folder per VM.
fn fake_lab(root: &Path, file: &str, lab: &str, netns: Option<&str>) {
    use kvmlab::lab::meta::{LabMeta, write_meta};
    use kvmlab::plan::{Desired, VlanMode};
    let loaded = kvmlab::topology::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .expect("the lab is valid");
    let dir = root.join(lab);
    for vm in &loaded.topology.vms {
        std::fs::create_dir_all(dir.join("vms").join(&vm.name)).unwrap();
    }
    let meta = LabMeta {
        lab: lab.to_string(),
        netns: netns.map(str::to_string),
        netns_created: netns.is_some(),
        vlan_mode: VlanMode::VmNics,
        file: None,
        desired: Desired::from_topology(&loaded.topology, lab),
    };
    write_meta(&dir, &meta).unwrap();
}

/// Runs kvmlab with its state under `root`.
fn kvmlab_in(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvmlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KVMLAB_STATE_DIR", root)
        .output()
        .expect("kvmlab runs")
}

#[test]
fn a_mistyped_lab_vm_or_bridge_is_an_error_that_lists_those_there_are() {
    let scratch = Scratch::new("names");
    fake_lab(
        &scratch.0,
        "labs/trunk.yaml",
        "trunk",
        Some("kvmlab-no-such-ns"),
    );
    fake_lab(&scratch.0, "labs/two-pcs.yaml", "two-pcs", None);
    // (command, what must be said, what must be suggested or listed)
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["down", "--lab", "trunc"],
            "no lab trunc",
            "did you mean `trunk`?",
        ),
        (
            &["down", "--lab", "nosuch"],
            "no lab nosuch",
            "trunk, two-pcs",
        ),
        (
            &["status", "two-pc"],
            "no lab two-pc",
            "did you mean `two-pcs`?",
        ),
        (
            &["logs", "trunkk", "pc1"],
            "no lab trunkk",
            "did you mean `trunk`?",
        ),
        (
            &["logs", "two-pcs", "pc3"],
            "lab two-pcs has no VM pc3",
            "pc1, pc2",
        ),
        (
            &["console", "two-pcs", "p1"],
            "lab two-pcs has no VM p1",
            "did you mean `pc1`?",
        ),
        (
            &["stats", "two-pcs", "pc"],
            "lab two-pcs has no VM pc",
            "pc1, pc2",
        ),
        (
            &["inspect", "trunk", "flor1"],
            "lab trunk has no bridge flor1",
            "did you mean `floor1`?",
        ),
        (
            &["inspect", "trunk", "core"],
            "lab trunk has no bridge core",
            "floor1, floor2",
        ),
        (
            &["inspect", "trnk", "floor1"],
            "no lab trnk",
            "did you mean `trunk`?",
        ),
    ];
    for (args, said, suggested) in cases {
        let out = kvmlab_in(&scratch.0, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "kvmlab {args:?}:\n{stderr}");
        assert!(
            out.stdout.is_empty(),
            "kvmlab {args:?} printed {}",
            text(&out.stdout)
        );
        assert!(stderr.contains(said), "kvmlab {args:?}:\n{stderr}");
        assert!(stderr.contains(suggested), "kvmlab {args:?}:\n{stderr}");
    }
    // Both labs are still there: nothing was taken down.
    assert!(scratch.0.join("trunk/lab.json").exists());
    assert!(scratch.0.join("two-pcs/lab.json").exists());
    let empty = Scratch::new("names-empty");
    let out = kvmlab_in(&empty.0, &["down", "--lab", "two-pcs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("there are no labs in"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn down_shows_both_ways_to_name_the_lab() {
    let out = kvmlab(&["down"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("kvmlab down [OPTIONS] <FILE>"), "{stderr}");
    assert!(
        stderr.contains("kvmlab down [OPTIONS] --lab <NAME>"),
        "{stderr}"
    );
    assert!(stderr.contains("<FILE|--lab <NAME>>"), "{stderr}");
    let help = text(&kvmlab(&["down", "--help"]).stdout);
    assert!(
        help.contains("kvmlab down [OPTIONS] --lab <NAME>"),
        "{help}"
    );
}

#[test]
fn only_up_offers_ready_timeout() {
    for command in ["down", "plan"] {
        let help = text(&kvmlab(&[command, "--help"]).stdout);
        assert!(help.contains("--state-dir"), "{help}");
        assert!(
            !help.contains("--ready-timeout"),
            "{command} --help:\n{help}"
        );
        let out = kvmlab(&[command, "labs/two-pcs.yaml", "--ready-timeout", "3"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("unexpected argument '--ready-timeout'"));
    }
    let help = text(&kvmlab(&["up", "--help"]).stdout);
    assert!(help.contains("--ready-timeout"), "{help}");
}

#[test]
fn the_man_page_has_every_command() {
    use clap::CommandFactory;
    let out = kvmlab(&["manpage"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "not roff: {page}");
    assert!(page.contains(".TH kvmlab 1"), "{page}");
    let command = kvmlab::cli::Cli::command();
    let mut count = 0;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name().to_uppercase();
        assert!(
            page.contains(&format!(".SH \"KVMLAB {name}\"")),
            "no {name}: {page}"
        );
        count += 1;
    }
    assert!(count >= 14, "{count} commands");
    assert!(
        !page.contains("__VMM") && !page.contains("__COMPLETE"),
        "{page}"
    );
    // A command's own options are under it: `up` has --ready-timeout.
    let up = page.split(".SH \"KVMLAB UP\"").nth(1).unwrap();
    let up = up.split(".SH ").next().unwrap();
    assert!(up.contains("ready\\-timeout"), "{up}");
}

/// What bash completes for the words `line` (the last one is being typed), with
/// the script `kvmlab completions bash` prints and lab state under `root`.
fn bash_completes(root: &Path, line: &[&str]) -> Vec<String> {
    let bin = Path::new(env!("CARGO_BIN_EXE_kvmlab")).parent().unwrap();
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source <(kvmlab completions bash) || exit 9\n\
         COMP_WORDS=(kvmlab {}); COMP_CWORD={}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         _kvmlab_names kvmlab \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words.join(" "),
        line.len()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("KVMLAB_STATE_DIR", root)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut names: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[test]
fn completion_scripts_complete_commands_and_lab_vm_and_bridge_names() {
    let scratch = Scratch::new("complete");
    fake_lab(&scratch.0, "labs/trunk.yaml", "trunk", None);
    fake_lab(&scratch.0, "labs/two-pcs.yaml", "two-pcs", None);
    let cases: &[(&[&str], &[&str])] = &[
        (&["stat"], &["stats", "status"]),
        (&["status", ""], &["trunk", "two-pcs"]),
        (&["logs", "tw"], &["two-pcs"]),
        (&["console", "two-pcs", ""], &["pc1", "pc2"]),
        (
            &["stats", "trunk", "st"],
            &["staff1", "staff2", "student1", "student2"],
        ),
        (&["inspect", "trunk", ""], &["floor1", "floor2"]),
        (&["inspect", "two-pcs", "s"], &["sw1"]),
        (&["down", "--lab", ""], &["trunk", "two-pcs"]),
        (&["inspect", "--state-dir", "/nonexistent", ""], &[]),
        (&["status", "--o"], &["--output"]),
    ];
    for (line, expected) in cases {
        assert_eq!(
            bash_completes(&scratch.0, line),
            *expected,
            "kvmlab {line:?}"
        );
    }
    for (shell, generated) in [("zsh", "#compdef kvmlab"), ("fish", "complete -c kvmlab")] {
        let out = kvmlab(&["completions", shell]);
        assert!(out.status.success());
        let script = text(&out.stdout);
        assert!(script.contains(generated), "{script}");
        assert!(script.contains("kvmlab __complete"), "{script}");
    }
    let out = kvmlab_in(&scratch.0, &["__complete", "bridges", "trunk"]);
    assert_eq!(text(&out.stdout), "floor1\nfloor2\n");
}
