#!/bin/bash
# Whole commands: five `aelab train` runs of one recipe one after another (seeds 0-4, 10 epochs, no report)
# against one `aelab sweep --seeds 5` (stacked) and, with NOSTACK=1, `--no-stack`; prints wall seconds and
# the ratio. Run it several times: the two sides take turns, but a shared machine moves between them.
#
#     benchmarks/sweep_vs_trains.sh [RECIPE] [TAG]          # default seed004-dense32-adam
#     AELAB=.venv/bin/aelab NOSTACK=1 benchmarks/sweep_vs_trains.sh
set -euo pipefail
RECIPE=${1:-seed004-dense32-adam}
TAG=${2:-run}
AELAB=$(realpath "${AELAB:-$(command -v aelab)}")
WORK=$(mktemp -d /tmp/aelab-sweep-vs-trains.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
now() { date +%s.%N; }
a=$(now)
for s in 0 1 2 3 4; do
    "$AELAB" train "$RECIPE" --set train.seed=$s --set train.epochs=10 --out t$s --no-report > /dev/null
done
b=$(now)
"$AELAB" sweep "$RECIPE" --seeds 5 --set train.epochs=10 --out stack > /dev/null
c=$(now)
line=$(python3 -c "a,b,c=$a,$b,$c; print('%s: five trains %.2f s, sweep --seeds 5 %.2f s: %.2fx' % ('$TAG', b-a, c-b, (b-a)/(c-b)))")
if [ "${NOSTACK:-0}" = 1 ]; then
    "$AELAB" sweep "$RECIPE" --seeds 5 --no-stack --set train.epochs=10 --out nostack > /dev/null
    d=$(now)
    line="$line; --no-stack $(python3 -c "print('%.2f s' % ($d-$c))")"
fi
echo "$line ($(cut -d' ' -f1-3 /proc/loadavg))"
