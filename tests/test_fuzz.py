"""Property-based tests (Hypothesis): generated configs, --set strings and damaged data files go through
the CLI's load paths in-process; every case ends in success or one line on stderr with exit code 2,
never a traceback and never a partial file.

`make test` runs the small "aelab-ci" profile (deterministic, conftest.py); for a long hunt:
    .venv/bin/python -m pytest tests/test_fuzz.py --hypothesis-profile=aelab-fuzz --hypothesis-show-statistics
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aelab.cli import main
from aelab.config import Config
from aelab.errors import ConfigError

pytestmark = pytest.mark.fuzz
SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _keys() -> list[str]:
    """Every dotted config key (data.noise items as data.noise)."""
    out = []
    for section, d in Config().to_dict().items():
        if isinstance(d, dict):
            out += [f"{section}.{k}" for k in d]
        else:
            out.append(section)
    return out


# data.path is left out: a generated "/" with data.name=folder would scan the whole disk for images
KEYS = [k for k in _keys() if k not in ("data.path", "data.test_path")]
# values a YAML --set or config file can carry; numbers kept small enough that any model built from them fits in
# memory (a conv of 300 x 300 channels and kernel 299 would ask for 32 GB)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 64),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "1e6",
            "1e-3",
            "nan",
            "-inf",
            "auto",
            "cuda",
            "fp16-mixed",
            "standard",
            "relu",
            "identity",
            "vae-dense",
            "conv",
            "npy",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["kind", "amount", "x", "clip"]), inner, max_size=3),
    ),
    max_leaves=6,
)


def _assert_one_line_or_success(rc: int, err: str, cmd: str) -> None:
    assert "Traceback" not in err, err
    if rc == 0:
        return
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"aelab {cmd}: error: "), err


@settings(max_examples=settings.default.max_examples * 4, **SETTINGS)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_config_values_are_accepted_or_refused_naming_a_key(capsys, flat):
    """A generated config file through `aelab summary FILE` (load, validate, build the model) and Config.from_dict."""
    d: dict = {}
    for k, v in flat.items():
        if "." in k:
            section, key = k.split(".", 1)
            d.setdefault(section, {})[key] = v
        else:
            d[k] = v
    try:
        Config.from_dict(d)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "c.yaml"
        f.write_text(yaml.safe_dump(d))
        _assert_one_line_or_success(main(["summary", str(f)]), capsys.readouterr().err, "summary")


SET_STRINGS = st.one_of(
    st.text(max_size=30),  # anything at all
    st.builds(
        lambda k, v: f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}",
        st.sampled_from(KEYS),
        VALUES,
    ),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(KEYS + ["model", "train.lr.x", "data..path", "=", ""]),
        st.text(max_size=12),
    ),
)


@settings(max_examples=settings.default.max_examples, **SETTINGS)
@given(st.lists(SET_STRINGS, min_size=1, max_size=3))
def test_set_strings_through_the_cli(capsys, sets):
    """`aelab summary configs/demo.yaml --set ...`: loads the config, applies the overrides, builds the model."""
    argv = ["summary", str(DEMO)]
    for s in sets:
        argv += ["--set", s]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse refusing an argument (a --set value starting with '-')
        rc = e.code
        assert rc == 2
        capsys.readouterr()
        return
    _assert_one_line_or_success(rc, capsys.readouterr().err, "summary")


# -- damaged or odd data files ---------------------------------------------------


def _npy_header(shape: str, descr: str) -> bytes:
    h = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape}, }}"
    h += " " * (63 - (len(h) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode()


def _save(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


DTYPES = st.sampled_from(["uint8", "float32", "float64", "int64", "int8", "float16", "bool", "complex64", "uint16"])
SHAPES = st.lists(st.integers(0, 12), min_size=0, max_size=5).map(tuple)


@st.composite
def arrays(draw):
    shape, dtype = draw(SHAPES), draw(DTYPES)
    a = np.asarray(
        draw(
            st.lists(
                st.one_of(
                    st.floats(-1e3, 1e3, allow_subnormal=False),
                    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 1.0, 255.0]),
                ),
                min_size=1,
                max_size=8,
            )
        )
    )
    a = np.resize(a, shape) if int(np.prod(shape)) else np.zeros(shape)
    with np.errstate(invalid="ignore", over="ignore"):
        return a.astype(dtype) if dtype != "bool" else a > 0


def _damage(draw, raw: bytes) -> bytes:
    how = draw(st.sampled_from(["keep", "keep", "truncate", "extend", "flip"]))
    if how == "truncate" and raw:
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "extend":
        return raw + draw(st.binary(min_size=1, max_size=64))
    if how == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        return raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
    return raw


@st.composite
def npy_files(draw):
    kind = draw(st.sampled_from(["array", "array", "header", "big header", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=256))
    if kind == "big header":  # format 2.0 allows a 4 GiB header; numpy refuses more than 10,000 bytes unless told
        n = draw(st.sampled_from([10_001, 70_000, 2**32 - 1]))
        body = draw(st.sampled_from([b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", b"x"]))
        return b"\x93NUMPY\x02\x00" + struct.pack("<I", n) + body + b" " * min(n - len(body) - 1, 70_000) + b"\n"
    if kind == "header":  # hand-made headers: huge, negative or odd shapes and dtypes
        shape = draw(
            st.sampled_from(
                [
                    "(10, 4)",
                    "(-3, 4)",
                    "(1000000000000,)",
                    "(3000000000, 2)",
                    "()",
                    "(0, 5)",
                    "(2, 'a')",
                    "(4294967296, 4294967296)",
                    "[5]",
                    "(5, 2, 2, 2, 2, 2)",
                ]
            )
        )
        descr = draw(st.sampled_from(["<f4", "|u1", ">f8", "<c8", "|O", "<U5", "|V8", "|b1", "<f2", "zz"]))
        return _npy_header(shape, descr) + draw(st.binary(max_size=200))
    return _damage(draw, _save(draw(arrays())))


@st.composite
def npz_files(draw):
    kind = draw(st.sampled_from(["zip", "zip", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=256))
    names = draw(
        st.lists(
            st.sampled_from(["x_train", "y_train", "x_test", "y_test", "x", "y", "other"]),
            min_size=0,
            max_size=4,
            unique=True,
        )
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n in names:
            z.writestr(n + ".npy", draw(npy_files()))
    return _damage(draw, buf.getvalue())


@st.composite
def csv_files(draw):
    rows = draw(
        st.lists(
            st.lists(
                st.one_of(
                    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False).map(repr),
                    st.integers(-5, 300).map(str),
                    st.text(max_size=4),
                ),
                min_size=0,
                max_size=6,
            ),
            max_size=12,
        )
    )
    sep = draw(st.sampled_from([",", ";", ", "]))
    return "\n".join(sep.join(r) for r in rows).encode("utf-8", "replace")


@st.composite
def idx_files(draw):
    """The MNIST IDX image file: a header with odd dims (zero, huge, wrong rank) over short or long data."""
    kind = draw(st.sampled_from(["idx", "idx", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=128))
    ndim = draw(st.integers(0, 4))
    dims = [draw(st.one_of(st.integers(0, 12), st.sampled_from([2**31, 2**32 - 1]))) for _ in range(ndim)]
    code = draw(st.sampled_from([0x08, 0x08, 0x09, 0x0D, 0x0E, 0x07]))
    head = bytes([0, 0, code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
    n = int(np.prod(dims)) if dims and max(dims) < 2**31 else 0
    body = draw(st.binary(min_size=min(n, 2000), max_size=min(n, 2000))) if n else b""
    raw = _damage(draw, head + body)
    return gzip.compress(raw, mtime=0) if draw(st.booleans()) else raw


@st.composite
def png_files(draw):
    from PIL import Image

    kind = draw(st.sampled_from(["png", "png", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=256))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "1", "P", "I;16", "F"]))
    w, h = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    buf = io.BytesIO()
    im = Image.new(mode if mode != "F" else "F", (w, h))
    (im.convert("I") if mode == "F" else im).save(buf, "PNG" if mode != "F" else "TIFF")
    return _damage(draw, buf.getvalue())


def _train(tmp: Path, data: dict, capsys) -> None:
    cfg = tmp / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": data,
                "model": {"name": "dense", "hidden": [], "code_dim": 2},
                "train": {"epochs": 1, "batch_size": 64, "threads": 1},
            }
        )
    )
    out = tmp / "run"
    rc = main(["train", str(cfg), "--out", str(out), "--no-report"])
    err = capsys.readouterr().err
    _assert_one_line_or_success(rc, err, "train")
    if rc == 0:
        assert json.loads((out / "summary.json").read_text())["epochs"] == 1
    else:  # refused before training: no folder, no temporary file
        assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    assert not list(tmp.rglob("*.tmp"))


def _case(suffix_strategy, files, mmap_too: bool = True):
    @settings(max_examples=settings.default.max_examples, **SETTINGS)
    @given(
        raw=files(),
        name=suffix_strategy,
        mmap=st.booleans() if mmap_too else st.just(False),
        scale=st.sampled_from(["auto", "minmax", "standard", "none"]),
    )
    def case(capsys, raw, name, mmap, scale):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            (tmp / name).write_bytes(raw)
            data = {"name": "npy", "path": str(tmp / name), "mmap": mmap, "scale": scale}
            _train(tmp, data, capsys)

    return case


test_fuzz_npy = _case(st.sampled_from(["x.npy", "x.NPY"]), npy_files)
test_fuzz_npz = _case(st.just("x.npz"), npz_files, mmap_too=False)
test_fuzz_csv = _case(st.sampled_from(["x.csv", "x.txt"]), csv_files, mmap_too=False)


@settings(max_examples=settings.default.max_examples, **SETTINGS)
@given(images=idx_files(), labels=idx_files(), gz=st.booleans())
def test_fuzz_idx(capsys, images, labels, gz):
    """A damaged MNIST folder: the training images and labels generated, the test files valid."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import write_idx_dataset

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        root = write_idx_dataset(tmp / "idx", 20, 10)
        for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
            (root / f).unlink()
        suffix = ".gz" if gz else ""
        (root / f"train-images-idx3-ubyte{suffix}").write_bytes(images)
        (root / f"train-labels-idx1-ubyte{suffix}").write_bytes(labels)
        _train(tmp, {"name": "mnist", "path": str(root)}, capsys)


