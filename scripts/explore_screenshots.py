"""The explorer screenshots in docs/img (headless Chromium, real pointer events).

    python scripts/explore_screenshots.py runs/demo runs/anomaly runs/vae2 runs/conv-vs-denoising.html

Expects the pages written by `aelab explore` (see docs/EXPLORE.md for the runs behind them).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_explore_browser import _click, _drag, _mouse, _rect  # noqa: E402
from test_report_browser import Chromium  # noqa: E402

IMG = ROOT / "docs" / "img"


def _page(p: str) -> Path:
    p = Path(p)
    return (p / "explore.html" if p.is_dir() else p).resolve()


def shoot(page: Path, out: str, height: int, lang: str = "en", act=None) -> None:
    b = Chromium(width=1280, height=height)
    try:
        b.open(page.as_uri())
        if b.evaluate("aelab.lang") != lang:
            b.evaluate("document.getElementById('lang').click()")
        if act:
            act(b)
        time.sleep(0.6)
        b.screenshot(IMG / out)
        assert not b.console_errors(), b.console_errors()
        print(IMG / out)
    finally:
        b.close()


def scribble(b) -> None:
    b.evaluate("document.getElementById('clear').click()")
    x, y, w, h = _rect(b, "document.getElementById('pad')")
    _drag(b, x + 0.2 * w, y + 0.3 * h, x + 0.8 * w, y + 0.35 * h)
    _drag(b, x + 0.5 * w, y + 0.35 * h, x + 0.45 * w, y + 0.85 * h)
    b.evaluate("window.scrollTo(0, 0)")


def map_path(b) -> None:
    b.evaluate("(() => { const s = document.querySelector('.maptools select'); s.value = 'tsne'; s.dispatchEvent(new Event('change')); })()")
    _rect(b, "document.querySelector('.map')")
    for i in (1, 3):
        _click(b, *b.evaluate(f"aelab.runs[0].map.screen({i})"))
    b.evaluate("document.getElementById('map-section').scrollIntoView()")
    time.sleep(0.2)
    _mouse(b, "mouseMoved", *b.evaluate("aelab.runs[0].map.screen(40)"), pressed=False)


def vae(b) -> None:
    b.evaluate("document.getElementById('vae-section').scrollIntoView()")


def two(b) -> None:
    b.evaluate("document.querySelectorAll('#strip canvas')[3].click()")


if __name__ == "__main__":
    demo, anomaly, vae_run, pair = (_page(p) for p in sys.argv[1:5])
    shoot(anomaly, "explore-draw.png", 860, act=scribble)
    shoot(demo, "explore-map.png", 800, act=map_path)
    shoot(vae_run, "explore-vae.png", 780, act=vae)
    shoot(pair, "explore-two.png", 900, act=two)
    shoot(demo, "explore-ja.png", 720, lang="ja")
