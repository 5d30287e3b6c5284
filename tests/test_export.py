"""aelab export: ONNX files run in onnxruntime as the PyTorch model does; TorchScript loads without aelab."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aelab import Config, train
from aelab.cli import main
from aelab.models import list_models

ort = pytest.importorskip("onnxruntime")

MODELS = {
    "dense": {"name": "dense", "hidden": [32], "code_dim": 8},
    "conv": {"name": "conv", "channels": [4, 4]},
}
if "vae-dense" in list_models():
    MODELS["vae-dense"] = {"name": "vae-dense", "hidden": [32], "code_dim": 4}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small trained run per model family (one epoch on 200 synthetic images)."""
    from conftest import write_idx_dataset

    root = tmp_path_factory.mktemp("export")
    d = write_idx_dataset(root / "idx", 200, 50)
    out = {}
    for name, model in MODELS.items():
        cfg = Config.from_dict(
            {"data": {"name": "mnist", "path": str(d)}, "model": model, "train": {"epochs": 1, "batch_size": 64}}
        )
        out[name] = train(cfg, root / name, log=lambda _m: None).path
    return out


@pytest.mark.parametrize("family", list(MODELS))
def test_onnx_matches_pytorch_for_batch_sizes_1_and_7(runs, family, tmp_path):
    from aelab import load_run

    assert main(["export", str(runs[family]), "--format", "onnx", "-o", str(tmp_path)]) == 0
    model = load_run(runs[family]).model
    manifest = json.loads((tmp_path / "export.json").read_text())
    assert manifest["code_shape"] == list(model.code_shape)
    rng = np.random.default_rng(0)
    for n in (1, 7):
        x = rng.random((n, *model.input_shape), dtype=np.float32)
        with torch.no_grad():
            z = model.encode(torch.from_numpy(x))
            want = {
                "encoder": z.numpy(),
                "decoder": model.decode(z).numpy(),
                "autoencoder": model.decode(model.encode(torch.from_numpy(x))).numpy(),
            }
        feeds = {"encoder": {"x": x}, "decoder": {"z": want["encoder"]}, "autoencoder": {"x": x}}
        for part in ("encoder", "decoder", "autoencoder"):
            sess = ort.InferenceSession(str(tmp_path / f"{part}.onnx"), providers=["CPUExecutionProvider"])
            got = sess.run(None, feeds[part])[0]
            assert got.shape == want[part].shape
            # 1e-5: ONNX Runtime against torch, both fp32 (export and eval never autocast, whatever train.precision)
            np.testing.assert_allclose(got, want[part], atol=1e-5, rtol=0, err_msg=f"{family} {part} batch {n}")
            assert manifest["files"][part]["onnxruntime_max_abs_diff"] <= 1e-5


def test_torchscript_loads_and_matches(runs, tmp_path):
    from aelab import load_run

    assert main(["export", str(runs["conv"]), "--format", "torchscript", "-o", str(tmp_path)]) == 0
    model = load_run(runs["conv"]).model
    enc, auto = torch.jit.load(str(tmp_path / "encoder.pt")), torch.jit.load(str(tmp_path / "autoencoder.pt"))
    x = torch.rand(3, *model.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), model.encode(x), atol=1e-6, rtol=0)
        torch.testing.assert_close(auto(x), model(x), atol=1e-6, rtol=0)
    # frozen: encoder.pt keeps only the encoder's weights, so it is smaller than the whole model
    assert (tmp_path / "encoder.pt").stat().st_size < (tmp_path / "autoencoder.pt").stat().st_size


def test_failed_export_writes_nothing(runs, tmp_path, monkeypatch, capsys):
    import aelab.export as E

    real = E.onnx_bytes

    def fail_on_decoder(module, *a, **k):
        if getattr(module, "method", None) == "decode":
            raise RuntimeError("Exporting the operator 'aten::foo' is not supported\nlong trace...")
        return real(module, *a, **k)

    monkeypatch.setattr(E, "onnx_bytes", fail_on_decoder)
    out = tmp_path / "out"
    assert main(["export", str(runs["dense"]), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "decoder" in err and "aten::foo" in err
    assert not out.exists() or not any(out.iterdir())


def test_a_failing_onnxruntime_check_is_one_line_and_writes_nothing(runs, tmp_path, monkeypatch, capsys):
    import aelab.export as E

    def ort_fails(*a, **k):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Load model failed\nlong trace...")

    monkeypatch.setattr(E, "onnx_max_diff", ort_fails)
    out = tmp_path / "out"
    assert main(["export", str(runs["dense"]), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "onnxruntime could not check the encoder" in err and "Load model failed" in err
    assert not out.exists() or not any(out.iterdir())


def test_export_user_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path), "--format", "tflite", "-o", str(tmp_path / "o")])
    assert e.value.code == 2
