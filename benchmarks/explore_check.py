"""The explorer's quality bars on a real run: parity with PyTorch on 100 test images, the time of one
encode+decode in headless Chromium, and the page's size.

    python benchmarks/explore_check.py runs/demo            # writes runs/demo/explore.html first if missing

Prints one JSON object; docs/EXPLORE.md records the numbers for the demo run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_report_browser import CHROMIUM, Chromium  # noqa: E402


@torch.no_grad()
def main(run_dir: str, reps: int = 200) -> dict:
    from aelab.explore import write_explorer
    from aelab.run import load_run

    run = load_run(run_dir)
    page = run.path / "explore.html"
    if not page.is_file():
        write_explorer([run], maps=["pca"])
    x = run.load_data().x_test[:100]
    x = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).astype(np.float32) / 255  # as the page holds them
    z = run.model.encode(torch.from_numpy(x)).reshape(100, -1)
    y = run.model.decode(z.reshape(100, *run.model.code_shape)).reshape(100, -1)
    if CHROMIUM is None:
        sys.exit("chromium not installed")
    b = Chromium()
    try:
        b.open(page.resolve().as_uri())
        got_z = np.array(b.evaluate("(() => { const rv = aelab.runs[0], z = [];"
                                    "for (let i = 0; i < 100; i++) z.push(Array.from(rv.net.encode(aelab.image(i)))); return z; })()"))
        got_y = np.array(b.evaluate(f"(() => {{ const rv = aelab.runs[0]; return {json.dumps(z.numpy().tolist())}"
                                    ".map(c => Array.from(rv.net.decode(Float32Array.from(c)))); })()"))
        # one encode+decode: 20 blocks of `reps` calls on 10 test images (performance.now() is coarse,
        # so each block is timed whole and divided), median over the blocks
        b.evaluate("(() => { const rv = aelab.runs[0]; for (let i = 0; i < 20; i++) rv.net.decode(rv.net.encode(aelab.image(i % 10))); })()")
        one = b.evaluate("(() => { const rv = aelab.runs[0], t0 = performance.now();"
                         "for (let i = 0; i < 10; i++) rv.net.decode(rv.net.encode(aelab.image(i))); return (performance.now() - t0) / 10; })()")
        reps = int(max(5, min(reps, 200 / max(one, 1e-3))))  # blocks of about 0.2 s
        ms = b.evaluate(f"(() => {{ const rv = aelab.runs[0], xs = [...Array(10).keys()].map(aelab.image), m = [];"
                        f"for (let k = 0; k < 20; k++) {{ const t0 = performance.now();"
                        f"for (let r = 0; r < {reps}; r++) rv.net.decode(rv.net.encode(xs[r % 10]));"
                        f"m.push((performance.now() - t0) / {reps}); }} m.sort((a, b) => a - b); return m; }})()")
        per_call = b.evaluate(f"aelab.bench(aelab.runs[0], {reps}, aelab.image(0))")
        ua = b.evaluate("navigator.userAgent")
        errors = b.console_errors()
    finally:
        b.close()
    return {"run": str(run.path), "page": str(page), "page_mb": round(page.stat().st_size / 1e6, 2),
            "encode_max_abs_diff": float(np.abs(got_z - z.numpy()).max()),
            "decode_max_abs_diff": float(np.abs(got_y - y.numpy()).max()),
            "encode_decode_ms_per_block": [round(v, 4) for v in ms], "encode_decode_ms_median": float(np.median(ms)),
            "encode_decode_ms_median_single_calls": per_call, "calls_per_block": reps, "load_average": list(__import__("os").getloadavg()),
            "browser": ua, "console_errors": errors}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=2))
