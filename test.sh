#!/usr/bin/env bash
# Runs the whole test suite in the project's venv (made by ./setup.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  echo "test.sh: .venv is missing; run ./setup.sh first" >&2
  exit 1
fi
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
