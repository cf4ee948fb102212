"""System V shared memory segments (shmget/shmat/shmdt/shmctl; the syscalls are in
syscalls/ipc.py).

A segment is a run of guest frames from the buddy allocator, allocated zeroed on first touch
and owned by the segment (one reference each) until it is destroyed. An attach is a shared VMA
whose backing is the segment: faults map the segment's frames themselves, writable, into every
process that attached it, so stores are seen by all of them; fork copies the VMA, so a child
shares its parent's attaches. Like a pmem mapping, the pages are not reference-counted per
mapping (`device`), the segment keeps them alive.

As on Linux, shm_nattch counts the VMAs mapping the segment (fork and VMA splits add one), a
segment removed with IPC_RMID loses its key and is destroyed when the last VMA goes, and an id
is index + 32768 * sequence number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from guestkernel.errors import EEXIST, EINVAL, ENOENT, ENOMEM, ENOSPC, SyscallError
from guestkernel.gfp import Gfp
from hw.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from guestkernel.frames import Frames
    from guestkernel.mm import MM

PAGE = PAGE_SIZE  # the hardware page (hw/physmem.py)
IPC_PRIVATE = 0
IPC_CREAT, IPC_EXCL = 0o1000, 0o2000
SHM_DEST, SHM_LOCKED = 0o1000, 0o2000   # in shm_perm.mode
SHMMIN = 1
SHMMAX = (1 << 64) - 1 - (1 << 24)      # Linux's defaults (include/uapi/linux/shm.h)
SHMALL = (1 << 64) - 1 - (1 << 24)
SHMMNI = 4096
SEQ_MULTIPLIER = 32768


@dataclass
class Segment:
    index: int
    seq: int
    key: int
    size: int
    mode: int
    cpid: int
    ctime: int
    uid: int = 0
    gid: int = 0
    atime: int = 0
    dtime: int = 0
    lpid: int = 0
    removed: bool = False
    locked: bool = False
    pfns: list[int] = field(default_factory=list)  # -1: not touched yet

    @property
    def id(self) -> int:
        return self.seq * SEQ_MULTIPLIER + self.index

    @property
    def pages(self) -> int:
        return (self.size + PAGE - 1) // PAGE


class ShmBacking:
    """The backing of an attach VMA: the segment's frames, shared (see the module docstring)."""

    device = True  # frames are the segment's, not counted per mapping

    def __init__(self, registry: "ShmRegistry", seg: Segment) -> None:
        self.registry = registry
        self.seg = seg

    def read_at(self, offset: int, n: int) -> bytes:
        pfn = self.page_frame(offset - offset % PAGE)
        if pfn is None:
            return b""
        off = offset % PAGE
        return bytes(self.registry.frames.page(pfn)[off : off + n])

    def page_frame(self, offset: int) -> int | None:
        seg = self.seg
        idx = offset // PAGE
        if idx >= seg.pages or not seg.pfns:
            return None  # past the segment: SIGBUS-like, the fault fails
        if seg.pfns[idx] < 0:
            seg.pfns[idx] = self.registry.frames.alloc(zero=True, gfp=Gfp.USER)
        return seg.pfns[idx]

    def vma_closed(self) -> None:
        """An attach VMA went away (shmdt, munmap, exec, exit)."""
        self.registry.maybe_destroy(self.seg)


class ShmRegistry:
    """Every segment of the machine (one IPC namespace)."""

    def __init__(self, frames: "Frames", mms: Callable[[], Iterable["MM"]], now: Callable[[], int]) -> None:
        self.frames = frames
        self.mms = mms          # the live address spaces (for shm_nattch)
        self.now = now
        self.segments: dict[int, Segment] = {}  # by index
        self.seq = 0

    def get(self, key: int, size: int, flags: int, pid: int) -> int:
        if key != IPC_PRIVATE:
            seg = next((s for s in self.segments.values() if s.key == key and not s.removed), None)
            if seg is not None:
                if flags & IPC_CREAT and flags & IPC_EXCL:
                    raise SyscallError(EEXIST)
                if size > seg.size:
                    raise SyscallError(EINVAL)
                return seg.id
            if not flags & IPC_CREAT:
                raise SyscallError(ENOENT)
        if size < SHMMIN or size > SHMMAX:
            raise SyscallError(EINVAL)
        pages = (size + PAGE - 1) // PAGE
        if pages > self.frames.free_frames:
            raise SyscallError(ENOMEM)
        index = next((i for i in range(SHMMNI) if i not in self.segments), None)
        if index is None:
            raise SyscallError(ENOSPC)
        seg = Segment(index, self.seq, key, size, flags & 0o777, pid, self.now(), pfns=[-1] * pages)
        self.seq = (self.seq + 1) % (1 << 15)
        self.segments[index] = seg
        return seg.id

    def lookup(self, shmid: int) -> Segment:
        if shmid < 0:
            raise SyscallError(EINVAL)
        seg = self.segments.get(shmid % SEQ_MULTIPLIER)
        if seg is None or seg.id != shmid:
            raise SyscallError(EINVAL)
        return seg

    def nattch(self, seg: Segment) -> int:
        seen: set[int] = set()
        n = 0
        for mm in self.mms():
            if id(mm) in seen:
                continue  # a vfork child shares its parent's address space
            seen.add(id(mm))
            n += sum(1 for v in mm.vmas if isinstance(v.backing, ShmBacking) and v.backing.seg is seg)
        return n

    def remove(self, seg: Segment) -> None:
        seg.removed = True
        seg.key = IPC_PRIVATE
        self.maybe_destroy(seg)

    def maybe_destroy(self, seg: Segment) -> None:
        if seg.removed and self.segments.get(seg.index) is seg and self.nattch(seg) == 0:
            del self.segments[seg.index]
            for pfn in seg.pfns:
                if pfn >= 0:
                    self.frames.put(pfn)
            seg.pfns = []

    def max_index(self) -> int:
        return max(self.segments, default=0)

    def resident_pages(self) -> int:
        return sum(1 for s in self.segments.values() for pfn in s.pfns if pfn >= 0)
