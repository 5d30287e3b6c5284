"""Reports: every figure is written as a valid PNG of the size it claims, for dense, conv and denoising runs;
the comparison page, the extension points (figure sets, probe.json), the hooks and the CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aelab import Config, ConfigError, train
from aelab.cli import main
from aelab.data import load_data
from aelab.models import _registry
from aelab.report import collect as C
from aelab.report import figures as F
from aelab.report import write_comparison, write_run_report
from aelab.report.hooks import PROGRESS_FILE, ReconstructionProgress, TensorBoardLogger, load_progress, training_hooks
from aelab.report.model_figures import register_figures
from conftest import make_blobs

PNG = b"\x89PNG\r\n\x1a\n"
KINDS = {
    "dense": ["model.name=dense"],
    "conv": ["model.name=conv", "model.channels=[4, 4]"],
    "denoise": ["model.name=conv", "model.channels=[4]", "data.noise=[{kind: gaussian, amount: 0.5}]"],
}
COMMON = {
    "reconstructions",
    "progress",
    "progress_strip",
    "best_worst",
    "learning_curves",
    "weights_first",
    "code",
    "code_mean",
    "latent_health",
    "latent",
}
# the dense run also carries a model-specific figure (a figure set its family declares) and a probe.json
EXPECTED = {
    "dense": COMMON | {"weights_last", "prior_samples"},
    "conv": COMMON | {"code_maps"},
    "denoise": COMMON | {"code_maps"},
}


@register_figures("test-extension")
def report_figures(model, splits):
    fig = F.new_figure(4, 3)
    fig.subplots().plot([0, 1], [1, 0])
    return [("prior_samples", fig, "samples from the prior")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from aelab.data.idx import write_idx

    d = tmp_path_factory.mktemp("idx")
    x, y = make_blobs(300, 0)
    xt, yt = make_blobs(60, 1)
    write_idx(d / "train-images-idx3-ubyte.gz", x)
    write_idx(d / "train-labels-idx1-ubyte.gz", y)
    write_idx(d / "t10k-images-idx3-ubyte.gz", xt)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", yt)
    return d


@pytest.fixture(scope="module")
def base_cfg(data_dir) -> Config:
    return Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(data_dir)},
            "model": {"name": "dense", "hidden": [32], "code_dim": 8},
            "train": {"epochs": 2, "batch_size": 100},
        }
    )


@pytest.fixture(scope="module")
def runs(base_cfg, tmp_path_factory) -> dict:
    """One trained 2-epoch run per kind, with the reconstruction-progress hook, and its report."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for kind, ov in KINDS.items():
        cfg = base_cfg.replace(ov + [f"name={kind}"])
        splits = load_data(cfg.data)
        hooks = training_hooks(cfg, root / kind, splits.x_test, splits.y_test)
        run = train(cfg, root / kind, data=splits, hooks=hooks, log=lambda s: None)
        family = _registry._MODELS["dense"]
        if kind == "dense":
            (run.path / "probe.json").write_text(json.dumps({"probe_accuracy": 0.875, "pixels_accuracy": 0.85}))
            caps = family.capabilities  # declare the extra set for this report only
            _registry._MODELS["dense"] = dataclasses.replace(
                family, capabilities=dataclasses.replace(caps, figures=caps.figures + ("test-extension",))
            )
        try:
            out[kind] = (run, splits, write_run_report(run, splits))
        finally:
            _registry._MODELS["dense"] = family
    return out


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    with Image.open(io.BytesIO(data)) as im:
        return im.size


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_figure_is_a_valid_png_of_its_size(runs, kind):
    run, _, report = runs[kind]
    folder = run.path / "figures"
    index = json.loads((folder / "index.json").read_text())
    stems = {Path(e["file"]).stem for e in index}
    assert stems == EXPECTED[kind]
    for e in index:
        data = (folder / e["file"]).read_bytes()
        if e["file"].endswith(".gif"):
            with Image.open(io.BytesIO(data)) as im:
                assert im.format == "GIF" and im.n_frames == 2  # one frame per epoch
                assert im.size == (e["width"], e["height"])
            continue
        w, h = png_size(data)
        assert (w, h) == (e["width"], e["height"]), e["file"]
        assert 150 <= w <= 2000 and 100 <= h <= 2000, (e["file"], w, h)
        with Image.open(folder / e["file"]) as im:  # not a blank canvas
            assert np.asarray(im.convert("L")).std() > 5, e["file"]
    # three rows (clean, noisy, output) for denoising runs, two otherwise
    rec = next(e for e in index if e["file"] == "reconstructions.png")
    two = next(e for e in index if e["file"] == "reconstructions.png" and kind == "dense") if kind == "dense" else None
    if kind == "denoise":
        dense_rec = json.loads((runs["dense"][0].path / "figures" / "index.json").read_text())[0]
        assert rec["height"] > dense_rec["height"] * 1.3
    assert two is None or two["height"] < 300


