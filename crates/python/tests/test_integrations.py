"""The Lightning and Hugging Face callbacks, with the real packages (skipped where absent)."""

import pytest

torch = pytest.importorskip("torch")

from hyperctl.torch import HyperctlLR  # noqa: E402


def data(seed=0, n=256):
    torch.manual_seed(seed)
    x = torch.randn(n, 8)
    y = (x @ torch.randn(8, 1)).tanh() + 0.05 * torch.randn(n, 1)
    return x, y


def test_lightning_callback_decides_every_epoch(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from hyperctl.lightning import HyperctlCallback

    x, y = data()

    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

        def training_step(self, batch, _):
            xb, yb = batch
            return torch.nn.functional.mse_loss(self.net(xb), yb)

        def validation_step(self, batch, _):
            xb, yb = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(xb), yb))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.003, momentum=0.0)

    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:224], y[:224]), batch_size=32)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[224:], y[224:]), batch_size=32)
    callback = HyperctlCallback(guard=True)
    trainer = pl.Trainer(
        max_epochs=5,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    model = Regressor()
    trainer.fit(model, train, val)
    assert len(callback.decisions) == 5
    assert callback.decisions[-1].done
    assert callback.scheduler.controller.epochs_done == 5
    # 7 optimizer steps per epoch were recorded with their gradient norms.
    assert all(len(r["train_losses"]) == 7 and len(r["grad_norms"]) == 7 for r in callback.scheduler.controller._reports)
    assert trainer.optimizers[0].param_groups[0]["lr"] == callback.decisions[-1].lr


def test_hugging_face_callback_decides_at_each_evaluation(tmp_path):
    transformers = pytest.importorskip("transformers")
    from hyperctl.hf import HyperctlCallback

    x, y = data()

    class Regressor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

        def forward(self, x, labels=None):
            out = self.net(x)
            return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}

    class Rows(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    model = Regressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.0)
    sched = HyperctlLR(opt, epochs=3)
    callback = HyperctlCallback(sched)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=3,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=32,
        eval_strategy="epoch",
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=Rows(x[:224], y[:224]),
        eval_dataset=Rows(x[224:], y[224:]),
        optimizers=(opt, sched),
        callbacks=[callback],
    )
    trainer.train()
    assert len(callback.decisions) == 3 and callback.decisions[-1].done
    assert all(len(r["train_losses"]) == 7 for r in sched.controller._reports)
    assert opt.param_groups[0]["lr"] == callback.decisions[-1].lr
