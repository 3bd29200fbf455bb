//! The one worker pool of hyperctl: independent jobs (a comparison's training runs, meta-val's
//! episodes, PPO's env steps) on a fixed number of plain OS threads. Each thread takes the next
//! job in index order; results come back in job order, so what a caller computes does not depend
//! on the thread count or on which thread ran what.
//!
//! Plain threads rather than a rayon pool, on purpose: a job trains a network, and the CPU
//! backend's kernels parallelise on rayon's global pool themselves (`--threads`). Jobs run inside
//! a rayon pool would put those kernels on the job pool instead (a comparison with `--jobs 1`
//! would train on one core), and a thread waiting inside a kernel could steal and run a whole
//! other training run on its stack.
//!
//! With one thread (or one job) everything runs on the calling thread, in order.
//!
//! # Architecture invariants
//! - Knows nothing of what the jobs do; no dependencies.
//! - A panic in a job propagates to the caller (after the other threads finish their job).

#![warn(missing_docs)]

pub mod process;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `job(0)`, …, `job(jobs - 1)` on up to `threads` threads. After the first error no new
/// job starts (those running finish) and that error is returned.
pub fn try_for_each<E: Send>(
    jobs: usize,
    threads: usize,
    job: impl Fn(usize) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let threads = threads.max(1).min(jobs);
    if threads <= 1 {
        return (0..jobs).try_for_each(job);
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs {
                        return;
                    }
                    if let Err(e) = job(i) {
                        stop.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `job(i)` for every `i < jobs` on up to `threads` threads, in job order.
pub fn map<R: Send>(jobs: usize, threads: usize, job: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<R>>> = (0..jobs).map(|_| Mutex::new(None)).collect();
    let ran = try_for_each(jobs, threads, |i| {
        let result = job(i);
        *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        Ok::<(), std::convert::Infallible>(())
    });
    let Ok(()) = ran;
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every job ran")
        })
        .collect()
}

/// `job(i, &mut items[i])` for every item on up to `threads` threads, in item order. Each item
/// is touched by exactly one job.
pub fn map_mut<T: Send, R: Send>(
    items: &mut [T],
    threads: usize,
    job: impl Fn(usize, &mut T) -> R + Sync,
) -> Vec<R> {
    let cells: Vec<Mutex<&mut T>> = items.iter_mut().map(Mutex::new).collect();
    map(cells.len(), threads, |i| {
        let mut item = cells[i].lock().unwrap_or_else(|p| p.into_inner());
        job(i, &mut item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_job_order_whatever_the_thread_count() {
        let serial = map(50, 1, |i| i * i);
        for threads in [2, 3, 8, 100] {
            assert_eq!(map(50, threads, |i| i * i), serial);
        }
        assert!(map(0, 4, |i| i).is_empty());
    }

    #[test]
    fn jobs_run_on_several_threads_at_once() {
        // Two jobs that each wait for the other to have started: only concurrent runs finish.
        let started = AtomicUsize::new(0);
        let ids = map(2, 2, |_| {
            started.fetch_add(1, Ordering::SeqCst);
            let t0 = std::time::Instant::now();
            while started.load(Ordering::SeqCst) < 2 {
                assert!(t0.elapsed().as_secs() < 10, "jobs did not run concurrently");
                std::thread::yield_now();
            }
            std::thread::current().id()
        });
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn the_first_error_stops_new_jobs() {
        let ran = AtomicUsize::new(0);
        let result = try_for_each(1000, 1, |i| {
            ran.fetch_add(1, Ordering::SeqCst);
            if i == 3 { Err(i) } else { Ok(()) }
        });
        assert_eq!(result, Err(3));
        assert_eq!(ran.load(Ordering::SeqCst), 4);
        let ran = AtomicUsize::new(0);
        let result = try_for_each(1000, 4, |i| {
            ran.fetch_add(1, Ordering::SeqCst);
            if i == 3 { Err(i) } else { Ok(()) }
        });
        assert_eq!(result, Err(3));
        assert!(ran.load(Ordering::SeqCst) < 1000);
    }

    #[test]
    fn each_item_is_changed_by_its_own_job() {
        let mut items: Vec<usize> = (0..20).collect();
        let old = map_mut(&mut items, 4, |i, x| {
            let old = *x;
            *x += 100 * i;
            old
        });
        assert_eq!(old, (0..20).collect::<Vec<_>>());
        assert_eq!(items, (0..20).map(|i| i + 100 * i).collect::<Vec<_>>());
    }
}
