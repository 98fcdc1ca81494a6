//! The journal: an append-only file of JSON lines, one before and one after each
//! step. Replaying it tells the next run what exists because of the lab, and what an
//! interrupted run may have created without getting to mark it.
//!
//! The journal only persists; what a step means is the business of the layer that
//! defines the steps (the plan's `LabState`), through [`Replay`].
//!
//! The state root is a tmpfs (`/run`), so a write survives the death of the process
//! that made it, which is the failure the journal is for; it is not fsynced.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a journal's records fold into.
pub trait Replay: Default {
    /// One step of a run, as recorded before it runs.
    type Step: Clone + Serialize + DeserializeOwned;
    /// What a compaction keeps in place of the records.
    type Snapshot: Serialize + DeserializeOwned;

    /// The state a snapshot stands for.
    fn restore(snapshot: Self::Snapshot) -> Self;
    /// `step` is about to run (and may leave things behind if the run dies).
    fn begun(&mut self, step: &Self::Step);
    /// `step` finished.
    fn done(&mut self, step: &Self::Step);
    /// `step` failed before it changed anything.
    fn refused(&mut self, step: &Self::Step);
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
#[serde(bound(serialize = "S: Serialize, T: Serialize"))]
#[serde(bound(deserialize = "S: DeserializeOwned, T: DeserializeOwned"))]
enum Record<S, T> {
    /// The state as of a compaction.
    Snapshot { objects: T },
    /// Step `step` of a run (journal-wide number `seq`) is about to run.
    Begin { seq: u64, step: usize, action: S },
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

/// The open journal of one lab, replayed into `R`.
#[derive(Debug)]
pub struct Journal<R: Replay> {
    path: PathBuf,
    file: File,
    next_seq: u64,
    begun: BTreeMap<u64, R::Step>,
    state: R,
}

impl<R: Replay> Journal<R> {
    /// Opens (or starts) the journal in `dir` and replays it.
    pub fn open(dir: &Path) -> io::Result<Journal<R>> {
        let path = dir.join("journal");
        let mut journal = Journal {
            file: OpenOptions::new().create(true).append(true).open(&path)?,
            path,
            next_seq: 1,
            begun: BTreeMap::new(),
            state: R::default(),
        };
        let reader = BufReader::new(File::open(&journal.path)?);
        for line in reader.lines() {
            let line = line?;
            // A line cut short by a crash is the only kind that may not parse.
            let Ok(record) = serde_json::from_str(&line) else {
                continue;
            };
            journal.replay(record);
        }
        Ok(journal)
    }

    /// Reads the state of the journal in `dir` without keeping it open.
    pub fn read(dir: &Path) -> io::Result<R> {
        if !dir.join("journal").exists() {
            return Ok(R::default());
        }
        Journal::open(dir).map(|j| j.state)
    }

    fn replay(&mut self, record: Record<R::Step, R::Snapshot>) {
        match record {
            Record::Snapshot { objects } => {
                self.state = R::restore(objects);
                self.begun.clear();
            }
            Record::Begin { seq, action, .. } => {
                self.next_seq = self.next_seq.max(seq + 1);
                self.state.begun(&action);
                self.begun.insert(seq, action);
            }
            Record::Done { seq } => {
                if let Some(action) = self.begun.remove(&seq) {
                    self.state.done(&action);
                }
            }
            Record::Failed { seq, untouched, .. } => {
                if let (Some(action), true) = (self.begun.remove(&seq), untouched) {
                    self.state.refused(&action);
                }
            }
        }
    }

    /// The state as replayed and updated so far.
    pub fn state(&self) -> &R {
        &self.state
    }

    fn append(&mut self, record: Record<R::Step, R::Snapshot>) -> io::Result<()> {
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write call per record: O_APPEND keeps a record whole.
        self.file.write_all(&line)?;
        self.replay(record);
        Ok(())
    }

    /// Records that step `step` (`action`) is about to run; returns its number.
    pub fn begin(&mut self, step: usize, action: &R::Step) -> io::Result<u64> {
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

    /// Replaces the journal with `snapshot` (after a verified run).
    pub fn compact(&mut self, snapshot: R::Snapshot) -> io::Result<()> {
        let record = Record::Snapshot { objects: snapshot };
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

    /// A fold that remembers which steps finished, and which were begun but not.
    #[derive(Default)]
    struct Steps {
        open: Vec<String>,
        done: Vec<String>,
    }

    impl Replay for Steps {
        type Step = String;
        type Snapshot = Vec<String>;
        fn restore(done: Vec<String>) -> Steps {
            Steps {
                open: Vec::new(),
                done,
            }
        }
        fn begun(&mut self, step: &String) {
            self.open.push(step.clone());
        }
        fn done(&mut self, step: &String) {
            self.open.retain(|s| s != step);
            self.done.push(step.clone());
        }
        fn refused(&mut self, step: &String) {
            self.open.retain(|s| s != step);
        }
    }

    #[test]
    fn replays_begun_done_refused_and_snapshots_across_opens() {
        let dir = std::env::temp_dir().join(format!("kvmlab-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut journal = Journal::<Steps>::open(&dir).unwrap();
        let a = journal.begin(1, &"a".to_string()).unwrap();
        journal.done(a).unwrap();
        let b = journal.begin(2, &"b".to_string()).unwrap();
        journal.failed(b, "refused", true).unwrap();
        let c = journal.begin(3, &"c".to_string()).unwrap();
        journal.failed(c, "half-way", false).unwrap();
        journal.begin(4, &"d".to_string()).unwrap(); // killed here
        let steps = Journal::<Steps>::read(&dir).unwrap();
        assert_eq!(steps.done, ["a"]);
        assert_eq!(
            steps.open,
            ["c", "d"],
            "a failure that touched the host stays open"
        );
        // Numbers go on after a reopen; a snapshot replaces what came before.
        let mut journal = Journal::<Steps>::open(&dir).unwrap();
        assert_eq!(journal.begin(1, &"e".to_string()).unwrap(), 5);
        journal.compact(vec!["x".to_string()]).unwrap();
        let steps = Journal::<Steps>::read(&dir).unwrap();
        assert_eq!((steps.done, steps.open), (vec!["x".to_string()], vec![]));
        // A line cut short by a crash is skipped.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.join("journal"))
            .unwrap();
        file.write_all(b"{\"record\":\"begin\",\"se").unwrap();
        assert_eq!(Journal::<Steps>::read(&dir).unwrap().done, ["x"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
