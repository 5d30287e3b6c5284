"""Running a trained model over an array: per-sample errors and dataset-level metrics."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..data.mapped import release_pages
from . import metrics as M


def batches(x: np.ndarray | torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), batch_size):
        b = x[i : i + batch_size]
        b = torch.as_tensor(np.asarray(b)) if not torch.is_tensor(b) else b
        if b.dtype == torch.uint8:
            b = b.float().div_(255)
        if isinstance(x, np.memmap):  # data.mmap: do not let the file pile up in memory (data/mapped.py)
            release_pages(x)
        yield b.to(device, non_blocking=True)


@torch.no_grad()
def per_sample_errors(
    model, x, loss: str = "bce", batch_size: int = 1024, stats: M.RegressionStats | None = None
) -> dict[str, torch.Tensor]:
    """bce, mse, psnr and loss for every sample (CPU tensors), with the model in eval mode.

    ``stats`` also gathers the per-feature sums behind RMSE per feature and R^2 in the same pass."""
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
            if stats is not None:
                stats.update(recon, b)
            mse = M.mse(recon, b)
            out["mse"].append(mse.cpu())
            out["psnr"].append(M.psnr(mse).cpu())
    res = {k: torch.cat(v) for k, v in out.items()}
    res["loss"] = res["bce"] if loss == "bce" else res["mse"]
    return res


def evaluate(
    model, x, loss: str = "bce", batch_size: int = 1024, stats: M.RegressionStats | None = None
) -> dict[str, float]:
    """Dataset means: loss, bce, mse, psnr (PSNR is the mean of per-image PSNRs, peak 1)."""
    return M.summarize_errors(per_sample_errors(model, x, loss, batch_size, stats))


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


@dataclass(frozen=True)
class DataFit:
    """Which metrics fit a split, decided once from its values and whether it was standardised.

    Targets in [0, 1] (not standardised): BCE (and its floor) and PSNR with peak 1. Otherwise a
    reconstruction is a regression: MSE, RMSE, R^2, and PSNR only on unscaled data, with the
    split's value range as its peak (``peak``; None: no PSNR)."""

    unit_range: bool
    peak: float | None = 1.0


def data_fit(x, scaler: dict | None = None) -> DataFit:
    lo, hi = M.value_range(x)
    if scaler is None and M.in_unit_range(lo, hi):
        return DataFit(True, 1.0)
    return DataFit(False, hi - lo if scaler is None and hi > lo else None)


def fitting_metrics(means: dict[str, float], stats: M.RegressionStats | None, fit: DataFit) -> dict[str, float]:
    """The scalar metrics that fit the data (the same rule for summary.json and metrics.csv), from the means
    ``evaluate`` gives and, off the unit range, the RegressionStats of the same pass."""
    if fit.unit_range:
        return {k: means[k] for k in ("loss", "bce", "mse", "psnr")}
    out = {"loss": means["loss"], "mse": means["mse"], "rmse": float(np.sqrt(means["mse"]))}
    out["r2"] = stats.r2() if stats is not None else float("nan")
    if fit.peak is not None:  # 10 log10(peak^2 / mse) = the peak-1 PSNR + 20 log10(peak), sample by sample
        out["psnr"] = means["psnr"] + 20 * math.log10(fit.peak)
        out["psnr_peak"] = fit.peak
    return out


def data_metrics(model, x, loss: str = "bce", scaler: dict | None = None, batch_size: int = 1024) -> dict:
    """The test metrics that fit the data, keyed without the ``test_`` prefix (summary.json, `aelab eval`).

    Targets in [0, 1]: loss, bce, bce_floor, bce_above_floor, mse, psnr (peak 1).
    Standardised data (a scaler): loss, mse, rmse, r2, rmse_per_feature (in the data's own units).
    Other real-valued data: the same, plus psnr with the test values' range as peak (psnr_peak).
    """
    fit = data_fit(x, scaler)
    stats = None if fit.unit_range else M.RegressionStats()
    per = per_sample_errors(model, x, loss, batch_size, stats)
    mean = {k: float(v.double().mean()) for k, v in per.items()}
    out: dict = fitting_metrics(mean, stats, fit)
    if fit.unit_range:
        floor = M.entropy_floor(x)
        return {
            "loss": out["loss"],
            "bce": out["bce"],
            "bce_floor": floor,
            "bce_above_floor": out["bce"] - floor,
            "mse": out["mse"],
            "psnr": out["psnr"],
        }
    assert stats is not None
    rmse = stats.rmse_per_feature()
    if scaler is not None:  # back to the data's own units, where an RMSE can be read
        rmse = rmse * np.asarray(scaler["std"], dtype=np.float64).reshape(-1)
    out["rmse_per_feature"] = [float(v) for v in rmse]
    if fit.peak is not None:
        out["psnr"] = float(M.psnr(per["mse"], fit.peak).double().mean())
    return out
