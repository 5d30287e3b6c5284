"""K-sample NLL of test rows [A:B] of a run (the first B test images binarised once with seed 0), to extend an
`aelab eval RUN --nll K --nll-limit A` estimate to more images.

    .venv/bin/python benchmarks/nll_rows.py RUN A B K
"""

import json
import sys

from aelab.evaluate.likelihood import binarize_once, importance_weighted_nll
from aelab.run import load_run

run = load_run(sys.argv[1])
a, b, k = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x = binarize_once(run.load_data().x_test[:b], seed=0)[a:b].numpy()
print(sys.argv[1], a, b, json.dumps(importance_weighted_nll(run.model, x, k=k, seed=0, binarize=False)), flush=True)
