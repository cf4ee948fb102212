"""The checkpoint image store in SCM: an image table at the range's base (mirrored in its last
page), shadow-paged commits through the cache model, checksums on everything, and reuse of SCM no
image references.

On-media layout (4 KiB pages; page 0 is the table, its copy is the last page, pages between hold
images)::

    page 0, line 0   header  magic "EMUCKPT1", version, page size, pages in the range, crc32
    page 0, line 1   slot 0  seq, first meta page, meta pages, meta length, meta crc32, crc32
    page 0, line 2   slot 1  (same)
    page 0, line 3   outcome seq, syscall number, result, DAX transaction (0: none), crc32 (see
                     Checkpointer.after_syscall)
    pages 1..N-2     data pages (process pages, blocks of the file-system log) and metadata runs
    page N-1         the mirror: lines 0-3 as in page 0, written right after them

An image is its metadata (msgpack, contiguous pages) plus the data pages it lists, each with a
crc32. Data pages that did not change since the previous image are shared with it. So are the
*parts* of the metadata (version 4): blobs in runs of pages of their own, each listed in the
metadata as [first page, pages, length, crc32] under "parts": the page list of each address space
(the records of `pack_pages`), the guest's random generator's state, and the group's static
description (what changes only with processes, descriptor tables, mappings or signal actions;
msgpack + zstd). A checkpoint writes a part only when its bytes changed, so the metadata proper
is small (registers, offsets, counters: about 1 KiB, not compressed). `load` checks every part
it lists and gives back the whole metadata, parts merged in (`merge_parts`), as version 3 kept it
in one zstd-compressed blob (at a checkpoint per syscall that blob cost 0.15 ms of Python, JSON
and zlib before it 0.4 ms).
Shared anonymous memory (version 5): each object's pages, mapped or not, are listed under "shmem"
(its size in pages, a part of packed (offset, SCM page, crc) records and what names it: a System
V segment's shmid_ds and place in the registry, a shared anonymous object's inode number), and a
VMA names the object it maps (checkpoint/state.py).
A commit writes the new image into pages no slot references, `clflush`es every line of it,
`mfence`s, then writes the older slot (the one not holding the newest image) in both copies and
flushes and fences them: a power cut anywhere before a slot line is durable leaves the table as it
was. At restart each slot is taken from whichever copy checks out (the higher seq if both do);
the slot with the highest seq whose metadata and pages all check out wins; the other slot is the
fallback.

What the table says about the past (`TableState`): a table line is *blank* (all zeros: never
written), *valid* (its crc32 checks) or *damaged* (anything else). A range whose lines are all
blank has never held a committed image; a valid slot proves a commit, and a damaged line may hide
one. Two copies in different pages mean one corrupt or zeroed page cannot turn "committed" into
"never committed"; the restart also asks storage (see checkpointer.py).
"""
from __future__ import annotations

import struct
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable

import msgpack
import zstandard

from guestkernel.scm import LINE, ScmMedium
from hw.physmem import PAGE_SIZE

MAGIC = b"EMUCKPT1"
VERSION = 5  # 5: shared anonymous objects ("shmem": each one's pages; a VMA names its object);
#               4: metadata parts shared between images; 3: the outcome names its DAX transaction;
#               2: metadata in msgpack + zstd (1: JSON + zlib)
PAGE = PAGE_SIZE  # the hardware page (hw/physmem.py)
SLOTS = 2
_HDR = struct.Struct("<8sIII")          # magic, version, page size, pages
_SLOT = struct.Struct("<QIIII")         # seq, meta page, meta pages, meta length, meta crc
_OUTCOME = struct.Struct("<QqqQ")       # seq, syscall nr, result, DAX transaction
_CRC = struct.Struct("<I")
_ZSTD = zstandard.ZstdCompressor(level=1)  # writes the content size, which decompress needs
_PACKER = msgpack.Packer(use_bin_type=True)


class CorruptImage(Exception):
    """An image failed a check (torn commit, flipped bits): the restart uses an older one."""


