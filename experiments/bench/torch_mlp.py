"""Reference: PyTorch CPU steps/s for the same inner loop as crates/tasks/examples/bench_train.rs.

MLP 784-128-10 (ReLU), cross-entropy, SGD momentum 0.9, batch 64, random MNIST-shaped data,
1 thread. Two variants, each step gathering a shuffled minibatch from a 12800-row tensor:
  plain:       forward, backward, optimizer step
  with_norms:  plus loss.item() and the global gradient L2 norm (read to the host) every step,
               which is what hyperctl's Trainer does.
Prints one JSON object. Usage: python torch_mlp.py [STEPS] [REPEATS]
"""
import json
import sys
import time

import torch

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
torch.set_num_threads(1)
torch.manual_seed(0)
x = torch.rand(12800, 784) * 2 - 1
y = torch.randint(0, 10, (12800,))
model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = torch.nn.CrossEntropyLoss()


def run(n, with_norms):
    perm = torch.randperm(12800)
    cursor = 0
    start = time.perf_counter()
    for _ in range(n):
        if cursor + 64 > 12800:
            perm, cursor = torch.randperm(12800), 0
        idx = perm[cursor:cursor + 64]
        cursor += 64
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        if with_norms:
            _ = loss.item()
            norms = torch.stack([p.grad.pow(2).sum() for p in model.parameters()])
            _ = norms.sum().sqrt().item()
        opt.step()
    return n / (time.perf_counter() - start)


result = {"benchmark": "torch_mlp_784_128_10_b64", "torch": torch.__version__, "threads": torch.get_num_threads()}
run(200, True)
for variant, flag in (("plain", False), ("with_norms", True)):
    rates = sorted(run(steps, flag) for _ in range(repeats))
    result[f"{variant}_steps_per_s_median"] = rates[len(rates) // 2]
    result[f"{variant}_steps_per_s_all"] = rates
print(json.dumps(result))
