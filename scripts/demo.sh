#!/usr/bin/env bash
# The main demo: boot the default machine on (a fresh copy of) the default image, run its
# /sbin/init (grep, gzip, tar on the data set) and print the run summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PATH:/usr/sbin:/sbin"
exec .venv/bin/emu boot --summary "$@"
