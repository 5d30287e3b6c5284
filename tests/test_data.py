import gzip

import numpy as np
import pytest

from aelab import DataConfig, DataError, load_data
from aelab.config import NoiseConfig
from aelab.data import fetch
from aelab.data.cifar import load_cifar10, read_python_batch
from aelab.data.idx import parse_idx, read_idx, write_idx
from aelab.data.noise import compose
from conftest import make_blobs


def test_idx_gz_and_raw_agree(tmp_path):
    x, _ = make_blobs(20)
    write_idx(tmp_path / "a.gz", x)
    write_idx(tmp_path / "a", x)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), x)
    assert np.array_equal(read_idx(tmp_path / "a"), x)


def test_idx_truncated_and_wrong_magic(tmp_path):
    x, _ = make_blobs(20)
    write_idx(tmp_path / "a", x)
    raw = (tmp_path / "a").read_bytes()
    (tmp_path / "t").write_bytes(raw[:-10])
    with pytest.raises(DataError, match="truncated or damaged"):
        read_idx(tmp_path / "t")
    (tmp_path / "m").write_bytes(b"\x12\x34" + raw[2:])
    with pytest.raises(DataError, match="wrong magic"):
        read_idx(tmp_path / "m")
    (tmp_path / "g.gz").write_bytes(gzip.compress(raw)[:100])
    with pytest.raises(DataError, match="damaged"):
        read_idx(tmp_path / "g.gz")
    with pytest.raises(DataError, match="not an IDX"):
        parse_idx(b"")


def test_idx_dataset_loads_scaled(idx_dir):
    s = load_data(DataConfig(name="mnist", path=str(idx_dir)))
    assert s.x_train.shape == (600, 1, 28, 28) and s.x_train.dtype == np.float32
    assert 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0
    assert s.y_test.shape == (100,) and s.classes[0] == "0"


def test_label_count_mismatch(idx_dir):
    write_idx(idx_dir / "train-labels-idx1-ubyte.gz", np.zeros(599, np.uint8))
    with pytest.raises(DataError, match="599 labels for the 600 images"):
        load_data(DataConfig(name="mnist", path=str(idx_dir)))


def test_missing_file_says_how_to_get(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte: missing"):
        load_data(DataConfig(name="fashion-mnist", path=str(tmp_path)))


def test_limit_exclude_and_val_fraction(idx_dir):
    s = load_data(
        DataConfig(name="mnist", path=str(idx_dir), limit=300, test_limit=50, exclude_classes=[3], val_fraction=0.1)
    )
    assert 3 not in set(s.y_train) and len(s.x_test) == 50
    assert len(s.x_train) + len(s.x_val) <= 300 and len(s.x_val) >= 1
    assert s.validation[0] is s.x_val


@pytest.mark.parametrize("scale, divisor", [("auto", 255.0), ("minmax", 255.0), ("none", 1.0), ("standard", None)])
def test_a_byte_training_set_keeps_its_bytes(idx_dir, scale, divisor):
    """Splits.train_bytes: the uint8 x_train was scaled from, exactly (bytes / divisor in float32), cut as
    x_train is (val_fraction); a fitted scale is no division of bytes, so it keeps none."""
    s = load_data(DataConfig(name="mnist", path=str(idx_dir), limit=300, val_fraction=0.1, scale=scale), False)
    if divisor is None:
        assert s.train_bytes is None
        return
    raw, d = s.train_bytes
    assert d == divisor and raw.dtype == np.uint8 and raw.shape == s.x_train.shape
    assert np.array_equal(raw.astype(np.float32) / np.float32(d), s.x_train)


def test_mmap_keeps_bytes_only_where_batches_divide_them_by_255(tmp_path):
    """data.mmap leaves a uint8 .npy as bytes that every batch divides by 255: the same floats as loading it
    (scale auto), and a scale that keeps 0-255 (none) is refused, not silently divided."""
    x = np.random.default_rng(0).integers(0, 256, (40, 6, 6), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    loaded = load_data(DataConfig(name="npy", path=str(tmp_path / "x.npy")))
    mapped = load_data(DataConfig(name="npy", path=str(tmp_path / "x.npy"), mmap=True))
    assert mapped.x_train.dtype == np.uint8
    assert np.array_equal(np.asarray(mapped.x_train).astype(np.float32) / np.float32(255), loaded.x_train)
    with pytest.raises(DataError, match="data.scale: none"):
        load_data(DataConfig(name="npy", path=str(tmp_path / "x.npy"), mmap=True, scale="none"))
    kept = load_data(DataConfig(name="npy", path=str(tmp_path / "x.npy"), scale="none"), False)
    assert kept.x_train.max() > 1  # without the mapping, none keeps the byte values


def _write_cifar_bin(path, n, seed):
    rng = np.random.default_rng(seed)
    rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], axis=1).astype(np.uint8)
    path.write_bytes(rec.tobytes())
    return rec


