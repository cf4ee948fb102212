#!/usr/bin/env bash
# Set up everything emu needs on a fresh Debian machine with Python 3.11 and gcc:
# a virtual environment with the Python dependencies, the native hot path (C via cffi) and
# e2fsprogs (mke2fs, debugfs, e2fsck), and stress-ng and fio for the stress image. Guest images
# are built on first use and cached.
# Idempotent and quiet when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! command -v mke2fs >/dev/null 2>&1 && ! [ -x /usr/sbin/mke2fs ] && ! [ -x /sbin/mke2fs ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing e2fsprogs" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq e2fsprogs >/dev/null
  else
    echo "setup: e2fsprogs (mke2fs, debugfs, e2fsck) is missing: install the Debian package e2fsprogs" >&2
    exit 1
  fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

# The base image (images/recipes/base.py) copies the host's procps (free, vmstat, ps); the
# stress image (images/recipes/stress.py) its stress-ng and fio; the hybrid image
# (images/recipes/hybrid.py) its stress, xz, bzip2 and pigz; the nas image (images/recipes/nas.py)
# util-linux's losetup, mount and umount (command:package).
missing=()
for cp in free:procps vmstat:procps stress-ng:stress-ng fio:fio stress:stress xz:xz-utils bzip2:bzip2 pigz:pigz \
          losetup:mount mount:mount umount:mount; do
  command -v "${cp%%:*}" >/dev/null 2>&1 || missing+=("${cp##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: ${missing[*]} missing (the base, stress, hybrid and nas images need them): install the Debian packages ${missing[*]}" >&2
  fi
fi

stamp=.venv/.emu-setup
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv and installing dependencies" >&2
  if ! "$PY" -m venv .venv >/dev/null 2>&1; then
    # Debian splits venv/ensurepip into python3-venv.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && "$PY" -m venv .venv
    else
      echo "setup: '$PY -m venv' failed: install the Debian package python3-venv" >&2
      exit 1
    fi
  fi
  if ! .venv/bin/python -m pip install --disable-pip-version-check -e '.[test,cluster]' >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    echo "setup: pip install failed (log above)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
# Build (or find cached) the native hot path.
.venv/bin/python -c "from hw.native import load; load()"
# The patched libunicorn that counts instructions in the translated code and calls level full's
# cache model directly (hw/native/ucpatch.py): Unicorn's published source from PyPI, the patches,
# cmake (x86 only, about a minute on 2 cores), cached under ~/.cache/emu/unicorn/<hash of the
# patches> (a changed patch builds anew). Optional: without it the stock wheel runs, slower, with
# the same counts. EMU_UNICORN=stock skips it.
if [ "${EMU_UNICORN:-}" != stock ]; then
  ucmissing=()
  for cp in cmake:cmake patch:patch; do
    command -v "${cp%%:*}" >/dev/null 2>&1 || ucmissing+=("${cp##*:}")
  done
  if [ ${#ucmissing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${ucmissing[*]} (to build the patched libunicorn)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${ucmissing[@]}" >/dev/null || true
  fi
  if ! .venv/bin/python -c "from hw.native.ucpatch import build_dir, LIBRARY; import sys; sys.exit(not (build_dir() / LIBRARY).is_file())"; then
    echo "setup: building the patched libunicorn (hw/native/unicorn/*.patch)" >&2
    .venv/bin/python -c "from hw.native.ucpatch import main; import sys; sys.exit(main(['build']))" >/dev/null || true
  fi
fi
# Bytecode for emu's own modules: where PYTHONDONTWRITEBYTECODE is set, Python would compile
# every module at every start (0.15 s of `emu run /bin/true`); it still reads what is here.
.venv/bin/python -m compileall -q emu vmm hw guestkernel images >/dev/null
