"""Shared memory objects: System V segments (shmget/shmat/shmdt/shmctl; the syscalls are in
syscalls/ipc.py) and the objects behind shared anonymous mappings (mmap MAP_SHARED|MAP_ANONYMOUS
or of /dev/zero: Linux's shmem_zero_setup, an unlinked file of an internal tmpfs).

An object is a run of guest frames from the buddy allocator, page index -> frame, allocated
zeroed on first touch by anyone and owned by the object (one reference each) until it is
destroyed. A mapping of it is a shared VMA whose backing is the object (`ShmBacking`) at the
VMA's `offset`: faults map the object's frames themselves, writable, into every process that
maps it, so stores are seen by all of them, whenever the page was first touched; fork copies
the VMA, a split (mprotect, partial munmap) keeps each piece's offset, mremap moves or grows
the VMA with its offset; an access past the object's size is SIGBUS, as on Linux (growing a
shared anonymous mapping with mremap does not grow its object). Like a pmem mapping, the pages
are not reference-counted per mapping (`device`), the object keeps them alive: pages no PTE
maps (a child touched them and exited, the VMA was partly unmapped) stay the object's.

As on Linux, shm_nattch counts the VMAs mapping a segment (fork and VMA splits add one), a
segment removed with IPC_RMID loses its key and is destroyed when the last VMA goes, and an id
is index + 32768 * sequence number. A shared anonymous object has no name: it is destroyed when
the last VMA of its lineage (the mmap's VMA and every VMA fork, splits and mremap made of it)
goes. /proc/meminfo's Shmem counts the pages of both kinds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

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


@dataclass(eq=False)
class ShmObject:
    """Pages shared by every mapping of one object (a shared anonymous mapping's lineage; a
    System V segment is one too)."""

    size: int
    pfns: list[int] = field(default_factory=list)  # per page index its frame; -1: not touched yet
    unmaps: int = 0  # VMAs of it closed so far (a checkpoint's cue: pages may have been written
    #                  through PTEs that are gone, see checkpoint/state.py)
    version: int = 0  # bumped when `pfns` changes (a checkpoint lists the frames again)
    serial: int = 0  # a shared anonymous object's inode number in /proc/PID/maps

    @property
    def pages(self) -> int:
        return (self.size + PAGE - 1) // PAGE

    def resident(self) -> int:
        return sum(1 for pfn in self.pfns if pfn >= 0)

    def moved(self, idx: int, dst: int) -> None:
        """Page idx now lives in frame dst (a migration: compaction, swapoff)."""
        self.pfns[idx] = dst
        self.version += 1


@dataclass(eq=False, kw_only=True)
class Segment(ShmObject):
    index: int
    seq: int
    key: int
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

    @property
    def id(self) -> int:
        return self.seq * SEQ_MULTIPLIER + self.index


class ShmBacking:
    """The backing of a VMA mapping an object: its frames, shared (see the module docstring)."""

    device = True  # frames are the object's, not counted per mapping
    shmem = True   # (Linux's RssShmem counts its pages, mm.shmem_pages)

    def __init__(self, registry: "ShmRegistry", obj: ShmObject) -> None:
        self.registry = registry
        self.obj = obj

    @property
    def anonymous(self) -> bool:
        """A shared anonymous mapping's object (not a System V segment): the VMA is anonymous
        memory to everything but its faults (no file, no code to scan, no page-cache fill)."""
        return not isinstance(self.obj, Segment)

    def read_at(self, offset: int, n: int) -> bytes:
        """Bytes of the object (zeros where no page was touched: nothing is allocated)."""
        out = bytearray()
        while n > 0:
            idx, off = divmod(offset, PAGE)
            chunk = min(n, PAGE - off)
            pfn = self.obj.pfns[idx] if idx < len(self.obj.pfns) else -1
            out += bytes(self.registry.frames.page(pfn)[off : off + chunk]) if pfn >= 0 else bytes(chunk)
            offset += chunk
            n -= chunk
        return bytes(out)

    def beyond_eof(self, offset: int) -> bool:
        """Past the object's size (or the object is gone): the access is SIGBUS."""
        return offset // PAGE >= len(self.obj.pfns)

    def page_frame(self, offset: int) -> int | None:
        obj = self.obj
        idx = offset // PAGE
        if idx >= len(obj.pfns):
            return None  # past the object: the fault fails
        if obj.pfns[idx] < 0:
            obj.pfns[idx] = self.registry.frames.alloc(zero=True, gfp=Gfp.USER)
            obj.version += 1
        return obj.pfns[idx]

    def vma_closed(self) -> None:
        """A VMA of the object went away (shmdt, munmap, exec, exit)."""
        self.obj.unmaps += 1
        self.registry.maybe_destroy(self.obj)


