#!/bin/bash
# Runs every single-run recipe (suites are made of them) into OUTROOT/NAME, JOBS at a time.
# RECIPES="a b" limits it to those. Used for the full-epoch rows of docs/RESULTS.md:  scripts/run_recipes.sh runs/recipes-cuda 8 --set train.device=cuda
set -u
out=${1:?usage: run_recipes.sh OUTROOT [JOBS] [--set KEY=VALUE ...]}; jobs=${2:-1}; shift 2 || shift $#
aelab=${AELAB:-aelab}
names=${RECIPES:-$(for f in src/aelab/recipes/*.yaml; do grep -q '^suite:' "$f" || basename "$f" .yaml; done)}
mkdir -p "$out"
running=0
for n in $names; do
  [ -f "$out/$n/summary.json" ] && continue
  ( $aelab train "$n" --out "$out/$n" --overwrite "$@" > "$out/$n.log" 2>&1; echo "$n exit $?" ) &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
