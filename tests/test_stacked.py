"""Stacked training (train/stacked.py, runner.train_stacked): a member equals the same config trained alone,
folders as runner.train writes them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from aelab import Config
from aelab.cli import main

# fp32 pinned: bf16 autocast rounds the batched and the single matmuls differently. In fp32 the only
# difference is the summation order of bmm against mm; after 2 epochs of Adam the weights agree to ~1e-6.
TOL = 2e-5


def _cfg(idx_dir, **train):
    return Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir), "limit": 256, "test_limit": 64},
            "model": {"name": "dense", "hidden": [32], "code_dim": 8},
            "train": {"epochs": 2, "batch_size": 64, "precision": "fp32", "threads": 1, **train},
        }
    )


def _same_run(a, b):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=TOL, rtol=0), (k, (wa[k] - wb[k]).abs().max())
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    for k in ("test_loss", "test_mse", "final_train_loss"):
        assert sa[k] == pytest.approx(sb[k], abs=TOL), k
    assert (a / "metrics.csv").read_text().count("\n") == (b / "metrics.csv").read_text().count("\n")
    assert (a / "config.yaml").read_text() == (b / "config.yaml").read_text()
    # the summary a run trained alone gets (device, precision, cpu, data-fit metrics, latent health), plus the stack size
    assert set(sa) == set(sb) | {"stacked_members"}
    for k in ("device", "precision", "cpu", "epochs"):
        assert sa[k] == sb[k], k
    assert sa["latent_health"].keys() == sb["latent_health"].keys()  # its values agree to float rounding


@pytest.mark.parametrize("vary", ["seed", "lr_noise", "l1"])
def test_a_stacked_member_equals_the_same_config_trained_alone(idx_dir, tmp_path, vary):
    from aelab.runner import train, train_stacked

    if vary == "seed":
        cfgs = [_cfg(idx_dir, seed=s) for s in (0, 1, 2)]
    elif vary == "l1":  # a code penalty: per member, vmapped over the stacked codes
        cfgs = [_cfg(idx_dir, seed=s).replace(["model.l1=0.001"]) for s in (5, 6)]
    else:  # a grid that keeps the architecture: own lr, own noise, own schedule
        cfgs = [
            _cfg(idx_dir, seed=3, lr=3e-3),
            _cfg(idx_dir, seed=4, schedule="cosine").replace(["data.noise=[{kind: gaussian, amount: 0.3}]"]),
        ]
    dirs = [tmp_path / f"stack{i}" for i in range(len(cfgs))]
    runs = train_stacked(cfgs, dirs, log=lambda s: None)
    assert [r.summary["stacked_members"] for r in runs] == [len(cfgs)] * len(cfgs)
    for i, cfg in enumerate(cfgs):
        train(cfg, tmp_path / f"alone{i}", log=lambda s: None)
        _same_run(dirs[i], tmp_path / f"alone{i}")
    # different seeds really are different runs
    w0, w1 = load_file(str(dirs[0] / "model.safetensors")), load_file(str(dirs[1] / "model.safetensors"))
    assert not torch.allclose(w0["encoder.1.weight"], w1["encoder.1.weight"])


def test_early_stopping_member_leaves_the_stack(idx_dir, tmp_path):
    from aelab.runner import train, train_stacked

    cfgs = [_cfg(idx_dir, seed=0, epochs=4), _cfg(idx_dir, seed=1, epochs=2)]
    train_stacked(cfgs, [tmp_path / "a", tmp_path / "b"], log=lambda s: None)
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["epochs"] == 4
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["epochs"] == 2
    train(cfgs[0], tmp_path / "alone", log=lambda s: None)
    _same_run(tmp_path / "a", tmp_path / "alone")


def test_why_not_stackable_names_the_reason(idx_dir):
    from aelab.train.stacked import why_not_stackable

    base = _cfg(idx_dir)
    assert why_not_stackable([base, base.replace(["train.seed=1", "train.lr=0.01"])]) is None
    assert "differ" in why_not_stackable([base, base.replace(["model.code_dim=4"])])
    assert "dropout" in why_not_stackable([base.replace(["model.dropout=0.1"])] * 2)
    assert "model vae-dense" in why_not_stackable([base.replace(["model.name=vae-dense"])] * 2)


def test_sweep_seeds_trains_one_stack_and_writes_every_member(idx_dir, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"data: {{name: mnist, path: {idx_dir}, limit: 128, test_limit: 32}}\n"
        "model: {name: dense, code_dim: 4}\ntrain: {epochs: 1, batch_size: 32, precision: fp32}\n"
    )
    out = tmp_path / "sw"
    assert main(["sweep", str(cfg), "--seeds", "3", "--grid", "train.lr=0.001,0.003", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "stacking 6 runs" in log
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == [f"lr-{lr}_seed-{s}" for lr in ("0.001", "0.003") for s in (0, 1, 2)]
    for d in dirs:
        assert (out / d / "summary.json").is_file() and (out / d / "model.safetensors").is_file()
    html = (out / "compare.html").read_text()
    assert "95%" in html  # several seeds per setting: mean and interval
    assert main(["sweep", str(cfg), "--seeds", "3", "--grid", "train.lr=0.001,0.003", "--out", str(out)]) == 0
    assert "6 finished already, 0 to train" in capsys.readouterr().out
    # --no-stack trains the same members one by one
    assert main(["sweep", str(cfg), "--seeds", "2", "--no-stack", "--out", str(tmp_path / "seq")]) == 0
    assert "stacking" not in capsys.readouterr().out


@pytest.mark.parametrize("stack", [True, False])
def test_a_sweep_loads_its_data_once(idx_dir, tmp_path, monkeypatch, stack):
    """Training (stacked, or one run after another) and the comparison page share one load of the data."""
    import aelab.data
    import aelab.runner

    real, calls = aelab.data.load_data, []

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(aelab.data, "load_data", counting)
    monkeypatch.setattr(aelab.runner, "load_data", counting)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"data: {{name: mnist, path: {idx_dir}, limit: 128, test_limit: 32}}\n"
        "model: {name: dense, code_dim: 4}\ntrain: {epochs: 1, batch_size: 32, precision: fp32}\n"
    )
    args = ["sweep", str(cfg), "--seeds", "2", "--out", str(tmp_path / "sw")] + ([] if stack else ["--no-stack"])
    assert main(args) == 0
    assert len(calls) == 1
    assert "Reconstructions" in (tmp_path / "sw" / "compare.html").read_text()


def test_data_key_follows_what_load_data_is_given():
    """Runs share loaded data only where load_data gets the same arguments: noise is added per batch and
    does not count; the unit-range rule (a sigmoid output trained on BCE, not on MSE) does."""
    from aelab.run import data_key

    base = Config.from_dict({"data": {"name": "mnist", "limit": 100}, "model": {"name": "dense"}})
    noisy = base.replace(["data.noise=[{kind: gaussian, amount: 0.3}]"])
    mse = base.replace(["train.loss=mse"])
    assert data_key(noisy) == data_key(base)
    assert data_key(mse) != data_key(base)  # same output activation, another unit-range rule
    assert data_key(base.replace(["data.limit=200"])) != data_key(base)


def test_sweep_needs_a_grid_or_seeds(tmp_path, capsys):
    assert main(["sweep", "seed004-dense32-adam", "--out", str(tmp_path / "x")]) == 2
    assert "--grid" in capsys.readouterr().err


def test_seed_groups_and_interval():
    from aelab.report.seeds import mean_interval, seed_groups

    m, h = mean_interval([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.3027 / 3**0.5, rel=1e-4)  # t(0.975, 2 dof) * sd / sqrt(n)
    a = {"train": {"seed": 0, "lr": 1e-3}, "name": "x"}
    cfgs = [a, {**a, "train": {"seed": 1, "lr": 1e-3}}, {**a, "train": {"seed": 0, "lr": 3e-3}}]
    assert seed_groups(cfgs) == [[0, 1]]


def test_t_quantile_is_scipys_and_the_sweep_page_needs_no_scipy():
    """aelab's own Student-t quantile (integer dof) against scipy's, and the page's module without scipy."""
    import subprocess
    import sys

    from scipy.special import stdtrit

    from aelab.report.seeds import t_quantile

    for df in [*range(1, 40), 99, 100, 1000]:
        for level in (0.5, 0.9, 0.95, 0.99, 0.999):
            assert t_quantile(df, level) == pytest.approx(float(stdtrit(df, 0.5 + level / 2)), rel=1e-11)
    for bad in ((0, 0.95), (3, 1.0), (3, 0.0)):
        with pytest.raises(ValueError):
            t_quantile(*bad)
    code = "import sys, aelab.report.seeds as s; s.mean_interval([1.0, 2.0]); print('scipy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_a_stacked_member_in_bf16_through_the_c_kernels_equals_it_trained_alone(idx_dir, tmp_path):
    """The written-out stack (batched GEMMs, each member's loss, activation and Adam kernels on its slice)
    against each member's own written-out step: the same arithmetic in bf16, so the same weights."""
    from aelab.runner import train, train_stacked
    from aelab.train import native

    if native.load() is None:
        pytest.skip(f"aelab's C kernels are not available here: {native.why_not()}")
    cfgs = [_cfg(idx_dir, seed=s, precision="bf16-mixed") for s in (0, 1)]
    runs = train_stacked(cfgs, [tmp_path / "s0", tmp_path / "s1"], log=lambda s: None)
    assert runs[1].summary["train_step"] == "stacked, written-out dense step, aelab C kernels"
    alone = train(cfgs[1], tmp_path / "alone", log=lambda s: None)
    assert alone.summary["train_step"] == "written-out dense step, aelab C kernels"
    wa, wb = (
        load_file(str(tmp_path / "s1" / "model.safetensors")),
        load_file(str(tmp_path / "alone" / "model.safetensors")),
    )
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6, rtol=0), (k, (wa[k] - wb[k]).abs().max())


