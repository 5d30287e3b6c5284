"""End to end: report.html and compare.html open in headless Chromium with every image loaded,
no console errors and no network requests.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
NUL-separated JSON on file descriptors 3 and 4), so no websocket library and no
port are needed. Run as a script to screenshot any page:
``python tests/test_report_browser.py runs/demo/report.html docs/img/report.png``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM = next(
    (
        p
        for p in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or "")
        if p and os.access(p, os.X_OK)
    ),
    None,
)
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:", "chrome:", "devtools:")


class Chromium:
    """A headless Chromium and a minimal DevTools-protocol client over its pipe."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="aelab-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # move the child's ends above 10 so dup2 onto 3 and 4 cannot clobber them
        a, b = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire():
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            CHROMIUM,
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--mute-audio",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--user-data-dir={self.profile}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            pass_fds=(3, 4),
            preexec_fn=wire,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(a)
        os.close(b)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    # -- protocol ---------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def wait_for(self, method: str) -> dict:
        for e in self.events:
            if e["method"] == method:
                return e
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if "method" in m:
                self.events.append(m)
                if m["method"] == method:
                    return m

    # -- what the tests use -------------------------------------------------
    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path, full_height: int | None = None) -> None:
        if full_height:
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": full_height, "deviceScaleFactor": 1, "mobile": False},
            )
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                out.append(p.get("exceptionDetails", {}).get("text", "exception"))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def network_requests(self) -> list[str]:
        urls = [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]
        return [u for u in urls if not u.startswith(LOCAL_SCHEMES)]

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


IMAGES_JS = """(async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  return imgs.map(i => ({src: i.src.slice(0, 30), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}));
})()"""


def check_page(browser: Chromium, html: Path, shot: Path) -> list[dict]:
    browser.open(html.resolve().as_uri())
    imgs = browser.evaluate(IMAGES_JS)
    browser.screenshot(shot)
    return imgs


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (Debian package 'chromium'; `make setup` installs it where apt is available)",
)
def test_reports_render_in_headless_chromium(idx_dir, tmp_path):
    from aelab import Config, train
    from aelab.data import load_data
    from aelab.report import write_comparison, write_run_report
    from aelab.report.hooks import training_hooks

    base = Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir)},
            "model": {"name": "dense", "hidden": [32], "code_dim": 8},
            "train": {"epochs": 2, "batch_size": 100},
        }
    )
    splits = load_data(base.data)
    runs = []
    for name, ov in (("dense", []), ("denoise", ["data.noise=[{kind: masking, amount: 0.3}]"])):
        cfg = base.replace(ov)
        hooks = training_hooks(cfg, tmp_path / name, splits.x_test, splits.y_test)
        runs.append(train(cfg, tmp_path / name, data=splits, hooks=hooks, log=lambda s: None))
    report = write_run_report(runs[0], splits)
    compare = write_comparison([r.path for r in runs], tmp_path / "compare.html")

    browser = Chromium()
    try:
        for page, expected in ((report, 10), (compare, 2)):
            shot = tmp_path / f"{page.stem}.png"
            imgs = check_page(browser, page, shot)
            assert len(imgs) >= expected, f"{page.name}: {len(imgs)} images"
            broken = [i for i in imgs if not i["complete"] or i["w"] == 0]
            assert not broken, f"{page.name}: images that did not load: {broken}"
            assert not browser.console_errors(), f"{page.name}: console errors {browser.console_errors()}"
            assert not browser.network_requests(), f"{page.name}: network requests {browser.network_requests()}"
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
        check_languages(browser, report)
    finally:
        browser.close()


VISIBLE_JS = """(() => ({lang: document.documentElement.lang, button: document.getElementById("lang").innerText,
  h2: Array.from(document.querySelectorAll("h2")).map(e => e.innerText),
  cards: Array.from(document.querySelectorAll(".card span")).map(e => e.innerText),
  captions: Array.from(document.querySelectorAll("figcaption")).map(e => e.innerText),
  th: Array.from(document.querySelectorAll("th")).map(e => e.innerText)}))()"""


