//! What a lab owns: the objects it created, folded from the steps of its runs. The
//! journal (`state::Journal`) only persists the steps; this fold says what they mean.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Action, ObjectKind};
use crate::state::{Journal, Replay};

/// An object the lab created, and for a veth end, its peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    /// Interface name.
    pub name: String,
    /// Kind.
    pub kind: ObjectKind,
    /// The other end of a veth pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// What the journal says about the lab.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabState {
    /// Objects created (and not since deleted), oldest first.
    pub created: Vec<Object>,
    /// Interfaces whose creation began but was not seen to finish: they may exist
    /// without the lab's marker, and are the lab's if they have this kind.
    pub pending: BTreeMap<String, ObjectKind>,
}

/// The journal of a lab's runs: plan actions as steps, created objects as snapshots.
pub type LabJournal = Journal<LabState>;

impl LabState {
    /// Position of `name` in creation order.
    pub fn created_index(&self, name: &str) -> Option<usize> {
        self.created.iter().position(|o| o.name == name)
    }

    fn forget(&mut self, name: &str) {
        let peer = self
            .created
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.peer.clone());
        self.created
            .retain(|o| o.name != name && Some(&o.name) != peer.as_ref());
        self.pending.remove(name);
    }

    fn add(&mut self, object: Object) {
        self.pending.remove(&object.name);
        self.created.retain(|o| o.name != object.name);
        self.created.push(object);
    }
}

impl Replay for LabState {
    type Step = Action;
    type Snapshot = Vec<Object>;

    fn restore(objects: Vec<Object>) -> LabState {
        LabState {
            created: objects,
            pending: BTreeMap::new(),
        }
    }

    fn begun(&mut self, action: &Action) {
        for (name, kind, _) in created_by(action) {
            self.pending.insert(name, kind);
        }
    }

    fn done(&mut self, action: &Action) {
        for (name, kind, peer) in created_by(action) {
            self.add(Object { name, kind, peer });
        }
        if let Action::Mark { name, kind } = action {
            self.add(Object {
                name: name.clone(),
                kind: *kind,
                peer: None,
            });
        }
        if let Action::Delete { name, .. } = action {
            self.forget(name);
        }
    }

    fn refused(&mut self, action: &Action) {
        for (name, _, _) in created_by(action) {
            self.pending.remove(&name);
        }
    }
}

/// The interfaces `action` creates: name, kind and (for a veth end) peer.
fn created_by(action: &Action) -> Vec<(String, ObjectKind, Option<String>)> {
    match action {
        Action::CreateBridge { name, .. } => vec![(name.clone(), ObjectKind::Bridge, None)],
        Action::CreateTap { name, .. } => vec![(name.clone(), ObjectKind::Tap, None)],
        Action::CreateVeth { name, peer, .. } => vec![
            (name.clone(), ObjectKind::Veth, Some(peer.clone())),
            (peer.clone(), ObjectKind::Veth, Some(name.clone())),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kvmlab-owned-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn tap(name: &str) -> Action {
        Action::CreateTap {
            name: name.into(),
            bridge: "sw1".into(),
            mtu: None,
        }
    }

    #[test]
    fn replay_tells_created_from_pending() {
        let dir = scratch("replay");
        let mut journal = LabJournal::open(&dir).unwrap();
        let a = journal.begin(1, &tap("a")).unwrap();
        journal.done(a).unwrap();
        journal.begin(2, &tap("b")).unwrap(); // killed here
        let state = LabJournal::read(&dir).unwrap();
        assert_eq!(state.created.len(), 1);
        assert_eq!(state.created[0].name, "a");
        assert_eq!(state.pending.get("b"), Some(&ObjectKind::Tap));
        // A refused creation that made nothing is not pending.
        let mut journal = LabJournal::open(&dir).unwrap();
        let c = journal.begin(1, &tap("c")).unwrap();
        journal.failed(c, "File exists", true).unwrap();
        assert!(!LabJournal::read(&dir).unwrap().pending.contains_key("c"));
        // Deleting one veth end forgets both; compaction keeps what is given.
        let veth = Action::CreateVeth {
            name: "x".into(),
            bridge: "sw1".into(),
            peer: "y".into(),
            peer_bridge: "sw2".into(),
            mtu: None,
        };
        let v = journal.begin(2, &veth).unwrap();
        journal.done(v).unwrap();
        let d = journal
            .begin(
                3,
                &Action::Delete {
                    name: "y".into(),
                    kind: ObjectKind::Veth,
                },
            )
            .unwrap();
        journal.done(d).unwrap();
        let names: Vec<String> = journal
            .state()
            .created
            .iter()
            .map(|o| o.name.clone())
            .collect();
        assert_eq!(names, ["a"]);
        journal.compact(journal.state().created.clone()).unwrap();
        let state = LabJournal::read(&dir).unwrap();
        assert_eq!(state.created.len(), 1);
        assert!(state.pending.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_skipped() {
        let dir = scratch("torn");
        let mut journal = LabJournal::open(&dir).unwrap();
        let a = journal.begin(1, &tap("a")).unwrap();
        journal.done(a).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("journal"))
            .unwrap();
        std::io::Write::write_all(&mut file, b"{\"record\":\"begin\",\"se").unwrap();
        assert_eq!(LabJournal::read(&dir).unwrap().created.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_journal_lines_keep_their_shape() {
        let dir = scratch("shape");
        let mut journal = LabJournal::open(&dir).unwrap();
        let a = journal.begin(1, &tap("a")).unwrap();
        journal.done(a).unwrap();
        let text = std::fs::read_to_string(dir.join("journal")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["record"], "begin");
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[0]["step"], 1);
        assert_eq!(lines[0]["action"]["action"], "create_tap", "{text}");
        assert_eq!(lines[0]["action"]["name"], "a", "{text}");
        assert_eq!(lines[1], serde_json::json!({"record": "done", "seq": 1}));
        journal.compact(journal.state().created.clone()).unwrap();
        let text = std::fs::read_to_string(dir.join("journal")).unwrap();
        let snapshot: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(
            snapshot,
            serde_json::json!({"record": "snapshot", "objects": [{"name": "a", "kind": "tap"}]})
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
