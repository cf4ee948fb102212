"""Media faults: what a worn or failing SCM device does to the checkpoint range after a power cut.

`inject(media, cpu_view, k, rng)` applies k faults, chosen and placed by a seeded generator, to the
media bytes of the range that holds the checkpoint images (see guestkernel/checkpoint/store.py):

    table-flip   one bit flipped in a written line of the image table (either copy)
    slot-flip    one bit flipped in a slot line (the commit record of an image)
    meta-flip    one bit flipped in an image's metadata
    data-flip    one bit flipped in a data page an image lists (process pages, the block log)
    torn-line    a line that was in flight when the power failed lands half: one 32-byte half
                 new (the CPU's view at the cut), the other half as the media held it
    zero-page    a page of the range reads as zeros (a stuck or unmapped page)

Faults are placed where they matter: the layout is read from the media itself (the table and
the images it names, as far as they are readable); where it is not readable, a written page of
the range stands in. The media file is the host pool, in host page order; `page_map` gives the
pool page behind each page of the guest's checkpoint window (the EPT's mapping: not the
identity with `ept.initial = "shuffled"`). Offsets in the returned faults are media offsets. Each fault is returned as a dict (kind, page, offset, detail), so a campaign
can report and reproduce it: the same seed, media and cut give the same faults.
"""
from __future__ import annotations

import random
from typing import Any

from guestkernel.checkpoint.store import LINE, PAGE, CorruptImage, ImageStore, ScmMedium, page_refs

_ZERO = bytes(PAGE)
KINDS = ("table-flip", "slot-flip", "meta-flip", "data-flip", "torn-line", "zero-page")


def layout(media: bytes | bytearray | memoryview, page_map: list[int] | None = None) -> dict[str, list[int]]:
    """Where things are on the media: table lines (byte offsets), slot lines, metadata pages
    and data pages of every image the table names (readable or not, as far as it goes), the
    pages of all these ("live") and every written page ("used")."""
    view = memoryview(media)
    pm = page_map if page_map is not None else list(range(len(view) // PAGE))
    store = ImageStore(ScmMedium(lambda i: view[pm[i] * PAGE : (pm[i] + 1) * PAGE], len(pm)))
    lines, slots, meta, data = [], [], [], []
    for pg in (0, store.mirror):
        for line in range(4):
            off = pm[pg] * PAGE + line * LINE
            if view[off : off + LINE] != _ZERO[:LINE]:
                lines.append(off)
                if line in (1, 2):
                    slots.append(off)
    try:
        table = store.read_table()
    except CorruptImage:
        table = []
    for slot in table:
        meta.extend(pm[p] for p in range(slot.meta_page, slot.meta_page + slot.meta_pages) if 0 < p < store.mirror)
        meta.extend(pm[p] for p in store.part_pages(slot))
        try:
            img = store.load(slot)
        except CorruptImage:
            continue
        data.extend(pm[pg] for pg, _crc in page_refs(img.meta))
    used = [pg for pg in range(len(view) // PAGE) if view[pg * PAGE : (pg + 1) * PAGE] != _ZERO]
    live = sorted({off // PAGE for off in lines} | set(meta) | set(data))
    return {"table": lines, "slots": slots, "meta": sorted(set(meta)), "data": sorted(set(data)), "live": live,
            "used": used}


def in_flight(media: bytes | bytearray | memoryview, cpu_view: bytes | bytearray | memoryview | None) -> list[int]:
    """Byte offsets of the lines whose CPU view differs from the media: lost at the cut."""
    if cpu_view is None:
        return []
    m, c = memoryview(media), memoryview(cpu_view)
    out = []
    for pg in range(len(m) // PAGE):
        s = pg * PAGE
        if m[s : s + PAGE] != c[s : s + PAGE]:
            out.extend(off for off in range(s, s + PAGE, LINE) if m[off : off + LINE] != c[off : off + LINE])
    return out


def inject(media: bytearray | memoryview, cpu_view: bytes | bytearray | memoryview | None, k: int,
           rng: random.Random, kinds: tuple[str, ...] = KINDS, page_map: list[int] | None = None) -> list[dict[str, Any]]:
    """Apply k faults to `media` in place; returns what was done. A kind with nowhere to act
    (no image to flip, no line in flight) gives way to a flip in a written page."""
    faults = []
    for _ in range(k):
        where = layout(media, page_map)  # earlier faults may have changed what is readable
        kind = rng.choice(kinds)
        fault = _one(media, cpu_view, kind, where, rng)
        if fault is None:
            fault = _flip(media, "data-flip", where["live"] or where["used"] or [0], rng)
            fault["instead_of"] = kind
        faults.append(fault)
    return faults


def _one(media: Any, cpu_view: Any, kind: str, where: dict[str, list[int]], rng: random.Random) -> dict[str, Any] | None:
    if kind in ("table-flip", "slot-flip"):
        lines = where["table" if kind == "table-flip" else "slots"]
        if not lines:
            return None
        off = rng.choice(lines) + rng.randrange(LINE)
        return _flip_at(media, kind, off, rng)
    if kind in ("meta-flip", "data-flip"):
        pages = where["meta" if kind == "meta-flip" else "data"]
        return _flip(media, kind, pages, rng) if pages else None
    if kind == "torn-line":
        lines = in_flight(media, cpu_view)
        if not lines:
            return None
        off = rng.choice(lines)
        half = rng.randrange(2)
        s = off + half * (LINE // 2)
        new = bytes(memoryview(cpu_view)[s : s + LINE // 2])
        media[s : s + LINE // 2] = new
        return {"kind": kind, "page": off // PAGE, "offset": s, "detail": f"{'second' if half else 'first'} half new",
                "bytes": new.hex()}
    if kind == "zero-page":
        pages = where["live"] or where["used"]
        if not pages:
            return None
        pg = rng.choice(pages)
        media[pg * PAGE : (pg + 1) * PAGE] = bytes(PAGE)
        return {"kind": kind, "page": pg, "offset": pg * PAGE, "detail": "page reads as zeros", "bytes": ""}
    raise ValueError(f"unknown media fault {kind!r} (known: {', '.join(KINDS)})")


def _flip(media: Any, kind: str, pages: list[int], rng: random.Random) -> dict[str, Any]:
    pg = rng.choice(pages)
    return _flip_at(media, kind, pg * PAGE + rng.randrange(PAGE), rng)


def _flip_at(media: Any, kind: str, off: int, rng: random.Random) -> dict[str, Any]:
    bit = rng.randrange(8)
    media[off] ^= 1 << bit
    return {"kind": kind, "page": off // PAGE, "offset": off, "detail": f"bit {bit}", "bit": bit}


def apply(media: bytearray | memoryview, faults: list[dict[str, Any]]) -> None:
    """Apply faults recorded by `inject` again (reproducing a campaign point)."""
    for f in faults:
        off = int(f["offset"])
        if "bit" in f:
            media[off] ^= 1 << int(f["bit"])
        elif f["kind"] == "zero-page":
            media[off : off + PAGE] = bytes(PAGE)
        else:
            new = bytes.fromhex(f["bytes"])
            media[off : off + len(new)] = new


def main(argv: list[str] | None = None) -> int:
    """`python -m emu.mediafaults MEDIA_FILE FAULTS_JSON`: apply recorded faults to a media file."""
    import json
    import mmap
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m emu.mediafaults MEDIA_FILE FAULTS_JSON", file=sys.stderr)
        return 2
    with open(args[0], "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        apply(m, json.loads(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
