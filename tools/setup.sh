#!/usr/bin/env bash
# Create .venv (Python 3.11) and install robopolicy with the tested versions (constraints.txt).
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY="$c"; break; fi
  done
fi
if [ -z "$PY" ]; then echo "error: robopolicy needs Python 3.11; install it or set PYTHON=/path/to/python3.11." >&2; exit 2; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e . >.venv/pip-install.log 2>&1; then
  cat .venv/pip-install.log >&2
  echo "error: pip could not install robopolicy's dependencies (log above, also in .venv/pip-install.log)." >&2
  exit 2
fi
.venv/bin/python -c 'import robopolicy, torch, zarr, mujoco, metaworld, diffusers' || { echo "error: the install did not complete; see the pip output above." >&2; exit 2; }
