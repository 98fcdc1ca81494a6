//! Fault injection (root; each test in its own namespace): `up` and `down` killed at
//! every step, or refused by the kernel half-way, leave a state that the next `up`
//! or `down` finishes. Fail points exist only in a build with the `fault-injection`
//! feature, which the test command enables.

#[path = "common/basic_lab.rs"]
mod basic_lab;
#[path = "common/netns.rs"]
mod netns;

use basic_lab::{BASIC, check_basic, check_gone};
use netns::{Sandbox, assert_ok, fixture, text};

/// Kills `up` at every step (after the step, and inside it), then checks that
/// both a following `up` and a following `down` converge.
#[test]
fn fault_injection_at_every_step_then_up_and_down_converge() {
    let file = fixture("basic.yaml");
    let steps = 7;
    for point in ["apply-step", "apply-mid-step"] {
        for k in 1..=steps {
            for recover_with_up in [true, false] {
                let sandbox = Sandbox::new();
                let failpoint = format!("{point}:{k}");
                let out = sandbox.kvmlab_env(
                    &["up", file.to_str().unwrap(), "--netns", &sandbox.netns],
                    &[("KVMLAB_FAILPOINT", &failpoint)],
                );
                let multi = k != 7; // the address step is one request
                if point == "apply-step" || multi {
                    assert_eq!(out.status.code(), Some(86), "{failpoint}: {}", text(&out));
                }
                if recover_with_up {
                    sandbox.up(&file);
                    check_basic(&sandbox);
                    assert_eq!(sandbox.plan(&file).0, 0, "{failpoint}");
                }
                sandbox.down("basic");
                check_gone(&sandbox, "basic");
            }
        }
    }
}

/// Kills `down` at every step; a following `down` (or `up`) converges.
#[test]
fn fault_injection_in_down_then_down_and_up_converge() {
    let file = fixture("basic.yaml");
    for k in 1..=6 {
        for recover_with_up in [true, false] {
            let sandbox = Sandbox::new();
            sandbox.up(&file);
            // A foreign interface makes `down` delete object by object, the path
            // that can be cut off half-way; it goes before the recovery.
            sandbox.ip(&[
                "link", "add", "keep0", "type", "veth", "peer", "name", "keep1",
            ]);
            let failpoint = format!("apply-step:{k}");
            let out = sandbox.kvmlab_env(
                &["down", "--lab", "basic"],
                &[("KVMLAB_FAILPOINT", &failpoint)],
            );
            assert_eq!(out.status.code(), Some(86), "{failpoint}: {}", text(&out));
            assert!(
                sandbox.link("keep0").is_some(),
                "{failpoint}: keep0 touched"
            );
            sandbox.ip(&["link", "del", "keep0"]);
            if recover_with_up {
                sandbox.up(&file);
                check_basic(&sandbox);
            }
            sandbox.down("basic");
            check_gone(&sandbox, "basic");
        }
    }
}

/// A step the kernel refuses (its name taken by a foreign interface that appears
/// mid-run) fails naming the step; the intruder is never adopted or removed, and
/// `down` still converges.
#[test]
fn kernel_error_mid_apply_names_the_step_and_down_converges() {
    let sandbox = Sandbox::new();
    let file = fixture("basic.yaml");
    let out = sandbox.kvmlab_env(
        &["up", file.to_str().unwrap(), "--netns", &sandbox.netns],
        &[("KVMLAB_FAILPOINT", "apply-obstacle:3")],
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(message.contains("step 3 of 7"), "{message}");
    assert!(message.contains("create tap ext0"), "{message}");
    let intruder = sandbox.link("ext0").expect("the obstacle is there");
    assert!(intruder.get("ifalias").is_none());
    // The next up sees a foreign interface and refuses; down leaves it alone.
    let out = sandbox.kvmlab(&["up", file.to_str().unwrap(), "--netns", &sandbox.netns]);
    assert!(
        text(&out).contains("created by lab basic"),
        "{}",
        text(&out)
    );
    let out = sandbox.kvmlab(&["down", "--lab", "basic"]);
    assert_ok(&out, "down");
    // The intruder, and so the namespace it lives in, are left in place.
    assert!(sandbox.link("ext0").is_some(), "the intruder was removed");
    assert!(text(&out).contains("left namespace"), "{}", text(&out));
    for (name, _) in BASIC.iter().filter(|(n, _)| *n != "ext0") {
        assert!(sandbox.link(name).is_none(), "{name} left behind");
    }
    assert!(!sandbox.lab_dir("basic").exists(), "state directory left");
}
