//! Apply: carry out a plan step by step through rtnetlink and `/dev/net/tun`,
//! journalling each step before and after it runs.

mod exec;
#[cfg(feature = "fault-injection")]
mod faults;
mod tap;
pub mod vlan;

use std::io;
use std::path::PathBuf;

pub use exec::Executor;
#[cfg(feature = "fault-injection")]
pub use faults::{FAILPOINT_ENV, FAILPOINT_EXIT, FailPoint};
pub use tap::create_persistent_tap;

use crate::plan::LabJournal;
use crate::plan::Plan;

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
    #[cfg(feature = "fault-injection")]
    let failpoint = FailPoint::from_env();
    let total = plan.actions.len();
    let journal_error = |source| ApplyError::Journal {
        journal: dir.clone(),
        source,
    };
    for (index, action) in plan.actions.iter().enumerate() {
        let step = index + 1;
        let seq = journal.begin(step, action).map_err(journal_error)?;
        #[cfg(feature = "fault-injection")]
        faults::before_step(failpoint, step, action, executor);
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
        #[cfg(feature = "fault-injection")]
        faults::after_step(failpoint, step);
        journal.done(seq).map_err(journal_error)?;
    }
    Ok(total)
}
