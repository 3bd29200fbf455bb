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
//!
//! Workers on other machines ([`ProcessPool::listen`]) connect over TCP instead: each opens with
//! `HELLO <token>` and is accepted only with the run's token (anything else is dropped unheard),
//! then speaks the same lines. A lost one is replaced by the next connection that authenticates
//! (a cluster manager such as Ray restarts the worker, which connects again).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// The child process (None for a worker that connected over TCP).
    child: Option<Child>,
    /// Its socket, to shut down when it is replaced.
    socket: Option<TcpStream>,
    stdin: Box<dyn Write + Send>,
    stdout: BufReader<Box<dyn Read + Send>>,
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
        let stdin = Box::new(child.stdin.take().expect("stdin is piped"));
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout is piped"));
        Ok(Self {
            child: Some(child),
            socket: None,
            stdin,
            stdout: BufReader::new(stdout),
            broken: false,
        })
    }

    /// The next connection on `listener` that opens with `HELLO <token>` (others are dropped),
    /// waiting at most `wait` in all.
    fn accept(listener: &TcpListener, token: &str, wait: Duration) -> std::io::Result<Self> {
        let deadline = Instant::now() + wait;
        listener.set_nonblocking(true)?;
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    stream.set_nonblocking(false)?;
                    // One small line per request: Nagle's algorithm would hold each back ~40 ms.
                    stream.set_nodelay(true)?;
                    match handshake(&stream, token) {
                        Ok(()) => {
                            stream.set_read_timeout(None)?;
                            let reader: Box<dyn Read + Send> = Box::new(stream.try_clone()?);
                            return Ok(Self {
                                child: None,
                                stdin: Box::new(stream.try_clone()?),
                                socket: Some(stream),
                                stdout: BufReader::new(reader),
                                broken: false,
                            });
                        }
                        Err(why) => eprintln!("refused a worker connection from {peer}: {why}"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "no worker connected to {} with the run's token within {} s",
                                listener.local_addr()?,
                                wait.as_secs()
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one line and reads one line back.
    fn call(&mut self, request: &str) -> Result<String, String> {
        if self.broken {
            return Err("lost earlier in this run".into());
        }
        let answer = self.exchange(request);
        if answer.is_err() {
            self.broken = true;
            self.kill();
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
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => format!(" ({status})"),
            _ => String::new(),
        }
    }

    fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        if let Some(socket) = &self.socket {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The learner's side of a connection's first exchange: `HELLO <token>` in, `WELCOME` out.
fn handshake(stream: &TcpStream, token: &str) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    // At most one short line: a stranger cannot make the learner buffer much.
    let line = read_short_line(stream, 256).map_err(|e| format!("no greeting ({e})"))?;
    let given = line.strip_prefix("HELLO ").unwrap_or("");
    // Compare without an early exit, so timing does not tell how much of a guess was right.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err("wrong or missing token".into());
    }
    (&*stream)
        .write_all(b"WELCOME\n")
        .map_err(|e| e.to_string())
}

/// One line of at most `max` bytes, read byte by byte so that nothing after it is consumed (the
/// conversation's next line goes to the caller's own reader). Without its newline.
fn read_short_line(stream: &TcpStream, max: usize) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < max {
        if (&*stream).read(&mut byte)? == 0 {
            break;
        }
        if byte[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte[0]);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the connection ended or sent a long line before its greeting",
    ))
}

/// The worker's side: connects to a learner at `addr` (retrying for up to `wait`, as the learner
/// may not listen yet), authenticates with `token`, and returns the connection to serve lines on.
pub fn connect(addr: &str, token: &str, wait: Duration) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + wait;
    let stream = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot connect to the learner at {addr}: {e}"),
                ));
            }
        }
    };
    stream.set_nodelay(true)?;
    (&stream).write_all(format!("HELLO {token}\n").as_bytes())?;
    if read_short_line(&stream, 64).ok().as_deref() != Some("WELCOME") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("the learner at {addr} refused this worker (wrong token?)"),
        ));
    }
    Ok(stream)
}

/// Where replacement workers come from.
enum Source {
    /// Child processes of this one.
    Spawn { program: PathBuf, args: Vec<String> },
    /// Connections to this listener that present the token.
    Listen {
        listener: TcpListener,
        token: String,
        wait: Duration,
    },
}