def test_cifar_binary(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    recs = [_write_cifar_bin(d / f"data_batch_{i}.bin", 4, i) for i in range(1, 6)]
    _write_cifar_bin(d / "test_batch.bin", 3, 9)
    x, y, xt, yt = load_cifar10(tmp_path)
    assert x.shape == (20, 3, 32, 32) and xt.shape == (3, 3, 32, 32)
    assert y[0] == recs[0][0, 0] and x[0, 0, 0, 0] == recs[0][0, 1]
    s = load_data(DataConfig(name="cifar10", path=str(tmp_path)))
    assert s.sample_shape == (3, 32, 32)
    (d / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="whole number of CIFAR-10 records"):
        load_cifar10(tmp_path)


def test_cifar_python_batch_and_crafted_pickle(tmp_path):
    import pickle

    data = np.random.default_rng(0).integers(0, 256, (5, 3072)).astype(np.uint8)
    (tmp_path / "ok").write_bytes(pickle.dumps({b"data": data, b"labels": [1, 2, 3, 4, 5]}))
    x, y = read_python_batch(tmp_path / "ok")
    assert x.shape == (5, 3, 32, 32) and list(y) == [1, 2, 3, 4, 5]

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="not allowed"):
        read_python_batch(tmp_path / "evil")
    assert not marker.exists()


def test_image_folder(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((10, 12), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    s = load_data(DataConfig(name="folder", path=str(tmp_path), image_size=[8, 8]))
    assert s.sample_shape == (1, 8, 8) and s.classes == ["a", "b"]
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "a" / "odd.png")
    with pytest.raises(DataError, match="set data.image_size"):
        load_data(DataConfig(name="folder", path=str(tmp_path)))


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        load_data(DataConfig(name="folder", path=str(tmp_path)))


def test_npy_and_npz(tmp_path):
    x = np.random.default_rng(0).random((50, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    s = load_data(DataConfig(name="npy", path=str(tmp_path / "x.npy")))
    assert len(s.x_train) == 45 and len(s.x_test) == 5 and s.sample_shape == (8,)
    np.savez(tmp_path / "d.npz", x_train=x[:40], y_train=np.arange(40), x_test=x[40:])
    s = load_data(DataConfig(name="npy", path=str(tmp_path / "d.npz")))
    assert len(s.x_test) == 10 and s.y_test is None


def test_npy_nan_and_range(tmp_path):
    x = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    x[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(DataError, match="NaN or inf"):
        load_data(DataConfig(name="npy", path=str(tmp_path / "nan.npy")))
    np.save(tmp_path / "big.npy", np.abs(x[[0, 1, 2, 4, 5]]) * 10)
    with pytest.raises(DataError, match="data.scale=minmax"):
        load_data(DataConfig(name="npy", path=str(tmp_path / "big.npy")))
    s = load_data(DataConfig(name="npy", path=str(tmp_path / "big.npy"), scale="minmax"))
    assert s.x_train.max() <= 1.0


def test_standard_scaler(tmp_path):
    x = np.random.default_rng(0).normal(5, 3, (100, 3)).astype(np.float32)
    np.save(tmp_path / "t.npy", x)
    s = load_data(DataConfig(name="npy", path=str(tmp_path / "t.npy"), scale="standard"), need_unit_range=False)
    assert abs(s.x_train.mean()) < 1e-5 and s.scaler["mean"].shape == (3,)


def test_noise_transforms():
    import torch

    x = torch.full((4, 1, 10, 10), 0.5)
    g = torch.Generator().manual_seed(0)
    y = compose([NoiseConfig("gaussian", 0.5)])(x, g)
    assert y.min() >= 0 and y.max() <= 1 and not torch.equal(x, y)
    m = compose([NoiseConfig("masking", 0.3)])(x, g)
    assert 0.2 < (m == 0).float().mean() < 0.4
    sp = compose([NoiseConfig("salt_pepper", 0.2), NoiseConfig("masking", 0.0)])(x, g)
    assert ((sp == 0) | (sp == 1)).float().mean() > 0.1
    assert compose([]) is None


def test_fetch_verifies_checksums(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_DATA", str(tmp_path))
    d = tmp_path / "mnist"
    d.mkdir()
    for f in fetch.SOURCES["mnist"].files:
        (d / f.name).write_bytes(b"\0" * f.size)
    assert fetch.locate("mnist") == d  # sizes fit
    with pytest.raises(DataError, match="SHA-256 does not match"):
        fetch.fetch("mnist", download=False)
    monkeypatch.setenv("AELAB_DATA", str(tmp_path / "none"))
    with pytest.raises(DataError, match="no local copy"):
        fetch.fetch("mnist", download=False)
