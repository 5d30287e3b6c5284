"""Spread of the K-sample NLL across importance-draw seeds 0..4 on the first N test images (binarised once, seed 0).

.venv/bin/python benchmarks/nll_seed_spread.py RUN N K
"""

import json
import sys

import numpy as np

from aelab.evaluate.likelihood import binarize_once, importance_weighted_nll
from aelab.run import load_run

run = load_run(sys.argv[1])
n, k = int(sys.argv[2]), int(sys.argv[3])
x = binarize_once(run.load_data().x_test[:n], seed=0).numpy()
out = []
for s in range(5):
    r = importance_weighted_nll(run.model, x, k=k, seed=s, binarize=False)
    out.append(r["nll"])
    print(s, json.dumps(r), flush=True)
print("mean", np.mean(out), "std across seeds", np.std(out, ddof=1), "range", max(out) - min(out))