@pytest.mark.parametrize("kind", list(KINDS))
def test_report_html_is_self_contained(runs, kind):
    run, _, report = runs[kind]
    text = report.read_text()
    index = json.loads((run.path / "figures" / "index.json").read_text())
    srcs = re.findall(r'<img src="([^"]*)"', text)
    assert len(srcs) == len(index)
    assert all(s.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for s in srcs)
    assert "http://" not in text and "https://" not in text and "@import" not in text
    # the only scripts: the string table (JSON, never run) and the inline language switch; nothing loaded
    assert re.findall(r"<script[^>]*>", text) == ['<script type="application/json" id="aelab-i18n">', "<script>"]
    s = run.summary
    # BCE is shown with its floor, the distance to it, MSE and PSNR
    for label in ("test BCE", "BCE floor", "BCE above floor", "test MSE", "test PSNR"):
        assert label in text
    assert f"{s['test_bce_floor']:.4f}" in text
    assert "Layer (type)" in text and f"{s['parameters']:,}" in text
    assert "--nll 5000" not in text  # no NLL card: no family here declares a likelihood (tests/test_vae.py: one does)


def test_figure_pixel_size_is_what_figure_pixels_says():
    fig = F.learning_curves(
        [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4}, {"epoch": 2, "train_loss": 0.3, "val_loss": 0.35}],
        [{"step": i + 1, "loss": 1 / (i + 1)} for i in range(60)],
        "bce",
        floor=0.1,
    )
    assert png_size(F.png_bytes(fig)) == F.figure_pixels(fig) == (1100, 380)
    rows = F.image_rows([np.zeros((10, 1, 28, 28)), np.ones((10, 1, 28, 28))], ["a", "b"])
    assert png_size(F.png_bytes(rows)) == F.figure_pixels(rows)


def test_weight_tiles_share_one_symmetric_scale():
    w = np.random.default_rng(0).normal(size=(6, 1, 5, 5)).astype(np.float32)
    w[0, 0, 0, 0] = 9.0
    fig = F.weight_tiles(w, "w")
    im = fig.axes[0].images[0]
    assert im.get_clim() == (-9.0, 9.0)


def test_sample_indices_take_the_first_of_each_class():
    y = np.array([3, 3, 1, 0, 1, 2, 9, 4, 5, 6, 7, 8, 0])
    assert C.sample_indices(y, 10).tolist() == [3, 2, 5, 0, 7, 8, 9, 10, 11, 6]
    assert C.sample_indices(np.array([1, 1, 0, 1]), 3).tolist() == [2, 0, 1]
    assert C.sample_indices(None, 4).tolist() == [0, 1, 2, 3]


def test_latent_projections():
    z = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    z[:, 0] *= 10
    pts, idx, note = C.project_2d(z, "pca")
    assert pts.shape == (50, 2) and "%" in note
    assert abs(np.corrcoef(pts[:, 0], z[:, 0])[0, 1]) > 0.95  # the first axis follows the widest direction
    two = z[:, :2]
    assert np.array_equal(C.project_2d(two, "pca")[0], two)
    pts, idx, _ = C.project_2d(z, "tsne", max_points=30)
    assert pts.shape == (30, 2) and len(idx) == 30
    with pytest.raises(ConfigError, match="latent: must be one of pca, tsne, umap; got 'lda'"):
        C.project_2d(z, "lda")