class ShmRegistry:
    """Every segment of the machine (one IPC namespace)."""

    def __init__(self, frames: "Frames", mms: Callable[[], Iterable["MM"]], now: Callable[[], int]) -> None:
        self.frames = frames
        self.mms = mms          # the live address spaces (for shm_nattch)
        self.now = now
        self.segments: dict[int, Segment] = {}  # by index
        self.anon: dict[int, ShmObject] = {}  # shared anonymous objects, by id()
        self.serials = 0
        self.seq = 0

    def new_anon(self, size: int) -> ShmObject:
        """The object of a new shared anonymous mapping of `size` bytes."""
        self.serials += 1
        obj = ShmObject(size, serial=self.serials)
        obj.pfns = [-1] * obj.pages
        self.anon[id(obj)] = obj
        return obj

    def objects(self) -> Iterator[ShmObject]:
        """Every live object: the segments, then the shared anonymous objects."""
        yield from self.segments.values()
        yield from self.anon.values()

    def frame_owners(self, lo: int = 0, hi: int = 1 << 62) -> dict[int, tuple[ShmObject, int]]:
        """frame -> (object, page index) of the objects' frames in [lo, hi) (a migration's
        reverse map: a frame of an object has the object's one reference, PTEs take none)."""
        return {pfn: (obj, i) for obj in self.objects() for i, pfn in enumerate(obj.pfns) if lo <= pfn < hi}

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
        seg = Segment(size, [-1] * pages, index=index, seq=self.seq, key=key, mode=flags & 0o777, cpid=pid,
                      ctime=self.now())
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

    def nattch(self, obj: ShmObject) -> int:
        """VMAs mapping the object, in every live address space."""
        seen: set[int] = set()
        n = 0
        for mm in self.mms():
            if id(mm) in seen:
                continue  # a vfork child shares its parent's address space
            seen.add(id(mm))
            n += sum(1 for v in mm.vmas if isinstance(v.backing, ShmBacking) and v.backing.obj is obj)
        return n

    def remove(self, seg: Segment) -> None:
        seg.removed = True
        seg.key = IPC_PRIVATE
        self.maybe_destroy(seg)

    def maybe_destroy(self, obj: ShmObject) -> None:
        """Free the object if nothing holds it any more (a removed segment, an anonymous object,
        with no VMA left)."""
        if isinstance(obj, Segment):
            if not (obj.removed and self.segments.get(obj.index) is obj and self.nattch(obj) == 0):
                return
            del self.segments[obj.index]
        else:
            if self.anon.get(id(obj)) is not obj or self.nattch(obj):
                return
            del self.anon[id(obj)]
        for pfn in obj.pfns:
            if pfn >= 0:
                self.frames.put(pfn)
        obj.pfns = []
        obj.version += 1

    def max_index(self) -> int:
        return max(self.segments, default=0)

    def resident_pages(self) -> int:
        """Pages of the System V segments (shm_info's shm_rss)."""
        return sum(s.resident() for s in self.segments.values())

    def shmem_pages(self) -> int:
        """Pages of every object (/proc/meminfo's Shmem)."""
        return sum(o.resident() for o in self.objects())