@dataclass
class TableState:
    """What the two copies of the table say, line by line (see the module docstring)."""

    valid_slots: int = 0                 # slot lines (of either copy) whose crc checks, seq > 0
    damaged: list[str] = field(default_factory=list)  # lines that are neither blank nor valid
    max_seq: int = 0                     # the highest seq any valid slot line names

    @property
    def blank(self) -> bool:
        """No line of either copy was ever written: no image was ever committed."""
        return not self.valid_slots and not self.damaged

    @property
    def committed(self) -> bool | None:
        """True: an image was committed; False: never; None: damaged lines may hide one."""
        if self.valid_slots:
            return True
        return None if self.damaged else False


@dataclass
class Slot:
    index: int
    seq: int
    meta_page: int
    meta_pages: int
    meta_len: int
    meta_crc: int


@dataclass
class Image:
    """One checkpoint image: its slot, metadata and the SCM pages it references, as page lists
    (`groups`: packed records, see `pack_pages`; an image shares the very objects of the lists
    that did not change with the previous image, so that holding and releasing them is cheap)."""

    slot: Slot
    meta: dict[str, Any]
    groups: list[bytes] = field(default_factory=list)

    @property
    def pages(self) -> set[int]:
        """Every SCM page it references."""
        return {pg for g in self.groups for _a, pg, _c in _PAGE_REF.iter_unpack(g)}


def _sealed(st: struct.Struct, *values: Any) -> bytes:
    body = st.pack(*values)
    return body + _CRC.pack(zlib.crc32(body))


def _unseal(st: struct.Struct, raw: bytes) -> tuple[Any, ...] | None:
    body = raw[: st.size]
    (crc,) = _CRC.unpack_from(raw, st.size)
    return st.unpack(body) if zlib.crc32(body) == crc else None


def _blank(raw: bytes) -> bool:
    return not any(raw)


