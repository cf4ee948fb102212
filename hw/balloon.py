"""A memory balloon: the paravirtual device through which the host takes guest RAM back and
returns it (modelled on virtio-balloon).

The host sets a target (`num_pages`, in 4 KiB pages, as virtio-balloon's config space); the
guest's driver (guestkernel/balloon.py) inflates toward it by allocating pages and handing them
to the device, or deflates by asking for pages back. A page handed over is unmapped from the EPT
(a guest access to it would fault) and its host memory is released with madvise, so the emu
process's RSS really drops; a page given back is mapped to the same host frame again, zeroed.
The driver also answers the host's statistics requests with virtio-balloon's names.

The device holds guest pages as runs of contiguous gpfns (the driver hands over buddy blocks):
inflating a few GiB is a few thousand calls, not a million.
"""
from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass

from typing import TYPE_CHECKING

from hw.ept import EPT, INVALID

if TYPE_CHECKING:  # numpy is imported where it is used: emu's start-up does not need it
    import numpy as np

# The statistics a virtio-balloon driver reports (VIRTIO_BALLOON_S_* tags, in their order).
STAT_NAMES = ("swap-in", "swap-out", "major-faults", "minor-faults", "free-memory", "total-memory",
              "available-memory", "disk-caches", "hugetlb-allocations", "hugetlb-failures")


@dataclass
class BalloonCounters:
    inflates: int = 0        # pages handed to the host
    deflates: int = 0        # pages given back to the guest
    released_bytes: int = 0  # host memory released with madvise


class Balloon:
    def __init__(self, ept: EPT) -> None:
        self.ept = ept
        self.target_pages = 0            # num_pages: what the host wants the balloon to hold
        self.runs: dict[int, array] = {}  # first gpfn of a run -> the host frames it had
        self.counters = BalloonCounters()
        # Set by the guest driver: called when the target changes (virtio's config interrupt)
        # and when the host asks for statistics (the stats virtqueue).
        self.on_config_change: Callable[[], None] = lambda: None
        self.stats_provider: Callable[[], dict[str, int]] | None = None

    @property
    def actual_pages(self) -> int:
        """The pages the balloon holds (virtio-balloon's `actual`)."""
        return sum(len(h) for h in self.runs.values())

    def set_target(self, pages: int) -> None:
        """The host's request (a change of num_pages); the guest driver acts on it."""
        if pages < 0:
            raise ValueError("a balloon target cannot be negative")
        self.target_pages = pages
        self.on_config_change()

    # -- the guest driver's side ---------------------------------------------------------------
    def inflate(self, blocks: list[tuple[int, int]]) -> None:
        """The guest hands over pages, as blocks (first_gpfn, count): unmap them and free
        their host memory (in one pass: a sonic snapshot hands over thousands of blocks)."""
        import numpy as np
        if not blocks:
            return
        firsts = np.array([g for g, _ in blocks], dtype=np.int64)
        counts = np.array([n for _, n in blocks], dtype=np.int64)
        # every gpfn of every block, block after block
        idx = np.repeat(firsts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts) + np.arange(int(counts.sum()))
        m = np.frombuffer(self.ept.map, dtype=np.uint32)
        hpfns = m[idx]
        once = np.zeros(len(m), dtype=bool)
        once[idx] = True
        if (hpfns == INVALID).any() or any(int(g) in self.runs for g in firsts) or int(once.sum()) != len(idx):
            raise ValueError("guest pages handed to the balloon are not all mapped (or handed twice)")
        at = 0
        for g, n in zip(firsts.tolist(), counts.tolist()):
            self.runs[g] = array("I", hpfns[at:at + n].tobytes())
            at += n
        m[idx] = INVALID
        np.frombuffer(self.ept.bits, dtype=np.uint8)[idx] = 0
        np.frombuffer(self.ept.log, dtype=np.uint8)[idx] = 0
        for hpfn, n in _sorted_runs(hpfns):
            self.ept.physmem.release(hpfn, n)
        self.counters.inflates += len(idx)
        self.counters.released_bytes += len(idx) * 4096
        self.ept.on_change()

    def deflate(self, firsts: list[int]) -> int:
        """The guest takes back the blocks that start at these gpfns (zeroed host memory behind
        them); returns how many pages."""
        n = 0
        for first_gpfn in firsts:
            hpfns = self.runs.pop(first_gpfn)
            self.ept.map[first_gpfn : first_gpfn + len(hpfns)] = hpfns
            n += len(hpfns)
        self.counters.deflates += n
        if firsts:
            self.ept.on_change()
        return n

    # -- the host's view -------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """The guest's memory statistics (virtio-balloon's names, in bytes or counts), or {}
        when no driver answers."""
        return dict(self.stats_provider()) if self.stats_provider is not None else {}

    def save_state(self) -> dict:
        return {"target_pages": self.target_pages, "runs": {g: h.tobytes() for g, h in self.runs.items()},
                "counters": asdict(self.counters)}

    def load_state(self, state: dict) -> None:
        """After the EPT's own state (which has these pages unmapped already)."""
        import numpy as np
        self.target_pages = state["target_pages"]
        self.runs = {int(g): array("I", h) for g, h in state["runs"].items()}
        self.counters = BalloonCounters(**state["counters"])
        if self.runs:  # a fresh machine backs them: release that memory too
            every = np.concatenate([np.frombuffer(h, dtype=np.uint32) for h in self.runs.values()])
            for hpfn, n in _sorted_runs(every):
                self.ept.physmem.release(hpfn, n)


def _runs(hpfns: "array | np.ndarray") -> list[tuple[int, int]]:
    """Runs of consecutive host frames, as (first, count)."""
    import numpy as np
    a = np.frombuffer(hpfns, dtype=np.uint32) if isinstance(hpfns, array) else hpfns
    if not len(a):
        return []
    cuts = np.flatnonzero(np.diff(a.astype(np.int64)) != 1) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(a)]))
    return [(int(a[s]), int(e - s)) for s, e in zip(starts, ends)]


def _sorted_runs(hpfns: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive host frames among distinct `hpfns` in any order (a bitmap: linear,
    where a sort of millions of frames is not)."""
    import numpy as np
    if not len(hpfns):
        return []
    lo = int(hpfns.min())
    mask = np.zeros(int(hpfns.max()) - lo + 3, dtype=np.int8)
    mask[hpfns.astype(np.int64) - lo + 1] = 1
    edges = np.diff(mask)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a) + lo, int(b - a)) for a, b in zip(starts, ends)]
