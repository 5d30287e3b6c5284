"""The CLI end to end, in-process (main(argv) returns the exit code)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from aelab.cli import main


@pytest.fixture
def trained(tiny_cfg, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(tiny_cfg.to_yaml())
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--set", "train.epochs=1", "--no-report"]) == 0
    return out


def test_train_eval(trained, capsys):
    capsys.readouterr()
    assert main(["eval", str(trained)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["samples"] == 100 and res["test_mse"] > 0 and "test_bce_floor" in res


def test_encode_decode_round_trip(trained, tmp_path, idx_dir):
    from aelab.data.idx import read_idx

    imgs = read_idx(idx_dir / "t10k-images-idx3-ubyte.gz")[:7]  # uint8 (N, H, W)
    np.save(tmp_path / "x.npy", imgs)
    assert main(["encode", str(trained), str(tmp_path / "x.npy"), "-o", str(tmp_path / "z.npy")]) == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (7, 16) and z.dtype == np.float32
    # float (N, C, H, W) and flat (N, D) give the same codes
    np.save(tmp_path / "xf.npy", (imgs / 255.0).astype(np.float32).reshape(7, 784))
    assert main(["encode", str(trained), str(tmp_path / "xf.npy"), "-o", str(tmp_path / "z2.npy")]) == 0
    assert np.allclose(np.load(tmp_path / "z2.npy"), z, atol=1e-6)  # same weights, fp32 encode in any train.precision
    assert main(["decode", str(trained), str(tmp_path / "z.npy"), "-o", str(tmp_path / "r.npy")]) == 0
    assert np.load(tmp_path / "r.npy").shape == (7, 1, 28, 28)
    assert main(["decode", str(trained), str(tmp_path / "z.npy"), "-o", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_encode_png_and_folder(trained, tmp_path):
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 30 * i, np.uint8)).save(d / f"{i}.png")
    assert main(["encode", str(trained), str(d), "-o", str(tmp_path / "z.npy")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (3, 16)
    assert main(["encode", str(trained), str(d / "1.png"), "-o", str(tmp_path / "z1.npy")]) == 0
    assert np.load(tmp_path / "z1.npy").shape == (1, 16)


@pytest.mark.parametrize(
    "argv_tail, match",
    [
        (["encode", "{run}", "{tmp}/wrong.npy", "-o", "{tmp}/z.npy"], "do not fit the model's input"),
        (["decode", "{run}", "{tmp}/badcode.npy", "-o", "{tmp}/r.npy"], "this run's code is"),
        (["eval", "{tmp}"], "not an aelab run"),
        (["train", "{tmp}/nope.yaml"], "neither a config file nor a recipe"),
        (["encode", "{run}", "{tmp}/missing.npy", "-o", "{tmp}/z.npy"], "file not found"),
    ],
)
def test_bad_input_one_line_exit_2(trained, tmp_path, capsys, argv_tail, match):
    np.save(tmp_path / "wrong.npy", np.zeros((2, 10, 10), np.uint8))
    np.save(tmp_path / "badcode.npy", np.zeros((2, 5), np.float32))
    argv = [a.format(run=trained, tmp=tmp_path) for a in argv_tail]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "z.npy").exists() and not (tmp_path / "r.npy").exists()


def test_unknown_key_from_cli(tiny_cfg, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(tiny_cfg.to_yaml())
    assert main(["train", str(cfg), "--out", str(tmp_path / "x"), "--set", "model.code_dimm=3"]) == 2
    assert "did you mean 'model.code_dim'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_data_list_and_models(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist" in out and "cifar10" in out
    assert main(["models"]) == 0
    assert "dense" in capsys.readouterr().out


def test_summary_from_config(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("model: {name: conv}\n")
    assert main(["summary", str(f)]) == 0
    assert "Total params: 4,385" in capsys.readouterr().out


def test_commands_that_draw_nothing_do_not_import_matplotlib():
    """The command line and `aelab train --no-report`'s hooks leave the figures (matplotlib, 0.4-0.7 s of every
    command's start) to the commands that draw."""
    import subprocess

    code = "import sys, aelab.cli, aelab.report.hooks; print(sorted(m for m in sys.modules if 'matplotlib' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import aelab.report; aelab.report.write_run_report; import sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"  # asked for, the report's functions come as before


def test_the_program_freezes_what_the_imports_made(monkeypatch, capsys):
    """`aelab` and `python -m aelab` run ``program``: ``main`` with the import-time objects frozen, so no full
    garbage collection (the one at exit included, 0.35-0.45 s) walks them; ``main`` itself leaves gc alone."""
    import gc
    from importlib.metadata import entry_points

    from aelab.cli import program

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "aelab"]
    assert script.value == "aelab.cli:program"
    assert "program()" in (Path(__file__).parents[1] / "src/aelab/__main__.py").read_text()
    gc.unfreeze()
    monkeypatch.setattr(sys, "argv", ["aelab", "models"])
    try:
        assert main(["models"]) == 0 and gc.get_freeze_count() == 0
        assert program() == 0 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert "dense" in capsys.readouterr().out
