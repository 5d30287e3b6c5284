"""The CUDA path: runs only where a GPU is present (skipped on CPU-only CI, with the reason)."""

import numpy as np
import pytest
import torch

from aelab import load_run, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed", "fp16-mixed"])
@pytest.mark.parametrize(
    "model",
    [["model.name=dense"], ["model.name=conv", "model.channels=[8, 8]"], ["model.name=vae-dense", "model.code_dim=4"]],
)
def test_cuda_training_matches_cpu_closely(tiny_cfg, tmp_path, precision, model):
    over = model + [f"train.precision={precision}", "train.epochs=3"]
    gpu = train(tiny_cfg.replace(over + ["train.device=cuda"]), tmp_path / "gpu", log=lambda s: None)
    cpu = train(tiny_cfg.replace(over[:-2] + ["train.epochs=3"]), tmp_path / "cpu", log=lambda s: None)
    assert gpu.summary["device"].startswith("cuda")
    assert np.isfinite(gpu.summary["test_loss"])
    # same init and data order; kernels and reduced precision differ, so only closeness is expected
    assert gpu.summary["test_loss"] == pytest.approx(cpu.summary["test_loss"], rel=0.05)
    # a run trained on the GPU loads on the CPU
    loaded = load_run(tmp_path / "gpu")
    assert next(loaded.model.parameters()).device.type == "cpu"


def test_device_auto_picks_cuda(tiny_cfg, tmp_path):
    run = train(tiny_cfg.replace(["train.device=auto", "train.epochs=1"]), tmp_path / "r", log=lambda s: None)
    assert run.summary["device"].startswith("cuda")
