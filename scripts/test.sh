#!/usr/bin/env bash
# Run the test suite (set-up included). Extra arguments go to pytest, e.g. `-m slow` for the
# long suites or `-k grep`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PATH:/usr/sbin:/sbin"
workers=()
if .venv/bin/python -c "import xdist" 2>/dev/null; then workers=(-n "${EMU_TEST_WORKERS:-2}"); fi
exec .venv/bin/python -m pytest "${workers[@]}" "$@"