def _click_lang(browser: Chromium) -> None:
    """A real mouse click (DevTools input events) on the page's language button."""
    x, y = browser.evaluate(
        "(() => { const r = document.getElementById('lang').getBoundingClientRect(); "
        "return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})


def _reload(browser: Chromium, url: str) -> None:
    browser.events.clear()
    browser.send("Page.navigate", {"url": url})
    browser.wait_for("Page.loadEventFired")


def check_languages(browser: Chromium, report: Path) -> None:
    """The run report speaks the browser's language (English here), the button switches every visible
    string the report's table has to Japanese and back, the choice survives a reload, and a browser
    that asks for Japanese gets Japanese first."""
    from aelab.report.i18n import REPORT

    url = report.resolve().as_uri()
    browser.open(url)
    en = browser.evaluate(VISIBLE_JS)
    assert en["lang"] == "en" and en["button"] == "日本語"
    assert {"Reconstructions", "Training", "Codes", "Model", "Config"} <= set(en["h2"])
    assert "test MSE" in en["cards"] and "Param #" in en["th"]
    assert REPORT["cap_reconstructions"]["en"] in en["captions"]
    _click_lang(browser)
    ja = browser.evaluate(VISIBLE_JS)
    assert ja["lang"] == "ja" and ja["button"] == "English"
    assert {"再構成", "学習", "中間層", "モデル", "設定"} <= set(ja["h2"])
    assert "テスト MSE" in ja["cards"] and "パラメータ数" in ja["th"] and "Param #" not in ja["th"]
    assert REPORT["cap_reconstructions"]["ja"] in ja["captions"]
    assert "オートエンコーダ" in " ".join(ja["captions"])
    # the best/worst caption keeps its number in Japanese
    num = next(c for c in en["captions"] if c.startswith("The 8 test images")).rsplit(" ", 1)[1].rstrip(").")
    assert any(num in c and "テストセット" in c for c in ja["captions"])
    assert len(ja["captions"]) == len(en["captions"]) and ja["captions"] != en["captions"]
    _reload(browser, url)  # remembered
    assert browser.evaluate(VISIBLE_JS)["lang"] == "ja"
    _click_lang(browser)
    assert browser.evaluate(VISIBLE_JS) == en
    browser.evaluate("localStorage.clear()")
    browser.send(
        "Emulation.setUserAgentOverride",
        {"userAgent": browser.evaluate("navigator.userAgent"), "acceptLanguage": "ja-JP,ja"},
    )
    _reload(browser, url)  # nothing remembered: the browser's language
    assert browser.evaluate("navigator.language").startswith("ja")
    assert browser.evaluate(VISIBLE_JS) == ja
    assert not browser.console_errors(), browser.console_errors()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_the_checks_catch_a_broken_page(tmp_path):
    """The browser checks are not vacuous: a missing image, a console error and a fetch are all seen."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!doctype html><html><body><img src="missing.png">'
        '<script>console.error("boom"); fetch("http://127.0.0.1:9/x").catch(() => {});</script></body></html>'
    )
    browser = Chromium()
    try:
        imgs = check_page(browser, page, tmp_path / "bad-shot.png")
        time.sleep(0.5)
        browser.evaluate("1")  # drain events that arrived meanwhile
        assert imgs and imgs[0]["w"] == 0
        assert any("boom" in e for e in browser.console_errors())
        assert any(u.startswith("http://127.0.0.1:9") for u in browser.network_requests())
    finally:
        browser.close()


if __name__ == "__main__":  # screenshot a page: python tests/test_report_browser.py PAGE.html OUT.png [HEIGHT]
    if CHROMIUM is None:
        sys.exit("chromium not installed")
    b = Chromium()
    try:
        b.open(Path(sys.argv[1]).resolve().as_uri())
        b.evaluate(IMAGES_JS)
        b.screenshot(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
        print(f"{sys.argv[2]}: console errors {b.console_errors()}, network {b.network_requests()}")
    finally:
        b.close()
