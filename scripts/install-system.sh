#!/usr/bin/env bash
# System packages some optional features use (headless Chromium for the
# report's browser test). Installed with apt where we are root; otherwise the
# tests that need them are skipped with the reason.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian package chromium (for the report's browser test)"
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "could not install chromium; the browser test will be skipped"
fi
exit 0
