"""The explorer without a browser: export of every family against PyTorch (NumPy twin of the page's
engine), what the page carries, unsupported runs named with the reason, bad input = one line + exit 2."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from aelab.config import ModelConfig
from aelab.explore import Unsupported, export_model, run_ops
from aelab.explore.export import check_parity
from aelab.models import build_model
from aelab.report.i18n import STRINGS, table

FAMILIES = {
    "dense": dict(name="dense", hidden=[64], code_dim=16),
    "dense-deep-tied-elu": dict(name="dense", hidden=[64, 32], code_dim=8, tied=True, activation="elu", dropout=0.2),
    "sparse": dict(name="dense", hidden=[], code_dim=32, l1=1e-4, code_activation="sigmoid", activation="leaky_relu"),
    "conv-seed004": dict(name="conv", channels=[16, 8, 8]),
    "conv-bn-tanh": dict(name="conv", channels=[8, 4], batch_norm=True, activation="tanh", kernel_size=5),
    "vae-dense": dict(name="vae-dense", hidden=[32], code_dim=2),
    "vae-conv-bn": dict(name="vae-conv", channels=[8, 8], code_dim=4, batch_norm=True),
    "classifier-ae": dict(name="classifier-ae", channels=[8, 16], hidden=[16], tap=2),
    "identity-output": dict(name="dense", hidden=[16], code_dim=4, output_activation="identity"),
    "iwae-dense": dict(name="vae-dense", hidden=[32], code_dim=2, iw_samples=4),
    "topk-sae": dict(name="topk-sae", latents=96, k=8, output_activation="sigmoid"),  # the default is identity
    "topk-sae-linear": dict(name="topk-sae", latents=64, k=12, output_activation="identity"),
    "batch-topk-sae": dict(name="topk-sae", latents=64, k=8, batch_topk=True, output_activation="sigmoid"),
}


def _randomise_batch_norm(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_export_matches_pytorch(family, shape):
    model = build_model(ModelConfig(**FAMILIES[family]), shape)
    _randomise_batch_norm(model)
    ex = export_model(model)
    x = np.random.default_rng(0).random((6, *shape), dtype=np.float32)
    res = check_parity(model, ex, x)  # raises Unsupported above 1e-4
    assert res["encode"] <= 1e-4 and res["decode"] <= 1e-4
    assert ex.buffer.dtype == np.float32
    assert ex.first_layer is not None and ex.first_layer["op"] in ("linear", "conv")


def test_vae_log_variance_head_matches():
    model = build_model(ModelConfig(name="vae-conv", channels=[8, 8], code_dim=4), (1, 28, 28)).eval()
    ex = export_model(model)
    x = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    trunk = run_ops(ex.encoder[: ex.trunk_len], ex.buffer, x)
    lv = run_ops(ex.logvar, ex.buffer, trunk)
    with torch.no_grad():
        _, want = model.encode_stats(torch.from_numpy(x))
    assert np.abs(lv - want.numpy()).max() < 1e-5


@pytest.mark.parametrize("batch_topk", [False, True])
def test_topk_sae_keeps_k_codes_and_matches(batch_topk):
    """The SAE's pre-bias, its TopK (or BatchTopK's inference threshold) and its linear decoder, trained-like
    parameters (a non-zero pre-bias and threshold), against PyTorch; at most k non-zero code values."""
    model = build_model(ModelConfig(name="topk-sae", latents=80, k=6, batch_topk=batch_topk), (1, 28, 28))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.b_pre.copy_(torch.rand(784, generator=g))
        model.b_enc.copy_(torch.randn(80, generator=g) * 0.1)
        model.threshold.fill_(0.3)
    ex = export_model(model)
    assert [op["op"] for op in ex.encoder] == ["affine", "linear", "threshold" if batch_topk else "topk"]
    x = np.random.default_rng(2).random((16, 1, 28, 28), dtype=np.float32)
    res = check_parity(model, ex, x)
    assert res["encode"] <= 1e-4 and res["decode"] <= 1e-4
    z = run_ops(ex.encoder, ex.buffer, x)
    if not batch_topk:
        assert ((z != 0).sum(1) <= 6).all() and (z != 0).any()


def test_vq_vae_is_refused_naming_the_reason():
    model = build_model(ModelConfig(name="vq-vae", hidden=[8, 8], code_dim=4, codebook_size=16), (1, 28, 28))
    with pytest.raises(Unsupported, match="nearest codebook vector"):
        export_model(model)


def test_the_self_check_catches_a_misread_model():
    """A model whose encode does more than its encoder module is refused, not drawn wrong."""
    model = build_model(ModelConfig(name="dense", hidden=[16], code_dim=4), (1, 28, 28))
    ex = export_model(model)
    ex.buffer = ex.buffer.copy()
    last = [op for op in ex.decoder if op["op"] == "linear"][-1]
    ex.buffer[last["b"]] += 0.5  # one wrong output bias: pixel 0 is off for every input
    with pytest.raises(Unsupported, match="differs from PyTorch"):
        check_parity(model, ex, np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32))


def test_unsupported_layers_are_named():
    model = build_model(ModelConfig(name="dense", hidden=[16], code_dim=4), (1, 28, 28))
    model.encoder.append(nn.Softplus())
    with pytest.raises(Unsupported, match="Softplus"):
        export_model(model)

    class Odd(type(model)):
        def encode(self, x):
            return super().encode(x) * 2

    odd = Odd(ModelConfig(name="dense", hidden=[16], code_dim=4), (1, 28, 28))
    with pytest.raises(Unsupported, match="encode in its own way"):
        export_model(odd)
    with pytest.raises(Unsupported, match="vectors"):
        export_model(build_model(ModelConfig(name="dense", hidden=[8], code_dim=2), (20,)))


def test_strings_have_both_languages_and_the_seeds_terms():
    t = table()
    assert set(t) == {"en", "ja"} and set(t["en"]) == set(t["ja"]) == set(STRINGS)
    ja = " ".join(t["ja"].values())
    for term in ("オートエンコーダ", "自己符号化器", "中間層", "再構成"):
        assert term in ja
    for k, v in STRINGS.items():  # placeholders agree between languages
        assert set(re.findall(r"{\w+}", v["en"])) == set(re.findall(r"{\w+}", v["ja"])), k


def test_report_strings_have_both_languages_and_the_seeds_terms():
    from aelab.report.i18n import REPORT, report_table, text

    t = report_table()
    assert set(t) == {"en", "ja"} and set(t["en"]) == set(t["ja"]) == set(REPORT)
    ja = " ".join(t["ja"].values())
    for term in ("オートエンコーダ", "自己符号化器", "中間層", "再構成"):
        assert term in ja
    for k, v in REPORT.items():
        assert set(re.findall(r"{\w+}", v["en"])) == set(re.findall(r"{\w+}", v["ja"])), k
    assert text("cap_code", n=32).startswith("The code of one test image: 32 numbers")


@pytest.fixture
def dense_run(tiny_cfg, tmp_path):
    from aelab import train

    return train(tiny_cfg.replace(["train.epochs=1"]), tmp_path / "dense", log=lambda s: None)


def _payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="aelab-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def _images_of(d: dict) -> np.ndarray:
    u8 = np.frombuffer(__import__("base64").b64decode(d["images"]), np.uint8)
    return (u8.astype(np.float32) / 255).reshape(d["count"], *d["input_shape"])


def test_cli_writes_a_self_contained_page(dense_run, capsys):
    from aelab.cli import main

    assert main(["explore", str(dense_run.path), "--map", "pca", "--points", "50"]) == 0
    out = dense_run.path / "explore.html"
    assert f"explorer written to {out}" in capsys.readouterr().out
    html = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page must not load anything"
    assert "<script src" not in html and "<link" not in html
    d = _payload(html)
    assert d["count"] == 50 and len(d["labels"]) == 50 and d["input_shape"] == [1, 28, 28]
    (r,) = d["runs"]
    assert r["unsupported"] is None and r["code_shape"] == [16]
    assert len(r["maps"]["pca"]["points"]) == 50 and "tsne" not in r["maps"]
    # the linear map that puts the current code on the PCA map reproduces the test codes' points
    z = dense_run.model.encode(torch.from_numpy(_images_of(d))).detach().numpy()
    a = np.array(r["maps"]["pca"]["linear"])
    assert np.abs(np.column_stack([z, np.ones(len(z))]) @ a - np.array(r["maps"]["pca"]["points"])).max() < 1e-3
    assert len(r["top_images"]) == 64 and all(len(t) == 8 for t in r["top_images"])
    assert r["parity_python"]["encode"] <= 1e-4 and r["parity_python"]["decode"] <= 1e-4
    assert r["anomaly"] is None and r["score_metric"] == "mse"  # the family's declared default (Capabilities)
    # the weights in the page are the run's weights
    buf = np.frombuffer(__import__("base64").b64decode(r["weights"]), dtype=np.float32)
    lin = r["encoder"][0]
    w = buf[lin["w"] : lin["w"] + lin["in"] * lin["out"]].reshape(lin["out"], lin["in"])
    assert np.array_equal(w, dense_run.model.encoder[1].weight.detach().numpy())


def test_top_images_are_the_most_exciting(dense_run):
    from aelab.explore import build_page_data

    d = build_page_data([dense_run], points=40, maps=["pca"])
    r = d["runs"][0]
    x = np.frombuffer(__import__("base64").b64decode(d["images"]), np.uint8).reshape(40, -1).astype(np.float32) / 255
    lin = dense_run.model.encoder[1]
    with torch.no_grad():
        act = lin(torch.from_numpy(x)).numpy()
    for u in (0, 5, 63):
        assert r["top_images"][u][0] == int(np.argmax(act[:, u]))


def test_threshold_from_anomaly_json(dense_run):
    from aelab.explore import build_page_data

    (dense_run.path / "anomaly.json").write_text(json.dumps({"metric": "mse", "quantile": 0.99, "threshold": 0.0123}))
    r = build_page_data([dense_run], points=20, maps=["pca"])["runs"][0]
    assert r["anomaly"] == {"metric": "mse", "threshold": 0.0123, "quantile": 0.99} and r["score_metric"] == "mse"


def test_a_run_the_page_cannot_run_is_refused_with_the_reason(tmp_path, capsys):
    """Vector samples (tabular data): one line naming the reason, exit 2, no page."""
    from aelab import Config, train
    from aelab.cli import main

    x = np.random.default_rng(0).random((200, 12)).astype(np.float32)
    np.save(tmp_path / "tab.npy", x)
    cfg = Config.from_dict(
        {
            "data": {"name": "npy", "path": str(tmp_path / "tab.npy")},
            "model": {"name": "dense", "hidden": [8], "code_dim": 2},
            "train": {"epochs": 1},
        }
    )
    run = train(cfg, tmp_path / "tab", log=lambda s: None)
    code = main(["explore", str(run.path), "--map", "pca"])
    err = capsys.readouterr().err
    assert code == 2 and "aelab explore: error:" in err and "vectors" in err
    assert not (run.path / "explore.html").exists()


def test_one_unsupported_of_two_is_said_in_page_and_cli(dense_run, tmp_path, capsys, monkeypatch):
    from aelab.cli import main
    from aelab.explore import page

    real, calls = page.export_model, []

    def second_fails(model):
        calls.append(model)
        if len(calls) == 2:
            raise page.Unsupported("layer Mystery is not one the page can run")
        return real(model)

    monkeypatch.setattr(page, "export_model", second_fails)
    out = tmp_path / "two.html"
    assert (
        main(["explore", str(dense_run.path), str(dense_run.path), "-o", str(out), "--map", "pca", "--points", "20"])
        == 0
    )
    assert "the page cannot run this model: layer Mystery" in capsys.readouterr().err
    d = _payload(out.read_text())
    assert d["runs"][0]["unsupported"] is None and "Mystery" in d["runs"][1]["unsupported"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["explore", "no/such/run"], "no such run directory"),
        (["explore", "a", "b", "c"], "one run, or two"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    from aelab.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("aelab explore: error:")


def test_bad_options_are_one_line_exit_2(dense_run, capsys, tmp_path):
    from aelab.cli import main

    for argv, message in (
        (["--map", "umap"], "--map: must be one of pca, tsne"),
        (["--points", "3"], "--points: must be at least 10"),
        (["-o", str(tmp_path / "x.txt")], "must end in .html"),
    ):
        assert main(["explore", str(dense_run.path), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert not (dense_run.path / "explore.html").exists()


def test_runs_with_different_inputs_are_refused(dense_run, tmp_path, capsys):
    from aelab import Config, train
    from aelab.cli import main

    x = (np.random.default_rng(0).random((120, 3, 8, 8)) * 255).astype(np.uint8)
    np.save(tmp_path / "rgb.npy", x)
    cfg = Config.from_dict(
        {
            "data": {"name": "npy", "path": str(tmp_path / "rgb.npy")},
            "model": {"name": "dense", "hidden": [8], "code_dim": 2},
            "train": {"epochs": 1},
        }
    )
    other = train(cfg, tmp_path / "rgb", log=lambda s: None)
    assert main(["explore", str(dense_run.path), str(other.path), "-o", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert "take different inputs" in err and not (tmp_path / "x.html").exists()
