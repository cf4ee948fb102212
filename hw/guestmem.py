"""Guest-physical memory as the guest's kernel reaches it: 4 KiB pages by gpfn, each access
reported, and the persistence instructions a kernel issues on its own behalf.

The EPT says which host page backs each guest page; the kernel never sees a host address. An
access sets the page's EPT accessed/dirty bits (as the hardware walk would) and, when the machine
models its caches, goes through the cache model as a kernel access (DDIO-like: it allocates in
the cache, see hw/cachemodel.py). `flush` and `fence` are clflush and mfence through the model:
each line written back and each fence is a persistence event, where the power may fail.
"""
from __future__ import annotations

import zlib
from typing import Any, Iterator


from hw.ept import EPT
from hw.physmem import PAGE_SIZE, PhysicalMemory
from hw.power import PowerFailure

LINE = 64  # the user stores found at a flush are noted line by line


class GuestMemory:
    def __init__(self, physmem: PhysicalMemory, ept: EPT, cache: Any = None, cpu: Any = None) -> None:
        self.physmem = physmem
        self.ept = ept
        self.cache = cache          # hw.cachemodel.CacheModel, or None at level fast
        self.cpu = cpu              # hw.cpu.CPU: its native state reaches every range (store_frames)
        # Persistent ranges whose user stores the model does not see (at level persist, the
        # storage window is RAM to the CPU so that programs run from it): (first hpa, CPU view,
        # media). A line flushed there that differs from its media was written while cached.
        self.unobserved: list[tuple[int, memoryview, memoryview]] = []

    @property
    def pages(self) -> int:
        """The number of guest-physical page frames (gpfns 0 .. pages-1)."""
        return self.ept.pages

    @property
    def modelled(self) -> bool:
        """Is there a cache model (persistence instructions matter)?"""
        return self.cache is not None

    def page(self, gpfn: int) -> memoryview:
        """The 4 KiB behind guest frame gpfn (a view of its host page); logged as reached by the
        kernel (see EPT.log)."""
        self.ept.log[gpfn] = 1
        return self.physmem.page_view(self.ept.map[gpfn])

    def access(self, gpa: int, n: int, write: bool) -> None:
        """The kernel read or wrote [gpa, gpa+n) (within one page)."""
        self.ept.bits[gpa >> 12] |= 3 if write else 1
        if self.cache is not None:
            self.cache.access_range(self.ept.hpa(gpa), n, write, True)
            if self.cache.power_failed:  # the access evicted a persistent line: that event was the cut
                raise PowerFailure("event")

    def store_flush(self, gpa: int, n: int) -> None:
        """The kernel wrote [gpa, gpa+n) (within one page) and flushes it: `access` then
        `flush`, in one step through the model."""
        if self.unobserved:  # (user stores to note first: the two steps)
            self.access(gpa, n, True)
            self.flush(gpa, n)
            return
        self.ept.bits[gpa >> 12] |= 3
        if self.cache is not None:
            self.cache.store_flush(self.ept.hpa(gpa), n, True)
            if self.cache.power_failed:
                raise PowerFailure("event")

    def store_bytes(self, gpa: int, data: bytes | memoryview) -> None:
        """The kernel writes `data` at gpa (within one page) and flushes it: `page`, then
        `store_flush`, in one C call (a checkpoint's metadata, parts and table lines: 4 us of
        Python each)."""
        n = len(data)
        if self.cpu is None or (self.unobserved and self._unobserved_page(gpa >> 12)):
            self.page(gpa >> 12)[gpa & (PAGE_SIZE - 1):(gpa & (PAGE_SIZE - 1)) + n] = data
            self.store_flush(gpa, n)
            return
        ffi = self.cpu.ffi
        got = self.cpu.lib.emu_store_flush_bytes(self.cpu.st, gpa, ffi.from_buffer(data), n,
                                                 ffi.from_buffer("uint8_t[]", self.ept.log))
        if got < 0:
            raise ValueError(f"a store at gpa {gpa:#x} outside guest-physical memory or across a page")
        if got or (self.cache is not None and self.cache.power_failed):
            raise PowerFailure("event")

    def store_frames(self, src: list[int], dst: list[int], crcs: list[int]) -> None:
        """Copy guest frame src[i] into guest frame dst[i] and flush it (`page`, then
        `store_flush` of the whole page, frame after frame), appending the crc32 of each page to
        `crcs`; a power failure at a flush leaves there the pages stored so far, that one
        included. One C call for them all (native/ckptscan.c: a checkpoint's page copies were 4
        us of Python each beside 3 of copying and modelling)."""
        if self.cpu is None or (self.unobserved and any(self._unobserved_page(g) for g in dst)):
            for s, d in zip(src, dst):
                page = self.page(s)
                crcs.append(zlib.crc32(page))
                self.store_bytes(d << 12, page)
            return
        ffi, lib = self.cpu.ffi, self.cpu.lib
        n = len(src)
        crc = ffi.new("uint32_t[]", max(n, 1))
        done = lib.emu_ckpt_store(self.cpu.st, ffi.new("uint32_t[]", src), ffi.new("uint32_t[]", dst), n, crc,
                                  ffi.from_buffer("uint8_t[]", self.ept.log))
        if done < 0:
            raise ValueError("a frame to copy is outside guest-physical memory")
        crcs.extend(ffi.unpack(crc, done))
        if done < n or (self.cache is not None and self.cache.power_failed):
            raise PowerFailure("event")

    def _unobserved_page(self, gpfn: int) -> bool:
        hpa = self.ept.hpa(gpfn << 12)
        return any(base <= hpa < base + len(cpu) for base, cpu, _media in self.unobserved)

    def flush(self, gpa: int, n: int) -> None:
        """clflush every line of [gpa, gpa+n)."""
        if self.cache is None:
            return
        for at, k in _pieces(gpa, n):
            if self.unobserved:
                self._note_user_stores(self.ept.hpa(at), k)
            self.cache.clflush_range(self.ept.hpa(at), k, True)
            if self.cache.power_failed:
                raise PowerFailure("event")

    def _note_user_stores(self, hpa: int, n: int) -> None:
        """Before a clflush of [hpa, hpa+n) in a window the CPU writes directly: every line whose
        bytes differ from the media and that the model does not hold dirty was stored by the
        program unseen; it is reported as a user store. A line the model holds dirty (the kernel
        wrote it through the model) is written back whole, user bytes and all, and not counted
        twice. (One call into the model's C, cm_note_unobserved: a page's 64 lines in a Python
        loop cost 40 us, and a checkpoint that flushes pages in place flushes several.)"""
        cache = self.cache
        assert cache is not None
        for base, cpu, media in self.unobserved:
            if base <= hpa < base + len(cpu):
                lo = (hpa - base) // LINE * LINE
                hi = -(-(hpa - base + n) // LINE) * LINE
                ffi = cache.ffi
                cache.lib.cm_note_unobserved(cache.ptr, base + lo, ffi.from_buffer(cpu[lo:hi]),
                                             ffi.from_buffer(media[lo:hi]), hi - lo)
                return

    def fence(self) -> None:
        """mfence: pending write-backs reach the persistence domain."""
        if self.cache is None:
            return
        self.cache.fence("mfence", True)
        if self.cache.power_failed:
            raise PowerFailure("event")

    def persistence_events(self) -> int:
        return int(self.cache.stats.events) if self.cache is not None else 0


def _pieces(gpa: int, n: int) -> Iterator[tuple[int, int]]:
    """(gpa, length) of [gpa, gpa+n), page by page (contiguous guest pages need not be
    contiguous in the host)."""
    while n > 0:
        k = min(n, PAGE_SIZE - gpa % PAGE_SIZE)
        yield gpa, k
        gpa += k
        n -= k
