use super::*;

fn probe(kind: ProbeKind, target: Ipv4, sent: u32, received: u32) -> ProbeReport {
    ProbeReport {
        kind,
        target,
        sent,
        received,
        error: None,
    }
}

fn disk(index: usize, sectors: u64, checksum: Result<u64, DiskError>) -> DiskReport {
    DiskReport {
        index,
        sectors,
        checksum,
    }
}

#[test]
fn report_lines() {
    let mut out = String::new();
    probe(ProbeKind::Ping, [10, 0, 0, 2], 3, 3)
        .write_line(&mut out)
        .unwrap();
    probe(ProbeKind::Arping, [10, 0, 0, 9], 3, 1)
        .write_line(&mut out)
        .unwrap();
    ProbeReport {
        error: Some(ProbeError::NoInterface),
        ..probe(ProbeKind::Ping, [1, 2, 3, 4], 0, 0)
    }
    .write_line(&mut out)
    .unwrap();
    disk(0, 2048, Ok(0xaf63_dc4c_8601_ec8c))
        .write_line(&mut out)
        .unwrap();
    disk(1, 0, Err(DiskError::Empty))
        .write_line(&mut out)
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            r#"kvmlab-report {"type":"ping","target":"10.0.0.2","sent":3,"received":3,"loss_pct":0}"#,
            r#"kvmlab-report {"type":"arping","target":"10.0.0.9","sent":3,"received":1,"loss_pct":66}"#,
            r#"kvmlab-report {"type":"ping","target":"1.2.3.4","sent":0,"received":0,"loss_pct":100,"error":"no interface"}"#,
            r#"kvmlab-report {"type":"disk","index":0,"sectors":2048,"fnv1a64":"0xaf63dc4c8601ec8c"}"#,
            r#"kvmlab-report {"type":"disk","index":1,"sectors":0,"error":"empty disk"}"#,
        ]
    );
    for line in lines {
        let json = line.strip_prefix("kvmlab-report ").unwrap();
        serde_json::from_str::<serde_json::Value>(json).unwrap();
    }
    // Every line ends with exactly one line feed.
    assert_eq!(out.matches('\n').count(), 5);
    assert!(out.ends_with("}\n"));
}

/// Reports of every kind, with the edges of each field.
fn every_report() -> Vec<Report> {
    let mut reports = vec![Report::Done];
    for kind in [ProbeKind::Ping, ProbeKind::Arping] {
        for target in [[0, 0, 0, 0], [10, 0, 0, 2], [255, 255, 255, 255]] {
            for (sent, received) in [(0, 0), (3, 3), (3, 1), (3, 0), (1000, 999), (u32::MAX, 1)] {
                reports.push(Report::Probe(probe(kind, target, sent, received)));
            }
            reports.push(Report::Probe(ProbeReport {
                error: Some(ProbeError::NoInterface),
                ..probe(kind, target, 0, 0)
            }));
        }
    }
    for index in [0, 1, 17, usize::MAX] {
        for sectors in [0, 1, 2048, u64::MAX] {
            for checksum in [
                Ok(0),
                Ok(0xaf63_dc4c_8601_ec8c),
                Ok(u64::MAX),
                Ok(0x1234),
                Err(DiskError::InitFailed),
                Err(DiskError::Empty),
                Err(DiskError::ReadFailed),
            ] {
                reports.push(Report::Disk(disk(index, sectors, checksum)));
            }
        }
    }
    reports
}

#[test]
fn every_report_the_guest_writes_the_host_reads_back() {
    for report in every_report() {
        let line = report.to_string();
        assert!(line.starts_with(REPORT_PREFIX), "{line}");
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(Report::parse(&line), Some(report), "{line}");
        // With the line ending the guest writes (a serial console adds CR).
        assert_eq!(Report::parse(&format!("{line}\n")), Some(report), "{line}");
        assert_eq!(
            Report::parse(&format!("{line}\r\n")),
            Some(report),
            "{line}"
        );
        // And it is JSON after the prefix.
        let json = line.strip_prefix(REPORT_PREFIX).unwrap();
        serde_json::from_str::<serde_json::Value>(json).unwrap();
        // write_line writes the same line and a line feed.
        let mut written = String::new();
        match report {
            Report::Probe(probe) => probe.write_line(&mut written).unwrap(),
            Report::Disk(disk) => disk.write_line(&mut written).unwrap(),
            Report::Done => written = format!("{DONE_LINE}\n"),
        }
        assert_eq!(written, format!("{line}\n"));
    }
}