/// A fixed set of worker processes, all running the same program.
pub struct ProcessPool {
    workers: Vec<Mutex<Worker>>,
    source: Source,
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
            source: Source::Spawn {
                program: program.into(),
                args,
            },
        })
    }

    /// `n` (at least 1) workers that connect to `listener` and present `token`, each within
    /// `wait`; connections without the token are dropped and not counted.
    pub fn listen(
        n: usize,
        listener: TcpListener,
        token: &str,
        wait: Duration,
    ) -> std::io::Result<Self> {
        let workers = (0..n.max(1))
            .map(|_| Worker::accept(&listener, token, wait).map(Mutex::new))
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            workers,
            source: Source::Listen {
                listener,
                token: token.into(),
                wait,
            },
        })
    }

    /// Replaces worker `w` by a fresh copy of the program, or by the next worker that connects
    /// with the token (the old one is killed or disconnected): after a worker was lost, the caller
    /// brings the new one up to date.
    pub fn respawn(&mut self, w: usize) -> std::io::Result<()> {
        let fresh = match &self.source {
            Source::Spawn { program, args } => Worker::spawn(program, args)?,
            Source::Listen {
                listener,
                token,
                wait,
            } => Worker::accept(listener, token, *wait)?,
        };
        let old = std::mem::replace(
            self.workers[w].get_mut().unwrap_or_else(|p| p.into_inner()),
            fresh,
        );
        drop(old); // kills and reaps it (Worker's Drop)
        Ok(())
    }

    /// The operating system's id of worker `w`'s process (None for a connected worker).
    pub fn pid(&self, w: usize) -> Option<u32> {
        self.workers[w]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .child
            .as_ref()
            .map(Child::id)
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

/// A dynamic schedule for [`ProcessPool::serve`]: work that appears as answers come back, and
/// may be tied to the worker holding its state.
pub trait Schedule: Send {
    /// The next request for idle worker `w`, or None when there is none for it now.
    fn next(&mut self, w: usize) -> Option<String>;
    /// Worker `w`'s answer to the request it was last given (or why it was lost).
    fn answer(&mut self, w: usize, answer: Result<String, WorkerError>);
    /// Nothing more will be handed out: idle workers stop waiting.
    fn finished(&self) -> bool;
}

impl ProcessPool {
    /// Runs `schedule` on the workers: each idle worker asks it for a request, sends it, and
    /// reports the answer (all under one lock, so the schedule sees one event at a time); a
    /// worker with nothing to do waits for the others' answers. Returns when the schedule is
    /// finished and no request is out, or when nothing is out and no worker gets a request (a
    /// stalled schedule: the caller checks that its work is complete).
    pub fn serve<S: Schedule>(&self, schedule: &mut S) {
        struct State<'a, S> {
            schedule: &'a mut S,
            out: usize,
        }
        let state = Mutex::new(State { schedule, out: 0 });
        let wake = std::sync::Condvar::new();
        std::thread::scope(|scope| {
            for w in 0..self.workers.len() {
                let (state, wake) = (&state, &wake);
                scope.spawn(move || {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    loop {
                        if s.schedule.finished() {
                            break;
                        }
                        if let Some(request) = s.schedule.next(w) {
                            s.out += 1;
                            drop(s);
                            let answer = self.workers[w]
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .call(&request)
                                .map_err(|reason| WorkerError { worker: w, reason });
                            s = state.lock().unwrap_or_else(|p| p.into_inner());
                            s.out -= 1;
                            s.schedule.answer(w, answer);
                            wake.notify_all();
                        } else if s.out == 0 {
                            break; // nothing out, nothing for this worker: nothing will change
                        } else {
                            s = wake.wait(s).unwrap_or_else(|p| p.into_inner());
                        }
                    }
                    wake.notify_all();
                });
            }
        });
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        if let Some(child) = self.child.as_mut() {
            let _ = child.wait();
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

    /// A chain per key: job k of a chain is only handed out once job k-1's answer is back, and
    /// chain c's jobs after the first go only to the worker that ran its first.
    struct Chains {
        next_job: Vec<usize>,
        pinned: Vec<Option<usize>>,
        running: Vec<bool>,
        answers: Vec<Vec<String>>,
        given: Vec<(usize, usize)>,
        len: usize,
    }

    impl Schedule for Chains {
        fn next(&mut self, w: usize) -> Option<String> {
            let c = (0..self.next_job.len()).find(|&c| {
                !self.running[c]
                    && self.next_job[c] < self.len
                    && self.pinned[c].is_none_or(|p| p == w)
            })?;
            self.running[c] = true;
            self.pinned[c] = Some(w);
            self.given.push((w, c));
            Some(format!("{c} {}", self.next_job[c]))
        }
        fn answer(&mut self, w: usize, answer: Result<String, WorkerError>) {
            let line = answer.unwrap();
            let c: usize = line.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(self.pinned[c], Some(w));
            self.running[c] = false;
            self.next_job[c] += 1;
            self.answers[c].push(line);
        }
        fn finished(&self) -> bool {
            self.next_job.iter().all(|&n| n == self.len)
        }
    }

    #[test]
    fn serve_hands_out_work_as_it_appears_and_keeps_pinned_work_on_its_worker() {
        for n in [1, 2, 3] {
            let pool = echo_pool(n);
            let mut chains = Chains {
                next_job: vec![0; 5],
                pinned: vec![None; 5],
                running: vec![false; 5],
                answers: vec![Vec::new(); 5],
                given: Vec::new(),
                len: 4,
            };
            pool.serve(&mut chains);
            assert!(chains.finished());
            for (c, a) in chains.answers.iter().enumerate() {
                let expected: Vec<String> = (0..4).map(|k| format!("{c} {k}")).collect();
                assert_eq!(a, &expected, "chain {c}, {n} workers");
            }
            let workers: std::collections::BTreeSet<usize> =
                chains.given.iter().map(|g| g.0).collect();
            assert!(workers.iter().all(|&w| w < n));
        }
        // A schedule with nothing to hand out returns at once instead of waiting forever.
        let pool = echo_pool(2);
        let mut stalled = Chains {
            next_job: vec![0],
            pinned: vec![Some(7)],
            running: vec![false],
            answers: vec![Vec::new()],
            given: Vec::new(),
            len: 1,
        };
        pool.serve(&mut stalled);
        assert!(!stalled.finished() && stalled.given.is_empty());
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
        assert_eq!(answers[0], format!("{} b", pool.pid(1).unwrap()));
        assert_eq!(answers[1], format!("{} a", pool.pid(0).unwrap()));
        // Worker 1 killed: its call fails and names it, worker 0 still answers; after the
        // failure worker 1 stays lost until respawned.
        let old = pool.pid(1).unwrap();
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
        assert_ne!(pool.pid(1), Some(old));
        assert_eq!(
            pool.scatter(&[(1, "f".into())])[0].as_ref().unwrap(),
            &format!("{} f", pool.pid(1).unwrap())
        );
    }

    /// A worker thread: connects with `token` and echoes lines with its `name` until EOF.
    fn tcp_worker(
        addr: String,
        token: &'static str,
        name: &'static str,
    ) -> std::thread::JoinHandle<std::io::Result<()>> {
        std::thread::spawn(move || {
            let stream = connect(&addr, token, Duration::from_secs(10))?;
            let mut out = stream.try_clone()?;
            for line in BufReader::new(stream).lines() {
                writeln!(out, "{name} {}", line?)?;
            }
            Ok(())
        })
    }

    #[test]
    fn connected_workers_need_the_token_and_a_lost_one_is_replaced_by_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // A stranger first: refused, not counted; connect() tells it so.
        let stranger = tcp_worker(addr.clone(), "guess", "stranger");
        std::thread::sleep(Duration::from_millis(300)); // queued first: accepted first
        let good = tcp_worker(addr.clone(), "s3cret", "a");
        let mut pool = ProcessPool::listen(1, listener, "s3cret", Duration::from_secs(10)).unwrap();
        assert_eq!(pool.pid(0), None);
        assert_eq!(pool.scatter(&[(0, "x".into())])[0].as_ref().unwrap(), "a x");
        let err = stranger.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        // The worker goes away: its next call fails; the replacement is the next to connect.
        pool.workers[0].lock().unwrap().kill();
        assert!(pool.scatter(&[(0, "y".into())])[0].is_err());
        let _ = good.join();
        let _next = tcp_worker(addr, "s3cret", "b");
        pool.respawn(0).unwrap();
        assert_eq!(pool.scatter(&[(0, "z".into())])[0].as_ref().unwrap(), "b z");
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
