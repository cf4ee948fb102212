"""Builds and loads the machine's native hot path (`hotpath.c`) through cffi.

The C code links against the very libunicorn and libcapstone that the Python wheels ship, so it
can be registered straight with the Unicorn engine the binding opened. The build happens on first
use and is cached by a hash of the source and the library paths, so a fresh machine needs only
gcc and the Python headers.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent

CDEF = """
typedef struct uc_struct uc_engine;
struct icache;
struct emu_state {
    uint64_t cr3;
    struct icache *icache;
    uint64_t fault_gva;
    int fault_access;
    int fault_pending;
    uint64_t icount;
    uint64_t deadline;
    int deadline_hit;
    uint64_t last_block_gva;
    uint32_t last_block_size;
    uint32_t last_block_count;
    uint64_t blocks_decoded;
    struct cm *cm;
    uc_engine *uc;
    uint32_t nt_remaining;
    int power_failed;
    uint64_t tlb_fills;
    ...;
};
struct emu_state *emu_state_new(void);
int emu_add_range(struct emu_state *st, uint64_t hpa, uint64_t size, uint8_t *host);
void emu_set_ept(struct emu_state *st, uint32_t *ept, uint8_t *bits, uint64_t pages);
int emu_install(uc_engine *uc, struct emu_state *st);
void emu_tlb_flush(uc_engine *uc);
struct icache *emu_icache_new(void);
void emu_icache_free(struct icache *ic);
void emu_icache_clear(struct icache *ic);
uint64_t emu_access(struct emu_state *st, uint64_t cr3, uint64_t gva, int access);
typedef struct uc_context uc_context;
int emu_read_regs(uc_engine *uc, uc_context *ctx, const int *ids, int n, uint8_t *out);
uint64_t emu_pt_leaves(struct emu_state *st, uint64_t cr3, uint64_t start, uint64_t end, uint64_t *out, uint64_t max);
uint64_t emu_translate(struct emu_state *st, uint64_t cr3, uint64_t gva, int access);
int emu_read_virt(struct emu_state *st, uint64_t cr3, uint64_t gva, uint8_t *buf, uint64_t n);
int emu_count_insns(struct emu_state *st, uint64_t gva, uint32_t size, uint64_t stop_gva);
"""

SITES_CDEF = """
struct site {
    struct emu_state *st;
    uint64_t gva;
    uint8_t bytes[16];
    uint32_t len;
    int kind;
    int base_reg, index_reg, seg_reg;
    int rip_relative;
    uint32_t scale;
    int64_t disp;
    uint32_t nt_bytes;
    uint64_t hits;
};
struct site *emu_site_new(struct emu_state *st);
int emu_site_install(uc_engine *uc, struct site *s);
int emu_install_mem_hook(uc_engine *uc, struct emu_state *st, uint64_t begin, uint64_t end);
void emu_attach_cache(uc_engine *uc, struct emu_state *st, struct cm *cm);
int emu_map_scm_mmio(uc_engine *uc, struct emu_state *st, uint64_t base, uint64_t size, uint8_t *host);
"""
SOURCES = ("hotpath.c", "cachemodel.c", "sites.c")  # one translation unit, in this order


def full_cdef() -> str:
    from hw.cachemodel import CACHE_CDEF

    return CDEF + CACHE_CDEF + SITES_CDEF


def _lib_dirs() -> tuple[Path, Path, Path, Path]:
    import capstone
    import unicorn

    uc_dir = Path(unicorn.__file__).parent
    cs_dir = Path(capstone.__file__).parent
    return uc_dir / "include", uc_dir / "lib", cs_dir / "include", cs_dir / "lib"


def _cache_dir() -> Path:
    base = os.environ.get("EMU_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "emu")
    return Path(base) / "native"


def load() -> tuple[Any, Any]:
    """Return (ffi, lib) of the compiled hot path, building it if needed."""
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
        include_dirs=[str(uc_inc), str(cs_inc)],
        extra_compile_args=["-O2", "-std=gnu11"],
        extra_link_args=[
            f"-L{uc_lib}", "-l:libunicorn.so.2", f"-Wl,-rpath,{uc_lib}",
            f"-L{cs_lib}", "-l:libcapstone.so", f"-Wl,-rpath,{cs_lib}",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(ffi.compile(tmpdir=tmp, verbose=False))
        final = out / built.name
        os.replace(built, final)
    return final