def test_a_stacked_conv_member_equals_the_same_config_trained_alone(idx_dir, tmp_path):
    """Conv models go through vmap (dense ones through written-out batched GEMMs)."""
    from aelab.runner import train, train_stacked

    cfgs = [_cfg(idx_dir, seed=s, epochs=1).replace(["model.name=conv", "model.channels=[4,2]"]) for s in (0, 1)]
    train_stacked(cfgs, [tmp_path / "s0", tmp_path / "s1"], log=lambda s: None)
    train(cfgs[1], tmp_path / "alone", log=lambda s: None)
    _same_run(tmp_path / "s1", tmp_path / "alone")


def test_stacked_folders_are_locked_and_not_overwritten(idx_dir, tmp_path):
    from aelab import RunError, runlock
    from aelab.runner import train_stacked

    cfgs = [_cfg(idx_dir, seed=s, epochs=1) for s in (0, 1)]
    dirs = [tmp_path / "a", tmp_path / "b"]
    dirs[1].mkdir()
    with runlock.reading(dirs[1]), pytest.raises(RunError, match="cannot also write"):  # a reader holds b
        train_stacked(cfgs, dirs, log=lambda s: None)
    assert not (dirs[0] / "config.yaml").exists()  # refused before anything was written
    train_stacked(cfgs, dirs, log=lambda s: None)
    with pytest.raises(RunError, match="already holds a run"):
        train_stacked(cfgs, dirs, log=lambda s: None)
    train_stacked(cfgs, dirs, overwrite=True, log=lambda s: None)
