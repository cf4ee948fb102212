"""Builds and loads the machine's native hot path (`hotpath.c`) through cffi.

The C code links against the very libunicorn and libcapstone that the Python wheels ship, so it
can be registered straight with the Unicorn engine the binding opened. The build happens on first
use and is cached by a hash of the source and the library paths, so a fresh machine needs only
gcc and the Python headers.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent

HEADER = "emu_abi.h"  # the structs and prototypes C and cffi share
SOURCES = ("hotpath.c", "eptscan.c", "ckptscan.c", "cachemodel.c", "sites.c")  # one translation unit, in this order
# What the includer of the header brings from Unicorn's and Capstone's headers.
_PRELUDE = """
typedef struct uc_struct uc_engine;
typedef struct uc_context uc_context;
typedef size_t csh;
"""
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_DEFINE = re.compile(r"#define\s+\w+\s+\d+\s*$")


def full_cdef() -> str:
    """The header as cffi's cdef: comments and preprocessor lines dropped (integer defines
    kept)."""
    lines = _COMMENT.sub("", (_HERE / HEADER).read_text()).splitlines()
    return _PRELUDE + "\n".join(ln for ln in lines if not ln.lstrip().startswith("#") or _DEFINE.match(ln.strip()))


def _lib_dirs() -> tuple[Path, Path, Path, Path]:
    import unicorn

    uc_dir = Path(unicorn.__file__).parent
    cs_spec = importlib.util.find_spec("capstone")  # its directory, without importing it (start-up)
    if cs_spec is None or cs_spec.origin is None:
        raise ImportError("the capstone package is missing (the native hot path links its library)")
    cs_dir = Path(cs_spec.origin).parent
    return uc_dir / "include", uc_dir / "lib", cs_dir / "include", cs_dir / "lib"


def _cache_dir() -> Path:
    base = os.environ.get("EMU_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "emu")
    return Path(base) / "native"


@functools.cache
def load() -> tuple[Any, Any]:
    """Return (ffi, lib) of the compiled hot path, building it if needed (once a process)."""
    uc_inc, uc_lib, cs_inc, cs_lib = _lib_dirs()
    sources = ["\n".join((_HERE / f).read_text() for f in SOURCES)]
    cdef = full_cdef()
    key = hashlib.sha256("\0".join(sources + [cdef, str(uc_lib), str(cs_lib), sys.version]).encode()).hexdigest()[:16]
    name = f"_emu_hotpath_{key}"
    out = _cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    so = next(out.glob(name + "*.so"), None)
    if so is None:
        import fcntl

        with open(out / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            so = next(out.glob(name + "*.so"), None)
            if so is None:
                so = _build(name, sources[0], cdef, out, uc_inc, uc_lib, cs_inc, cs_lib)
    # The library needs libcapstone.so.5, which the wheel ships as libcapstone.so: load that by
    # its path first, as importing capstone does (with its mode), without the import (a
    # twentieth of a start-up).
    import ctypes

    ctypes.CDLL(str(cs_lib / "libcapstone.so"), mode=getattr(os, "RTLD_DEEPBIND", 0))
    spec = importlib.util.spec_from_file_location(name, so)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ffi, mod.lib


def _build(name: str, source: str, cdef: str, out: Path, uc_inc: Path, uc_lib: Path, cs_inc: Path, cs_lib: Path) -> Path:
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(
        name,
        source,
        include_dirs=[str(_HERE), str(uc_inc), str(cs_inc)],
        extra_compile_args=["-O2", "-std=gnu11"],
        extra_link_args=[
            f"-L{uc_lib}", "-l:libunicorn.so.2", f"-Wl,-rpath,{uc_lib}",
            f"-L{cs_lib}", "-l:libcapstone.so", f"-Wl,-rpath,{cs_lib}",
            "-l:libz.so.1",  # crc32 of checkpoint pages (ckptscan.c; the runtime library, no headers)
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(ffi.compile(tmpdir=tmp, verbose=False))
        final = out / built.name
        os.replace(built, final)
    return final
