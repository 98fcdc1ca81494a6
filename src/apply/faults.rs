//! Fail points: where a test asks `apply` to die or to meet an obstacle, to prove
//! that the journal makes every run resumable. Compiled only with the
//! `fault-injection` feature, which the test command enables; a release build has
//! none of it.

use super::Executor;
use crate::plan::Action;

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

pub(super) fn die_at(point: &str, step: usize) -> ! {
    eprintln!("kvmlab: fail point {point}:{step} reached, exiting");
    std::process::exit(FAILPOINT_EXIT)
}

/// Arms the fail point of step `step` (if it is this step's) before it runs.
pub(super) fn before_step(
    failpoint: Option<FailPoint>,
    step: usize,
    action: &Action,
    executor: &mut Executor<'_>,
) {
    executor.die_midway = (failpoint == Some(FailPoint::MidStep(step))).then_some(step);
    if failpoint == Some(FailPoint::Obstacle(step)) {
        executor.place_obstacle(action.subject());
    }
}

/// Ends the process after step `step` took effect, if the fail point says so.
pub(super) fn after_step(failpoint: Option<FailPoint>, step: usize) {
    if failpoint == Some(FailPoint::AfterStep(step)) {
        die_at("apply-step", step);
    }
}