def test_comparison_page(runs, tmp_path):
    paths = [runs[k][0].path for k in KINDS]
    text = write_comparison(paths, tmp_path / "cmp.html", title="three kinds").read_text()
    assert "<h1>three kinds</h1>" in text
    assert "model.name" in text and "model.code_dim" not in text  # only keys that differ
    assert "probe_accuracy" in text and "0.8750" in text  # probe.json becomes columns
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]*)"', text)
    assert len(imgs) == 2  # overlaid curves + reconstructions of every run
    import base64

    w, h = png_size(base64.b64decode(imgs[1]))
    dense_rec = json.loads((paths[0] / "figures" / "index.json").read_text())[0]
    assert h > 2.2 * dense_rec["height"]  # 5 rows: original, 3 runs, the denoising run's noisy input


def test_probe_json_and_model_figures_reach_the_run_report(runs):
    run, _, report = runs["dense"]
    text = report.read_text()
    assert "probe accuracy" in text and "0.8750" in text
    assert "samples from the prior" in text
    assert png_size((run.path / "figures" / "prior_samples.png").read_bytes()) == (400, 300)


def test_progress_hook_resumes_where_the_checkpoint_left(tmp_path, base_cfg):
    from aelab.models import build_model

    model = build_model(base_cfg, (1, 28, 28))
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    h = ReconstructionProgress(tmp_path, x)
    for e in (1, 2, 3):
        h.record(e, model)
    h2 = ReconstructionProgress(tmp_path, x, resume=True)  # the checkpoint held epoch 2: epoch 3 is redone
    h2.record(3, model)
    h2.record(4, model)
    p = load_progress(tmp_path / PROGRESS_FILE)
    assert p["epochs"].tolist() == [1, 2, 3, 4] and p["frames"].shape == (4, 4, 1, 28, 28)
    fresh = ReconstructionProgress(tmp_path, x)  # a new run in the same folder starts over
    fresh.record(1, model)
    assert load_progress(tmp_path / PROGRESS_FILE)["epochs"].tolist() == [1]


def test_tensorboard_events_read_back(tmp_path, base_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    splits = load_data(base_cfg.data)
    cfg = base_cfg.replace(["train.epochs=2"])
    x = splits.x_test[C.sample_indices(splits.y_test)]
    tb = TensorBoardLogger(tmp_path / "tb", x)
    run = train(cfg, tmp_path / "r", data=splits, hooks=[tb], log=lambda s: None)
    tb.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = acc.Tags()
    assert {"train_loss", "val_loss", "val_mse", "val_psnr"} <= set(tags["scalars"])
    vals = acc.Scalars("val_loss")
    assert [v.step for v in vals] == [1, 2]
    # the same numbers logged twice (float32 event vs 8-digit CSV): 1e-6 holds whatever precision trained them
    assert [v.value for v in vals] == pytest.approx([r["val_loss"] for r in run.metrics], rel=1e-6)
    imgs = acc.Images("reconstructions")
    assert len(imgs) == 2 and imgs[0].width == 10 * 30 + 2 and imgs[0].height == 2 * 30 + 2


def test_cli_train_writes_report_unless_told_not_to(base_cfg, tmp_path, capsys):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(base_cfg.replace(["train.epochs=1"]).to_yaml())
    assert main(["train", str(cfg_file), "--out", str(tmp_path / "a"), "--no-report"]) == 0
    assert not (tmp_path / "a" / "report.html").exists() and not (tmp_path / "a" / "figures").exists()
    assert main(["train", str(cfg_file), "--out", str(tmp_path / "b"), "--tensorboard"]) == 0
    assert (tmp_path / "b" / "report.html").is_file() and (tmp_path / "b" / "figures" / "progress.gif").is_file()
    assert any((tmp_path / "b" / "tensorboard").iterdir())
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "ab.html")]) == 0
    assert (tmp_path / "ab.html").is_file()
    assert "comparison written to" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "no/such/run"], "no/such/run: no such run directory"),
        (["report", "{run}", "-o", "{tmp}/x.txt"], "--output: must end in .html"),
        (["report", "{run}", "--latent", "lda"], None),
    ],
)
def test_cli_report_errors_are_one_line(runs, tmp_path, capsys, argv, message):
    argv = [a.format(run=runs["dense"][0].path, tmp=tmp_path) for a in argv]
    if message is None:  # argparse refuses the choice itself
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        return
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.txt").exists()
