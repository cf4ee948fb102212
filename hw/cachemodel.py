"""The memory-hierarchy model: a typed wrapper over the C cache model (`native/cachemodel.c`).

One physically indexed, write-back, write-allocate, LRU cache in front of the machine's memory
channels. Addresses are host-physical (`hpa`). Each range of the memory map has a CPU view (what
loads and stores see) and, for an ``scm`` range, a media buffer (what survives a power failure).
Stores reach media only when their line is written back: eviction, `clflush` and `wbinvd`
(durable at once), `clwb`/`clflushopt` (a snapshot, durable at the next fence); non-temporal
stores bypass the cache and are durable at the next fence.

The guest's accesses come straight from Unicorn memory hooks into C (`cm_access`, or
`cm_uc_mem_hook` with the `struct cm *` as user data); this wrapper is for the kernel's own
accesses, persistence operations, power failure and statistics. Counters live in a C struct
read through cffi without copying.

Levels: ``fast`` (0) the model does nothing; ``persist`` (1) only scm ranges are modelled;
``full`` (2) every access.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from hw.stats import Stat, StatsRegistry


# The CM_LEVEL_* values of native/emu_abi.h, by name (known without building the native code:
# configuration checks use it; tests/unit/test_hw_models.py checks the two agree).
LEVELS = {"fast": 0, "persist": 1, "full": 2}


def load() -> tuple[Any, Any]:
    """(ffi, lib) holding the cm_ functions: the project's single native build (hw/native)."""
    from hw import native

    return native.load()


@dataclass(frozen=True)
class PowerLoss:
    """What a power failure lost (adr) or saved (eadr)."""

    eadr: bool
    dirty_scm_lines: int
    dirty_dram_lines: int
    pending_writebacks: int
    pending_nt_stores: int
    eadr_flushed_lines: int
    eadr_flushed_pending: int
    failed_at_event: int  # the event that did not happen (0: an explicit power cut)


