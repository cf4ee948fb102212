"""Slab allocator: named caches of fixed-size kernel objects in real guest-physical frames (SLUB-like).

A cache carves slabs (blocks of 2**order contiguous frames from the buddy allocator, charged with
the cache's gfp kind) into equal slots; an object is named by its guest-physical address. As in
SLUB:
  - a slab's order is the smallest (0..3) wasting at most 1/8 of it (calculate_order), unless given;
  - a constructor runs once per object when its slab is created, never on alloc or free, so a
    freed object keeps its constructed state; a cache without one zeroes the object on alloc
    (kmem_cache_zalloc), which is a kernel write the cache model sees;
  - the allocator finds an object's slab from its frame (virt_to_slab): a dict gpfn -> slab
    holds every frame of every slab, so kfree needs no cache and a foreign or double-freed
    pointer is caught;
  - kmalloc serves sizes up to 8 KiB from Linux's kmalloc-N classes and larger ones straight
    from the buddy (kmalloc_large), counted as unreclaimable slab memory as Linux counts them;
  - /proc/slabinfo 2.1 lists caches newest first, with SLUB's zero tunables.
Unlike SLUB, empty slabs stay cached until shrink() gives them back (no min_partial), and there
are no per-CPU slabs or cache merging.

Per cache, slabs sit in insertion-ordered dicts keyed by first gpfn: partial (some objects free),
full and empty. Allocation takes from the most recently used partial slab, then the most
recently emptied slab, then a new one; a slab that gets an object back becomes the most recently
used, so the last object freed is the next handed out (LIFO, cache-warm). Each slab keeps a stack
of free slot indices. The free lists live host-side (Linux keeps its freelist pointer inside free
objects; here no guest byte is touched for bookkeeping). Everything is ordered, so the same calls
give the same addresses.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

from guestkernel.gfp import Gfp

if TYPE_CHECKING:
    from guestkernel.frames import Frames

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
SLUB_MAX_ORDER = 3  # PAGE_ALLOC_COSTLY_ORDER: SLUB does not go above it if it can help it
_ZEROS = memoryview(bytes(PAGE_SIZE))

# Linux's kmalloc size classes (KMALLOC_MIN_SIZE 8, KMALLOC_SHIFT_HIGH 13 with SLUB on x86-64).
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
KMALLOC_MAX_CACHE_SIZE = KMALLOC_SIZES[-1]

# Caches a booted Debian 6.1 x86-64 kernel has, with its object sizes; created after the kmalloc
# classes in the order start_kernel creates them (fork_init, proc_caches_init, vfs_caches_init,
# then filesystems). pipe_buffer is ours: Linux kmallocs pipe rings.
STANDARD_CACHES: tuple[tuple[str, int, Gfp], ...] = (
    ("task_struct", 4096, Gfp.KERNEL),
    ("mm_struct", 1024, Gfp.KERNEL),
    ("vm_area_struct", 152, Gfp.KERNEL),
    ("dentry", 192, Gfp.RECLAIMABLE),
    ("filp", 256, Gfp.KERNEL),
    ("pipe_buffer", 40, Gfp.KERNEL),
    ("ext2_inode_cache", 784, Gfp.RECLAIMABLE),
)


def kmalloc_name(size: int) -> str:
    """Linux's name for a kmalloc class: kmalloc-96, kmalloc-512, kmalloc-1k .. kmalloc-8k."""
    return f"kmalloc-{size >> 10}k" if size >= 1024 else f"kmalloc-{size}"


def get_order(size: int) -> int:
    """The smallest order whose block holds `size` bytes (Linux's get_order)."""
    return max(0, (size - 1).bit_length() - PAGE_SHIFT)


def calculate_order(size: int) -> int:
    """SLUB's choice of slab order for objects of `size` bytes: the smallest order up to 3 that
    holds at least one object and wastes at most 1/8 of the slab; failing that, the order up to 3
    wasting the least fraction; for objects bigger than an order-3 slab, one object per slab."""
    best, best_waste = -1, 1.0
    for order in range(SLUB_MAX_ORDER + 1):
        slab = PAGE_SIZE << order
        if size > slab:
            continue
        waste = slab % size
        if waste * 8 <= slab:
            return order
        if waste / slab < best_waste:
            best, best_waste = order, waste / slab
    return best if best >= 0 else get_order(size)


