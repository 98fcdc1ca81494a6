//! Copies of the vCPUs' exit counters while the VM runs.
//!
//! Each vCPU thread owns its counters and counts without locks or atomics, on
//! the hot path of every exit. For the statistics of a running VM, a reader
//! posts a request on the board and kicks the vCPU threads out of KVM_RUN;
//! each one, at its next pass through the run loop, leaves a copy of its
//! counters on the board. The cost on the run loop is one relaxed atomic load
//! per exit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::stats::VcpuCounters;

/// How often unanswered vCPUs are kicked again: a kick that lands just before a
/// thread enters KVM_RUN is lost.
const KICK_AGAIN: Duration = Duration::from_millis(2);

/// Where vCPU threads leave copies of their counters when asked.
#[derive(Debug, Default)]
pub struct CounterBoard {
    /// Number of the latest request; a vCPU answers each number once.
    requested: AtomicU64,
    state: Mutex<BoardState>,
    answered: Condvar,
}

#[derive(Debug, Default)]
struct BoardState {
    /// The vCPU threads in their run loop, by vCPU index. A thread leaves
    /// before it exits, under the lock, so a kick never reaches a dead thread.
    threads: BTreeMap<u8, libc::pthread_t>,
    /// Each vCPU's latest copy, with the request it answers.
    copies: BTreeMap<u8, (u64, VcpuCounters)>,
}

impl CounterBoard {
    fn state(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The calling thread runs vCPU `index` from now on.
    pub fn enter(&self, index: u8) {
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        self.state().threads.insert(index, thread);
    }

    /// vCPU `index`'s thread leaves its run loop.
    pub fn leave(&self, index: u8) {
        self.state().threads.remove(&index);
    }

    /// Called by vCPU `index` between exits: if a request came that it has not
    /// answered (`answered` is the last one it did), leaves a copy made by
    /// `copy` on the board.
    pub fn answer(&self, index: u8, answered: &mut u64, copy: impl FnOnce() -> VcpuCounters) {
        let asked = self.requested.load(Ordering::Relaxed);
        if asked == *answered {
            return;
        }
        *answered = asked;
        let counters = copy();
        self.state().copies.insert(index, (asked, counters));
        self.answered.notify_all();
    }

    /// Asks every vCPU in its run loop for a copy of its counters, kicking each
    /// with `kick` (which must make the thread leave KVM_RUN), and waits up to
    /// `limit` for them. Returns the copies of those that answered, by index.
    pub fn collect(&self, limit: Duration, kick: impl Fn(libc::pthread_t)) -> Vec<VcpuCounters> {
        let request = self.requested.fetch_add(1, Ordering::Relaxed) + 1;
        let deadline = Instant::now() + limit;
        let mut state = self.state();
        loop {
            let waiting: Vec<libc::pthread_t> = state
                .threads
                .iter()
                .filter(|(index, _)| state.copies.get(index).is_none_or(|(n, _)| *n < request))
                .map(|(_, thread)| *thread)
                .collect();
            let now = Instant::now();
            if waiting.is_empty() || now >= deadline {
                break;
            }
            for thread in waiting {
                kick(thread);
            }
            state = self
                .answered
                .wait_timeout(state, KICK_AGAIN.min(deadline - now))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state
            .copies
            .values()
            .filter(|(n, _)| *n == request)
            .map(|(_, counters)| counters.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ExitReason;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn running_vcpus_answer_and_stopped_ones_are_not_waited_for() {
        let board = Arc::new(CounterBoard::default());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (board, stop) = (board.clone(), stop.clone());
            std::thread::spawn(move || {
                board.enter(0);
                let mut counters = VcpuCounters::new(0, 0);
                let mut answered = 0;
                while !stop.load(Ordering::Relaxed) {
                    counters.exit(ExitReason::Hlt);
                    board.answer(0, &mut answered, || counters.clone());
                    std::thread::sleep(Duration::from_millis(1));
                }
                board.leave(0);
            })
        };
        while !board.state().threads.contains_key(&0) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let kicks = AtomicU64::new(0);
        let copies = board.collect(Duration::from_secs(20), |_| {
            kicks.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(copies.len(), 1, "the running vCPU answers");
        assert!(kicks.load(Ordering::Relaxed) >= 1, "it was kicked");
        let first = copies[0].exits();
        let again = board.collect(Duration::from_secs(20), |_| {});
        assert!(again[0].exits() >= first, "a later copy counts on");

        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        let started = Instant::now();
        let none = board.collect(Duration::from_secs(20), |_| panic!("no thread to kick"));
        assert!(none.is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing to wait for"
        );
    }
}
