"""Data-parallel training with DistributedDataParallel, for processes started by torchrun.

``train.batch_size`` stays the *global* batch. Every rank draws the same permutation and the
same input noise (same seed, same generator), then takes its own contiguous slice of each
global batch, so the ranks' shards of an epoch are disjoint and together cover it. Each rank's
loss is weighted by its share of the batch before DDP averages the gradients: the result is the
gradient of the global batch mean even when a batch does not split evenly, and N processes
follow one process up to float rounding. Metrics are reduced across ranks; only rank 0 writes.

Without torchrun (no WORLD_SIZE > 1 in the environment) everything here is a no-op and the
training loop runs exactly as in one process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
from torch import nn

from ..errors import TrainingError
from ..evaluate.evaluate import evaluate, per_sample_errors
from ..evaluate.metrics import RegressionStats
from ..models.base import LossOutput

_METRICS = ("loss", "bce", "mse", "psnr")


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank's contiguous slice [lo, hi) of n items; the slices are disjoint, cover all n, sizes differ by <= 1."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class Single:
    """One process: the loop's calls pass straight through."""

    world = 1
    rank = 0
    is_writer = True
    created = False

    def loss_fn(self, model: nn.Module) -> Callable[..., LossOutput]:
        return model.compute_loss

    def average(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def evaluate(self, model, x, loss: str, stats: RegressionStats | None = None) -> dict[str, float]:
        return evaluate(model, x, loss, stats=stats)

    def any(self, flag: bool) -> bool:
        return flag

    def barrier(self) -> None:
        pass

    def agree(self, text: str) -> str:
        return text


class _LossModule(nn.Module):
    """DDP hooks gradient averaging into forward(); the loss is what a step runs, so it becomes forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, target, y, loss: str, epoch: int) -> LossOutput:
        return self.model.compute_loss(x, target, y, loss, epoch)


class Group(Single):
    """One rank of a process group (gloo on CPU, nccl on CUDA)."""

    def __init__(self, rank: int, world: int, local_rank: int, device: torch.device, created: bool):
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = device  # where collectives run: nccl needs CUDA tensors
        self.is_writer = rank == 0
        self.created = created

    def bounds(self, n: int) -> tuple[int, int]:
        return shard_bounds(n, self.rank, self.world)

    def loss_fn(self, model: nn.Module) -> Callable[..., LossOutput]:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics over the global batch
            ddp = DDP(_LossModule(model), device_ids=[self.device.index])
        else:
            ddp = DDP(_LossModule(model))  # gloo: batch norm statistics stay per rank

        def step_loss(x, target, y, loss: str, epoch: int) -> LossOutput:
            n = len(target)
            lo, hi = self.bounds(n)
            weight = (hi - lo) * self.world / n
            if hi == lo:  # fewer samples than ranks: join the gradient average with a zero-weighted sample
                lo, hi, weight = 0, 1, 0.0
            out = ddp(x[lo:hi], target[lo:hi], y[lo:hi] if y is not None else None, loss, epoch)
            return LossOutput(out.total * weight, {k: v * weight for k, v in out.parts.items()})

        return step_loss

    def average(self, t: torch.Tensor) -> torch.Tensor:
        """Mean over ranks of losses already weighted by each rank's share: the global batch means."""
        t = t.detach().to(self.device, torch.float32).clone()
        self.dist.all_reduce(t)
        return t / self.world

    def evaluate(self, model, x, loss: str, stats: RegressionStats | None = None) -> dict[str, float]:
        """Each rank scores its slice; sums and counts are added up, so the means are over all of x
        (and ``stats``, when given, holds the per-feature sums of all of x)."""
        lo, hi = self.bounds(len(x))
        sums = torch.zeros(len(_METRICS) + 1, dtype=torch.float64)
        mine = RegressionStats() if stats is not None else None
        if hi > lo:
            per = per_sample_errors(model, x[lo:hi], loss, stats=mine)
            sums = torch.tensor([float(per[k].double().sum()) for k in _METRICS] + [hi - lo], dtype=torch.float64)
        sums = sums.to(self.device)
        self.dist.all_reduce(sums)
        sums = sums.cpu()
        if stats is not None and mine is not None:
            d = math.prod(x.shape[1:])
            parts = (
                [mine.sse, mine.sum, mine.sumsq] if mine.sse is not None else [torch.zeros(d, dtype=torch.float64)] * 3
            )
            flat = torch.cat(parts).to(self.device)
            self.dist.all_reduce(flat)
            stats.sse, stats.sum, stats.sumsq = flat.cpu().split(d)
            stats.n = int(sums[-1])
        return {k: float(sums[i] / sums[-1]) for i, k in enumerate(_METRICS)}

    def any(self, flag: bool) -> bool:
        t = torch.tensor([int(flag)], device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        self.any(False)  # an all-reduce works as a barrier on every backend

    def agree(self, text: str) -> str:
        """Rank 0's string on every rank (e.g. a run folder named after the clock)."""
        raw = torch.tensor(list(text.encode()), dtype=torch.uint8, device=self.device)
        size = torch.tensor([len(raw)], device=self.device)
        self.dist.broadcast(size, 0)
        buf = raw if self.rank == 0 else torch.zeros(int(size.item()), dtype=torch.uint8, device=self.device)
        self.dist.broadcast(buf, 0)
        return bytes(buf.cpu().tolist()).decode()


_current: Single = Single()


def current() -> Single:
    """The process group this process trains in (a world of one unless set up by ``setup``)."""
    return _current


def world_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise TrainingError(f"WORLD_SIZE: must be an integer, got '{os.environ['WORLD_SIZE']}'") from None


def writes_run_dir() -> bool:
    """Whether this process may write the run directory: rank 0 under torchrun, always otherwise.

    Read from the environment, so the CLI can decide before the group is set up.
    """
    return os.environ.get("RANK", "0") == "0"


def setup(device_name: str) -> Single:
    """Joins the process group torchrun describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR...).

    gloo when training on CPU, nccl when on CUDA (each rank on GPU LOCAL_RANK). A group the caller
    already made is used as is and left open.
    """
    global _current
    import torch.distributed as dist

    world = world_from_env()
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        _current = Single()
        return _current
    if not dist.is_available():
        raise TrainingError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    use_cuda = device_name in ("cuda", "auto") and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    created = not dist.is_initialized()
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise TrainingError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices; "
                "use --nproc-per-node <= the number of GPUs"
            )
        torch.cuda.set_device(local_rank)
    if created:
        try:
            dist.init_process_group("nccl" if use_cuda else "gloo")
        except (ValueError, RuntimeError) as e:
            raise TrainingError(
                f"cannot join the process group ({str(e).splitlines()[0]}); "
                "start with torchrun, which sets RANK, WORLD_SIZE and MASTER_ADDR"
            ) from None
    device = torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")
    _current = Group(dist.get_rank(), dist.get_world_size(), local_rank, device, created)
    return _current


def shutdown() -> None:
    """Leaves the group if ``setup`` made it; back to a world of one."""
    global _current
    if isinstance(_current, Group) and _current.created:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _current = Single()