def _pieces(gpa: int, n: int) -> Iterator[tuple[int, int, int]]:
    """(gpfn, offset in page, length) of [gpa, gpa+n), page by page: guest frames contiguous in
    gpfn need not be contiguous behind the EPT."""
    while n > 0:
        off = gpa & (PAGE_SIZE - 1)
        k = min(n, PAGE_SIZE - off)
        yield gpa >> PAGE_SHIFT, off, k
        gpa += k
        n -= k


class Slab:
    """2**order frames cut into objects; `free` is a stack of free slot indices."""

    __slots__ = ("cache", "gpfn", "gpa", "free", "used", "inuse")

    def __init__(self, cache: SlabCache, gpfn: int) -> None:
        n = cache.objs_per_slab
        self.cache = cache
        self.gpfn = gpfn
        self.gpa = gpfn << PAGE_SHIFT
        self.free = list(range(n - 1, -1, -1))  # slot 0 on top: a new slab fills upwards
        self.used = bytearray(n)                # 1 per allocated slot: catches double frees
        self.inuse = 0


class SlabCache:
    def __init__(self, frames: Frames, name: str, object_size: int, *, align: int = 8, gfp: Gfp = Gfp.KERNEL,
                 reclaimable: bool = False, ctor: Callable[[memoryview], None] | None = None,
                 order: int | None = None, slab_map: dict[int, Slab] | None = None) -> None:
        """`reclaimable`: counted as SReclaimable (Linux's SLAB_RECLAIM_ACCOUNT); `ctor` gets a view
        of object_size bytes; `slab_map` (gpfn -> slab) is shared by the caches of one
        SlabAllocator so kfree finds any object's cache."""
        if not name:
            raise ValueError("a slab cache needs a name")
        if object_size <= 0:
            raise ValueError(f"{name}: object size {object_size} <= 0")
        if align <= 0 or align & (align - 1):
            raise ValueError(f"{name}: alignment {align} is not a power of two")
        self.frames = frames
        self.name = name
        self.object_size = object_size
        self.align = align
        self.size = -(-object_size // align) * align
        self.gfp = gfp
        self.reclaimable = reclaimable
        self.ctor = ctor
        self.order = calculate_order(self.size) if order is None else order
        if not 0 <= self.order <= 10:
            raise ValueError(f"{name}: slab order {self.order} outside 0..10")
        self.objs_per_slab = (PAGE_SIZE << self.order) // self.size
        if self.objs_per_slab < 1:
            raise ValueError(f"{name}: a {self.size}-byte object does not fit an order-{self.order} slab")
        self.slab_map: dict[int, Slab] = {} if slab_map is None else slab_map
        # Slabs by first gpfn; the last entry is the most recently used. Taken with popitem(),
        # which also drops deleted entries at a dict's end (next(reversed(d)) would rescan them).
        self.partial: dict[int, Slab] = {}
        self.full: dict[int, Slab] = {}
        self.empty: dict[int, Slab] = {}
        self._active = 0

    def __repr__(self) -> str:
        return (f"<SlabCache {self.name} size {self.size} order {self.order} objs {self.active_objs}/{self.num_objs} "
                f"slabs {len(self.partial)}p/{len(self.full)}f/{len(self.empty)}e>")

    # /proc/slabinfo's counters
    @property
    def active_objs(self) -> int:
        return self._active

    @property
    def num_objs(self) -> int:
        return self.num_slabs * self.objs_per_slab

    @property
    def active_slabs(self) -> int:
        """Slabs holding at least one object (SLUB would print num_slabs here)."""
        return len(self.partial) + len(self.full)

    @property
    def num_slabs(self) -> int:
        return len(self.partial) + len(self.full) + len(self.empty)

    @property
    def pages(self) -> int:
        return self.num_slabs << self.order

    def alloc(self) -> int:
        """A free object's gpa: from the most recently used partial slab, else an empty one, else a
        new slab (buddy.OutOfMemory propagates, nothing changed)."""
        if self.partial:
            _, slab = self.partial.popitem()
        elif self.empty:
            _, slab = self.empty.popitem()
        else:
            slab = self._new_slab()
        i = slab.free.pop()
        slab.used[i] = 1
        slab.inuse += 1
        self._active += 1
        (self.partial if slab.free else self.full)[slab.gpfn] = slab
        gpa = slab.gpa + i * self.size
        if self.ctor is None:
            self._zero(gpa)
        return gpa

    def free(self, gpa: int) -> None:
        """Give the object at `gpa` back; ValueError unless it is a live object of this cache."""
        slab = self.slab_map.get(gpa >> PAGE_SHIFT)
        if slab is None or slab.cache is not self:
            raise ValueError(f"{self.name}: free of {gpa:#x}, not an object of this cache")
        i, r = divmod(gpa - slab.gpa, self.size)
        if r or i >= self.objs_per_slab:
            raise ValueError(f"{self.name}: free of {gpa:#x}, not the start of an object")
        if not slab.used[i]:
            raise ValueError(f"{self.name}: double free of {gpa:#x}")
        slab.used[i] = 0
        slab.free.append(i)
        slab.inuse -= 1
        self._active -= 1
        del (self.full if len(slab.free) == 1 else self.partial)[slab.gpfn]
        # Re-inserted last: the slab is now the most recently used of its list.
        (self.partial if slab.inuse else self.empty)[slab.gpfn] = slab

    def shrink(self) -> int:
        """Return the empty slabs to the buddy allocator (oldest first); the number of frames freed."""
        freed = 0
        for gpfn in self.empty:
            for f in range(gpfn, gpfn + (1 << self.order)):
                del self.slab_map[f]
            self.frames.free_block(gpfn, self.order)
            freed += 1 << self.order
        self.empty.clear()
        return freed

    def _new_slab(self) -> Slab:
        gpfn = self.frames.alloc_block(self.order, self.gfp)
        slab = Slab(self, gpfn)
        if self.ctor is not None:
            try:
                for i in range(self.objs_per_slab):
                    self._construct(slab.gpa + i * self.size)
            except BaseException:
                self.frames.free_block(gpfn, self.order)
                raise
        for f in range(gpfn, gpfn + (1 << self.order)):
            self.slab_map[f] = slab
        return slab

    def _construct(self, gpa: int) -> None:
        """Run the constructor on the object's bytes, in place when it lies in one page, through a
        buffer when it straddles two (their host pages need not be adjacent)."""
        assert self.ctor is not None
        pieces = list(_pieces(gpa, self.object_size))
        if len(pieces) == 1:
            gpfn, off, k = pieces[0]
            self.ctor(self.frames.page(gpfn)[off:off + k])
        else:
            buf = bytearray(b"".join(self.frames.page(g)[o:o + k] for g, o, k in pieces))
            self.ctor(memoryview(buf))
            at = 0
            for g, o, k in pieces:
                self.frames.page(g)[o:o + k] = buf[at:at + k]
                at += k
        for gpfn, off, k in pieces:
            self.frames.kernel_access((gpfn << PAGE_SHIFT) + off, k, True)

    def _zero(self, gpa: int) -> None:
        for gpfn, off, k in _pieces(gpa, self.object_size):
            self.frames.page(gpfn)[off:off + k] = _ZEROS[:k]
            self.frames.kernel_access((gpfn << PAGE_SHIFT) + off, k, True)


class SlabAllocator:
    def __init__(self, frames: Frames) -> None:
        """The kmalloc classes and the standard named caches."""
        self.frames = frames
        self.caches: dict[str, SlabCache] = {}
        self.slab_map: dict[int, Slab] = {}   # every frame of every slab -> its slab (virt_to_slab)
        self.large: dict[int, int] = {}       # kmalloc_large blocks: first gpfn -> order
        self.large_pages = 0
        self.shrinkers: list[Callable[[int | None], int]] = []
        self._kmalloc = [self.create(kmalloc_name(n), n) for n in KMALLOC_SIZES]
        for name, size, gfp in STANDARD_CACHES:
            self.create(name, size, gfp=gfp, reclaimable=gfp == Gfp.RECLAIMABLE)

    def create(self, name: str, object_size: int, **kw) -> SlabCache:
        """A new cache (kmem_cache_create); keyword arguments as SlabCache's."""
        if name in self.caches:
            raise ValueError(f"slab cache {name} exists")
        cache = SlabCache(self.frames, name, object_size, slab_map=self.slab_map, **kw)
        self.caches[name] = cache
        return cache

    def cache(self, name: str) -> SlabCache:
        return self.caches[name]

    def kmalloc_cache(self, size: int) -> SlabCache | None:
        """The kmalloc class serving `size` bytes; None above KMALLOC_MAX_CACHE_SIZE."""
        if size <= 0:
            raise ValueError(f"kmalloc of {size} bytes")
        i = bisect_left(KMALLOC_SIZES, size)
        return self._kmalloc[i] if i < len(KMALLOC_SIZES) else None

    def kmalloc(self, size: int) -> int:
        """gpa of `size` bytes (zeroed): from the smallest kmalloc class that fits, or above 8 KiB a
        buddy block of the order needed."""
        cache = self.kmalloc_cache(size)
        if cache is not None:
            return cache.alloc()
        order = get_order(size)
        gpfn = self.frames.alloc_block(order, Gfp.KERNEL)
        self.large[gpfn] = order
        self.large_pages += 1 << order
        return gpfn << PAGE_SHIFT

    def kfree(self, gpa: int) -> None:
        """Free what kmalloc (or any cache's alloc) returned, finding the owner from the frame."""
        gpfn = gpa >> PAGE_SHIFT
        slab = self.slab_map.get(gpfn)
        if slab is not None:
            slab.cache.free(gpa)
            return
        order = self.large.get(gpfn)
        if order is None or gpa & (PAGE_SIZE - 1):
            raise ValueError(f"kfree of {gpa:#x}, not a kmalloc'd object")
        del self.large[gpfn]
        self.large_pages -= 1 << order
        self.frames.free_block(gpfn, order)

    def shrink(self, reclaimable_only: bool = False) -> int:
        """Return every cache's empty slabs (or only reclaimable caches') to the buddy; frames freed."""
        return sum(c.shrink() for c in self.caches.values() if c.reclaimable or not reclaimable_only)

    def alloc(self, cache: str) -> int:
        """An object of the named cache (how the kernel's structures take theirs)."""
        return self.caches[cache].alloc()

    def free(self, gpa: int) -> None:
        """Give an object back; 0 (a structure made without the slab) is ignored."""
        if gpa:
            self.kfree(gpa)

    def register_shrinker(self, shrinker: Callable[[int | None], int]) -> None:
        """An owner of cached objects (the inode and dentry caches): called with how many
        objects to free (None: every unused one), it frees them and says how many it did."""
        self.shrinkers.append(shrinker)

    def unregister_shrinker(self, shrinker: Callable[[int | None], int]) -> None:
        self.shrinkers.remove(shrinker)

    def reclaim(self, want_pages: int | None) -> int:
        """Linux's shrink_slab then the empty slabs: ask the shrinkers for objects (about a
        page's worth of small objects per page wanted; everything for drop_caches), then give
        every empty slab back. Returns frames freed."""
        for shrinker in self.shrinkers:
            shrinker(None if want_pages is None else want_pages * 16)
        return self.shrink()

    def slabinfo(self) -> str:
        """/proc/slabinfo as SLUB prints it (mm/slab_common.c), newest cache first."""
        lines = ["slabinfo - version: 2.1\n",
                 "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
                 " : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n"]
        for c in reversed(self.caches.values()):
            lines.append("%-17s %6d %6d %6d %4d %4d : tunables %4d %4d %4d : slabdata %6d %6d %6d\n" % (
                c.name, c.active_objs, c.num_objs, c.size, c.objs_per_slab, 1 << c.order, 0, 0, 0,
                c.active_slabs, c.num_slabs, 0))
        return "".join(lines)

    def totals(self) -> dict[str, int]:
        """Frames for /proc/meminfo's Slab, SReclaimable and SUnreclaim (kmalloc_large blocks count
        as unreclaimable, as in Linux)."""
        rec = sum(c.pages for c in self.caches.values() if c.reclaimable)
        unrec = sum(c.pages for c in self.caches.values() if not c.reclaimable) + self.large_pages
        return {"slab_pages": rec + unrec, "reclaimable_pages": rec, "unreclaimable_pages": unrec}


class Objects(Protocol):
    """What a kernel structure takes its object from: the SlabAllocator, or NO_OBJECTS."""

    def alloc(self, cache: str) -> int: ...

    def free(self, gpa: int) -> None: ...


class NoObjects:
    """Where a structure lives without a kernel slab (host-side tools, unit tests): object 0."""

    def alloc(self, cache: str) -> int:
        return 0

    def free(self, gpa: int) -> None:
        pass


NO_OBJECTS = NoObjects()
