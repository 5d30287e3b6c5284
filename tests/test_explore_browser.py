"""The explorer in a real browser (headless Chromium over the DevTools pipe of test_report_browser):
the page's outputs against PyTorch for every supported family, and real pointer events (a drawn
stroke, a touch stroke, a slider, a hovered and two clicked map points, a weight tile, the
language toggle) read back as values and pixels."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_idx_dataset
from test_report_browser import CHROMIUM, Chromium

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (Debian package 'chromium'; `make setup` installs it where apt is available)",
)

FAMILIES = {
    "dense": {"model": {"name": "dense", "hidden": [32], "code_dim": 8}},
    "sparse-deep": {"model": {"name": "dense", "hidden": [64, 32], "code_dim": 16, "l1": 1e-4}},
    "conv": {"model": {"name": "conv", "channels": [16, 8, 8]}},  # seed 004's conv autoencoder
    "denoising-conv": {
        "model": {"name": "conv", "channels": [8, 8]},
        "data": {"noise": [{"kind": "gaussian", "amount": 0.5}]},
    },
    "vae-dense": {"model": {"name": "vae-dense", "hidden": [32], "code_dim": 2}},
    "vae-conv": {"model": {"name": "vae-conv", "channels": [8, 8], "code_dim": 4, "batch_norm": True}},
    "classifier-ae": {
        "model": {"name": "classifier-ae", "channels": [8, 16], "hidden": [16], "convs_per_block": 1, "dropout": 0.0}
    },
    # the TopK sparse autoencoder on 28x28 images: pre-bias, dense encoder, TopK, linear decoder
    "topk-sae": {
        "model": {"name": "topk-sae", "latents": 256, "k": 16, "output_activation": "identity"},
        "train": {"loss": "mse"},
    },
}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """One run per family, trained one epoch on the tiny synthetic data, and its explore.html."""
    from aelab import Config, train
    from aelab.explore import write_explorer

    root = tmp_path_factory.mktemp("explore")
    idx = write_idx_dataset(root / "idx", 600, 100)
    out = {}
    for name, spec in FAMILIES.items():
        cfg = Config.from_dict(
            {
                "data": {"name": "mnist", "path": str(idx), **spec.get("data", {})},
                "model": spec["model"],
                "train": {"epochs": 1, "batch_size": 100, **spec.get("train", {})},
            }
        )
        run = train(cfg, root / name, log=lambda s: None)
        out[name] = (run, write_explorer([run], points=100, maps=["pca"]))
    out["two"] = (
        None,
        write_explorer([out["dense"][0], out["denoising-conv"][0]], root / "two.html", points=100, maps=["pca"]),
    )
    return out


@pytest.fixture(scope="module")
def browser():
    b = Chromium(width=1280, height=900)
    yield b
    b.close()


def _images(run, n=100) -> np.ndarray:
    """The test images exactly as the page holds them (uint8 / 255)."""
    x = run.load_data().x_test[:n]
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).astype(np.float32) / 255


def _open(b: Chromium, page) -> None:
    b.open(page.resolve().as_uri())
    assert b.evaluate("typeof window.aelab") == "object", b.console_errors()


def _rect(b: Chromium, expr: str) -> list[float]:
    return b.evaluate(
        f"(() => {{ const e = {expr}; e.scrollIntoView({{block: 'center'}}); "
        "const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )


def _mouse(b: Chromium, kind: str, x: float, y: float, pressed: bool = True) -> None:
    b.send(
        "Input.dispatchMouseEvent",
        {
            "type": kind,
            "x": x,
            "y": y,
            "button": "left",
            "buttons": 1 if pressed and kind != "mouseReleased" else 0,
            "clickCount": 1,
        },
    )


def _click(b: Chromium, x: float, y: float) -> None:
    _mouse(b, "mousePressed", x, y)
    _mouse(b, "mouseReleased", x, y)


def _drag(b: Chromium, x0, y0, x1, y1, steps=12) -> None:
    _mouse(b, "mousePressed", x0, y0)
    for s in range(1, steps + 1):
        _mouse(b, "mouseMoved", x0 + (x1 - x0) * s / steps, y0 + (y1 - y0) * s / steps)
    _mouse(b, "mouseReleased", x1, y1)


def _pixels(b: Chromium, expr: str) -> np.ndarray:
    """The red channel of a canvas (grey images), as uint8."""
    v = b.evaluate(
        f"(() => {{ const c = {expr}; return Array.from(c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data).filter((_, i) => i % 4 === 0); })()"
    )
    return np.array(v, dtype=np.int64)


def _u8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.asarray(x, dtype=np.float64), 0, 1) * 255).astype(np.int64).ravel()


@torch.no_grad()
def test_page_matches_pytorch_for_every_family(pages, browser):
    """Encode and decode of 100 test images in the page vs PyTorch: max |difference| <= 1e-4."""
    worst = {}
    for name in FAMILIES:
        run, page = pages[name]
        _open(browser, page)
        x = _images(run)
        z = run.model.encode(torch.from_numpy(x)).reshape(len(x), -1)
        y = run.model.decode(z.reshape(len(x), *run.model.code_shape)).reshape(len(x), -1)
        got = browser.evaluate(
            "(() => { const rv = aelab.runs[0]; const z = [];"
            "for (let i = 0; i < 100; i++) z.push(Array.from(rv.net.encode(aelab.image(i)))); return z; })()"
        )
        codes = json.dumps(z.numpy().tolist())
        dec = browser.evaluate(
            f"(() => {{ const rv = aelab.runs[0]; return {codes}.map(c => Array.from(rv.net.decode(Float32Array.from(c)))); }})()"
        )
        worst[name] = (float(np.abs(np.array(got) - z.numpy()).max()), float(np.abs(np.array(dec) - y.numpy()).max()))
        assert not browser.console_errors(), f"{name}: {browser.console_errors()}"
        assert not browser.network_requests(), f"{name}: {browser.network_requests()}"
    bad = {k: v for k, v in worst.items() if max(v) > 1e-4}
    assert not bad, f"page vs PyTorch above 1e-4 (encode, decode): {bad}"


@torch.no_grad()
def test_drawing_sliding_hovering_and_clicking(pages, browser):
    run, page = pages["dense"]
    model = run.model
    _open(browser, page)
    # a stroke drawn with the mouse: the code and the reconstruction follow
    browser.evaluate("document.getElementById('clear').click()")
    left, top, w, h = _rect(browser, "document.getElementById('pad')")
    _drag(browser, left + 0.3 * w, top + 0.25 * h, left + 0.65 * w, top + 0.7 * h)
    x = np.array(browser.evaluate("Array.from(aelab.input)"), dtype=np.float32)
    assert x.sum() > 5 and x.max() == 1.0, "the stroke left no ink"
    xt = torch.from_numpy(x).view(1, 1, 28, 28)
    z = model.encode(xt)
    code = np.array(browser.evaluate("Array.from(aelab.runs[0].code)"))
    assert np.abs(code - z.numpy().ravel()).max() <= 1e-4
    recon_px = _pixels(browser, "aelab.runs[0].ui.recon")
    assert np.abs(recon_px - _u8(model.decode(z))).max() <= 1
    time.sleep(0.1)  # the map redraws on the next animation frame
    assert browser.evaluate("aelab.runs[0].map.here") is not None, "the drawn input's code is not on the PCA map"

    # a touch stroke draws too
    browser.send("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1})
    before = x.sum()
    pts = [(left + 0.7 * w, top + (0.2 + 0.05 * s) * h) for s in range(10)]
    browser.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": pts[0][0], "y": pts[0][1]}]})
    for px, py in pts[1:]:
        browser.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": px, "y": py}]})
    browser.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    browser.send("Emulation.setTouchEmulationEnabled", {"enabled": False})
    assert browser.evaluate("aelab.input.reduce((a, b) => a + b, 0)") > before + 3, "the touch stroke left no ink"

    # a slider moved with the mouse: the decoded image follows the code
    sl, st, sw, sh = _rect(browser, "document.querySelectorAll('.sliders input')[3]")
    _drag(browser, sl + 0.5 * sw, st + sh / 2, sl + 0.92 * sw, st + sh / 2, steps=5)
    code = np.array(browser.evaluate("Array.from(aelab.runs[0].code)"), dtype=np.float32)
    enc = np.array(browser.evaluate("Array.from(aelab.runs[0].encoded)"), dtype=np.float32)
    assert code[3] != enc[3] and np.array_equal(np.delete(code, 3), np.delete(enc, 3))
    assert (
        abs(code[3] - float(browser.evaluate("parseFloat(document.querySelectorAll('.sliders input')[3].value)")))
        < 1e-5
    )
    want = model.decode(torch.from_numpy(code)[None])
    assert np.abs(np.array(browser.evaluate("Array.from(aelab.runs[0].recon)")) - want.numpy().ravel()).max() <= 1e-4
    assert np.abs(_pixels(browser, "aelab.runs[0].ui.recon") - _u8(want)).max() <= 1
    browser.evaluate(
        "Array.from(document.querySelectorAll('button')).find(b => b.textContent.startsWith('reset')).click()"
    )
    assert browser.evaluate("aelab.runs[0].code[3] === aelab.runs[0].encoded[3]")

    # hover a point on the map: its image and reconstruction
    xs = _images(run)
    _rect(browser, "document.querySelector('.map')")
    i = 17
    px, py = browser.evaluate(f"aelab.runs[0].map.screen({i})")
    _mouse(browser, "mouseMoved", px, py, pressed=False)
    hovered = browser.evaluate("aelab.runs[0].map.hover")
    assert browser.evaluate("document.querySelector('.tip').style.display") == "block"
    tip = np.array(browser.evaluate("Array.from(aelab.runs[0].map.tipRecon)"))
    assert np.abs(tip - model(torch.from_numpy(xs[hovered : hovered + 1])).numpy().ravel()).max() <= 1e-4
    # a tap (touch has no hover) shows a point too
    _mouse(browser, "mouseMoved", 1, 1, pressed=False)
    browser.send("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1})
    tx, ty = browser.evaluate("aelab.runs[0].map.screen(60)")
    browser.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": tx, "y": ty}]})
    browser.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    browser.send("Emulation.setTouchEmulationEnabled", {"enabled": False})
    assert browser.evaluate("aelab.runs[0].map.hover") == browser.evaluate(
        "(() => { const m = aelab.runs[0].map, "
        "[x, y] = m.px[60]; return m.px.findIndex(p => p[0] === x && p[1] === y); })()"
    )
    # click two points: the decoded path between their codes
    browser.evaluate("aelab.runs[0].map.picked = []")  # whether the tap also clicked is the browser's business
    j = 60
    _click(browser, px, py)
    qx, qy = browser.evaluate(f"aelab.runs[0].map.screen({j})")
    _click(browser, qx, qy)
    a, b = browser.evaluate("aelab.runs[0].map.picked")
    path = browser.evaluate("aelab.runs[0].map.path.map(p => Array.from(p))")
    assert len(path) == 11 and browser.evaluate("document.querySelectorAll('.path canvas').length") == 11
    za, zb = model.encode(torch.from_numpy(xs[[a, b]]))
    assert np.abs(np.array(path[5]) - model.decode(((za + zb) / 2)[None]).numpy().ravel()).max() <= 1e-4

    # click a first-layer weight tile: the test images that excite that unit most
    u = 5
    _rect(browser, "document.querySelector('.wgrid')")
    ux, uy = browser.evaluate(f"aelab.runs[0].unitAt({u})")
    _click(browser, ux, uy)
    assert browser.evaluate("aelab.runs[0].shownUnit") == u
    assert browser.evaluate("document.querySelectorAll('.tops canvas').length") == 8
    act = model.encoder[1](torch.from_numpy(xs).reshape(100, -1))[:, u]
    assert browser.evaluate(f"aelab.data.runs[0].top_images[{u}][0]") == int(act.argmax())

    # the language toggle
    start = browser.evaluate("aelab.lang")
    browser.evaluate("document.getElementById('lang').click()")
    assert browser.evaluate("aelab.lang") != start
    browser.evaluate("aelab.lang === 'ja' || document.getElementById('lang').click()")
    assert "オートエンコーダ" in browser.evaluate("document.querySelector('.sub').textContent")
    assert "再構成" in browser.evaluate("document.body.innerText")
    assert not browser.console_errors(), browser.console_errors()


@torch.no_grad()
def test_conv_code_picker_and_vae_grid(pages, browser):
    run, page = pages["conv"]
    _open(browser, page)
    c, h, w = run.model.code_shape
    cl, ct, cw, chh = _rect(browser, "document.querySelectorAll('.convmaps canvas')[2]")
    _click(browser, cl + cw * (1.5 / w), ct + chh * (2.5 / h))  # channel 2, row 2, column 1
    sel = browser.evaluate("aelab.runs[0].sel")
    assert sel == (2 * h + 2) * w + 1
    sl, st, sw, sh = _rect(browser, "aelab.runs[0].ui.slider")
    _click(browser, sl + 0.95 * sw, st + sh / 2)
    code = np.array(browser.evaluate("Array.from(aelab.runs[0].code)"), dtype=np.float32)
    assert code[sel] != browser.evaluate(f"aelab.runs[0].encoded[{sel}]")
    want = run.model.decode(torch.from_numpy(code).view(1, c, h, w))
    assert np.abs(_pixels(browser, "aelab.runs[0].ui.recon") - _u8(want)).max() <= 1

    run, page = pages["vae-dense"]
    _open(browser, page)
    time.sleep(0.4)  # the grid is drawn shortly after the code settles
    base = np.array(browser.evaluate("Array.from(aelab.runs[0].code)"), dtype=np.float32)
    grid = _pixels(browser, "document.querySelector('.grid')").reshape(11 * 28, 11 * 28)
    z = base.copy()
    z[0], z[1] = -3.0, 3.0  # top-left cell: z0 at its lowest, z1 at its highest
    want = _u8(run.model.decode(torch.from_numpy(z)[None])).reshape(28, 28)
    assert np.abs(grid[:28, :28] - want).max() <= 1
    assert browser.evaluate("document.querySelectorAll('.trav canvas').length") == 2 * 9
    assert not browser.console_errors(), browser.console_errors()


@torch.no_grad()
def test_two_runs_and_noise(pages, browser):
    """Side by side: both runs get the same (noisy) input; each answer matches its own PyTorch model."""
    _, page = pages["two"]
    dense, denoise = pages["dense"][0], pages["denoising-conv"][0]
    _open(browser, page)
    assert browser.evaluate("aelab.runs.length") == 2
    browser.evaluate("document.querySelectorAll('#strip canvas')[3].click()")
    nl, nt, nw, nh = _rect(browser, "document.getElementById('noise')")
    _click(browser, nl + 0.35 * nw, nt + nh / 2)
    x_in = np.array(browser.evaluate("Array.from(aelab.modelInput)"), dtype=np.float32)
    x_clean = np.array(browser.evaluate("Array.from(aelab.input)"), dtype=np.float32)
    assert np.abs(x_in - x_clean).max() > 0.05, "the noise slider did not change what the models see"
    for r, run in enumerate((dense, denoise)):
        want = run.model(torch.from_numpy(x_in).view(1, 1, 28, 28))
        got = np.array(browser.evaluate(f"Array.from(aelab.runs[{r}].recon)"))
        assert np.abs(got - want.numpy().ravel()).max() <= 1e-4
        score = browser.evaluate(f"aelab.runs[{r}].score")
        metric = browser.evaluate(f"aelab.runs[{r}].d.score_metric")  # the family's declared default: mse
        x_t = torch.from_numpy(x_in).view(1, 1, 28, 28)
        expect = (
            torch.nn.functional.mse_loss(want, x_t)
            if metric == "mse"
            else torch.nn.functional.binary_cross_entropy(want.clamp(1e-7, 1 - 1e-7), x_t)
        )
        assert metric in ("mse", "bce") and abs(score - float(expect)) < 1e-3
    assert not browser.console_errors(), browser.console_errors()


FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")


@pytest.mark.skipif(FIREFOX is None, reason="firefox not installed (Debian package 'firefox-esr')")
@torch.no_grad()
def test_firefox_opens_the_page_from_disk_and_computes_the_same(pages, tmp_path):
    """Firefox has no DevTools pipe here: `--screenshot` of explore.html#probe=I, which draws test image I's
    reconstruction 10x at the top-left corner; its pixels must be PyTorch's (uint8, within 1)."""
    for name, i in (("conv", 7), ("dense", 3)):
        run, page = pages[name]
        shot = tmp_path / f"{name}.png"
        profile = tmp_path / f"profile-{name}"
        profile.mkdir()
        subprocess.run(
            [
                FIREFOX,
                "--headless",
                "--no-remote",
                "--profile",
                str(profile),
                "--window-size=800,600",
                "--screenshot",
                str(shot),
                page.resolve().as_uri() + f"#probe={i}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        assert shot.is_file(), f"firefox wrote no screenshot of {page}"
        im = np.asarray(Image.open(shot).convert("RGB")).astype(np.int64)
        got = im[5:280:10, 5:280:10, 0]
        want = _u8(run.model(torch.from_numpy(_images(run)[i : i + 1]))).reshape(28, 28)
        assert np.abs(got - want).max() <= 1, f"{name}: firefox's reconstruction differs from PyTorch's"
