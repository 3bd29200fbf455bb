"""Meta-training on a Ray cluster: the learner stays the Rust ``hyperctl meta-train`` process;
Ray places (and restarts) the workers.

    python -m hyperctl.cluster --workers 8 [--address auto] [--host HOST] [--hyperctl PATH] \\
        -- --config experiments/smoke/meta_train.toml --out my-policy

What it does:

1. draws a per-run token and starts ``hyperctl meta-train ARGS --listen HOST:0 --workers N``
   with it in ``HYPERCTL_WORKER_TOKEN`` (the learner accepts no worker without it; ``HOST``
   defaults to 127.0.0.1, so a learner is reachable from other machines only when told so);
2. reads the learner's port from its first line, connects to Ray (``ray.init(address)``) and
   starts N actors of one CPU each, each running ``hyperctl worker --connect HOST:PORT``;
3. an actor whose worker dies starts it again, and Ray restarts an actor whose process dies
   (``max_restarts``); the learner hands a lost worker's environments to the next worker that
   connects, replayed from its own record, so the policy is the one an undisturbed run gives;
4. when the learner exits, the actors are killed and its exit status is returned.

``ray`` is not a dependency of the package: install it where you run this (``pip install ray``).
Every node needs the same ``hyperctl`` binary (``--hyperctl``, default: the one on ``PATH``) and
the collection's files at the same paths. Nothing here schedules anything itself.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading

WAITING = re.compile(r"waiting for (\d+) workers on (\S+): ")
RESTARTS_PER_ACTOR = 5


def _actor_class(ray):
    @ray.remote(num_cpus=1, max_restarts=RESTARTS_PER_ACTOR, max_task_retries=RESTARTS_PER_ACTOR)
    class Worker:
        """One ``hyperctl worker --connect`` process, started again when it dies."""

        def serve(self, hyperctl: str, address: str, token: str) -> int:
            env = dict(os.environ, HYPERCTL_WORKER_TOKEN=token)
            rc = 1
            for _ in range(RESTARTS_PER_ACTOR + 1):
                rc = subprocess.run([hyperctl, "worker", "--connect", address], env=env).returncode
                if rc == 0:  # the learner closed the connection: the run is over
                    return 0
            return rc

    return Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hyperctl.cluster",
        description="hyperctl meta-train with its workers placed by Ray.",
    )
    parser.add_argument("--workers", type=int, required=True, help="worker actors (one CPU each)")
    parser.add_argument("--address", default="auto", help="Ray cluster address (ray.init)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the learner listens on and workers connect to (default: loopback)",
    )
    parser.add_argument("--hyperctl", default=shutil.which("hyperctl") or "hyperctl")
    parser.add_argument("meta_train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.meta_train_args[1:] if args.meta_train_args[:1] == ["--"] else args.meta_train_args
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if any(a in ("--listen", "--workers") for a in rest):
        parser.error("pass --workers to the launcher; it sets --listen itself")
    try:
        import ray
    except ImportError:
        print("error: python -m hyperctl.cluster needs ray (pip install ray)", file=sys.stderr)
        return 2

    token = secrets.token_hex(16)
    learner = subprocess.Popen(
        [args.hyperctl, "meta-train", *rest, "--listen", f"{args.host}:0", "--workers", str(args.workers)],
        env=dict(os.environ, HYPERCTL_WORKER_TOKEN=token),
        stderr=subprocess.PIPE,
        text=True,
    )
    address = None
    assert learner.stderr is not None
    for line in learner.stderr:
        sys.stderr.write(line)
        m = WAITING.search(line)
        if m:
            address = m.group(2)
            break
    if address is None:
        return learner.wait() or 2

    # The rest of the learner's log, as it comes.
    def forward() -> None:
        for line in learner.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()

    log = threading.Thread(target=forward, daemon=True)
    log.start()
    ray.init(address=args.address, log_to_driver=True)
    Worker = _actor_class(ray)
    actors = [Worker.remote() for _ in range(args.workers)]
    runs = [a.serve.remote(args.hyperctl, address, token) for a in actors]
    try:
        rc = learner.wait()
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
        del runs
        ray.shutdown()
    log.join(timeout=5)
    return rc


if __name__ == "__main__":
    sys.exit(main())
