"""The split-zone paper's fragmentation injectors, as its kernel modules were, at
/sys/kernel/debug/fragment/ (debugfs):

    pattern    write N (pages of data cache per metadata page, the paper's 7; "1" means 7):
               environment 1's injection: allocate one snapshot-metadata page (long-lived
               kernel memory, Gfp.KERNEL) and N data-cache pages (Gfp.PAGECACHE), again and
               again until an allocation would take a zone below its low watermark (where
               reclaim would start), then free all the data cache. The metadata stays.
    metadata   write M: environment 2's pseudo snapshot-metadata allocation: pin M MiB of
               long-lived metadata pages, one page at a time, through the normal allocation
               path (reclaim and compaction when memory runs short). ENOMEM if it cannot.
    release    write anything: free every pinned metadata page.
    status     read: metadata pages held, data-cache pages the last pattern freed.

Each page taken or freed costs INJECT_NS of virtual time (the module's loop). Pages are the
kernel's own (refcount 1, counted by kind in /proc/meminfo's breakdown and the zone placement
counters), so /proc/buddyinfo, pagetypeinfo and the extfrag indexes show their effect as
Linux's would."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from guestkernel.buddy import OutOfMemory
from guestkernel.errors import EINVAL, ENOMEM, SyscallError
from guestkernel.gfp import Gfp

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel

INJECT_NS = 100  # one page allocated or freed by the module
DATA_PER_META = 7


class Fragmenter:
    def __init__(self, k: "Kernel") -> None:
        self.k = k
        self.metadata: list[int] = []  # gpfns of the pinned metadata pages
        self.data_freed = 0

    def files(self) -> dict[str, tuple[Callable[[], bytes] | None, Callable[[bytes], None] | None]]:
        """debugfs path below /sys -> (reader, writer)."""
        at = "kernel/debug/fragment"
        return {f"{at}/pattern": (None, self._pattern), f"{at}/metadata": (None, self._metadata),
                f"{at}/release": (None, lambda _data: self.release()), f"{at}/status": (self.status, None)}

    def status(self) -> bytes:
        return b"metadata_pages %d\ndata_pages_freed %d\n" % (len(self.metadata), self.data_freed)

    def _pattern(self, data: bytes) -> None:
        n = _number(data)
        self.pattern(DATA_PER_META if n == 1 else n)

    def _metadata(self, data: bytes) -> None:
        self.pin_metadata(_number(data) << 8)

    def pattern(self, data_per_meta: int) -> None:
        """Environment 1's injection (see the module's docstring)."""
        f = self.k.frames
        data: list[int] = []
        while True:
            meta = f.try_block(0, Gfp.KERNEL, floor="low")
            if meta is None:
                break
            self.metadata.append(meta)
            got = [f.try_block(0, Gfp.PAGECACHE, floor="low") for _ in range(data_per_meta)]
            data += [pfn for pfn in got if pfn is not None]
            if None in got:
                break
        for pfn in data:
            f.free_block(pfn, 0)
        self.data_freed = len(data)
        self.k.clock.charge((len(self.metadata) + 2 * len(data)) * INJECT_NS)

    def pin_metadata(self, pages: int) -> None:
        """Environment 2's metadata allocation: one page at a time, reclaiming as needed."""
        f = self.k.frames
        for i in range(pages):
            try:
                self.metadata.append(f.alloc(zero=False, gfp=Gfp.KERNEL))
            except OutOfMemory:
                self.k.clock.charge(i * INJECT_NS)
                raise SyscallError(ENOMEM) from None
        self.k.clock.charge(pages * INJECT_NS)

    def release(self) -> None:
        for pfn in self.metadata:
            self.k.frames.put(pfn)
        self.k.clock.charge(len(self.metadata) * INJECT_NS)
        self.metadata = []


def _number(data: bytes) -> int:
    try:
        n = int(data.strip() or b"1")
    except ValueError:
        raise SyscallError(EINVAL) from None
    if n < 0:
        raise SyscallError(EINVAL)
    return n
