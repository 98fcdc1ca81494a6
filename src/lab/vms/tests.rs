use super::*;
use kvmlab_guest_proto::READY_MARKER;

fn vm(name: &str, mib: u64) -> LabVm {
    LabVm {
        name: name.to_string(),
        memory_bytes: mib << 20,
        vcpus: 1,
        kernel: None,
        initrd: None,
        cmdline: String::new(),
        ready: READY_MARKER.to_string(),
        nics: vec![],
        disks: vec![],
    }
}

fn seen(vm: &LabVm, running: bool) -> SeenVm {
    SeenVm {
        name: vm.name.clone(),
        config: Some(vm.clone()),
        running,
    }
}

fn lines(actions: &[VmAction]) -> Vec<String> {
    actions.iter().map(ToString::to_string).collect()
}

#[test]
fn new_vms_start_in_file_order() {
    let wanted = [vm("pc2", 64), vm("pc1", 64)];
    assert_eq!(
        lines(&plan_vms(&wanted, &[])),
        ["+ start vm pc2", "+ start vm pc1"]
    );
}

#[test]
fn unchanged_running_vms_are_left_alone() {
    let wanted = [vm("pc1", 64), vm("pc2", 64)];
    let seen: Vec<SeenVm> = wanted.iter().map(|v| seen(v, true)).collect();
    assert!(plan_vms(&wanted, &seen).is_empty());
}

#[test]
fn a_changed_vm_restarts_with_the_reason() {
    let wanted = [vm("pc1", 128), vm("pc2", 64)];
    let seen = [seen(&vm("pc1", 64), true), seen(&vm("pc2", 64), true)];
    assert_eq!(
        lines(&plan_vms(&wanted, &seen)),
        ["~ restart pc1: memory 64MiB -> 128MiB"]
    );
}

#[test]
fn a_crashed_vm_restarts() {
    let wanted = [vm("pc1", 64), vm("pc2", 64)];
    let seen = [seen(&wanted[0], false), seen(&wanted[1], true)];
    assert_eq!(
        lines(&plan_vms(&wanted, &seen)),
        ["~ restart pc1: crashed (its process is gone)"]
    );
}

#[test]
fn removed_vms_stop_first_and_down_stops_all() {
    let wanted = [vm("pc3", 64)];
    let seen = [seen(&vm("pc1", 64), true), seen(&vm("pc2", 64), false)];
    assert_eq!(
        lines(&plan_vms(&wanted, &seen)),
        ["- stop vm pc1", "- stop vm pc2", "+ start vm pc3"]
    );
    assert_eq!(
        lines(&plan_vms_down(&seen)),
        ["- stop vm pc1", "- stop vm pc2"]
    );
}
