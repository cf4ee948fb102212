"""Memory syscalls: mmap, munmap, mprotect, brk, mremap, madvise and friends."""
from __future__ import annotations

from guestkernel.errors import EACCES, EEXIST, EINVAL, ENODEV, ENOMEM, ENXIO, SyscallError
from guestkernel.mm import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, PAGE, PROT_WRITE,
                            PTE_ADDR,
                            TASK_SIZE, page_up)
from guestkernel.shm import ShmBacking
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import s32
from guestkernel.syscalls.ipc import registry
from guestkernel.vfs import DevFile, InodeFile, PmemFile

MAP_TYPE = 0x0F
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2


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
    mm = p.mm
    old_len, new_len = page_up(old_len), page_up(new_len)
    v = mm.find(old)
    if v is None or old % PAGE or new_len == 0:
        raise SyscallError(EINVAL)
    fixed = bool(flags & MREMAP_FIXED)
    if fixed and (not flags & MREMAP_MAYMOVE or new_addr % PAGE or new_addr + new_len > TASK_SIZE
                  or new_addr < old + old_len and old < new_addr + new_len):
        raise SyscallError(EINVAL)
    # (MREMAP_FIXED moves, even where the mapping could shrink or grow in place)
    if not fixed and new_len <= old_len:
        mm.unmap(old + new_len, old_len - new_len)
        return old
    if not fixed and not mm.overlapping(old + old_len, old + new_len) and v.end == old + old_len:
        v.end = old + new_len
        mm._reindex()
        return old
    if not flags & MREMAP_MAYMOVE:
        raise SyscallError(ENOMEM)
    if fixed and new_len < old_len:  # (the tail goes; what is left moves)
        mm.unmap(old + new_len, old_len - new_len)
        old_len = new_len
    if _one_object(mm.overlapping(old, old + old_len), old, old_len):
        # A shared memory object's mapping moves with its offset (and its PTEs): the new range
        # maps the same object pages, as Linux's move_vma.
        dest = new_addr if fixed else mm.get_unmapped_area(new_len)
        mm.move(old, old_len, dest, new_len)
        return dest
    data = mm.copy_in(old, old_len)
    if fixed:
        mm.unmap(new_addr, new_len)
    dest = new_addr if fixed else mm.get_unmapped_area(new_len)
    mm.map(dest, new_len, v.prot | PROT_WRITE, shared=v.shared, name=v.name)
    mm.copy_out(dest, data)
    if not v.prot & PROT_WRITE:
        mm.protect(dest, new_len, v.prot)
    mm.unmap(old, old_len)
    return dest


def _one_object(vmas: list, start: int, length: int) -> bool:  # type: ignore[type-arg]
    """Do `vmas` cover [start, start+length) with pieces of one mapping of a shared memory object
    (split by mprotect: Linux would have merged them again), each at its offset?"""
    if not vmas or vmas[0].start > start or vmas[-1].end < start + length:
        return False
    first = vmas[0]
    return all(isinstance(v.backing, ShmBacking) and v.backing.obj is first.backing.obj
               and v.offset - first.offset == v.start - first.start and (i == 0 or vmas[i - 1].end == v.start)
               for i, v in enumerate(vmas))


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
