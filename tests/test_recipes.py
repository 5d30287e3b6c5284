"""Recipes, suites, sweeps, the identity page and the results script, on tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aelab.cli import main
from aelab.recipes import HERE, is_suite, list_recipes, suite_members

ALL = sorted(f.stem for f in HERE.glob("*.yaml"))
SINGLE = [n for n in ALL if not is_suite(n)]
TINY = ["data.limit=64", "data.test_limit=32", "train.epochs=1", "train.batch_size=32", "data.val_fraction=0.0"]


def tiny_sets(idx_dir: Path, extra=()) -> list[str]:
    out = []
    for s in [f"data.path={idx_dir}", *TINY, *extra]:
        out += ["--set", s]
    return out


def test_every_recipe_file_is_listed_with_a_description(capsys):
    assert main(["recipes"]) == 0
    text = capsys.readouterr().out
    for name in ALL:
        assert name in text
    assert all(list_recipes()[n] for n in ALL), "every recipe needs a one-line description"


@pytest.mark.parametrize("name", SINGLE)
def test_recipe_trains_one_epoch_on_a_small_subset(name, idx_dir, tmp_path):
    """CI keeps every recipe alive: one epoch on 64 synthetic images (IDX-format data); others need their real data."""
    from aelab.config import Config
    from aelab.data.fetch import locate

    cfg = Config.from_yaml(HERE / f"{name}.yaml")
    extra = []
    if cfg.data.name == "npy":  # sae-codes: another run's codes; synthetic (N, 32) ReLU-like codes stand in
        rng = np.random.default_rng(0)
        for part, n in (("train", 64), ("test", 32)):
            np.save(tmp_path / f"{part}.npy", np.maximum(rng.normal(size=(n, 32)), 0).astype(np.float32))
        paths = [f"data.path={tmp_path / 'train.npy'}", f"data.test_path={tmp_path / 'test.npy'}"]
        sets = [a for s in [*TINY, *paths] for a in ("--set", s)]
    elif cfg.data.name not in ("mnist", "fashion-mnist"):
        if locate(cfg.data.name) is None:
            pytest.skip(f"{cfg.data.name} not installed here")
        sets = [a for s in TINY for a in ("--set", s)]
    else:
        sets = tiny_sets(idx_dir, extra)
    out = tmp_path / name
    assert main(["train", name, "--out", str(out), "--no-report", *sets]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["epochs"] == 1 and np.isfinite(s["test_loss"])


def test_suite_members_resolve_and_seed003_has_seven_cases():
    name, desc, members = suite_members("seed003")
    assert name == "seed003" and desc
    assert len(members) == 7 and len({m.name for m in members}) == 7


def test_suite_runs_every_member_then_compares_and_skips_on_rerun(idx_dir, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["train", "seed003", "--out", str(out), "--no-report", *tiny_sets(idx_dir, ["model.code_dim=16"])]
    assert main(args) == 0
    members = [m.name for m in suite_members("seed003")[2]]
    for m in members:
        assert (out / m / "summary.json").is_file()
    assert (out / "compare.html").is_file()
    stamp = (out / members[0] / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "7 finished already, 0 to train" in capsys.readouterr().out
    assert (out / members[0] / "summary.json").stat().st_mtime_ns == stamp


def test_bad_suite_is_one_line_error(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("name: bad\nsuite: [no-such-recipe]\n")
    assert main(["train", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no-such-recipe" in err and err.count("\n") == 1


def test_sweep_runs_the_product_skips_finished_and_refuses_a_foreign_folder(idx_dir, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"data: {{name: mnist, path: {idx_dir}, limit: 64, test_limit: 32}}\n"
        "model: {name: dense, code_dim: 4}\ntrain: {epochs: 1, batch_size: 32}\n"
    )
    out = tmp_path / "sw"
    args = [
        "sweep",
        str(cfg),
        "--grid",
        "model.code_dim=2,8",
        "--grid",
        "train.optimizer=adam,adadelta",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == [
        "code_dim-2_optimizer-adadelta",
        "code_dim-2_optimizer-adam",
        "code_dim-8_optimizer-adadelta",
        "code_dim-8_optimizer-adam",
    ]
    assert (out / "compare.html").is_file()
    s = json.loads((out / "code_dim-8_optimizer-adam" / "summary.json").read_text())
    assert s["code_shape"] == [8]
    capsys.readouterr()
    assert main(args) == 0
    assert "4 finished already, 0 to train" in capsys.readouterr().out
    # the same folders with another base config: refused before anything trains
    assert main([*args, "--set", "train.batch_size=16"]) == 2
    assert "different config" in capsys.readouterr().err


def test_sweep_resumes_a_half_finished_run(idx_dir, tmp_path):
    from aelab import train
    from aelab.config import Config
    from aelab.sweep import PlannedRun, run_all, run_state

    cfg = Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir), "limit": 64, "test_limit": 32},
            "model": {"name": "dense", "code_dim": 4},
            "train": {"epochs": 2, "batch_size": 32},
        }
    )
    p = tmp_path / "r"
    train(cfg.replace(["train.epochs=1"]), p, log=lambda s: None)
    (p / "summary.json").unlink()  # as if killed after the checkpoint of epoch 1
    import yaml

    d = yaml.safe_load((p / "config.yaml").read_text())
    d["train"]["epochs"] = 2
    (p / "config.yaml").write_text(yaml.safe_dump(d))
    plan = PlannedRun("r", cfg, p)
    assert run_state(plan) == "partial"
    logs = []
    run_all([plan], log=logs.append)
    assert any("resum" in s for s in logs)
    assert json.loads((p / "summary.json").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    "specs,msg",
    [
        (["model.code_dim"], "KEY=V1,V2"),
        (["model.code_dim=2,,8"], "non-empty"),
        (["model.code_dim=2,2"], "repeats"),
        (["a=1", "a=2"], "given twice"),
        ([], "at least one"),
    ],
)
def test_parse_grid_errors(specs, msg):
    from aelab.errors import ConfigError
    from aelab.sweep import parse_grid

    with pytest.raises(ConfigError, match=msg):
        parse_grid(specs)


def test_grid_names_and_bracketed_values():
    from aelab.sweep import grid_runs, parse_grid

    g = parse_grid(["model.hidden=[128,64],[32]", "data.name=mnist", "model.name=dense"])
    assert g["model.hidden"] == ["[128,64]", "[32]"]
    runs = grid_runs(g)
    assert runs[0] == (
        "hidden-128_64_data.name-mnist_model.name-dense",
        ["model.hidden=[128,64]", "data.name=mnist", "model.name=dense"],
    )


def test_sweep_bad_value_fails_before_training(tmp_path, capsys):
    assert main(["sweep", "seed004-dense32-adam", "--grid", "model.code_dim=8,0", "--out", str(tmp_path / "x")]) == 2
    assert "code_dim" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_pca_curve_is_exact_at_full_rank_and_falls_with_k():
    from aelab.explain_identity import pca_mse_curve

    rng = np.random.default_rng(0)
    x = rng.random((300, 20)).astype(np.float32)
    c = pca_mse_curve(x, x[:50], [1, 5, 10, 20])
    assert c[1] > c[5] > c[10] > c[20] and c[20] < 1e-10


def test_grey_split_puts_the_error_where_it_is():
    from aelab.explain_identity import grey_mse_split

    x = np.array([0.0, 1.0, 0.5, 0.5])
    r = np.array([0.0, 1.0, 0.7, 0.3])
    s = grey_mse_split(x, r)
    assert (
        s["mse_binary"] == 0 and s["error_share_on_grey"] == pytest.approx(1.0) and s["mse_grey"] == pytest.approx(0.04)
    )


def test_explain_identity_writes_the_page(idx_dir, tmp_path, capsys):
    out = tmp_path / "id"
    assert (
        main(
            [
                "explain-identity",
                "--out",
                str(out),
                "--runs",
                str(tmp_path / "runs"),
                "--limit",
                "128",
                "--test-limit",
                "32",
                "--epochs",
                "1",
                "--long-epochs",
                "2",
                "--code-dims",
                "8",
                "--data-path",
                str(idx_dir),
                str(idx_dir),
            ]
        )
        == 0
    )
    page = (out / "identity.md").read_text()
    res = json.loads((out / "identity.json").read_text())
    for ds in ("mnist", "fashion-mnist"):
        r = res["datasets"][ds]
        assert 0 < r["bce_floor_test"] < 0.7 and 0 <= r["grey_share_test"] <= 1
        assert set(r["ae"]) == {"8"} and len(r["variants"]) == 5
        assert r["pca_mse"]["784"] < 1e-6
    assert "BCE floor" in page and "mse_vs_code.png" in page
    assert (out / "mse_vs_code.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "reconstructions.png").is_file()


def test_explain_identity_bad_dims_is_one_line(capsys):
    assert main(["explain-identity", "--code-dims", "8,x"]) == 2
    assert "--code-dims" in capsys.readouterr().err


def test_make_results_writes_a_row_per_recipe(idx_dir, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_results", Path(__file__).parents[1] / "scripts" / "make_results.py"
    )
    mr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mr)
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "seed004-dense32-adam",
                "--out",
                str(runs / "seed004-dense32-adam"),
                "--no-report",
                *tiny_sets(idx_dir),
            ]
        )
        == 0
    )
    out = tmp_path / "R.md"
    assert mr.main(["--runs", str(runs), "--out", str(out)]) == 0
    text = out.read_text()
    for name in SINGLE:
        assert f"| {name} |" in text
    row = next(line for line in text.splitlines() if line.startswith("| seed004-dense32-adam |"))
    assert "test_bce 0.0920" in row and "1 / 50" in row and "--set train.epochs=1" in row
