"""One real run each of the Lightning and Hugging Face callbacks (issue 16, item 2), beside the
plain HyperctlLR loop, on the same task, split and untuned start.

    pip install ./crates/python lightning transformers accelerate   # and torch, numpy
    python experiments/pytorch-callbacks/run.py --out experiments/pytorch-callbacks/results

The task is the transfer benchmark's `digits-mlp` (hyperctl's split for seed 11, exported by
`hyperctl tasks export`), an MLP 64x2 trained 30 epochs from lr 0.003, momentum 0 with the shipped
policy (guard on in the loop and in Lightning). The reference is the transfer benchmark's tuned
cosine on this workload in PyTorch (mean test loss over its tuning seeds).
"""

import argparse
import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from hyperctl.torch import HyperctlLR

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EPOCHS, BATCH, LR, MOMENTUM, SEED = 30, 32, 0.003, 0.0, 11


def load(out, data_dir):
    folder = out / "export"
    subprocess.run([str(ROOT / "target/debug/hyperctl"), "tasks", "export",
                    f"{ROOT / 'experiments/pytorch-transfer/tasks.toml'}#digits-mlp", "--seed", str(SEED),
                    "--data-dir", data_dir, "--out", str(folder)], check=True, capture_output=True)
    meta = json.loads((folder / "task.json").read_text())
    a = {n: torch.from_numpy(np.load(folder / f"{n}.npy")) for n in
         ["train_x", "train_y", "val_x", "val_y", "test_x", "test_y"]}
    a["train_y"], a["val_y"], a["test_y"] = (a[k].long() for k in ["train_y", "val_y", "test_y"])
    return meta, a


def mlp(meta):
    torch.manual_seed(SEED)
    return torch.nn.Sequential(torch.nn.Linear(meta["n_features"], 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, meta["n_classes"]))


@torch.no_grad()
def test_loss(net, a):
    net.eval()
    return float(torch.nn.functional.cross_entropy(net(a["test_x"]), a["test_y"]))


def plain(meta, a):
    net = mlp(meta)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    sched = HyperctlLR(opt, EPOCHS, guard=net)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        order = torch.randperm(len(a["train_y"]), generator=gen)
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(a["train_x"][idx]), a["train_y"][idx])
            loss.backward()
            opt.step()
            sched.record_batch(loss)
        with torch.no_grad():
            sched.step(torch.nn.functional.cross_entropy(net(a["val_x"]), a["val_y"]))
    return test_loss(net, a), None


def lightning_run(meta, a, out):
    import lightning.pytorch as pl

    from hyperctl.lightning import HyperctlCallback

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp(meta)

        def training_step(self, batch, _):
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch, _):
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)

    ds = torch.utils.data.TensorDataset
    train = torch.utils.data.DataLoader(ds(a["train_x"], a["train_y"]), batch_size=BATCH, shuffle=True,
                                        generator=torch.Generator().manual_seed(SEED))
    val = torch.utils.data.DataLoader(ds(a["val_x"], a["val_y"]), batch_size=len(a["val_y"]))
    cb = HyperctlCallback(guard=True)
    module = Module()
    pl.Trainer(max_epochs=EPOCHS, callbacks=[cb], logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
               num_sanity_val_steps=0, default_root_dir=str(out / "lightning")).fit(module, train, val)
    return test_loss(module.net, a), cb.decisions


def hf_run(meta, a, out):
    import transformers

    from hyperctl.hf import HyperctlCallback

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(meta)

        def forward(self, x, labels=None):
            logits = self.net(x)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    class Rows(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    sched = HyperctlLR(opt, EPOCHS)
    cb = HyperctlCallback(sched)
    args = transformers.TrainingArguments(
        output_dir=str(out / "hf"), num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=512, eval_strategy="epoch", logging_strategy="no", save_strategy="no",
        report_to=[], use_cpu=True, disable_tqdm=True, seed=SEED, dataloader_drop_last=False)
    transformers.Trainer(model=model, args=args, train_dataset=Rows(a["train_x"], a["train_y"]),
                         eval_dataset=Rows(a["val_x"], a["val_y"]), optimizers=(opt, sched),
                         callbacks=[cb]).train()
    return test_loss(model.net, a), cb.decisions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    meta, a = load(args.out, args.data_dir)
    bench = json.loads((ROOT / "experiments/pytorch-transfer/results/summary.json").read_text())
    ref = bench["tuned_test_loss"]["pytorch"]["digits-mlp"]
    out = {"task": "digits-mlp", "seed": SEED, "start": [LR, MOMENTUM], "epochs": EPOCHS, "tuned_cosine_test": ref,
           "torch": torch.__version__}
    for name, fn in [("loop", lambda: plain(meta, a)), ("lightning", lambda: lightning_run(meta, a, args.out)),
                     ("hf", lambda: hf_run(meta, a, args.out))]:
        t0 = time.time()
        loss, decisions = fn()
        lrs = [d.lr for d in decisions] if isinstance(decisions, list) else None
        out[name] = {"test_loss": loss, "ln_vs_tuned_cosine": math.log(loss / ref), "secs": time.time() - t0,
                     "lrs": lrs}
        print(name, round(loss, 4), round(math.log(loss / ref), 3), flush=True)
    (args.out / "results.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
