"""A PyTorch training loop whose learning rate and momentum are set, epoch by epoch, by a trained
hyperctl policy served by `hyperctl serve`.

    hyperctl serve --policy POLICY_DIR --listen 127.0.0.1:7878 &
    python3 example_pytorch.py --port 7878

Each epoch the loop records every minibatch loss and global gradient norm and the epoch's update
ratio ||w_after - w_before|| / ||w_before||, evaluates on held-out data, reports all of it to the
server and applies the lr and momentum it answers. The server runs the deployment guard: when an
epoch diverged or its validation loss jumped above 4x the best so far, the answer says which
epoch's state to restore (the loop keeps a copy of the model and optimizer state at each epoch
the answer marks `keep`) and trains on at a reduced lr. Needs torch; the client itself
(hyperctl_client.py) needs only the standard library.
"""

import argparse
import copy
import math

import torch
from torch import nn

from hyperctl_client import Client, apply_to_optimizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7878)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.003, help="untuned starting lr")
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # A small synthetic classification task: 3 Gaussian blobs in 10 dimensions.
    g = torch.Generator().manual_seed(args.seed)
    centers = torch.randn(3, 10, generator=g) * 2.0
    y = torch.randint(0, 3, (1500,), generator=g)
    x = centers[y] + torch.randn(1500, 10, generator=g)
    x_train, y_train, x_val, y_val = x[:1200], y[:1200], x[1200:], y[1200:]

    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 3))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)

    def val_loss():
        with torch.no_grad():
            return loss_fn(model(x_val), y_val).item()

    def flat_params():
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def snapshot():
        return copy.deepcopy((model.state_dict(), optimizer.state_dict()))

    session = f"pytorch-example-{args.seed}"
    with Client(args.host, args.port) as client:
        lr, momentum = client.open(session, args.epochs, args.lr, args.momentum,
                                   initial_val_loss=val_loss())
        good = (0, snapshot())  # the state the guard may send us back to
        for epoch in range(1, args.epochs + 1):
            apply_to_optimizer(optimizer, lr, momentum)
            before = flat_params()
            losses, grad_norms = [], []
            order = torch.randperm(len(x_train), generator=g)
            for start in range(0, len(order), 32):
                idx = order[start:start + 32]
                optimizer.zero_grad()
                loss = loss_fn(model(x_train[idx]), y_train[idx])
                loss.backward()
                norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
                losses.append(loss.item())
                grad_norms.append(norm.item())
                optimizer.step()
            update_ratio = ((flat_params() - before).norm() / before.norm().clamp_min(1e-12)).item()
            v = val_loss()
            print(f"epoch {epoch:2d}  lr {lr:.5f}  momentum {momentum:.3f}  "
                  f"train {sum(losses) / len(losses):.4f}  val {v:.4f}")
            d = client.observe(session, epoch, losses, v, grad_norms, update_ratio)
            if d.restore_epoch is not None:
                # The guard undid this epoch: back to the state kept after epoch good[0].
                assert d.restore_epoch == good[0]
                model_state, optimizer_state = copy.deepcopy(good[1])
                model.load_state_dict(model_state)
                optimizer.load_state_dict(optimizer_state)
                print(f"epoch {epoch:2d}  undone: back to epoch {d.restore_epoch}, lr {d.lr:.5f}")
            elif d.keep:
                good = (epoch, snapshot())
            if d.diverged:
                print("diverged")
                break
            lr, momentum = d
        client.close(session)


if __name__ == "__main__":
    main()
