"""Shared-library closure of ELF executables, computed from their dynamic sections.

Only pyelftools is used (no ``ldd``): for each binary we read ``PT_INTERP`` and the
``DT_NEEDED`` / ``DT_RUNPATH`` / ``DT_RPATH`` entries of its dynamic section and resolve
every needed soname recursively, the way glibc's loader does for a cache-less system:
RPATH (only when there is no RUNPATH), RUNPATH, then the default directories.

Libraries are installed in the guest under ``/lib/x86_64-linux-gnu/<soname>`` (the
loader's default search directory) and the interpreter at its exact ``PT_INTERP`` path.
"""

from __future__ import annotations

import json
import os
from dataclasses import astuple, dataclass, field
from pathlib import Path

DEFAULT_LIB_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib",
)
GUEST_LIB_DIR = "/lib/x86_64-linux-gnu"


class ElfDepsError(Exception):
    """A binary is not a usable x86-64 ELF or a needed library cannot be found."""


@dataclass(frozen=True)
class ElfInfo:
    path: str
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    soname: str | None
    machine: str
    elfclass: int


def _split_paths(value: str, origin: str) -> tuple[str, ...]:
    out = []
    for p in value.split(":"):
        if not p:
            continue
        p = p.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
        out.append(p)
    return tuple(out)


# What elf_info read, by file identity (path, device, inode, size, mtime): every emu start
# checks that the cached image is fresh, which needs the closure of the recipe's binaries, and
# parsing some 60 ELF files with pyelftools was most of emu's start-up. `load_cache`/`save_cache`
# keep it across processes (images/build.py puts it beside the cached images).
_cache: dict[str, ElfInfo] = {}
_cache_new = False


def _identity(path: str) -> str:
    st = os.stat(path)
    return f"{path}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"


def load_cache(file: Path) -> None:
    """Adopt a cache file save_cache wrote (a missing or unreadable one is ignored)."""
    try:
        rows = json.loads(file.read_text())
        for key, (path, interp, needed, rpath, runpath, soname, machine, elfclass) in rows.items():
            _cache.setdefault(key, ElfInfo(path, interp, tuple(needed), tuple(rpath), tuple(runpath),
                                           soname, machine, elfclass))
    except (OSError, ValueError, TypeError, AttributeError):
        pass


def save_cache(file: Path) -> None:
    """Write the cache if elf_info parsed anything new since (atomically: concurrent starts)."""
    global _cache_new
    if not _cache_new:
        return
    tmp = file.with_name(f"{file.name}.tmp{os.getpid()}")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({k: astuple(v) for k, v in _cache.items()}))
        os.replace(tmp, file)
        _cache_new = False
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only cache directory: parse again next time


def elf_info(path: str | os.PathLike) -> ElfInfo:
    global _cache_new
    path = str(path)
    try:
        key = _identity(path)
    except OSError as e:
        raise ElfDepsError(f"cannot read {path}: {e}") from e
    info = _cache.get(key)
    if info is None:
        info = _cache[key] = _parse(path)
        _cache_new = True
    return info


def _parse(path: str) -> ElfInfo:
    # (pyelftools is imported only here: with the cache warm, emu starts without it)
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    origin = os.path.dirname(os.path.realpath(path))
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            interp = None
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    interp = seg.get_interp_name()
            needed: list[str] = []
            rpath: tuple[str, ...] = ()
            runpath: tuple[str, ...] = ()
            soname = None
            for sec in elf.iter_sections():
                if not isinstance(sec, DynamicSection):
                    continue
                for tag in sec.iter_tags():
                    t = tag.entry.d_tag
                    if t == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif t == "DT_RPATH":
                        rpath += _split_paths(tag.rpath, origin)
                    elif t == "DT_RUNPATH":
                        runpath += _split_paths(tag.runpath, origin)
                    elif t == "DT_SONAME":
                        soname = tag.soname
            return ElfInfo(path, interp, tuple(needed), rpath, runpath, soname,
                           elf["e_machine"], elf.elfclass)
    except OSError as e:
        raise ElfDepsError(f"cannot read {path}: {e}") from e
    except Exception as e:  # pyelftools raises ELFError and friends
        raise ElfDepsError(f"{path} is not a valid ELF file: {e}") from e


def is_elf(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _compatible(path: str, machine: str, elfclass: int) -> bool:
    try:
        info = elf_info(path)
    except ElfDepsError:
        return False
    return info.machine == machine and info.elfclass == elfclass


def resolve_soname(name: str, rpath=(), runpath=(), *, machine="EM_X86_64",
                   elfclass=64, lib_dirs=DEFAULT_LIB_DIRS) -> str:
    """Host path of library ``name`` (a soname, or a path if it contains a slash)."""
    if "/" in name:
        if os.path.exists(name):
            return name
        raise ElfDepsError(f"needed library {name} does not exist")
    dirs = (() if runpath else tuple(rpath)) + tuple(runpath) + tuple(lib_dirs)
    for d in dirs:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and _compatible(cand, machine, elfclass):
            return cand
    raise ElfDepsError(f"shared library {name} not found in {':'.join(dirs)}")


@dataclass
class Closure:
    """guest path -> host path (host paths are fully resolved real files)."""

    interpreters: dict[str, str] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    # soname -> guest path, for reporting
    sonames: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, str]:
        out = dict(self.interpreters)
        out.update(self.libraries)
        return out


def closure(binaries, *, lib_dirs=DEFAULT_LIB_DIRS, guest_lib_dir=GUEST_LIB_DIR) -> Closure:
    """Compute the dynamic-library closure of ``binaries`` (host paths).

    Static executables and non-ELF files (scripts) contribute nothing.
    """
    result = Closure()
    interp_real: dict[str, str] = {}  # realpath -> guest path of interpreters
    seen: set[str] = set()
    queue: list[tuple[str, ElfInfo]] = []

    for b in binaries:
        if not is_elf(b):
            continue
        info = elf_info(b)
        if info.interp:
            host = os.path.realpath(info.interp)
            if not os.path.exists(host):
                raise ElfDepsError(f"interpreter {info.interp} of {b} not found")
            result.interpreters[info.interp] = host
            interp_real[host] = info.interp
            result.sonames[os.path.basename(info.interp)] = info.interp
        queue.append((b, info))

    while queue:
        who, info = queue.pop(0)
        for name in info.needed:
            host = resolve_soname(name, info.rpath, info.runpath, machine=info.machine,
                                  elfclass=info.elfclass, lib_dirs=lib_dirs)
            real = os.path.realpath(host)
            if real in interp_real:
                # The loader itself: already mapped by the kernel, matched by soname.
                result.sonames.setdefault(name, interp_real[real])
                continue
            guest = name if "/" in name else f"{guest_lib_dir}/{name}"
            if guest in result.libraries:
                continue
            result.libraries[guest] = real
            result.sonames[name] = guest
            if real not in seen:
                seen.add(real)
                queue.append((real, elf_info(real)))
    return result
