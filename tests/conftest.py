"""Shared fixtures: tiny synthetic datasets written in the real file formats."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("AELAB_NO_PROGRESS", "1")

# Hypothesis (tests/test_fuzz.py): `make test` runs a small deterministic profile; a long hunt by hand:
# pytest tests/test_fuzz.py --hypothesis-profile=aelab-fuzz --hypothesis-show-statistics
from hypothesis import settings as _hyp  # noqa: E402

_hyp.register_profile("aelab-ci", max_examples=12, deadline=None, derandomize=True, database=None)
_hyp.register_profile("aelab-fuzz", max_examples=300, deadline=None)
_hyp.load_profile("aelab-ci")


def pytest_report_header(config):
    import torch

    from aelab.train.precision import resolve_precision

    return f"aelab: train.precision auto -> {resolve_precision('auto', torch.device('cpu'))} on this CPU" + (
        f" (AELAB_PRECISION={os.environ['AELAB_PRECISION']})" if os.environ.get("AELAB_PRECISION") else ""
    )


def make_blobs(n: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, size, size) of a bright square whose position depends on the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = np.zeros((n, size, size), dtype=np.uint8)
    for i, lab in enumerate(y):
        r, c = 2 + (lab // 5) * 12 + rng.integers(0, 3), 2 + (lab % 5) * 5 + rng.integers(0, 2)
        x[i, r : r + 8, c : c + 4] = 200 + rng.integers(0, 55)
    return x, y.astype(np.uint8)


def write_idx_dataset(d: Path, n_train: int, n_test: int) -> Path:
    """The four MNIST-style IDX files (gzipped) of synthetic blobs in folder ``d``."""
    from aelab.data.idx import write_idx

    d.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = make_blobs(n, seed)
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", y)
    return d


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A folder with the four MNIST-style IDX files (gzipped), 600 train / 100 test."""
    return write_idx_dataset(tmp_path / "idx", 600, 100)


@pytest.fixture
def tiny_cfg(idx_dir: Path):
    """A dense config on the synthetic IDX data, one fast epoch."""
    from aelab import Config

    return Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir)},
            "model": {"name": "dense", "hidden": [64], "code_dim": 16},
            "train": {"epochs": 2, "batch_size": 64},
        }
    )


def has_real(name: str) -> bool:
    from aelab.data.fetch import locate

    return locate(name) is not None


needs_fashion = pytest.mark.skipif(not has_real("fashion-mnist"), reason="Fashion-MNIST not installed (make data)")
needs_mnist = pytest.mark.skipif(not has_real("mnist"), reason="MNIST not installed (make data)")


# -- precision ---------------------------------------------------------------------------------
# train.precision auto trains in bf16-mixed on CPUs with AVX-512 BF16 or AMX and in fp32 elsewhere, so a
# test that trains and then checks a number sees a different format on different machines. Rule for this
# suite: autocast wraps only the training step; evaluation, encode/decode, ONNX export and scoring always
# run in fp32. So comparisons of two evaluations of the same weights (save/load round trips, ONNX against
# torch, TensorBoard against metrics.csv, val_accuracy against test_accuracy) hold to 1e-5..1e-6 in any
# precision, and comparisons of two trainings that take the same path (same seed, resume against
# uninterrupted) are bit-identical in either format, because CPU kernels are deterministic. What differs
# between formats is what training reaches: the tests below check that (loss falls, accuracy or AUC above
# a threshold, R^2 above a floor, bit-identical re-runs) and are marked `precision`; `make test` runs them
# a second time with AELAB_PRECISION set to the format this CPU's auto does not pick. Tests that compare
# summation orders (test_distributed.py) pin train.precision=fp32 instead: bf16 rounding (about 4e-3
# relative) would swamp the 1e-5 agreement they check.
PRECISION_SENSITIVE = {
    "test_train.py::test_train_writes_a_complete_run": "a finished run's files and metrics",
    "test_train.py::test_training_reduces_loss": "validation loss falls in 2 epochs",
    "test_train.py::test_same_seed_same_metrics": "same seed, same metrics, exactly",
    "test_train.py::test_save_load_identical_outputs": "loaded weights give identical outputs",
    "test_resume.py::test_crash_then_resume_matches_uninterrupted": "resume is bit-identical to one run",
    "test_classifier.py::test_trains_and_reports_accuracy_above_chance": "accuracy > 0.3 after training",
    "test_vae.py::test_vae_trains_elbo_finite_and_decreasing": "ELBO finite, loss falls",
    "test_vae.py::test_gaussian_vae_on_standardised_tabular_data": "Gaussian VAE trains on tabular data",
    "test_sklearn.py::test_pipeline_before_logistic_regression_on_synthetic_images": "probe accuracy > 0.8",
    "test_sklearn.py::test_pipeline_on_real_mnist_codes": "probe accuracy > 0.75 on MNIST codes",
    "test_sklearn.py::test_transform_inverse_transform_and_feature_names": "reconstruction MSE < half the variance",
    "test_probe.py::test_probe_writes_json_and_prints_table": "probe accuracy > 0.3",
    "test_anomaly.py::test_detector_separates_toy_outliers": "ROC-AUC > 0.95 on toy outliers",
    "test_anomaly.py::test_detector_with_a_gaussian_vae_on_tabular_data": "ROC-AUC > 0.95 with a Gaussian VAE",
    "test_metrics_fit.py::test_image_run_reports_bce_floor_and_psnr_once": "BCE above its floor, metrics once",
    "test_metrics_fit.py::test_standardised_data_reports_mse_rmse_per_feature_and_r2": "R^2 > 0.5 on rank-2 data",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if f"{Path(str(item.fspath)).name}::{getattr(item, 'originalname', None) or item.name}" in PRECISION_SENSITIVE:
            item.add_marker(pytest.mark.precision)