class ImageStore:
    """Allocation and commit of images in one SCM range (see the module docstring)."""

    def __init__(self, medium: ScmMedium) -> None:
        self.m = medium
        self.npages = medium.size // PAGE
        if self.npages < 8:
            raise ValueError(f"the {medium.label} is too small for checkpoint images")
        # 1 = referenced by an image in a slot (or being written); page 0 is the table and the
        # last page its mirror.
        self.mirror = self.npages - 1
        self.used = bytearray(self.npages)
        self.used[0] = self.used[self.mirror] = 1
        # How many times the slots' images list each page (through their groups, each group
        # object counted once: see _hold); a page is used while counted or pending.
        self.refs = array("H", bytes(2 * self.npages))
        self.held: dict[int, list[Any]] = {}   # id(group) -> [group, images holding it]
        self._counts: Any = None  # refs and used as C arrays (see _count)
        self.slot_images: list[Image | None] = [None] * SLOTS
        self.newest: int | None = None  # slot index of the newest committed image
        self.formatted = False
        self.pending: set[int] = set()  # pages of the image being written
        # Pages a process writes in place (images in a file: checkpoint/live.py), taken between
        # checkpoints and referenced by no committed image yet: the next commit keeps those its
        # image lists and frees the others; an abandoned checkpoint keeps them all (mapped).
        self.live: set[int] = set()
        self.last_seq = 0  # new images are numbered above this (and above every slot's)

    # -- table -----------------------------------------------------------------------------
    def _table_pages(self) -> tuple[int, int]:
        return (0, self.mirror * PAGE)

    def _persist_line(self, line: int, data: bytes) -> None:
        """One table line, in both copies (each written back; the caller fences)."""
        for base in self._table_pages():
            self.m.persist(base + LINE * line, data)

    def format(self) -> None:
        """Write an empty table (first checkpoint on a blank range)."""
        self._persist_line(0, _sealed(_HDR, MAGIC, VERSION, PAGE, self.npages).ljust(LINE, b"\0"))
        for line in (1, 2, 3):
            self._persist_line(line, bytes(LINE))
        self.m.fence()
        self.formatted = True

    def table_state(self) -> TableState:
        """Every line of both copies: blank, valid or damaged (whatever the header says)."""
        ts = TableState()
        for copy, base in zip(("", " (mirror)"), self._table_pages()):
            for line, st in ((0, _HDR), (1, _SLOT), (2, _SLOT), (3, _OUTCOME)):
                raw = self.m.read(base + LINE * line, LINE)
                if _blank(raw):
                    continue
                v = _unseal(st, raw)
                name = ("header", "slot 0", "slot 1", "outcome record")[line] + copy
                if v is None or (line == 0 and v[0] != MAGIC) or any(raw[st.size + 4:]):
                    ts.damaged.append(name)
                elif st is _SLOT and v[0] > 0:
                    ts.valid_slots += 1
                    ts.max_seq = max(ts.max_seq, v[0])
        return ts

    def read_table(self) -> list[Slot]:
        """The valid slots, newest first ([] for a range that holds no table). Each slot comes
        from whichever copy checks out (its crc32, then the image's own checks, vouch for it);
        a valid header of another layout is refused."""
        hdrs = [_unseal(_HDR, self.m.read(base, _HDR.size + 4)) for base in self._table_pages()]
        for hdr in hdrs:
            if hdr is not None and hdr[0] == MAGIC and (hdr[1] != VERSION or hdr[2] != PAGE or hdr[3] != self.npages):
                raise CorruptImage(f"image table of another layout (version {hdr[1]}, {hdr[3]} pages)")
        slots = []
        for i in range(SLOTS):
            copies = [_unseal(_SLOT, self.m.read(base + LINE * (1 + i), _SLOT.size + 4)) for base in self._table_pages()]
            good = [v for v in copies if v is not None and v[0] > 0]
            if good:
                slots.append(Slot(i, *max(good, key=lambda v: v[0])))
        self.formatted = bool(slots) or any(h is not None and h[0] == MAGIC for h in hdrs)
        return sorted(slots, key=lambda s: -s.seq)

    # -- allocation ------------------------------------------------------------------------
    def alloc(self, n: int = 1, live: bool = False) -> int:
        """n contiguous free pages, the lowest (first fit: deterministic), pending for the image
        being written, or `live` (one page a process will write in place). A checkpoint reuses
        the pages older images freed, which the host has touched already: a page of the range
        used for the first time costs the host a fault in the SCM view and one in its media
        file, more than the copy itself. (Wear gathers on those pages, as without wear
        leveling; the wear statistics show it.)"""
        run = b"\0" * n
        at = self.used.find(run, 1)
        if at < 0:
            raise MemoryError(f"{self.m.label} full: no {n} free pages for a checkpoint image")
        self.used[at : at + n] = b"\1" * n
        (self.live if live else self.pending).update(range(at, at + n))
        return at

    def _count(self, img: Image, delta: int) -> None:
        """An image starts (+1) or stops (-1) holding its groups: a group object new to the
        slots counts its pages once more (native/ckptscan.c), one no image holds any more once
        less; a group shared with the other image costs nothing. (The groups to count go to C
        joined, in one call.)"""
        todo = []
        for g in img.groups:
            e = self.held.get(id(g))
            if delta > 0:
                if e is not None:
                    e[1] += 1
                    continue
                self.held[id(g)] = [g, 1]
            else:
                assert e is not None
                e[1] -= 1
                if e[1]:
                    continue
                del self.held[id(g)]
            todo.append(g)
        if not todo:
            return
        if self._counts is None or self._counts[0] is not self.used:
            ffi, lib = _native()
            self._counts = (self.used, ffi.from_buffer("uint16_t[]", self.refs),
                            ffi.from_buffer("uint8_t[]", self.used), ffi, lib)
        _used, refs, used, ffi, lib = self._counts
        recs = todo[0] if len(todo) == 1 else b"".join(todo)
        lib.emu_ckpt_refs(ffi.from_buffer("uint8_t[]", recs), len(recs) // _PAGE_REF.size, refs, used, self.npages, delta)

    def _recount(self) -> None:
        """Count again from the slots' images (a restart's)."""
        self.used = bytearray(self.npages)
        self.used[0] = self.used[self.mirror] = 1
        self.refs = array("H", bytes(2 * self.npages))
        self.held = {}
        self._counts = None
        for img in self.slot_images:
            if img is not None:
                self._count(img, +1)
        for pg in self.pending | self.live:
            self.used[pg] = 1

    def _release_pending(self) -> None:
        """Pages of the attempt no image lists are free again."""
        for pg in self.pending:
            if not self.refs[pg]:
                self.used[pg] = 0
        self.pending = set()

    def _release_live(self) -> None:
        """After a commit: live pages its image lists are the image's now (counted); the
        others no process maps any more (the image lists every mapped one): free again."""
        for pg in self.live:
            if not self.refs[pg]:
                self.used[pg] = 0
        self.live = set()

    # -- writing ---------------------------------------------------------------------------
    def write_page(self, data: bytes | memoryview) -> tuple[int, int]:
        """Store one page in a fresh SCM page (written and flushed); returns (page, crc32)."""
        pg = self.alloc(1)
        self.m.persist(pg * PAGE, data)
        return pg, zlib.crc32(data)

    def write_frames(self, gpfns: list[int], page_of: Callable[[int], memoryview]) -> list[tuple[int, int]]:
        """Store guest frames (their bytes: page_of(gpfn)) each in a fresh SCM page, as
        `write_page` does one after the other; returns (page, crc32) of each."""
        pgs = []
        at = 0
        for _ in gpfns:  # (the pages `alloc(1)` would give, one after the other)
            at = self.used.find(0, at + 1)
            if at < 0:
                raise MemoryError(f"{self.m.label} full: no free page for a checkpoint image")
            pgs.append(at)
        for pg in pgs:
            self.used[pg] = 1
        self.pending.update(pgs)
        return list(zip(pgs, self.m.persist_frames(pgs, gpfns, page_of)))

    def write_part(self, blob: bytes) -> tuple[list[int], bytes]:
        """Store a metadata part in fresh pages (written and flushed); returns its reference
        [first page, pages, length, crc32] and its pages as a group."""
        npg = max(1, (len(blob) + PAGE - 1) // PAGE)
        first = self.alloc(npg)
        self.m.persist(first * PAGE, blob)
        return [first, npg, len(blob), zlib.crc32(blob)], page_group(range(first, first + npg))

    def commit(self, meta: dict[str, Any], groups: list[bytes] | set[int]) -> int:
        """Make `meta` (which lists the pages of `groups`, or a set of pages) the newest image:
        metadata, mfence, slot, flush, mfence. Returns the new sequence number."""
        if isinstance(groups, set):
            groups = [page_group(sorted(groups))]
        if not self.formatted:
            self.format()
        seq = 1 + max([self.last_seq] + [img.slot.seq for img in self.slot_images if img is not None])
        self.last_seq = seq
        meta = dict(meta, seq=seq)
        blob = _PACKER.pack(meta)  # (small: what is large is in parts)
        npg = (len(blob) + PAGE - 1) // PAGE
        first = self.alloc(npg)
        self.m.persist(first * PAGE, blob)
        self.m.fence()
        target = 0 if self.newest is None else 1 - self.newest
        slot = Slot(target, seq, first, npg, len(blob), zlib.crc32(blob))
        self._persist_line(1 + target, _sealed(_SLOT, seq, first, npg, len(blob), slot.meta_crc).ljust(LINE, b"\0"))
        self.m.fence()
        img = Image(slot, meta, [*groups, page_group(range(first, first + npg))])
        old = self.slot_images[target]
        self._count(img, +1)
        if old is not None:
            self._count(old, -1)  # the image this one replaced frees what only it used
        self.slot_images[target] = img
        self.newest = target
        self._release_pending()
        self._release_live()
        return seq

    def abandon(self) -> None:
        """Forget the pages of an image that will not be committed."""
        self._release_pending()

    # -- the outcome of a directory-changing syscall ------------------------------------------
    def record_outcome(self, seq: int, nr: int, result: int, txn: int = 0) -> None:
        self._persist_line(3, _sealed(_OUTCOME, seq, nr, result, txn).ljust(LINE, b"\0"))
        self.m.fence()

    def read_outcome(self) -> tuple[int, int, int, int] | None:
        """The newest outcome record of either copy; None if neither holds one; CorruptImage if
        both copies are damaged (a recorded outcome may be lost)."""
        raws = [self.m.read(base + LINE * 3, LINE) for base in self._table_pages()]
        good = [v for v in (_unseal(_OUTCOME, raw) for raw in raws) if v is not None]
        if good:
            return max(good, key=lambda v: v[0])  # type: ignore[return-value]
        if all(_blank(raw) for raw in raws):
            return None
        raise CorruptImage("the outcome record fails its checksum in both copies")

    # -- reading ---------------------------------------------------------------------------
    def load(self, slot: Slot) -> Image:
        """Read and check one image: metadata checksum, its parts (merged in), then every page
        it lists."""
        if not (1 <= slot.meta_page and slot.meta_page + slot.meta_pages <= self.mirror):
            raise CorruptImage(f"image {slot.seq}: metadata outside the range")
        blob = self.m.read(slot.meta_page * PAGE, slot.meta_len)
        if zlib.crc32(blob) != slot.meta_crc:
            raise CorruptImage(f"image {slot.seq}: metadata checksum mismatch")
        try:
            meta = msgpack.unpackb(blob, raw=False)
        except (zstandard.ZstdError, ValueError, TypeError, msgpack.UnpackException) as e:
            raise CorruptImage(f"image {slot.seq}: unreadable metadata ({e})") from None
        if not isinstance(meta, dict):
            raise CorruptImage(f"image {slot.seq}: unreadable metadata (not a map)")
        pages = set(range(slot.meta_page, slot.meta_page + slot.meta_pages))
        parts = []
        for ref in meta.get("parts", ()):
            if not (isinstance(ref, list) and len(ref) == 4 and all(isinstance(v, int) for v in ref)):
                raise CorruptImage(f"image {slot.seq}: unreadable part reference")
            first, npg, length, crc = ref
            if not (1 <= first and first + npg <= self.mirror and 0 <= length <= npg * PAGE):
                raise CorruptImage(f"image {slot.seq}: a metadata part outside the range")
            blob = self.m.read(first * PAGE, length)
            if zlib.crc32(blob) != crc:
                raise CorruptImage(f"image {slot.seq}: metadata part checksum mismatch")
            parts.append(blob)
            pages.update(range(first, first + npg))
        try:
            merge_parts(meta, parts)
        except (zstandard.ZstdError, ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException) as e:
            raise CorruptImage(f"image {slot.seq}: unreadable metadata ({e})") from None
        for pg, crc in page_refs(meta):
            if not 1 <= pg < self.mirror:
                raise CorruptImage(f"image {slot.seq}: page {pg} outside the range")
            if zlib.crc32(self.m.page_view(pg)) != crc:
                raise CorruptImage(f"image {slot.seq}: page {pg} checksum mismatch")
            pages.add(pg)
        return Image(slot, meta, [page_group(sorted(pages))])

    def part_pages(self, slot: Slot) -> list[int]:
        """The pages of the metadata parts a slot's metadata lists, as far as it is readable
        (tools: emu/mediafaults.py)."""
        try:
            meta = msgpack.unpackb(self.m.read(slot.meta_page * PAGE, slot.meta_len), raw=False)
            return [pg for first, npg, _len, _crc in meta.get("parts", ()) for pg in range(first, first + npg)
                    if 0 < pg < self.mirror]
        except Exception:  # noqa: BLE001 - damaged metadata lists nothing
            return []

    def open_newest(self) -> tuple[Image | None, list[str]]:
        """At restart: the newest image that checks out (and adopt the table); with the reasons
        newer ones were rejected."""
        rejected: list[str] = []
        chosen = None
        try:
            slots = self.read_table()
        except CorruptImage as e:
            return None, [str(e)]
        for slot in slots:
            try:
                img = self.load(slot)
            except CorruptImage as e:
                rejected.append(str(e))
                continue
            self.slot_images[slot.index] = img
            if chosen is None:
                chosen = img
                self.newest = slot.index
        # A rejected slot's pages are free again; the next commit overwrites that slot first.
        self._recount()
        return chosen, rejected

    def page(self, pg: int) -> memoryview:
        return self.m.page_view(pg)


_PAGE_REF = struct.Struct("<QII")  # gva, SCM page, crc32


def _native() -> tuple[Any, Any]:
    from hw.native import load

    return load()


def page_group(pages: range | list[int]) -> bytes:
    """SCM pages as a group of records (see Image.groups)."""
    if len(pages) == 1:
        return _PAGE_REF.pack(0, pages[0], 0)
    return pack_pages([(0, pg, 0) for pg in pages])


def encode_static(static: dict[str, Any]) -> bytes:
    """The group's static description as its metadata part stores it."""
    return _ZSTD.compress(msgpack.packb(static, use_bin_type=True))


def merge_parts(meta: dict[str, Any], parts: list[bytes]) -> None:
    """Put the parts back into the metadata (in place): a process's "pages" naming a part by
    its index become that part's bytes, and so does the random generator's state; the static
    description ("static": a part's index, or a list of them: its parts, each a "procs" list, a
    "files" list or both) is merged into each process and open file."""
    for proc in meta.get("procs", ()):
        if isinstance(proc.get("pages"), int):
            proc["pages"] = parts[proc["pages"]]
    for entry in meta.get("shmem", ()):  # a shared anonymous object: [pages, its page list's part]
        if isinstance(entry[1], int):
            entry[1] = parts[entry[1]]
    rng = meta.get("rng")
    if isinstance(rng, list) and len(rng) == 3 and isinstance(rng[1], int):
        rng[1] = parts[rng[1]]
    if "static" in meta:
        which = meta.pop("static")
        for i in which if isinstance(which, list) else [which]:
            static = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(parts[i]), raw=False)
            for key in ("procs", "files"):
                if key not in static:
                    continue
                if len(static[key]) != len(meta[key]):
                    raise ValueError("static part of another group")
                for d, s in zip(meta[key], static[key]):
                    d.update(s)


def pack_pages(refs: list[tuple[int, int, int]]) -> bytes:
    """A process's page list (gva, SCM page, crc) as it is stored in the metadata: packed
    little-endian records (native/ckptscan.c packs them so too; a list of lists would cost more
    to encode than the rest of the metadata)."""
    buf = bytearray(_PAGE_REF.size * len(refs))
    for i, ref in enumerate(refs):
        _PAGE_REF.pack_into(buf, i * _PAGE_REF.size, *ref)
    return bytes(buf)


def unpack_pages(raw: Any) -> list[tuple[int, int, int]]:
    if not isinstance(raw, bytes):
        raise CorruptImage("unreadable page list")
    if len(raw) % _PAGE_REF.size:
        raise CorruptImage("page list of a bad length")
    return list(_PAGE_REF.iter_unpack(raw))


def page_refs(meta: dict[str, Any]):  # type: ignore[no-untyped-def]
    """(page, crc) of every data page an image's metadata lists."""
    for proc in meta.get("procs", ()):
        for _va, pg, crc in unpack_pages(proc.get("pages", b"")):
            yield pg, crc
    for pipe in meta.get("pipes", ()):
        for _idx, pg, crc in unpack_pages(pipe["ring"]):
            yield pg, crc
    for _pages, packed, *_fields in meta.get("shmem", ()):  # shared memory objects' pages
        for _idx, pg, crc in unpack_pages(packed):
            yield pg, crc
    for _blk, pg, crc in meta.get("blocks", ()):
        yield pg, crc
