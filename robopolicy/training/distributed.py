"""Process-group setup for ``torchrun`` and the step-indexed batch sampler every rank shares.

Under ``torchrun`` the environment carries ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the trainer
then joins a process group (NCCL on CUDA, gloo on CPU), wraps its model in DDP, draws its shard of
every global batch from :class:`StepBatchSampler` and leaves checkpoints and logging to rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from robopolicy.errors import ConfigError
from robopolicy.utils import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> DistInfo:
    """Resolve the device and, when launched by torchrun with WORLD_SIZE > 1, join the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if world_size > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_across_ranks(value: float, info: DistInfo) -> float:
    """Average a float over ranks (for logging only)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


class LossModule(nn.Module):
    """Routes ``compute_loss`` through ``forward`` so DistributedDataParallel sees (and syncs) it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.compute_loss(batch)


class EpochIndexed(torch.utils.data.Dataset):
    """Wraps a dataset so items are fetched by ``(epoch, index)``: datasets with ``set_epoch`` (e.g.
    WindowDataset's goal draws) see the epoch of each item, also inside DataLoader workers."""

    def __init__(self, dataset):
        self.dataset = dataset
        self._epoch = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        if epoch != self._epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self._epoch = epoch
        return self.dataset[i]


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Infinite batch sampler whose batch at step ``k`` is a pure function of ``(seed, k)``.

    The sample stream is the concatenation of per-epoch permutations of ``range(n)`` (epoch ``e``
    shuffled by a generator seeded with ``(seed, e)``); global step ``k`` takes stream positions
    ``[k*B, (k+1)*B)`` and rank ``r`` of ``W`` takes the r-th contiguous ``B/W`` of them. Resuming at
    step ``k`` therefore continues the exact data order without replaying anything, and a DDP run
    sees the same global batches as a single process with the same ``B``.
    A hand-written sampler because torch's DistributedSampler cannot start mid-epoch.
    """

    def __init__(self, n: int, global_batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if n <= 0:
            raise ConfigError("The training set is empty; add episodes to the dataset or lower val_fraction.")
        if global_batch_size % world_size != 0:
            raise ConfigError(f"batch_size={global_batch_size} is not divisible by the {world_size} processes; pick a multiple of {world_size}.")
        self.n, self.batch_size, self.seed = n, global_batch_size, int(seed)
        self.start_step, self.rank, self.world_size, self.shuffle = int(start_step), rank, world_size, shuffle
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perm = torch.randperm(self.n, generator=g)
            else:
                self._perm = torch.arange(self.n)
            self._epoch = epoch
        return self._perm

    def position(self, step: int) -> dict[str, int]:
        """Where step ``step`` starts in the sample stream: ``{"epoch", "index"}``."""
        p = step * self.batch_size
        return {"epoch": p // self.n, "index": p % self.n}

    def batch_indices(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(epoch, dataset index)`` pairs for global step ``step``."""
        per_rank = self.batch_size // self.world_size
        start = step * self.batch_size + self.rank * per_rank
        return [(p // self.n, int(self._permutation(p // self.n)[p % self.n])) for p in range(start, start + per_rank)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch_indices(step)
            step += 1
