//! Apply: carry out a plan step by step through rtnetlink and `/dev/net/tun`,
//! journalling each step before and after it runs.

mod exec;
mod tap;
pub mod vlan;

use std::io;
use std::path::PathBuf;

pub use exec::Executor;
pub use tap::create_persistent_tap;

use crate::plan::Plan;
use crate::plan::LabJournal;

/// The environment variable that arms a fail point (tests only).
pub const FAILPOINT_ENV: &str = "KVMLAB_FAILPOINT";
/// Exit status of a process stopped by a fail point.
pub const FAILPOINT_EXIT: i32 = 86;

/// Where a test asked kvmlab to die, to prove the journal makes runs resumable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// `apply-step:K`: after step K (1-based) took effect, before its "done" record.
    AfterStep(usize),
    /// `apply-mid-step:K`: inside step K, after its first kernel request.
    MidStep(usize),
    /// `apply-obstacle:K`: just before step K, a foreign bridge takes the name of
    /// the step's interface, so that the kernel refuses the step for real.
    Obstacle(usize),
}

impl FailPoint {
    /// Reads `KVMLAB_FAILPOINT`.
    pub fn from_env() -> Option<FailPoint> {
        let value = std::env::var(FAILPOINT_ENV).ok()?;
        let (kind, step) = value.split_once(':')?;
        let step = step.parse().ok()?;
        match kind {
            "apply-step" => Some(FailPoint::AfterStep(step)),
            "apply-mid-step" => Some(FailPoint::MidStep(step)),
            "apply-obstacle" => Some(FailPoint::Obstacle(step)),
            _ => None,
        }
    }
}

fn die_at(point: &str, step: usize) -> ! {
    eprintln!("kvmlab: fail point {point}:{step} reached, exiting");
    std::process::exit(FAILPOINT_EXIT)
}

/// Why applying stopped. The journal records how far it got.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    /// The kernel refused a step.
    #[error("step {step} of {total} failed: {action}: {source}")]
    #[diagnostic(
        code(kvmlab::apply::step_failed),
        help("{}the journal in {} records how far the run got: `kvmlab up` again finishes it, `kvmlab down` undoes it", permission_hint(.source), .journal.display())
    )]
    Step {
        /// 1-based step number.
        step: usize,
        /// Steps in the plan.
        total: usize,
        /// The step, as the plan prints it.
        action: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
        /// The lab's state directory.
        journal: PathBuf,
    },
    /// The journal could not be written.
    #[error("cannot write the journal in {}: {source}", .journal.display())]
    #[diagnostic(code(kvmlab::apply::journal))]
    Journal {
        /// The lab's state directory.
        journal: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn permission_hint(error: &io::Error) -> &'static str {
    if error.raw_os_error() == Some(libc::EPERM) {
        "kvmlab needs CAP_NET_ADMIN (run it as root); "
    } else {
        ""
    }
}

/// Carries out `plan`, journalling in `journal` (whose state directory is `dir`).
/// Returns the number of steps run.
pub fn apply(
    plan: &Plan,
    executor: &mut Executor<'_>,
    journal: &mut LabJournal,
    dir: PathBuf,
) -> Result<usize, ApplyError> {
    let failpoint = FailPoint::from_env();
    let total = plan.actions.len();
    let journal_error = |source| ApplyError::Journal {
        journal: dir.clone(),
        source,
    };
    for (index, action) in plan.actions.iter().enumerate() {
        let step = index + 1;
        let seq = journal.begin(step, action).map_err(journal_error)?;
        executor.midway = if failpoint == Some(FailPoint::MidStep(step)) {
            Box::new(move || die_at("apply-mid-step", step))
        } else {
            Box::new(|| {})
        };
        if failpoint == Some(FailPoint::Obstacle(step)) {
            executor.place_obstacle(action.subject());
        }
        if let Err(source) = executor.run(action) {
            // A creation refused because the name is taken created nothing: the
            // interface of that name is someone else's, never to be adopted.
            let taken = matches!(source.raw_os_error(), Some(libc::EEXIST | libc::EBUSY));
            let untouched = taken && action.creates(action.subject());
            journal
                .failed(seq, &source.to_string(), untouched)
                .map_err(journal_error)?;
            return Err(ApplyError::Step {
                step,
                total,
                action: action.to_string(),
                source,
                journal: dir.clone(),
            });
        }
        if failpoint == Some(FailPoint::AfterStep(step)) {
            die_at("apply-step", step);
        }
        journal.done(seq).map_err(journal_error)?;
    }
    Ok(total)
}
