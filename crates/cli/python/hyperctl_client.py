"""Client for `hyperctl serve`: a trained hyperctl policy sets the learning rate and momentum of
a training loop in any framework. Standard library only; Python >= 3.8.

    from hyperctl_client import Client, apply_to_optimizer

    with Client("127.0.0.1", 7878) as client:
        lr, momentum = client.open("run-1", epochs=20, lr=0.01, momentum=0.9)
        good = (0, snapshot(model, optimizer))               # the state to go back to
        for epoch in range(1, 21):
            apply_to_optimizer(optimizer, lr, momentum)       # torch.optim.SGD, or anything alike
            losses, grad_norms, update_ratio = train_one_epoch(...)   # per-minibatch values
            d = client.observe("run-1", epoch, losses, val_loss, grad_norms, update_ratio)
            if d.restore_epoch is not None:                   # the guard undid this epoch
                restore(model, optimizer, good[1])            # good[0] == d.restore_epoch
            elif d.keep:
                good = (epoch, snapshot(model, optimizer))
            if d.diverged:
                break
            lr, momentum = d                                  # a Decision unpacks as (lr, momentum)
        client.close("run-1")

Protocol (newline-delimited JSON over TCP, one reply line per request):
  {"op":"open","session":ID,"epochs":N,"lr":L,"momentum":M[,"initial_val_loss":V0]
      [,"steps_per_epoch":K][,"guard":false]}
  {"op":"observe","session":ID,"epoch":E,"train_losses":[...],"val_loss":V,"grad_norms":[...],
      "update_ratio":R[,"val_metric":A]}
  {"op":"close","session":ID}
Replies: {"ok":true,"lr":..,"momentum":..} (open, observe), {"ok":true} (close), or
{"ok":false,"error":"..."}. Non-finite values (a diverged run) travel as null.

The policy reads features of the gradient norms and of the update ratio
||w_after - w_before|| / ||w_before|| over the epoch: send both (without them those features sit at
a neutral value the policy never saw in training, and the reply carries a warning). The server
runs the deployment guard unless told otherwise: an observe reply may carry "restore_epoch": K
(restore the model and optimizer state kept after epoch K, 0 = the initial state, then train the
next epoch at the reply's reduced lr), "keep": true (keep the state after this epoch: it is the
new state to go back to), "diverged": true and "done": true (the run is over).

Run as a script, it replays recorded epochs against a server and prints each decision as a JSON
line (used by hyperctl's tests):  python3 hyperctl_client.py --port P --replay sessions.json
"""

import json
import math
import socket
import warnings

__all__ = ["Client", "Decision", "HyperctlError", "apply_to_optimizer"]


class HyperctlError(RuntimeError):
    """The server refused a request; the message says why."""


def _finite_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Decision(tuple):
    """The server's answer to an observe: unpacks as (lr, momentum); also carries what the guard
    decided (`restore_epoch`, `keep`, `diverged`, `done`) and any `warnings`."""

    def __new__(cls, reply):
        self = super().__new__(cls, (reply["lr"], reply["momentum"]))
        self.lr, self.momentum = reply["lr"], reply["momentum"]
        self.restore_epoch = reply.get("restore_epoch")
        self.keep = bool(reply.get("keep", False))
        self.diverged = bool(reply.get("diverged", False))
        self.done = bool(reply.get("done", False))
        self.warnings = list(reply.get("warnings", ()))
        return self


class Client:
    """One connection to a `hyperctl serve` process; sessions are named by the caller."""

    def __init__(self, host="127.0.0.1", port=7878, timeout=60.0):
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self._sock.makefile("r", encoding="utf-8", newline="\n")

    def close_connection(self):
        self._reader.close()
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_connection()

    def request(self, obj):
        """Sends one request object and returns the reply object (raises on `ok: false`)."""
        line = json.dumps(obj, allow_nan=False, separators=(",", ":")) + "\n"
        self._sock.sendall(line.encode("utf-8"))
        reply_line = self._reader.readline()
        if not reply_line:
            raise HyperctlError("the server closed the connection")
        reply = json.loads(reply_line)
        if not reply.get("ok"):
            raise HyperctlError(reply.get("error", "unknown error"))
        return reply

    def open(self, session, epochs, lr, momentum, initial_val_loss=None, steps_per_epoch=None):
        """Starts a session; returns (lr, momentum) for the first epoch."""
        req = {"op": "open", "session": str(session), "epochs": int(epochs),
               "lr": float(lr), "momentum": float(momentum)}
        if initial_val_loss is not None:
            req["initial_val_loss"] = float(initial_val_loss)
        if steps_per_epoch is not None:
            req["steps_per_epoch"] = int(steps_per_epoch)
        reply = self.request(req)
        return reply["lr"], reply["momentum"]

    def observe(self, session, epoch, train_losses, val_loss, grad_norms=(),
                update_ratio=None, val_metric=None):
        """Reports epoch `epoch` (1-based); returns the next epoch's `Decision` (unpacks as
        (lr, momentum)). Warnings in the reply are also issued as Python warnings."""
        req = {"op": "observe", "session": str(session), "epoch": int(epoch),
               "train_losses": [_finite_or_none(v) for v in train_losses],
               "val_loss": _finite_or_none(val_loss),
               "grad_norms": [_finite_or_none(v) for v in grad_norms]}
        if update_ratio is not None:
            req["update_ratio"] = _finite_or_none(update_ratio)
        if val_metric is not None:
            req["val_metric"] = _finite_or_none(val_metric)
        decision = Decision(self.request(req))
        for message in decision.warnings:
            warnings.warn(f"hyperctl: {message}", stacklevel=2)
        return decision

    def close(self, session):
        """Ends a session."""
        self.request({"op": "close", "session": str(session)})


def apply_to_optimizer(optimizer, lr, momentum):
    """Sets lr (and momentum, where the optimizer has one) on every parameter group of a
    torch.optim optimizer (or anything with `param_groups` dicts)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if "momentum" in group:
            group["momentum"] = momentum


def _replay(port, path):
    with open(path, encoding="utf-8") as f:
        sessions = json.load(f)
    with Client("127.0.0.1", port) as client:
        for s in sessions:
            name = s["session"]
            decisions = [client.open(name, s["epochs"], s["lr"], s["momentum"],
                                     s.get("initial_val_loss"))]
            for epoch, r in enumerate(s["reports"], start=1):
                d = client.observe(name, epoch, r["train_losses"], r["val_loss"],
                                   r.get("grad_norms", ()), r.get("update_ratio"))
                decisions.append((d.lr, d.momentum))
            client.close(name)
            print(json.dumps({"session": name, "decisions": decisions}))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replay", required=True, help="JSON list of recorded sessions")
    args = parser.parse_args()
    _replay(args.port, args.replay)
