"""`aelab explore RUN [RUN2]`: writes the explorer page (aelab.explore) and prints its path."""

from __future__ import annotations

import argparse
import sys

NAME = "explore"

DESCRIPTION = """\
Write one self-contained HTML page (no network, no server) in which the run's encoder and
decoder run in the browser on the page's own weights: draw an input or pick a test image,
watch the reconstruction and the code, move code values with sliders, explore the map of
test codes (PCA, t-SNE), VAE grids and traversals, the noise of denoising runs, the anomaly
score against the threshold of `aelab score RUN`, and the first layer's weights.

  aelab explore runs/demo            -> runs/demo/explore.html
  aelab explore runs/a runs/b        -> explore.html: both runs on the same input

A run the page cannot run (an unsupported layer, vector inputs) is named with the reason:
alone, as an error (exit 2, no page); beside a run that works, here and in its column of the page.
"""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "explore",
        help="interactive page: the run's model in the browser (draw, slide the code, maps)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="one run directory, or two to compare")
    p.add_argument(
        "-o", "--output", metavar="HTML", help="page to write (default RUN/explore.html; explore.html for two runs)"
    )
    p.add_argument("--points", type=int, default=1000, help="test images in the page and on the map (default 1000)")
    p.add_argument(
        "--map", default="pca,tsne", help="2-D maps of the codes, comma-separated: pca, tsne (default pca,tsne)"
    )
    return p


def run(a: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..explore import write_explorer

    if len(a.runs) > 2:
        raise ConfigError(f"explore: give one run, or two to compare side by side; got {len(a.runs)}")
    maps = [m.strip() for m in a.map.split(",") if m.strip()]
    if not maps:
        raise ConfigError("--map: name at least one of pca, tsne")
    out = write_explorer(a.runs, a.output, points=a.points, maps=maps, log=lambda s: print(s, file=sys.stderr))
    print(f"explorer written to {out}")
    return 0
