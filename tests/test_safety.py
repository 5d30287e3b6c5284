"""Safe loading: a crafted pickle in a data folder or a run folder never runs, and every refusal is one line.

Each test plants a pickle whose unpickling would create ``marker``; the test checks the
command failed cleanly (exit 2, one line, no traceback) and that the marker does not exist.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from aelab.cli import main


class Evil:
    """Unpickling this runs a shell command: what a malicious file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps({"data": Evil(marker)})


def _evil_npy(marker: Path) -> bytes:
    buf = io.BytesIO()
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = Evil(marker), Evil(marker)
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _fails_cleanly(argv, capsys, match: str, marker: Path) -> str:
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not marker.exists(), "the pickle ran"
    return err


@pytest.fixture
def trained(tiny_cfg, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(tiny_cfg.replace(["train.epochs=1"]).to_yaml())
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-report"]) == 0
    return tmp_path / "run"


def _npy_cfg(tmp_path: Path, data: Path, name: str = "npy") -> Path:
    f = tmp_path / "npy.yaml"
    f.write_text(f"data: {{name: {name}, path: '{data}'}}\nmodel: {{name: dense, code_dim: 4}}\ntrain: {{epochs: 1}}\n")
    return f


@pytest.mark.parametrize("kind", ["object.npy", "pickle-named.npz", "object-inside.npz", "pickle-named.npy"])
def test_crafted_data_file_does_not_execute(tmp_path, capsys, kind):
    marker = tmp_path / "pwned"
    name = kind.split("-")[-1] if "-" in kind else kind
    f = tmp_path / f"data.{name.split('.')[-1]}"
    if kind == "object.npy":
        f.write_bytes(_evil_npy(marker))
    elif kind.startswith("pickle-named"):
        f.write_bytes(_evil_pickle(marker))
    else:
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("x.npy", _evil_npy(marker))
    _fails_cleanly(
        ["train", _npy_cfg(tmp_path, f), "--out", tmp_path / "r", "--no-report"], capsys, "cannot read", marker
    )
    assert not (tmp_path / "r").exists()


def test_crafted_cifar_batch_does_not_execute(tmp_path, capsys):
    marker = tmp_path / "pwned"
    d = tmp_path / "cifar"
    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / name).write_bytes(pickle.dumps({b"data": Evil(marker), b"labels": [0]}))
    _fails_cleanly(
        ["train", _npy_cfg(tmp_path, d, "cifar10"), "--out", tmp_path / "r", "--no-report"],
        capsys,
        "is not allowed in a CIFAR batch",
        marker,
    )


def test_crafted_encode_input_does_not_execute(trained, tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "x.npy").write_bytes(_evil_npy(marker))
    _fails_cleanly(["encode", trained, tmp_path / "x.npy", "-o", tmp_path / "z.npy"], capsys, "cannot read", marker)
    assert not (tmp_path / "z.npy").exists()


@pytest.mark.parametrize(
    "target, command, match",
    [
        ("model.safetensors", "eval", "not a readable safetensors file"),
        ("scaler.safetensors", "eval", "not a readable safetensors file"),
        ("checkpoint/state-00001.safetensors", "resume", "checkpoint unreadable"),
        ("checkpoint/state-00001.json", "resume", "checkpoint unreadable"),
        ("checkpoint/latest.json", "resume", "checkpoint unreadable"),
    ],
)
def test_pickle_swapped_into_a_run_does_not_execute(trained, tmp_path, capsys, target, command, match):
    marker = tmp_path / "pwned"
    (trained / target).write_bytes(_evil_pickle(marker))
    (trained / "summary.json").unlink()  # an unfinished run, so --resume reads the checkpoint
    argv = ["eval", trained] if command == "eval" else ["train", "--resume", trained, "--no-report"]
    _fails_cleanly(argv, capsys, match, marker)


def test_yaml_with_python_tags_is_refused(trained, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    (tmp_path / "evil.yaml").write_text(evil)
    _fails_cleanly(["train", tmp_path / "evil.yaml", "--out", tmp_path / "r2"], capsys, "not valid YAML", marker)
    (trained / "config.yaml").write_text(evil)
    _fails_cleanly(["eval", trained], capsys, "not valid YAML", marker)


def test_weights_that_do_not_match_the_config_name_the_tensor(trained, capsys):
    from safetensors.torch import load_file, save_file

    w = load_file(trained / "model.safetensors")
    dropped = sorted(w)[-1]
    del w[dropped]
    save_file(
        w, trained / "model.safetensors", metadata={"format": "aelab", "input_shape": "1,28,28", "model": "dense"}
    )
    _fails_cleanly(["eval", trained], capsys, f"tensor '{dropped}' is missing", Path("/nonexistent/marker"))
