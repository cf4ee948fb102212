"""The patched libunicorn: Unicorn 2.1.4's published source with `unicorn/icount.patch`, which
counts retired instructions inside the translated code (no call per translation block; see the
patch and hotpath.c's emu_install), and `unicorn/memcb.patch`, a direct callback for guest loads
and stores (level full's cache model without Unicorn's hook dispatch; see sites.c's
emu_install_mem_hook), and `unicorn/tlb.patch`: a one-page TLB flush (a checkpoint that clears
a few dirty bits invalidates those pages, not the whole TLB) and TLB fills without a PC sync
(hotpath.c's fill callback reads no register).

`scripts/setup.sh` builds it (`main(["build"])`: the sdist from PyPI through pip, the patch,
cmake for x86 only: 20-50 s on 2 cores; cmake and patch are the only tools it needs besides gcc)
into `~/.cache/emu/unicorn/<key>/libunicorn.so.2`, the key a hash of the patches and the build
(a changed patch builds anew).
The venv's unicorn package is not touched: `select()`, called by the `hw` and `guestkernel`
packages before anything imports unicorn, imports the binding with its `LIBUNICORN_PATH`
pointing at that library. Without the build (no cmake, no network) or with `EMU_UNICORN=stock`,
the stock wheel loads and the block hook counts, with the same counts.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "2.1.4"
SDIST_SHA256 = "00567a70e323f749b419cd86bee4f9115beab7ebba32194581c090cbb7c59cff"
PATCHES = tuple(Path(__file__).parent / "unicorn" / p for p in ("icount.patch", "memcb.patch", "tlb.patch"))  # in this order
LIBRARY = "libunicorn.so.2"
CMAKE_ARGS = ("-DCMAKE_BUILD_TYPE=Release", "-DUNICORN_ARCH=x86", "-DUNICORN_BUILD_TESTS=off",
              "-DUNICORN_INSTALL=off", "-DUNICORN_LEGACY_STATIC_ARCHIVE=off")


def _base() -> Path:
    base = os.environ.get("EMU_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "emu")
    return Path(base) / "unicorn"


def build_dir() -> Path:
    """Where the library of this patch and these build settings lives."""
    parts = [VERSION.encode(), *(p.read_bytes() for p in PATCHES), " ".join(CMAKE_ARGS).encode()]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    return _base() / key


def select() -> str | None:
    """Load unicorn with the patched library, if it is built and unicorn is not loaded yet.
    Returns the directory in use (None: the stock wheel). An explicit LIBUNICORN_PATH wins;
    EMU_UNICORN=stock keeps the wheel. The variable is set only while unicorn loads: other
    programs started from here (qiling, with its own unicorn) must not inherit it."""
    if os.environ.get("EMU_UNICORN") == "stock":
        return None
    if "LIBUNICORN_PATH" in os.environ:
        return os.environ["LIBUNICORN_PATH"]
    if "unicorn" in sys.modules:
        return None
    d = build_dir()
    if not (d / LIBRARY).is_file():
        return None
    os.environ["LIBUNICORN_PATH"] = str(d)
    try:
        import unicorn  # noqa: F401  (the binding loads its library as it is imported)
    finally:
        del os.environ["LIBUNICORN_PATH"]
    return str(d)


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{(p.stdout + p.stderr)[-3000:]}")


def _sdist(work: Path) -> Path:
    cached = _base() / f"unicorn-{VERSION}.tar.gz"
    if not cached.is_file():
        _run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", f"unicorn=={VERSION}",
              "--no-binary", ":all:", "--no-deps", "-d", str(work)])
        got = work / cached.name
        if hashlib.sha256(got.read_bytes()).hexdigest() != SDIST_SHA256:
            raise RuntimeError(f"{got.name}: unexpected sha256")
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(got), cached)
    return cached


def build() -> Path:
    """Build the patched library (if not built yet); returns its directory."""
    out = build_dir()
    if (out / LIBRARY).is_file():
        return out
    for tool in ("cmake", "patch"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} is missing (Debian packages cmake and patch)")
    _base().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=_base()) as td:
        work = Path(td)
        with tarfile.open(_sdist(work)) as tar:
            tar.extractall(work, filter="data")
        src = work / f"unicorn-{VERSION}" / "src"
        for patch in PATCHES:
            _run(["patch", "-s", "-p1", "-i", str(patch)], cwd=src)
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(["cmake", "-S", str(src), "-B", str(work / "build"), *gen, *CMAKE_ARGS])
        _run(["cmake", "--build", str(work / "build"), "-j", str(os.cpu_count() or 1)])
        staged = work / "out"
        staged.mkdir()
        shutil.copy2(work / "build" / LIBRARY, staged / LIBRARY)
        for patch in PATCHES:
            shutil.copy2(patch, staged / patch.name)
        try:
            os.replace(staged, out)  # whole or absent
        except OSError:
            if not (out / LIBRARY).is_file():  # else another build finished first
                raise
    return out


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    if cmd == "build":
        try:
            print(build())
        except (OSError, RuntimeError, tarfile.TarError) as e:
            print(f"emu: the patched libunicorn was not built ({e}); the stock wheel will be used", file=sys.stderr)
            return 1
        return 0
    if cmd == "status":
        d = build_dir()
        print(f"{d} {'built' if (d / LIBRARY).is_file() else 'not built'}")
        return 0
    print("usage: main(['build']) or main(['status'])", file=sys.stderr)
    return 2
