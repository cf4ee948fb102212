"""Memory syscalls: mmap, munmap, mprotect, brk, mremap, madvise and friends."""
from __future__ import annotations

from guestkernel.errors import EACCES, EEXIST, EFAULT, EINVAL, ENODEV, ENOMEM, ENXIO, SyscallError
from guestkernel.mm import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, PAGE, PROT_WRITE,
                            PTE_ADDR,
                            TASK_SIZE, page_up)
from guestkernel.shm import ShmBacking
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import s32
from guestkernel.syscalls.ipc import registry
from guestkernel.vfs import DevFile, InodeFile, PmemFile

MAP_TYPE = 0x0F
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


@syscall("mmap")
def sys_mmap(k, p, addr, length, prot, flags, fd, offset):  # type: ignore[no-untyped-def]
    length = page_up(length)
    if length == 0 or length > TASK_SIZE or offset % PAGE or addr % PAGE and flags & MAP_FIXED:
        raise SyscallError(EINVAL)
    kind = flags & MAP_TYPE
    if kind not in (MAP_SHARED, MAP_PRIVATE, 3):
        raise SyscallError(EINVAL)
    shared = kind != MAP_PRIVATE
    backing = None
    if not flags & MAP_ANONYMOUS:
        f = p.fds.get(s32(fd))
        if isinstance(f, DevFile) and f.node.name == "zero":
            backing = None
        elif isinstance(f, PmemFile):
            if not shared:
                raise SyscallError(EINVAL)  # DAX mappings of pmem are shared here
            if offset + length > f.region.size:
                raise SyscallError(ENXIO)
            backing = f
        elif not isinstance(f, InodeFile) or f.is_dir():
            raise SyscallError(ENODEV)  # no mmap operation (a directory is readable: not EACCES)
        else:
            if not f.readable or (shared and prot & PROT_WRITE and not f.writable):
                raise SyscallError(EACCES)
            backing = k.file_backing(f.ino)
            if shared and not backing.shareable:
                raise SyscallError(ENODEV)  # blocks smaller than a page: no page to share
            k.vfs.relatime(f.ino, k.fs.stat(f.ino))  # mapping a file reads it (file_accessed)
    mm = p.mm
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        start = addr
        if start % PAGE or start + length > TASK_SIZE:
            raise SyscallError(EINVAL)
        if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED and mm.overlapping(start, start + length):
            raise SyscallError(EEXIST)
    else:
        start = mm.get_unmapped_area(length, addr)
    name = "[anon]" if backing is None else ("/dev/" + f.node.name if isinstance(f, PmemFile)
                                              else f.path.decode(errors="surrogateescape"))
    if shared and backing is None:
        # Shared anonymous memory (or /dev/zero): an object of its own, whose pages every VMA
        # derived from this one maps, whenever they are first touched (guestkernel/shm.py).
        # Linux ignores the offset (shmem_zero_setup's file starts at 0).
        backing, offset = ShmBacking(registry(k), registry(k).new_anon(length)), 0
    # (a shared mapping nobody may write is the file's pages either way: kept private, as before)
    mm.map(start, length, prot & 7, shared=shared and (isinstance(backing, (PmemFile, ShmBacking)) or bool(prot & PROT_WRITE)),
           backing=backing, offset=offset, name=name)
    return start


@syscall("munmap")
def sys_munmap(k, p, addr, length, *_):  # type: ignore[no-untyped-def]
    if addr % PAGE or length == 0 or addr + length > TASK_SIZE:
        raise SyscallError(EINVAL)
    p.mm.unmap(addr, length)
    return 0


@syscall("mprotect", "pkey_mprotect")
def sys_mprotect(k, p, addr, length, prot, *_):  # type: ignore[no-untyped-def]
    if addr % PAGE:
        raise SyscallError(EINVAL)
    if length == 0:
        return 0
    p.mm.protect(addr, length, prot & 7)
    return 0


@syscall("brk")
def sys_brk(k, p, addr, *_):  # type: ignore[no-untyped-def]
    if addr == 0:
        return p.mm.brk
    return p.mm.set_brk(addr)


