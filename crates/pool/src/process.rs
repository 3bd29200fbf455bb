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
    /// A call failed: the conversation is out of step, so no later call is tried.
    broken: bool,
}

impl Worker {
    fn spawn(program: &Path, args: &[String]) -> std::io::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Self {
            child,
            stdin,
            stdout,
            broken: false,
        })
    }

    /// Sends one line and reads one line back.
    fn call(&mut self, request: &str) -> Result<String, String> {
        if self.broken {
            return Err("lost earlier in this run".into());
        }
        let answer = self.exchange(request);
        if answer.is_err() {
            self.broken = true;
            let _ = self.child.kill();
        }
        answer
    }

    fn exchange(&mut self, request: &str) -> Result<String, String> {
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
    program: std::path::PathBuf,
    args: Vec<String>,
}

impl ProcessPool {
    /// Starts `n` (at least 1) copies of `program args…`, their stdin and stdout piped to the
    /// pool, their stderr the caller's.
    pub fn spawn(n: usize, program: &Path, args: &[&str]) -> std::io::Result<Self> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let workers = (0..n.max(1))
            .map(|_| Worker::spawn(program, &args).map(Mutex::new))
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            workers,
            program: program.into(),
            args,
        })
    }

    /// Replaces worker `w` by a fresh copy of the program (the old process is killed): after a
    /// worker was lost, the caller brings the new one up to date.
    pub fn respawn(&mut self, w: usize) -> std::io::Result<()> {
        let fresh = Worker::spawn(&self.program, &self.args)?;
        let old = std::mem::replace(
            self.workers[w].get_mut().unwrap_or_else(|p| p.into_inner()),
            fresh,
        );
        drop(old); // kills and reaps it (Worker's Drop)
        Ok(())
    }

    /// The operating system's id of worker `w`'s process.
    pub fn pid(&self, w: usize) -> u32 {
        self.workers[w]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .child
            .id()
    }

    /// Sends each request to its worker (`(worker, line)`, at most one per worker), all at once,
    /// and returns the answers in request order. A failed call marks its worker lost: later
    /// calls to it fail at once until it is [respawned](ProcessPool::respawn).
    pub fn scatter(&self, requests: &[(usize, String)]) -> Vec<Result<String, WorkerError>> {
        debug_assert!(
            {
                let mut w: Vec<usize> = requests.iter().map(|r| r.0).collect();
                w.sort_unstable();
                w.windows(2).all(|p| p[0] != p[1])
            },
            "one request per worker"
        );
        crate::map(requests.len(), requests.len(), |k| {
            let (w, request) = &requests[k];
            self.workers[*w]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .call(request)
                .map_err(|reason| WorkerError { worker: *w, reason })
        })
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

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    fn scatter_addresses_workers_and_a_lost_one_can_be_replaced() {
        let mut pool = ProcessPool::spawn(
            2,
            Path::new("sh"),
            &["-c", "while read -r line; do echo \"$$ $line\"; done"],
        )
        .unwrap();
        let answers = pool.scatter(&[(1, "b".into()), (0, "a".into())]);
        let answers: Vec<String> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers[0], format!("{} b", pool.pid(1)));
        assert_eq!(answers[1], format!("{} a", pool.pid(0)));
        // Worker 1 killed: its call fails and names it, worker 0 still answers; after the
        // failure worker 1 stays lost until respawned.
        let old = pool.pid(1);
        std::process::Command::new("kill")
            .args(["-9", &old.to_string()])
            .status()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let answers = pool.scatter(&[(0, "c".into()), (1, "d".into())]);
        assert!(answers[0].is_ok());
        assert_eq!(answers[1].as_ref().unwrap_err().worker, 1);
        assert!(pool.scatter(&[(1, "e".into())])[0].is_err());
        pool.respawn(1).unwrap();
        assert_ne!(pool.pid(1), old);
        assert_eq!(
            pool.scatter(&[(1, "f".into())])[0].as_ref().unwrap(),
            &format!("{} f", pool.pid(1))
        );
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
