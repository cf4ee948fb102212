"""The balloon driver (drivers/virtio/virtio_balloon.c's job): gives guest pages to the host and
takes them back, and answers the host's requests.

- **Target** (the host's `num_pages`, hw/balloon.py): at the next kernel tick after the host
  changes it, the driver inflates (takes free frames from the zones but DMA, above their min
  watermark, as GFP_HIGHUSER_MOVABLE never reaches ZONE_DMA, and hands them to the device) or deflates (gives the newest back). Pages go as buddy blocks,
  largest first, rather than one by one as Linux does: the same pages leave the same free lists,
  in a few thousand steps for gigabytes. MemTotal drops by what the balloon holds
  (adjust_managed_page_count), and /proc/vmstat counts balloon_inflate and balloon_deflate.
- **Statistics** with virtio-balloon's names (free-memory, available-memory, disk-caches...).
- **A cooperative snapshot** (SonicShot, the paper's Dom0 -> DomU request), `prepare_snapshot`:
  with no process running in between (the paper's big kernel lock), sync the dirty page cache,
  drop the clean page cache and the reclaimable slab caches, then hand every free page to the
  host through the balloon, keeping the DMA zone's free pages and each zone's min watermark (the
  paper keeps the DMA free pages so the system does not break). The host saves the pages still
  mapped; `after_snapshot` deflates those pages again (in the machine that goes on, and in the
  one restored from the snapshot, which is how the paper gives a restored guest its RAM back).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from guestkernel.buddy import MAX_ORDER
from guestkernel.gfp import Gfp

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from hw.balloon import Balloon


class BalloonDriver:
    def __init__(self, k: "Kernel", dev: "Balloon") -> None:
        self.k = k
        self.dev = dev
        self.blocks: list[tuple[int, int]] = []  # (pfn, order) the host's target holds, oldest first
        self.hinted: list[tuple[int, int]] = []  # (pfn, order) handed over for a snapshot
        self.pending = False                      # the target changed: act at the next tick
        self._kswapd_wanted = False               # kswapd's flag before a snapshot's hint
        self.attach()

    def attach(self) -> None:
        """Bind to the device (at boot, and again after the kernel's state is loaded)."""
        self.dev.on_config_change = self._config_changed
        self.dev.stats_provider = self.stats
        if self.dev.target_pages != self.held:
            self.pending = True

    def _config_changed(self) -> None:
        self.pending = True

    @property
    def held(self) -> int:
        return sum(1 << order for _pfn, order in self.blocks)

    # -- the host's target -------------------------------------------------------------------------
    def adjust(self) -> None:
        """Inflate or deflate toward the host's target (kernel tick)."""
        self.pending = False
        target, held = self.dev.target_pages, self.held
        if held < target:
            self._fill(self.blocks, target - held)
            if self.held < target:
                self.pending = True  # retried at the next tick, as Linux retries later
        back: list[tuple[int, int]] = []
        over = self.held - target
        while self.blocks and over > 0:
            back.append(self.blocks.pop())
            over -= 1 << back[-1][1]
        self._give_back(back)
        if over < 0:  # the last block was split: give back only what is asked
            self._fill(self.blocks, -over)

    def _fill(self, into: list[tuple[int, int]], want: int) -> int:
        """Take up to `want` free frames as blocks, largest first, from every zone but DMA and
        above each zone's min watermark; returns how many were taken."""
        f = self.k.frames
        got = 0
        zones = [z for z in f.zones if z.name != "DMA"]
        taken: list[tuple[int, int]] = []
        for order in range(MAX_ORDER - 1, -1, -1):
            n = 1 << order
            for z in zones:
                while want - got >= n:
                    pfn = f.take_block(z, order, Gfp.KERNEL, "min")
                    if pfn is None:
                        break
                    taken.append((pfn, order))
                    got += n
        self.dev.inflate([(pfn, 1 << order) for pfn, order in taken])
        f.ballooned += got
        f.events["balloon_inflate"] += got
        into.extend(taken)
        return got

    def _give_back(self, blocks: list[tuple[int, int]]) -> None:
        f = self.k.frames
        n = self.dev.deflate([pfn for pfn, _ in blocks])
        f.ballooned -= n
        f.events["balloon_deflate"] += n
        for pfn, order in blocks:
            f.free_block(pfn, order)

    def sysfs_files(self) -> dict[str, object]:
        """The device under /sys/bus/virtio/devices/virtio0 as Linux lists a virtio-balloon
        (device id 5), plus emu's read-only view of its config space (Linux shows it nowhere):
        balloon_num_pages (the host's target) and balloon_actual (pages held), and the last
        statistics, one `name value` per line."""
        base = "bus/virtio/devices/virtio0/"
        return {base + "device": lambda: b"0x0005\n", base + "vendor": lambda: b"0x554d4551\n",
                base + "balloon_num_pages": lambda: f"{self.dev.target_pages}\n".encode(),
                base + "balloon_actual": lambda: f"{self.dev.actual_pages}\n".encode(),
                base + "balloon_stats": lambda: "".join(f"{n} {v}\n" for n, v in self.stats().items()).encode()}

    # -- the host's statistics request ------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        from guestkernel.pseudofs.procmem import memory_counts, mem_available

        k = self.k
        c = memory_counts(k)
        return {"swap-in": 0, "swap-out": 0, "major-faults": k.pagecache.stats.misses, "minor-faults": k.page_faults,
                "free-memory": c["free"] * 4096, "total-memory": c["total"] * 4096,
                "available-memory": mem_available(c) * 4096, "disk-caches": c["file"] * 4096,
                "hugetlb-allocations": 0, "hugetlb-failures": 0}

    # -- a cooperative snapshot ----------------------------------------------------------------------
    def prepare_snapshot(self) -> dict[str, int]:
        """Sync, drop the page cache and the slab caches, then hand every free page but the
        reserve to the host. Returns what was done, in pages."""
        k = self.k
        before = k.pagecache.stats.writebacks
        k.sync()
        cached, slab = len(k.pagecache.pages), k.slab.totals()["reclaimable_pages"]
        k.reclaim.drop_caches(3, None)
        dropped_cache = cached - len(k.pagecache.pages)
        dropped_slab = slab - k.slab.totals()["reclaimable_pages"]
        self._kswapd_wanted = k.frames.kswapd_wanted  # the hint is no memory pressure
        hinted = self._fill(self.hinted, k.frames.free_frames)
        return {"synced_pages": k.pagecache.stats.writebacks - before, "dropped_page_cache_pages": dropped_cache,
                "dropped_slab_pages": dropped_slab, "free_pages_left_out": hinted,
                "free_pages_kept": k.frames.free_frames}

    def after_snapshot(self) -> int:
        """Take back the pages handed over for the snapshot (newest first); returns how many."""
        n = sum(1 << order for _, order in self.hinted)
        self._give_back(self.hinted[::-1])
        self.hinted = []
        self.k.frames.kswapd_wanted = self._kswapd_wanted
        return n
