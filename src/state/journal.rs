//! The journal: an append-only file of JSON lines, one before and one after each
//! step. Replaying it tells the next run what exists because of the lab, and what an
//! interrupted run may have created without getting to mark it.
//!
//! The state root is a tmpfs (`/run`), so a write survives the death of the process
//! that made it, which is the failure the journal is for; it is not fsynced.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{Action, ObjectKind};

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

    fn apply_begin(&mut self, action: &Action) {
        for (name, kind, _) in created_by(action) {
            self.pending.insert(name, kind);
        }
    }

    fn apply_done(&mut self, action: &Action) {
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
}

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

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    /// The state as of a compaction.
    Snapshot { objects: Vec<Object> },
    /// Step `step` of a run (journal-wide number `seq`) is about to run.
    Begin {
        seq: u64,
        step: usize,
        action: Action,
    },
    /// It finished.
    Done { seq: u64 },
    /// It failed with `error`; `untouched`: the kernel refused it before it
    /// created anything (so nothing of it is pending).
    Failed {
        seq: u64,
        error: String,
        #[serde(default)]
        untouched: bool,
    },
}

/// The open journal of one lab.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    next_seq: u64,
    begun: BTreeMap<u64, Action>,
    state: LabState,
}

impl Journal {
    /// Opens (or starts) the journal in `dir` and replays it.
    pub fn open(dir: &Path) -> io::Result<Journal> {
        let path = dir.join("journal");
        let mut journal = Journal {
            file: OpenOptions::new().create(true).append(true).open(&path)?,
            path,
            next_seq: 1,
            begun: BTreeMap::new(),
            state: LabState::default(),
        };
        let reader = BufReader::new(File::open(&journal.path)?);
        for line in reader.lines() {
            let line = line?;
            // A line cut short by a crash is the only kind that may not parse.
            let Ok(record) = serde_json::from_str::<Record>(&line) else {
                continue;
            };
            journal.replay(record);
        }
        Ok(journal)
    }

    /// Reads the state of the journal in `dir` without keeping it open.
    pub fn read(dir: &Path) -> io::Result<LabState> {
        if !dir.join("journal").exists() {
            return Ok(LabState::default());
        }
        Journal::open(dir).map(|j| j.state)
    }

    fn replay(&mut self, record: Record) {
        match record {
            Record::Snapshot { objects } => {
                self.state = LabState {
                    created: objects,
                    pending: BTreeMap::new(),
                };
                self.begun.clear();
            }
            Record::Begin { seq, action, .. } => {
                self.next_seq = self.next_seq.max(seq + 1);
                self.state.apply_begin(&action);
                self.begun.insert(seq, action);
            }
            Record::Done { seq } => {
                if let Some(action) = self.begun.remove(&seq) {
                    self.state.apply_done(&action);
                }
            }
            Record::Failed { seq, untouched, .. } => {
                if let (Some(action), true) = (self.begun.remove(&seq), untouched) {
                    for (name, _, _) in created_by(&action) {
                        self.state.pending.remove(&name);
                    }
                }
            }
        }
    }

    /// The state as replayed and updated so far.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    fn append(&mut self, record: Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write call per record: O_APPEND keeps a record whole.
        self.file.write_all(&line)?;
        self.replay(record);
        Ok(())
    }

    /// Records that step `step` (`action`) is about to run; returns its number.
    pub fn begin(&mut self, step: usize, action: &Action) -> io::Result<u64> {
        let seq = self.next_seq;
        self.append(Record::Begin {
            seq,
            step,
            action: action.clone(),
        })?;
        Ok(seq)
    }

    /// Records that step `seq` finished.
    pub fn done(&mut self, seq: u64) -> io::Result<()> {
        self.append(Record::Done { seq })
    }

    /// Records that step `seq` failed; `untouched` when it changed nothing.
    pub fn failed(&mut self, seq: u64, error: &str, untouched: bool) -> io::Result<()> {
        self.append(Record::Failed {
            seq,
            error: error.to_string(),
            untouched,
        })
    }

    /// Replaces the journal with a snapshot of `objects` (after a verified run).
    pub fn compact(&mut self, objects: Vec<Object>) -> io::Result<()> {
        let record = Record::Snapshot { objects };
        let temporary = self.path.with_extension("tmp");
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        line.push(b'\n');
        std::fs::write(&temporary, line)?;
        std::fs::rename(&temporary, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.replay(record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kvmlab-journal-{}-{name}", std::process::id()));
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
        let mut journal = Journal::open(&dir).unwrap();
        let a = journal.begin(1, &tap("a")).unwrap();
        journal.done(a).unwrap();
        journal.begin(2, &tap("b")).unwrap(); // killed here
        let state = Journal::read(&dir).unwrap();
        assert_eq!(state.created.len(), 1);
        assert_eq!(state.created[0].name, "a");
        assert_eq!(state.pending.get("b"), Some(&ObjectKind::Tap));
        // A refused creation that made nothing is not pending.
        let mut journal = Journal::open(&dir).unwrap();
        let c = journal.begin(1, &tap("c")).unwrap();
        journal.failed(c, "File exists", true).unwrap();
        assert!(!Journal::read(&dir).unwrap().pending.contains_key("c"));
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
        let state = Journal::read(&dir).unwrap();
        assert_eq!(state.created.len(), 1);
        assert!(state.pending.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_skipped() {
        let dir = scratch("torn");
        let mut journal = Journal::open(&dir).unwrap();
        let a = journal.begin(1, &tap("a")).unwrap();
        journal.done(a).unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.join("journal"))
            .unwrap();
        file.write_all(b"{\"record\":\"begin\",\"se").unwrap();
        assert_eq!(Journal::read(&dir).unwrap().created.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
