"""Reference: PyTorch CPU steps/s for the same inner loop as crates/tasks/examples/bench_train.rs.

Cases (random data of the case's shape, 12800 rows, SGD momentum 0.9, cross-entropy, 1 thread;
each step gathers a shuffled minibatch from a tensor already in memory):
  mlp:      MLP 784-128-10 (ReLU), batch 64
  tabular:  MLP 30-64-64-2 (ReLU), batch 32
  cnn:      conv3x3*16 -> ReLU -> maxpool2 -> conv3x3*32 -> ReLU -> maxpool2 -> linear 800-10
            on 1x28x28 images, batch 64 (hyperctl's `cnn:small`)
Two variants each:
  plain:       forward, backward, optimizer step
  with_norms:  plus loss.item() and the global gradient L2 norm (read to the host) every step,
               which is what hyperctl's Trainer does (it reads per-layer norms too).
Prints one JSON object. Usage: python torch_bench.py CASE [STEPS] [REPEATS]
"""
import json
import sys
import time

import torch

case = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
torch.set_num_threads(1)
torch.manual_seed(0)
nn = torch.nn
if case == "mlp":
    n_features, n_classes, batch = 784, 10, 64
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
elif case == "tabular":
    n_features, n_classes, batch = 30, 2, 32
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
elif case == "cnn":
    n_features, n_classes, batch = 784, 10, 64
    model = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
    )
else:
    sys.exit(f"unknown case {case!r}: expected mlp, tabular or cnn")
rows = 12800
x = torch.rand(rows, n_features) * 2 - 1
y = torch.randint(0, n_classes, (rows,))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()


def run(n, with_norms):
    perm = torch.randperm(rows)
    cursor = 0
    start = time.perf_counter()
    for _ in range(n):
        if cursor + batch > rows:
            perm, cursor = torch.randperm(rows), 0
        idx = perm[cursor:cursor + batch]
        cursor += batch
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        if with_norms:
            _ = loss.item()
            norms = torch.stack([p.grad.pow(2).sum() for p in model.parameters()])
            _ = norms.sum().sqrt().item()
        opt.step()
    return n / (time.perf_counter() - start)


result = {"benchmark": f"torch_{case}", "case": case, "torch": torch.__version__,
          "threads": torch.get_num_threads()}
run(max(steps // 10, 1), True)
for variant, flag in (("plain", False), ("with_norms", True)):
    rates = sorted(run(steps, flag) for _ in range(repeats))
    result[f"{variant}_steps_per_s_median"] = rates[len(rates) // 2]
    result[f"{variant}_steps_per_s_all"] = rates
print(json.dumps(result))
