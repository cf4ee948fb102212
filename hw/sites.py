"""Finding the instructions the machine must see individually, in newly mapped code.

Unicorn cannot hook clflush, clflushopt, clwb, the fences, wbinvd, non-temporal stores or rdtsc
by type. When an executable mapping appears, its bytes are scanned for their opcodes; every
position where such an instruction could start (the opcode itself or up to three prefix bytes
before it) is decoded with capstone, and each decoding that is one of these instructions becomes a
site. A hook at a site fires only when execution really starts an instruction there, and checks
the bytes at run time, so false candidates cost nothing.

The sites of a piece of code are kept on disk too (EMU_CACHE_DIR or ~/.cache/emu, `sites/`),
keyed by the code's hash, where it is mapped, this file's source and the capstone it decoded
with: every run maps the same libraries, and their scan (and importing capstone) was a tenth
of `emu run -- /bin/true`.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from unicorn import x86_const as U

# opcode bytes (after prefixes) that may begin one of the instructions we want
OPCODES = (b"\x0f\xae", b"\x0f\x09", b"\x0f\xc3", b"\x0f\xe7", b"\x0f\x2b", b"\x0f\x31", b"\x0f\x01\xf9")

PERSIST_KINDS = {
    "clflush": "clflush", "clflushopt": "clflushopt", "clwb": "clwb", "sfence": "sfence",
    "mfence": "mfence", "wbinvd": "wbinvd", "movnti": "nt", "movntdq": "nt", "movntps": "nt",
    "movntpd": "nt", "movntq": "nt",
}
TIME_KINDS = {"rdtsc": "rdtsc", "rdtscp": "rdtscp"}


@dataclass(frozen=True)
class Site:
    gva: int
    kind: str           # clflush clflushopt clwb sfence mfence wbinvd nt rdtsc rdtscp
    insn: bytes         # the instruction's bytes (checked at run time)
    base_reg: int = 0   # memory operand (unicorn register ids; 0 = none)
    index_reg: int = 0
    seg_reg: int = 0
    scale: int = 1
    disp: int = 0
    rip_relative: bool = False
    nt_bytes: int = 0   # bytes a non-temporal store writes


@functools.cache
def _disassembler() -> Any:
    from capstone import CS_ARCH_X86, CS_MODE_64, Cs

    md = Cs(CS_ARCH_X86, CS_MODE_64)
    md.detail = True
    return md


def _uc_reg(cs_reg: int) -> int:
    from capstone import x86_const as C

    if cs_reg == C.X86_REG_INVALID:
        return 0
    name = _disassembler().reg_name(cs_reg)
    if name == "fs":
        return U.UC_X86_REG_FS_BASE
    if name == "gs":
        return U.UC_X86_REG_GS_BASE
    return getattr(U, "UC_X86_REG_" + name.upper(), 0)


_scanned: dict[tuple[bytes, int], list[Site]] = {}


def scan(code: bytes, base_gva: int) -> list[Site]:
    """Sites in `code`, which is mapped at base_gva (remembered for the process's lifetime and
    on disk: every machine maps the same libraries at the same addresses)."""
    key = (hashlib.blake2b(code, digest_size=16).digest(), base_gva)
    hit = _scanned.get(key)
    if hit is None:
        path = _cache_file(key[0], base_gva)
        hit = _load(path) if path is not None else None
        if hit is None:
            hit = _scan(code, base_gva)
            if path is not None:
                _save(path, hit)
        _scanned[key] = hit
    return hit


@functools.cache
def _cache_dir() -> Path | None:
    """sites/ of the cache, under a name that changes with this file and with capstone (None:
    capstone is not installed; _scan will say so)."""
    spec = importlib.util.find_spec("capstone")
    if spec is None or spec.origin is None:
        return None
    st = os.stat(spec.origin)
    tag = hashlib.blake2b(Path(__file__).read_bytes() + f"{spec.origin}:{st.st_size}:{st.st_mtime_ns}".encode(),
                          digest_size=8).hexdigest()
    base = os.environ.get("EMU_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "emu")
    return Path(base) / "sites" / tag


def _cache_file(digest: bytes, base_gva: int) -> Path | None:
    d = _cache_dir()
    return d / f"{digest.hex()}-{base_gva:x}.json" if d is not None else None


def _load(path: Path) -> list[Site] | None:
    try:
        rows = json.loads(path.read_text())
        return [Site(r[0], r[1], bytes.fromhex(r[2]), *r[3:]) for r in rows]
    except (OSError, ValueError, TypeError, IndexError):
        return None  # absent or unreadable: scan again


def _save(path: Path, sites: list[Site]) -> None:
    rows = [[s.gva, s.kind, s.insn.hex(), *astuple(s)[3:]] for s in sites]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(rows))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: scan again next time


def _scan(code: bytes, base_gva: int) -> list[Site]:
    from capstone import x86_const as C

    md = _disassembler()
    starts: set[int] = set()
    for op in OPCODES:
        i = code.find(op)
        while i >= 0:
            starts.update(range(max(0, i - 3), i + 1))
            i = code.find(op, i + 1)
    sites = []
    for start in sorted(starts):
        insn = next(md.disasm(code[start : start + 15], base_gva + start, 1), None)
        if insn is None:
            continue
        kind = PERSIST_KINDS.get(insn.mnemonic) or TIME_KINDS.get(insn.mnemonic)
        if kind is None:
            continue
        site = Site(base_gva + start, kind, bytes(insn.bytes))
        mem = next((o for o in insn.operands if o.type == C.X86_OP_MEM), None)
        if mem is not None:
            rip = mem.mem.base == C.X86_REG_RIP
            site = Site(site.gva, kind, site.insn, 0 if rip else _uc_reg(mem.mem.base), _uc_reg(mem.mem.index),
                        _uc_reg(mem.mem.segment), mem.mem.scale, mem.mem.disp, rip,
                        mem.size if kind == "nt" else 0)
        sites.append(site)
    return sites