@syscall("mremap")
def sys_mremap(k, p, old, old_len, new_len, flags, new_addr, *_):  # type: ignore[no-untyped-def]
    """Linux 6.1's mremap (mm/mremap.c): shrink in place; grow in place when nothing is mapped
    after the mapping; else, with MREMAP_MAYMOVE, move it (MM.move: its VMAs keep their offsets
    and its PTEs, so a moved file mapping still reads the file where it was never touched and
    copy-on-write pages stay shared). MREMAP_FIXED moves to new_addr (what was there is
    unmapped first); MREMAP_DONTUNMAP leaves the old range mapped with no pages; old_len 0 maps
    a shared mapping's pages a second time. The range must lie in one mapping (EFAULT)."""
    mm = p.mm
    if (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) or flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE
            or flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or old_len != new_len) or old % PAGE):
        raise SyscallError(EINVAL)
    old_len, new_len = page_up(old_len), page_up(new_len)
    if new_len == 0:
        raise SyscallError(EINVAL)
    v = mm.find(old)
    if v is None:
        raise SyscallError(EFAULT)
    if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP):  # (Linux's mremap_to)
        if new_addr % PAGE or new_len > TASK_SIZE or new_addr > TASK_SIZE - new_len \
                or old + old_len > new_addr and new_addr + new_len > old:
            raise SyscallError(EINVAL)
        if flags & MREMAP_FIXED:
            mm.unmap(new_addr, new_len)
        if old_len > new_len:
            mm.unmap(old + new_len, old_len - new_len)
            old_len = new_len
        _resizable(mm, v, old, old_len, new_len)
        dest = new_addr if flags & MREMAP_FIXED else mm.get_unmapped_area(new_len, new_addr)
        return _move(mm, v, old, old_len, dest, new_len, bool(flags & MREMAP_DONTUNMAP))
    if old_len >= new_len:  # (always allowed: unmaps the tail, whatever is there)
        mm.unmap(old + new_len, old_len - new_len)
        return old
    _resizable(mm, v, old, old_len, new_len)
    end = old + old_len
    if old_len and mm.mapping_end(old) == end and old + new_len <= TASK_SIZE \
            and not mm.overlapping(end, old + new_len):
        mm.grow(end, old + new_len)
        return old
    if not flags & MREMAP_MAYMOVE:
        raise SyscallError(ENOMEM)
    return _move(mm, v, old, old_len, mm.get_unmapped_area(new_len), new_len, False)


def _resizable(mm, v, old: int, old_len: int, new_len: int) -> None:  # type: ignore[no-untyped-def]
    """Linux's vma_to_resize: old_len 0 duplicates only a shared mapping (EINVAL); the range
    must not leave the mapping (EFAULT)."""
    if old_len == 0 and not v.shared:
        raise SyscallError(EINVAL)
    if old_len > mm.mapping_end(old) - old:
        raise SyscallError(EFAULT)


def _move(mm, v, old: int, old_len: int, dest: int, new_len: int, keep_old: bool) -> int:  # type: ignore[no-untyped-def]
    if old_len == 0:  # a second mapping of the same pages (of the object, of the file)
        mm.map(dest, new_len, v.prot, shared=True, backing=v.backing, offset=v.offset + old - v.start, name=v.name)
    else:
        mm.move(old, old_len, dest, new_len, keep_old)
    return dest


@syscall("madvise")
def sys_madvise(k, p, addr, length, advice, *_):  # type: ignore[no-untyped-def]
    if advice == 4 and length:  # MADV_DONTNEED on private anonymous memory: drop, read zeros next
        for v in p.mm.overlapping(addr, addr + page_up(length)):
            if v.backing is None and not v.shared:
                lo, hi = max(v.start, addr), min(v.end, addr + page_up(length))
                p.mm._drop_pages(lo, hi)
    return 0


MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4


@syscall("msync")
def sys_msync(k, p, addr, length, flags, *_):  # type: ignore[no-untyped-def]
    """On DAX storage the pages a shared mapping dirtied in the range are flushed to the window
    (Linux's dax_writeback_mapping_range); elsewhere nothing is pending."""
    if addr % PAGE or flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) or flags & MS_ASYNC and flags & MS_SYNC:
        raise SyscallError(EINVAL)
    end = addr + page_up(length)
    if end > TASK_SIZE or end < addr:
        raise SyscallError(ENOMEM)
    vmas = p.mm.overlapping(addr, end)
    if sum(min(v.end, end) - max(v.start, addr) for v in vmas) != end - addr:
        raise SyscallError(ENOMEM)
    shared_files = [v for v in vmas if v.shared and hasattr(v.backing, "page_dirtied")]
    if not shared_files or flags & MS_ASYNC and k.dax is None:
        return 0  # (MS_ASYNC: the page cache writes back in its own time)
    if k.dax is not None and all(v.backing.dax for v in shared_files):
        pages = [(pte & PTE_ADDR) >> 12 for v in shared_files
                 for _gva, _slot, pte in p.mm.aspace.leaves(max(v.start, addr), min(v.end, end))]
        if pages:
            k.dax_write_back(pages)
    else:
        k.sync()  # the page cache's dirty blocks (the mapping's among them) to storage
    return 0


@syscall("mlock", "munlock", "mlockall", "munlockall", "mlock2")
def sys_mlock(k, p, *_):  # type: ignore[no-untyped-def]
    return 0


@syscall("mincore")
def sys_mincore(k, p, addr, length, vec, *_):  # type: ignore[no-untyped-def]
    if addr % PAGE:
        raise SyscallError(EINVAL)
    end = addr + page_up(length)
    covered = sum(min(v.end, end) - max(v.start, addr) for v in p.mm.overlapping(addr, end))
    if covered != end - addr:
        raise SyscallError(ENOMEM)
    n = page_up(length) // PAGE
    out = bytes(1 if p.mm.aspace.get(addr + i * PAGE) & 1 else 0 for i in range(n))
    p.mm.copy_out(vec, out)
    return 0