#[test]
fn the_json_says_what_the_types_say() {
    let line = ProbeReport {
        error: Some(ProbeError::NoInterface),
        ..probe(ProbeKind::Arping, [10, 0, 0, 9], 7, 2)
    }
    .to_string();
    let json: serde_json::Value =
        serde_json::from_str(line.strip_prefix(REPORT_PREFIX).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "arping", "target": "10.0.0.9", "sent": 7, "received": 2,
            "loss_pct": 71, "error": "no interface"})
    );
    let line = disk(2, 4096, Ok(0x1234)).to_string();
    let json: serde_json::Value =
        serde_json::from_str(line.strip_prefix(REPORT_PREFIX).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "disk", "index": 2, "sectors": 4096,
            "fnv1a64": "0x0000000000001234"})
    );
    let done: serde_json::Value =
        serde_json::from_str(DONE_LINE.strip_prefix(REPORT_PREFIX).unwrap()).unwrap();
    assert_eq!(done, serde_json::json!({"type": "done"}));
}

#[test]
fn other_lines_are_no_reports() {
    for line in [
        "",
        "kvmlab-guest: ready",
        "kvmlab-report {}",
        r#"kvmlab-report {"type":"done"} "#,
        r#" kvmlab-report {"type":"done"}"#,
        r#"kvmlab-report {"type":"later"}"#,
        // Not the shape the guest writes: another order, spaces, a wrong loss,
        // leading zeros, an unknown error, a short or uppercase checksum.
        r#"kvmlab-report {"target":"10.0.0.2","type":"ping","sent":3,"received":3,"loss_pct":0}"#,
        r#"kvmlab-report {"type": "ping","target":"10.0.0.2","sent":3,"received":3,"loss_pct":0}"#,
        r#"kvmlab-report {"type":"ping","target":"10.0.0.2","sent":3,"received":3,"loss_pct":1}"#,
        r#"kvmlab-report {"type":"ping","target":"10.0.0.2","sent":03,"received":3,"loss_pct":0}"#,
        r#"kvmlab-report {"type":"ping","target":"10.0.0.2","sent":3,"received":3,"loss_pct":0"#,
        r#"kvmlab-report {"type":"ping","target":"10.0.0.2","sent":3,"received":3,"loss_pct":0}}"#,
        r#"kvmlab-report {"type":"ping","target":"10.0.0","sent":3,"received":3,"loss_pct":0}"#,
        r#"kvmlab-report {"type":"ping","target":"1.2.3.4","sent":0,"received":0,"loss_pct":100,"error":"busy"}"#,
        r#"kvmlab-report {"type":"disk","index":0,"sectors":2048,"fnv1a64":"0xaf63dc4c8601ec8"}"#,
        r#"kvmlab-report {"type":"disk","index":0,"sectors":2048,"fnv1a64":"0xAF63DC4C8601EC8C"}"#,
        r#"kvmlab-report {"type":"disk","index":0,"sectors":2048,"fnv1a64":"af63dc4c8601ec8c12"}"#,
        r#"kvmlab-report {"type":"disk","index":0,"sectors":2048}"#,
        r#"kvmlab-report {"type":"disk","index":1,"sectors":0,"error":"empty"}"#,
        r#"kvmlab-report {"type":"disk","index":-1,"sectors":0,"error":"empty disk"}"#,
    ] {
        assert_eq!(Report::parse(line), None, "{line}");
    }
}

#[test]
fn loss_rounds_down() {
    assert_eq!(loss_pct(0, 0), 100);
    assert_eq!(loss_pct(3, 3), 0);
    assert_eq!(loss_pct(3, 1), 66);
    assert_eq!(loss_pct(3, 0), 100);
    assert_eq!(loss_pct(u32::MAX, 0), 100);
    // More answers than probes (duplicates) count as no loss.
    assert_eq!(loss_pct(2, 5), 0);
}

#[test]
fn names_read_back() {
    for kind in [ProbeKind::Ping, ProbeKind::Arping] {
        assert_eq!(ProbeKind::from_name(kind.name()), Some(kind));
    }
    assert_eq!(
        ProbeError::parse(ProbeError::NoInterface.as_str()),
        Some(ProbeError::NoInterface)
    );
    for error in [
        DiskError::InitFailed,
        DiskError::Empty,
        DiskError::ReadFailed,
    ] {
        assert_eq!(DiskError::parse(error.as_str()), Some(error));
    }
    assert_eq!(ProbeKind::from_name("disk"), None);
}