@settings(max_examples=settings.default.max_examples, **SETTINGS)
@given(
    images=st.lists(png_files(), min_size=1, max_size=3),
    size=st.one_of(st.none(), st.just([8, 8])),
    channels=st.sampled_from([None, 1, 3]),
)
def test_fuzz_image_folder(capsys, images, size, channels):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "imgs").mkdir()
        for i, raw in enumerate(images):
            (tmp / "imgs" / f"{i}.png").write_bytes(raw)
        data = {"name": "folder", "path": str(tmp / "imgs"), "image_size": size, "channels": channels}
        _train(tmp, data, capsys)


@settings(max_examples=settings.default.max_examples, **SETTINGS)
@given(raw=st.one_of(npy_files(), png_files()), name=st.sampled_from(["in.npy", "in.png", "in.npz"]))
def test_fuzz_encode_input(tmp_path_factory, capsys, raw, name):
    """`aelab encode RUN FILE`: whatever the file, one line or codes; no output file after a refusal."""
    run = _encode_run(tmp_path_factory)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / name).write_bytes(raw)
        rc = main(["encode", str(run), str(tmp / name), "-o", str(tmp / "z.npy")])
        _assert_one_line_or_success(rc, capsys.readouterr().err, "encode")
        assert (tmp / "z.npy").exists() == (rc == 0)
        assert not list(tmp.glob("*.tmp"))


_RUN: list[Path] = []


def _encode_run(factory) -> Path:
    if not _RUN:
        tmp = factory.mktemp("encode-run")
        np.save(tmp / "d.npy", np.random.default_rng(0).random((40, 4, 4), dtype=np.float32))
        cfg = tmp / "c.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "data": {"name": "npy", "path": str(tmp / "d.npy")},
                    "model": {"name": "dense", "hidden": [], "code_dim": 2},
                    "train": {"epochs": 1, "batch_size": 64},
                }
            )
        )
        assert main(["train", str(cfg), "--out", str(tmp / "run"), "--no-report"]) == 0
        _RUN.append(tmp / "run")
    return _RUN[0]
