"""DDP under the one trainer: 2 gloo CPU processes == 1 process with the same global batch.

Tolerance: the only difference is the order of float32 additions (each rank averages its half of
the batch, then gloo sums the two gradients and divides by 2, instead of one mean over 16 samples);
that perturbs gradients by a few ulps (~1e-7 relative), and Adam's steps of size ~lr carry it into
the weights as absolute errors far below 1e-5 after 12 steps. Different data order moves weights by
~1e-2, so atol 1e-5 still catches wrong sharding or missing gradient averaging.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from robopolicy.training import Trainer
from test_trainer import ToyData, toy_cfg

STEPS = 12


class DetToy(nn.Module):
    """Deterministic loss (no dropout, no noise): ranks draw different random streams."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 2))

    def compute_loss(self, batch):
        loss = ((self.net(batch["obs"]["x"]) - batch["y"]) ** 2).mean()
        return loss, {}


def _train(run_dir, seed=7):
    torch.manual_seed(0)
    Trainer(DetToy(), ToyData(), toy_cfg(steps=STEPS, seed=seed, ckpt_every=6, val_every=0), run_dir).fit()


def _worker(rank, world, port, run_dir):
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    _train(run_dir)
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_single_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train(tmp_path / "single")
        _train(tmp_path / "other_seed", seed=8)
    finally:
        torch.set_num_threads(n)
    ckpts = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").glob("step_*"))
    assert ckpts == ["step_12", "step_6"]  # only rank 0 wrote, once per checkpoint
    for name in ("raw.safetensors", "model.safetensors"):
        ddp = load_file(str(tmp_path / "ddp" / "checkpoints" / "step_12" / name))
        single = load_file(str(tmp_path / "single" / "checkpoints" / "step_12" / name))
        other = load_file(str(tmp_path / "other_seed" / "checkpoints" / "step_12" / name))
        for k in single:
            torch.testing.assert_close(ddp[k], single[k], rtol=0, atol=1e-5)
        assert max((other[k] - single[k]).abs().max().item() for k in single) > 1e-3
    diff = max((ddp[k] - single[k]).abs().max().item() for k in single)
    print(f"max |ddp - single| = {diff:.2e}")
