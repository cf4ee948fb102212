"""Where a campaign cuts: instruction counts spread over the reference run (seeded jitter in
equal slots), and persistence events (of the shutdown write-back, of chosen checkpoints)."""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emu.crashtest.runner import Campaign


def instruction_points(total: int, n: int, seed: int) -> list[int]:
    """n cut points over instructions 1..total: one per equal slot, at a seeded random place in
    it (deterministic for a seed), distinct and sorted."""
    if total <= 0 or n <= 0:
        return []
    rng = random.Random(seed)
    n = min(n, total)
    pts = []
    for i in range(n):
        lo = 1 + i * total // n
        hi = (i + 1) * total // n
        pts.append(rng.randint(lo, max(lo, hi)))
    return sorted(set(pts))


def selected_checkpoints(c: Campaign, k: int) -> list[dict[str, Any]]:
    """The k checkpoints whose every event is a cut point. Preferred: checkpoints that also write
    blocks back (their cuts cover the commit and the write-back); among those no more than twice
    the size of the smallest, the ones writing the most blocks; then the smallest of the rest."""
    cks = [ck for ck in c.reference.get("checkpoints", []) if ck["last_event"] >= ck["first_event"]]
    size = lambda ck: ck["last_event"] - ck["first_event"] + 1  # noqa: E731
    with_blocks = [ck for ck in cks if ck["blocks"]]
    smallest = min((size(ck) for ck in with_blocks), default=0)
    preferred = sorted((ck for ck in with_blocks if size(ck) <= 2 * smallest),
                       key=lambda ck: (-ck["blocks"], size(ck), ck["seq"]))
    rest = sorted((ck for ck in cks if ck not in preferred), key=lambda ck: (size(ck), ck["seq"]))
    return sorted((preferred + rest)[:k], key=lambda ck: ck["seq"])


def points_for(c: Campaign, n: int, seed: int, writeback: bool, checkpoints: int = 0,
               stride: int = 1, event_points: int = 0) -> list[tuple[int, str, int]]:
    """Instruction points, then persistence events. `stride` thins a checkpoint's page copies
    (every stride-th event) but keeps its last events whole: the slot lines that commit it, the
    generation notes and every block written back. `event_points`: that many events spread over
    the run before its shutdown like the instruction points (the kernel's own flushes and fences:
    a DAX file system's commits)."""
    ref = c.reference
    jobs = [("instruction", at) for at in instruction_points(ref["instructions"], n, seed)]
    events: set[int] = set(instruction_points(ref["events_before_shutdown"], event_points, seed + 1))
    if writeback:
        events.update(range(ref["events_before_shutdown"] + 1, ref["events"] + 1))
    for ck in selected_checkpoints(c, checkpoints):
        first, last = ck["first_event"], ck["last_event"]
        tail = last - (ck["blocks"] + 8)
        events.update(e for e in range(first, last + 1) if e > tail or (e - first) % stride == 0)
    jobs += [("event", e) for e in sorted(events)]
    return [(i + 1, kind, at) for i, (kind, at) in enumerate(jobs)]
