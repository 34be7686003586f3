"""Run by ``torchrun --nproc_per_node=2`` from test_ddp.py: a few DDP steps of the real training step on
the real stream, checking on the way that ranks see different patches and hold identical parameters.

Usage: ddp_steps.py STORE PLAN OUT.json STEPS
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from sgc.model.losses import build_loss
from sgc.model.unet import UNet
from sgc.patches.planfile import read_plan
from sgc.patches.stream import PatchStream, patch_loader
from sgc.train.distributed import cleanup, setup
from sgc.train.loop import label_counts, train_step
from tests.train.conftest import tiny_config


def main(store: str, plan_path: str, out: str, steps: int) -> None:
    info = setup("cpu")
    assert info.world_size == 2 and info.backend == "gloo"
    cfg = tiny_config()
    plan = read_plan(plan_path)
    settings = cfg.loader.plain()
    stream = PatchStream(
        store, plan, "train", settings, seed=cfg.seed, with_index=True
    )  # rank, world: the group
    torch.manual_seed(cfg.seed)
    model = UNet(cfg.model)
    net = DistributedDataParallel(model)
    loss_fn = build_loss(cfg.loss, label_counts(plan))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    record = []
    for step, batch in zip(range(steps), patch_loader(stream, num_workers=1), strict=False):
        loss = train_step(net, batch, loss_fn, optimizer, scheduler, info.device, cfg.clip)
        rows = [None, None]
        dist.all_gather_object(rows, batch[2].tolist())
        assert not set(rows[0]) & set(rows[1]), (
            f"step {step}: both ranks got patches {set(rows[0]) & set(rows[1])}"
        )
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(2)]
        dist.all_gather(gathered, flat)
        assert torch.equal(gathered[0], gathered[1]), f"step {step}: parameters differ across ranks"
        losses = torch.tensor([loss])
        dist.all_reduce(losses)
        record.append({"rows": rows, "loss": float(losses) / 2})
    if info.is_main:
        with open(out, "w") as f:
            json.dump({"steps": record}, f)
    cleanup()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