class CacheModel:
    """The cache and channel model of one machine."""

    def __init__(self, size_bytes: int = 8 << 20, ways: int = 16, line_size: int = 64,
                 level: str | int = "full", native: tuple[Any, Any] | None = None) -> None:
        self.ffi, self.lib = native if native is not None else load()
        ptr = self.lib.cm_new(size_bytes, ways, line_size)
        if ptr == self.ffi.NULL:
            raise ValueError(f"bad cache geometry: {size_bytes} bytes, {ways} ways, {line_size} B lines")
        self.ptr = self.ffi.gc(ptr, self.lib.cm_free)
        self.stats = self.ptr.st  # live view of the C counters
        self.ranges: list[tuple[str, str, int, int, int]] = []  # (name, kind, base, size, channel)
        self.interleaved: dict[int, tuple[int, ...]] = {}
        self._keep: list[Any] = []  # buffers and callbacks kept alive for C
        self.line_size = line_size
        self.set_level(level)

    # -- configuration
    def save_state(self) -> bytes:
        """Every line (tag, LRU stamp, dirty bit), the pending write-backs and non-temporal
        stores with their data, the counters and the wear of every SCM page (cm_save)."""
        n = self.lib.cm_state_size(self.ptr)
        buf = self.ffi.new("uint8_t[]", n)
        self.lib.cm_save(self.ptr, buf)
        return bytes(self.ffi.buffer(buf, n))

    def load_state(self, state: bytes) -> None:
        if self.lib.cm_load(self.ptr, state, len(state)) != 0:
            raise ValueError("saved cache model does not fit this one (geometry, ranges or size differ)")

    def add_range(self, name: str, kind: str, base: int, size: int, channel: int,
                  cpu: Any = None, media: Any = None) -> int:
        """Add a range of the memory map. `cpu`/`media`: writable buffers (mmap, bytearray) or
        cffi pointers; both required for ``scm``."""
        if kind not in ("dram", "scm"):
            raise ValueError(f"range kind must be 'dram' or 'scm', not {kind!r}")
        cpu_p, media_p = self._ptr(cpu, size), self._ptr(media, size)
        idx = self.lib.cm_add_range(self.ptr, base, size, self.lib.CM_KIND_SCM if kind == "scm" else self.lib.CM_KIND_DRAM, channel, cpu_p, media_p)
        if idx < 0:
            raise ValueError(f"cannot add memory range {name!r} ({kind} {base:#x}+{size:#x} ch{channel})")
        self.ranges.append((name, kind, base, size, channel))
        return idx

    def set_interleave(self, index: int, channels: tuple[int, ...], granularity: int) -> None:
        """Spread range `index` over `channels` in `granularity`-byte granules (a power of two)."""
        if granularity & (granularity - 1) or granularity < self.line_size:
            raise ValueError(f"interleave granularity {granularity} must be a power of two >= the line size")
        arr = self.ffi.new("int32_t[]", list(channels))
        if self.lib.cm_set_interleave(self.ptr, index, len(channels), arr, granularity.bit_length() - 1) < 0:
            raise ValueError(f"cannot interleave range {index} over {channels}")
        name, kind, base, size, _ = self.ranges[index]
        self.interleaved[index] = tuple(channels)

    def channels(self) -> list[int]:
        return sorted({r[4] for r in self.ranges} | {c for chs in self.interleaved.values() for c in chs})

    def _ptr(self, buf: Any, size: int) -> Any:
        if buf is None:
            return self.ffi.NULL
        if isinstance(buf, self.ffi.CData):
            return self.ffi.cast("uint8_t *", buf)
        p = self.ffi.from_buffer("uint8_t[]", buf, require_writable=True)
        if len(p) < size:
            raise ValueError("buffer smaller than the range")
        self._keep.append(p)
        return p

    def set_level(self, level: str | int) -> None:
        lv = LEVELS[level] if isinstance(level, str) else int(level)
        if lv not in (0, 1, 2):
            raise ValueError(f"bad model level {level!r}")
        self.lib.cm_set_level(self.ptr, lv)

    @property
    def level(self) -> str:
        return {v: k for k, v in LEVELS.items()}[self.ptr.level]

    # -- accesses
    def access(self, hpa: int, size: int, is_write: bool, is_kernel: bool = False, value: int = 0) -> None:
        self.lib.cm_access(self.ptr, hpa, size, int(is_write), int(is_kernel), value & 0xFFFFFFFFFFFFFFFF)

    def access_range(self, hpa: int, length: int, is_write: bool, is_kernel: bool = True) -> None:
        self.lib.cm_access_range(self.ptr, hpa, length, int(is_write), int(is_kernel))

    def mark_nt(self) -> None:
        self.lib.cm_mark_nt(self.ptr)

    def end_nt(self) -> None:
        self.lib.cm_end_nt(self.ptr)

    # -- persistence operations (kernel parity: is_kernel defaults to True)
    def clflush(self, hpa: int, is_kernel: bool = True) -> None:
        self.lib.cm_clflush(self.ptr, hpa, int(is_kernel))

    def clflush_range(self, hpa: int, length: int, is_kernel: bool = True) -> None:
        """clflush every line of [hpa, hpa+length) (stops early if the power fails)."""
        self.lib.cm_clflush_range(self.ptr, hpa, length, int(is_kernel))

    def store_flush(self, hpa: int, length: int, is_kernel: bool = True) -> None:
        """access_range (a write) then clflush_range of [hpa, hpa+length), in one call."""
        self.lib.cm_store_flush(self.ptr, hpa, length, int(is_kernel))

    def clflushopt(self, hpa: int, is_kernel: bool = True) -> None:
        self.lib.cm_clflushopt(self.ptr, hpa, int(is_kernel))

    def clwb(self, hpa: int, is_kernel: bool = True) -> None:
        self.lib.cm_clwb(self.ptr, hpa, int(is_kernel))

    def fence(self, kind: str = "kernel", is_kernel: bool = True) -> None:
        self.lib.cm_fence(self.ptr, int(is_kernel), getattr(self.lib, "CM_FENCE_" + kind.upper()))

    def nt_store(self, hpa: int, data: bytes, is_kernel: bool = True) -> None:
        """Non-temporal store of `data`: written to the CPU view now, durable at the next fence."""
        self.lib.cm_nt_store(self.ptr, hpa, self.ffi.from_buffer(data), len(data), int(is_kernel))

    def wbinvd(self) -> None:
        self.lib.cm_wbinvd(self.ptr)

    # -- power
    def event(self) -> bool:
        """One persistence event outside the cache (a block written by the storage device).
        False: the power failed instead, the event must not happen."""
        return bool(self.lib.cm_event(self.ptr))

    def fail_at_event(self, k: int) -> None:
        """Power fails instead of persistence event number k (1-based; 0 disables)."""
        self.lib.cm_set_fail_at_event(self.ptr, k)

    def at_fail_event(self, fn: Callable[[], bool] | None) -> None:
        """Ask `fn` at the fail_at_event event before failing: True, the power fails there; False,
        the event happens (fn has moved fail_at_event on). A fork server forks in `fn` and its
        child answers True: the cut happens in the copy, the run goes on in the original."""
        if fn is None:
            self.lib.cm_set_fail_event_callback(self.ptr, self.ffi.NULL, self.ffi.NULL)
            return
        cb = self.ffi.callback("int(void *)", lambda _ctx: int(bool(fn())))
        self._keep.append(cb)
        self.lib.cm_set_fail_event_callback(self.ptr, cb, self.ffi.NULL)

    def set_power_fail_callback(self, fn: Any, ctx: Any = None) -> None:
        """`fn`: a C function pointer ``void (*)(void *)`` (cdata) or a Python callable (test use)."""
        if fn is None:
            self.lib.cm_set_power_fail_callback(self.ptr, self.ffi.NULL, self.ffi.NULL)
            return
        if not isinstance(fn, self.ffi.CData):
            py = fn
            fn = self.ffi.callback("void(void *)", lambda _ctx: py())
        self._keep.append(fn)
        self.lib.cm_set_power_fail_callback(self.ptr, fn, ctx if ctx is not None else self.ffi.NULL)

    @property
    def power_failed(self) -> bool:
        return bool(self.ptr.power_failed)

    def power_fail(self, eadr: bool = False) -> PowerLoss:
        """Power cut now (adr: dirty lines and pending write-backs are lost; eadr: they reach
        media first). The cache is emptied. Also returns the record of a failure already
        triggered by `fail_at_event`."""
        self.lib.cm_power_fail(self.ptr, int(eadr))
        return self.last_loss(eadr)

    def last_loss(self, eadr: bool = False) -> PowerLoss:
        s = self.stats
        return PowerLoss(eadr, s.lost_dirty_lines, s.lost_dirty_dram_lines, s.lost_pending_wb,
                         s.lost_pending_nt, s.eadr_flushed_lines, s.eadr_flushed_pending, s.failed_at_event)

    def power_on(self) -> None:
        self.lib.cm_power_on(self.ptr)

    def reset(self) -> None:
        """Empty the cache and pending queues, writing nothing back."""
        self.lib.cm_reset(self.ptr)

    def reset_stats(self) -> None:
        self.lib.cm_reset_stats(self.ptr)

    # -- inspection
    def line_state(self, hpa: int) -> str:
        return {-1: "absent", 0: "clean", 1: "dirty"}[self.lib.cm_line_state(self.ptr, hpa)]

    @property
    def pending(self) -> int:
        return int(self.lib.cm_pending_count(self.ptr))

    @property
    def dirty_lines(self) -> int:
        return int(self.lib.cm_dirty_lines(self.ptr))

    def wear(self, index_or_name: int | str) -> memoryview:
        """Per-4-KiB-page count of writes landing on an scm range's media (zero-copy, uint32)."""
        i = index_or_name if isinstance(index_or_name, int) else [r[0] for r in self.ranges].index(index_or_name)
        r = self.ptr.ranges[i]
        if r.wear == self.ffi.NULL:
            raise ValueError(f"range {self.ranges[i][0]!r} is not scm")
        return memoryview(self.ffi.buffer(r.wear, r.npages * 4)).cast("I")

    def channel(self, ch: int) -> dict[str, int]:
        c = self.ptr.chan[ch]
        out = {}
        for f in ("read_req", "write_req", "read_bytes", "write_bytes"):
            arr = getattr(c, f)
            out[f + ".user"], out[f + ".kernel"] = int(arr[0]), int(arr[1])
        return out

    def counters(self) -> dict[str, int]:
        """Global counters by field name."""
        return {f: int(getattr(self.stats, f)) for f, _ in self.ffi.typeof("struct cm_stats").fields}

    def bench(self, n: int, base: int, stride: int, span: int, is_write: bool = False) -> float:
        """ns per cm_access of a C loop (see cm_bench)."""
        return self.lib.cm_bench(self.ptr, n, base, stride, span, int(is_write)) / n

    @property
    def hook_address(self) -> int:
        """Address of the C Unicorn memory hook `cm_uc_mem_hook` (UC_HOOK_MEM_READ|WRITE, user
        data: `self.ptr`): guest accesses, attributed to user work."""
        return int(self.ffi.cast("uintptr_t", self.lib.cm_uc_mem_hook_ptr()))

    # -- statistics registry
    def declared_stats(self) -> list[Stat]:
        out = [Stat(f"cache.{f}", unit, desc) for f, unit, desc in _GLOBAL_STATS]
        for ch in self.channels():
            for f, unit, verb in (("read_req", "requests", "read requests to"),
                                  ("write_req", "requests", "write requests to"),
                                  ("read_bytes", "bytes", "bytes read from"),
                                  ("write_bytes", "bytes", "bytes written to")):
                for who in ("user", "kernel"):
                    out.append(Stat(f"channel{ch}.{f}.{who}", unit, f"{verb} channel {ch} by {who} work"))
        for name, kind, _b, _s, _c in self.ranges:
            if kind == "scm":
                out.append(Stat(f"wear.{name}.max_page_writes", "writes", f"most writes landed on one page of {name}"))
                out.append(Stat(f"wear.{name}.pages_written", "pages", f"pages of {name} written at least once"))
        return out

    def provider(self) -> dict[str, int]:
        vals = {f"cache.{f}": int(getattr(self.stats, f)) for f, _u, _d in _GLOBAL_STATS}
        for ch in self.channels():
            for k, v in self.channel(ch).items():
                vals[f"channel{ch}.{k}"] = v
        for i, (name, kind, _b, _s, _c) in enumerate(self.ranges):
            if kind == "scm":
                w = self.wear(i)
                vals[f"wear.{name}.max_page_writes"] = max(w, default=0)
                vals[f"wear.{name}.pages_written"] = sum(1 for x in w if x)
        return vals

    def register_stats(self, registry: StatsRegistry) -> None:
        registry.register(self.provider, self.declared_stats())


