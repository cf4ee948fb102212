"""ELF loading for execve: static, PIE and dynamically linked x86-64 executables.

Segments become file-backed private mappings (filled on first touch through the page cache); the
dynamic loader named by PT_INTERP is loaded from the guest's own image; the initial stack carries
argc, argv, envp and the auxiliary vector (AT_RANDOM from the seeded generator), laid out as
Linux's `create_elf_tables` does.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from guestkernel.errors import ENOEXEC, SyscallError
from guestkernel.mm import MM, PAGE, PIE_BASE, PROT_EXEC, PROT_READ, PROT_WRITE, STACK_SIZE, STACK_TOP, Backing, page_down, page_up

ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK = 1, 3, 6, 0x6474E551
INTERP_BASE = 0x7FFFF7FC3000 - 0x40000  # where Linux (no ASLR) puts ld.so, give or take

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_MINSIGSTKSZ = 23, 25, 26, 31, 51

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")


@dataclass
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


@dataclass
class ElfImage:
    etype: int
    entry: int
    phoff: int
    phnum: int
    segments: list[Segment]
    interp: bytes | None


def parse(header: bytes, read_at) -> ElfImage:  # type: ignore[no-untyped-def]
    """Parse the ELF header and program headers; ENOEXEC for anything we cannot run."""
    if len(header) < _EHDR.size or header[:4] != b"\x7fELF":
        raise SyscallError(ENOEXEC, "not an ELF file")
    ident, etype, machine, version, entry, phoff, shoff, flags, ehsize, phentsize, phnum, *_ = _EHDR.unpack_from(header)
    if ident[4] != 2 or ident[5] != 1:
        raise SyscallError(ENOEXEC, "not a 64-bit little-endian ELF")
    if machine != EM_X86_64 or etype not in (ET_EXEC, ET_DYN):
        raise SyscallError(ENOEXEC, "not an x86-64 executable")
    if phentsize != _PHDR.size or not 0 < phnum <= 128:
        raise SyscallError(ENOEXEC, "bad program header table")
    raw = read_at(phoff, phnum * _PHDR.size)
    if len(raw) != phnum * _PHDR.size:
        raise SyscallError(ENOEXEC, "truncated program header table")
    segs = []
    interp = None
    for i in range(phnum):
        ptype, pflags, off, vaddr, paddr, filesz, memsz, align = _PHDR.unpack_from(raw, i * _PHDR.size)
        segs.append(Segment(ptype, pflags, off, vaddr, filesz, memsz))
        if ptype == PT_INTERP:
            if not 1 < filesz < 4096:
                raise SyscallError(ENOEXEC, "bad PT_INTERP")
            interp = read_at(off, filesz).split(b"\0")[0]
    loads = [s for s in segs if s.type == PT_LOAD]
    if not loads:
        raise SyscallError(ENOEXEC, "no loadable segment")
    for s in loads:
        if s.filesz > s.memsz or (s.offset - s.vaddr) % PAGE or s.vaddr + s.memsz >= 1 << 47:
            raise SyscallError(ENOEXEC, "bad PT_LOAD segment")
    return ElfImage(etype, entry, phoff, phnum, segs, interp)


def map_image(mm: MM, img: ElfImage, backing: Backing, base: int, path: bytes = b"") -> tuple[int, int]:
    """Map the PT_LOAD segments at load bias `base` (named by the file's `path`, as
    /proc/PID/maps shows them). Returns (lowest address, end of bss)."""
    lo, brk = None, 0
    for s in img.segments:
        if s.type != PT_LOAD or s.memsz == 0:
            continue
        prot = (PROT_READ if s.flags & 4 else 0) | (PROT_WRITE if s.flags & 2 else 0) | (PROT_EXEC if s.flags & 1 else 0)
        start = page_down(base + s.vaddr)
        file_end = base + s.vaddr + s.filesz
        mem_end = base + s.vaddr + s.memsz
        off = s.offset - (base + s.vaddr - start)
        if s.filesz:
            mm.map(start, page_up(file_end) - start, prot, backing=backing, offset=off,
                   name=path.decode(errors="surrogateescape"))
            if mem_end > file_end and file_end % PAGE:
                # The page holding the end of the file data also holds the start of .bss: zero
                # its tail now (Linux's padzero), as the file's bytes there are other sections.
                tail = PAGE - file_end % PAGE
                gpa = mm.private_page(file_end)
                off = gpa & (PAGE - 1)
                mm.frames.page(gpa >> 12)[off : off + tail] = bytes(tail)
        anon_start = page_up(file_end) if s.filesz else start
        if page_up(mem_end) > anon_start:
            mm.map(anon_start, page_up(mem_end) - anon_start, prot, name="[bss]" if s.filesz else "")
        lo = start if lo is None else min(lo, start)
        brk = max(brk, mem_end)
    assert lo is not None
    return lo, brk


def load_bias(img: ElfImage, is_interp: bool) -> int:
    if img.etype == ET_EXEC:
        return 0
    first = min(s.vaddr for s in img.segments if s.type == PT_LOAD)
    return (INTERP_BASE if is_interp else PIE_BASE) - page_down(first)


def phdr_address(img: ElfImage, bias: int) -> int:
    for s in img.segments:
        if s.type == PT_PHDR:
            return bias + s.vaddr
    for s in img.segments:
        if s.type == PT_LOAD and s.offset <= img.phoff < s.offset + s.filesz:
            return bias + s.vaddr + (img.phoff - s.offset)
    return 0


def build_stack(mm: MM, argv: list[bytes], envp: list[bytes], auxv: list[tuple[int, int]], execfn: bytes,
                random16: bytes) -> int:
    """Create the stack mapping and lay out the initial process stack; returns the initial rsp."""
    mm.map(STACK_TOP - STACK_SIZE, STACK_SIZE, PROT_READ | PROT_WRITE, name="[stack]")
    sp = STACK_TOP
    strings = bytearray()

    def put_string(s: bytes) -> int:
        nonlocal sp
        sp -= len(s) + 1
        mm.copy_out(sp, s + b"\0")
        return sp

    execfn_ptr = put_string(execfn)
    env_ptrs = [put_string(e) for e in reversed(envp)][::-1]
    arg_ptrs = [put_string(a) for a in reversed(argv)][::-1]
    mm.arg_start, mm.arg_end = sp, env_ptrs[0] if env_ptrs else execfn_ptr
    mm.env_start, mm.env_end = mm.arg_end, execfn_ptr
    platform_ptr = put_string(b"x86_64")
    sp -= 16
    random_ptr = sp
    mm.copy_out(sp, random16)
    sp &= ~15
    auxv = auxv + [(AT_RANDOM, random_ptr), (AT_EXECFN, execfn_ptr), (AT_PLATFORM, platform_ptr), (AT_NULL, 0)]
    words = [len(argv)] + arg_ptrs + [0] + env_ptrs + [0]
    for k, v in auxv:
        words += [k, v]
    if len(words) % 2:
        sp -= 8  # keep rsp 16-byte aligned at entry
    sp -= 8 * len(words)
    mm.copy_out(sp, struct.pack(f"<{len(words)}Q", *words))
    mm.start_stack = sp
    del strings
    return sp
