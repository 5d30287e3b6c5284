"""Running a trained model over an array: per-sample errors and dataset-level metrics."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from ..data.mapped import release_pages
from . import metrics as M


def batches(x: np.ndarray | torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), batch_size):
        b = x[i: i + batch_size]
        b = torch.as_tensor(np.asarray(b)) if not torch.is_tensor(b) else b
        if b.dtype == torch.uint8:
            b = b.float().div_(255)
        if isinstance(x, np.memmap):  # data.mmap: do not let the file pile up in memory (data/mapped.py)
            release_pages(x)
        yield b.to(device, non_blocking=True)


@torch.no_grad()
def per_sample_errors(model, x, loss: str = "bce", batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """bce, mse, psnr and loss for every sample (CPU tensors), with the model in eval mode."""
    out: dict[str, list[torch.Tensor]] = {"bce": [], "mse": [], "psnr": []}
    with eval_mode(model):
        for b in batches(x, batch_size, model.device):
            z = model.encode(b)
            logits = model.decode_logits(z)
            if model.output_activation == "sigmoid":
                recon = torch.sigmoid(logits.float())
                out["bce"].append(M.bce_logits(logits, b).cpu())
            else:
                recon = logits.float()
                out["bce"].append(M.bce(recon, b).cpu())
            mse = M.mse(recon, b)
            out["mse"].append(mse.cpu())
            out["psnr"].append(M.psnr(mse).cpu())
    res = {k: torch.cat(v) for k, v in out.items()}
    res["loss"] = res["bce"] if loss == "bce" else res["mse"]
    return res


def evaluate(model, x, loss: str = "bce", batch_size: int = 1024) -> dict[str, float]:
    """Dataset means: loss, bce, mse, psnr (PSNR is the mean of per-image PSNRs)."""
    return M.summarize_errors(per_sample_errors(model, x, loss, batch_size))


@contextlib.contextmanager
def eval_mode(model):
    """Eval mode (dropout off, batch-norm statistics frozen) for the block, then the mode it had."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


@torch.no_grad()
def _map_batches(fn, model, x, batch_size: int) -> np.ndarray:
    with eval_mode(model):
        return torch.cat([fn(b).float().cpu() for b in batches(x, batch_size, model.device)]).numpy()


def reconstruct(model, x, batch_size: int = 1024) -> np.ndarray:
    return _map_batches(model.reconstruct, model, x, batch_size)


def encode_array(model, x, batch_size: int = 4096) -> np.ndarray:
    return _map_batches(model.encode, model, x, batch_size)


def decode_array(model, z, batch_size: int = 4096) -> np.ndarray:
    return _map_batches(model.decode, model, z, batch_size)


def data_metrics(model, x, loss: str = "bce", scaler: dict | None = None, batch_size: int = 1024) -> dict:
    """The test metrics that fit the data, keyed without the ``test_`` prefix (summary.json, `aelab eval`).

    Targets in [0, 1]: loss, bce, bce_floor, bce_above_floor, mse, psnr (peak 1).
    Standardised data (a scaler): loss, mse, rmse, r2, rmse_per_feature (in the data's own units).
    Other real-valued data: the same, plus psnr with the test values' range as peak (psnr_peak).
    """
    per = per_sample_errors(model, x, loss, batch_size)
    lo, hi = M.value_range(x)
    mean = {k: float(v.double().mean()) for k, v in per.items()}
    if scaler is None and M.in_unit_range(lo, hi):
        floor = M.entropy_floor(x)
        return {"loss": mean["loss"], "bce": mean["bce"], "bce_floor": floor, "bce_above_floor": mean["bce"] - floor,
                "mse": mean["mse"], "psnr": mean["psnr"]}
    out: dict = {"loss": mean["loss"], "mse": mean["mse"]}
    stats = M.RegressionStats()
    with eval_mode(model), torch.no_grad():
        for b in batches(x, batch_size, model.device):
            stats.update(model.reconstruct(b).float(), b)
    rmse = stats.rmse_per_feature()
    if scaler is not None:  # back to the data's own units, where an RMSE can be read
        rmse = rmse * np.asarray(scaler["std"], dtype=np.float64).reshape(-1)
    out["rmse"] = float(np.sqrt(out["mse"]))
    out["r2"] = stats.r2()
    out["rmse_per_feature"] = [float(v) for v in rmse]
    if scaler is None and hi > lo:
        out["psnr"] = float(M.psnr(per["mse"], hi - lo).double().mean())
        out["psnr_peak"] = hi - lo
    return out