_GLOBAL_STATS: list[tuple[str, str, str]] = [
    ("accesses", "accesses", "line accesses modelled (an access straddling two lines counts twice)"),
    ("hits", "accesses", "cache hits"),
    ("misses", "accesses", "cache misses (each reads one line from its channel)"),
    ("evictions", "lines", "valid lines replaced"),
    ("dirty_evictions", "lines", "dirty lines replaced (written back)"),
    ("writebacks", "lines", "lines written back: dirty evictions and flush write-backs"),
    ("clflush", "instructions", "clflush executed on a modelled line"),
    ("clflushopt", "instructions", "clflushopt executed on a modelled line"),
    ("clwb", "instructions", "clwb executed on a modelled line"),
    ("sfence", "instructions", "sfence executed"),
    ("mfence", "instructions", "mfence executed"),
    ("kfence", "operations", "kernel fences"),
    ("wbinvd", "operations", "whole-cache write-back and invalidate"),
    ("nt_stores", "stores", "non-temporal stores"),
    ("events", "events", "persistence events performed"),
    ("media_line_writes", "lines", "lines landed on scm media"),
    ("media_nt_writes", "stores", "non-temporal stores landed on scm media"),
    ("pending_wb_issued", "lines", "clwb/clflushopt write-backs queued until a fence"),
    ("pending_nt_issued", "stores", "non-temporal stores queued until a fence"),
    ("power_failures", "events", "power failures"),
    ("lost_dirty_lines", "lines", "dirty scm lines lost at the last power failure"),
    ("lost_pending_wb", "lines", "pending write-backs lost at the last power failure"),
    ("lost_pending_nt", "stores", "pending non-temporal stores lost at the last power failure"),
]
