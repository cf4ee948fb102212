#!/usr/bin/env bash
# Run the tests (set-up included): `ruff check`, then the default suite twice, once with every
# machine's EPT as built and once with it shuffled (`ept.initial=shuffled`: a seeded permutation
# of host pages within each pool, so no part may assume gpa == hpa). Extra arguments go to one
# pytest run instead, e.g. `-m slow` for the long suites or `-k grep`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PATH:/usr/sbin:/sbin"
workers=()
if .venv/bin/python -c "import xdist" 2>/dev/null; then workers=(-n "${EMU_TEST_WORKERS:-2}"); fi
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "${workers[@]}" "$@"
fi
.venv/bin/ruff check emu vmm hw guestkernel images tests bench
.venv/bin/python -m pytest "${workers[@]}"
echo "test.sh: the default suite again, every machine's EPT shuffled (EMU_SET=ept.initial=shuffled)"
EMU_SET="ept.initial=shuffled" exec .venv/bin/python -m pytest "${workers[@]}"
