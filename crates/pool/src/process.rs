//! Worker processes: the same pool, with each thread driving one child process over pipes. A job
//! is one request line (JSON, say) written to a worker's stdin; its result is the one line the
//! worker writes back. Independent processes scale where threads of one process do not (burn's
//! autodiff registers every op through one process-wide lock: 2 processes on 2 cores 1.98×,
//! 2 threads 1.69×, `experiments/bench/`).
//!
//! Jobs go out longest first (by the caller's cost estimate), each to the next idle worker, so
//! one long job does not start last and idle the others; results are handed back by job index,
//! so what the caller computes does not depend on the worker count or on timing.
//!
//! A worker that exits or writes something that is not a line is an error naming it; no new job
//! starts after the first error, and every child is killed when the pool is dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

/// Why a job did not come back.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerError {
    /// The worker's index.
    pub worker: usize,
    /// What happened.
    pub reason: String,
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "worker process {}: {}", self.worker, self.reason)
    }
}

impl std::error::Error for WorkerError {}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// Sends one line and reads one line back.
    fn call(&mut self, request: &str) -> Result<String, String> {
        debug_assert!(!request.contains('\n'), "a request is one line");
        self.stdin
            .write_all(request.as_bytes())
            .and_then(|_| self.stdin.write_all(b"\n"))
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("cannot send a job: {e}{}", self.exit_status()))?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err(format!("exited before answering{}", self.exit_status())),
            Ok(_) if line.ends_with('\n') => {
                line.pop();
                Ok(line)
            }
            Ok(_) => Err(format!("answered with a torn line{}", self.exit_status())),
            Err(e) => Err(format!("cannot read its answer: {e}")),
        }
    }

    fn exit_status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!(" ({status})"),
            _ => String::new(),
        }
    }
}

/// A fixed set of worker processes, all running the same program.
pub struct ProcessPool {
    workers: Vec<Mutex<Worker>>,
}

impl ProcessPool {
    /// Starts `n` (at least 1) copies of `program args…`, their stdin and stdout piped to the
    /// pool, their stderr the caller's.
    pub fn spawn(n: usize, program: &Path, args: &[&str]) -> std::io::Result<Self> {
        let mut workers = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            let mut child = Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let stdin = child.stdin.take().expect("stdin is piped");
            let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
            workers.push(Mutex::new(Worker {
                child,
                stdin,
                stdout,
            }));
        }
        Ok(Self { workers })
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether the pool has no workers (never: it starts at least one).
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Sends every request (one line each) to the workers, the highest `cost` first (ties in
    /// index order), and calls `done(index, answer)` as each answer arrives (from the worker's
    /// thread). After the first error, from a worker or from `done`, no new request goes out
    /// and that error is returned.
    pub fn run<E: Send + From<WorkerError>>(
        &self,
        requests: &[String],
        cost: &[f64],
        done: impl Fn(usize, String) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        assert_eq!(requests.len(), cost.len(), "one cost per request");
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|&a, &b| cost[b].total_cmp(&cost[a]).then(a.cmp(&b)));
        // One pool thread per worker, so a job always finds an idle worker.
        let idle: Mutex<Vec<usize>> = Mutex::new((0..self.workers.len()).rev().collect());
        crate::try_for_each(order.len(), self.workers.len(), |k| {
            let i = order[k];
            let w = idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .expect("one job per pool thread, one pool thread per worker");
            let answer = self.workers[w]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .call(&requests[i]);
            idle.lock().unwrap_or_else(|p| p.into_inner()).push(w);
            done(
                i,
                answer.map_err(|reason| E::from(WorkerError { worker: w, reason }))?,
            )
        })
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        for worker in &self.workers {
            let mut worker = worker.lock().unwrap_or_else(|p| p.into_inner());
            // Closing stdin ends a well-behaved worker; kill the rest.
            let _ = worker.child.kill();
            let _ = worker.child.wait();
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct E(String);
    impl From<WorkerError> for E {
        fn from(e: WorkerError) -> Self {
            E(e.to_string())
        }
    }

    /// `sh` reading lines and echoing them back with the worker's pid: a stand-in worker.
    fn echo_pool(n: usize) -> ProcessPool {
        ProcessPool::spawn(
            n,
            Path::new("sh"),
            &["-c", "while read -r line; do echo \"$line\"; done"],
        )
        .unwrap()
    }

    #[test]
    fn answers_come_back_by_index_for_any_worker_count_longest_first() {
        let requests: Vec<String> = (0..20).map(|i| format!("job {i}")).collect();
        let cost: Vec<f64> = (0..20).map(|i| (i % 7) as f64).collect();
        for n in [1, 2, 3] {
            let pool = echo_pool(n);
            assert_eq!(pool.len(), n);
            let answers: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; 20]);
            let started: Mutex<Vec<usize>> = Mutex::new(Vec::new());
            pool.run::<E>(&requests, &cost, |i, answer| {
                answers.lock().unwrap()[i] = Some(answer);
                started.lock().unwrap().push(i);
                Ok(())
            })
            .unwrap();
            let answers: Vec<String> = answers
                .into_inner()
                .unwrap()
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(answers, requests, "{n} workers");
            if n == 1 {
                // One worker: strictly by cost, highest first, ties in index order.
                let order = started.into_inner().unwrap();
                assert_eq!(&order[..3], &[6, 13, 5]);
            }
        }
    }

    #[test]
    fn a_worker_that_dies_is_an_error_naming_it() {
        let pool = ProcessPool::spawn(1, Path::new("sh"), &["-c", "read -r line; exit 3"]).unwrap();
        let err = pool
            .run::<E>(&["a".into(), "b".into()], &[1.0, 1.0], |_, _| Ok(()))
            .unwrap_err();
        assert!(err.0.contains("worker process 0"), "{err:?}");
        // The caller's own error stops the run too.
        let pool = echo_pool(2);
        let err = pool
            .run::<E>(&["a".into(), "b".into()], &[1.0, 1.0], |i, _| {
                if i == 0 { Err(E("no".into())) } else { Ok(()) }
            })
            .unwrap_err();
        assert_eq!(err, E("no".into()));
    }
}
