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

An image is its metadata (msgpack, zstd-compressed, contiguous pages: at a checkpoint per syscall
JSON and zlib took 0.4 ms a checkpoint, msgpack and zstd a third of it) plus the data pages it lists,
each with a crc32. Data pages that did not change since the previous image are shared with it.
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
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zstandard

from guestkernel.scm import LINE, ScmMedium
from hw.physmem import PAGE_SIZE

MAGIC = b"EMUCKPT1"
VERSION = 3  # 3: the outcome names its DAX transaction; 2: metadata in msgpack + zstd (1: JSON + zlib)
PAGE = PAGE_SIZE  # the hardware page (hw/physmem.py)
SLOTS = 2
_HDR = struct.Struct("<8sIII")          # magic, version, page size, pages
_SLOT = struct.Struct("<QIIII")         # seq, meta page, meta pages, meta length, meta crc
_OUTCOME = struct.Struct("<QqqQ")       # seq, syscall nr, result, DAX transaction
_CRC = struct.Struct("<I")
_ZSTD = zstandard.ZstdCompressor(level=1)  # writes the content size, which decompress needs


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
    """One checkpoint image as read back from SCM."""

    slot: Slot
    meta: dict[str, Any]
    pages: set[int] = field(default_factory=set)   # every SCM page it references


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
            raise ValueError("the SCM range is too small for checkpoint images")
        # 1 = referenced by an image in a slot (or being written); page 0 is the table and the
        # last page its mirror.
        self.mirror = self.npages - 1
        self.used = bytearray(self.npages)
        self.used[0] = self.used[self.mirror] = 1
        self.cursor = 1
        self.slot_images: list[Image | None] = [None] * SLOTS
        self.newest: int | None = None  # slot index of the newest committed image
        self.formatted = False
        self.pending: set[int] = set()  # pages of the image being written
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
    def alloc(self, n: int = 1) -> int:
        """n contiguous free pages (next fit from a cursor, so runs are deterministic)."""
        run = b"\0" * n
        at = self.used.find(run, self.cursor)
        if at < 0:
            at = self.used.find(run, 1)
        if at < 0:
            raise MemoryError(f"SCM range full: no {n} free pages for a checkpoint image")
        self.used[at : at + n] = b"\1" * n
        self.pending.update(range(at, at + n))
        self.cursor = at + n
        return at

    def _recount(self) -> None:
        self.used = bytearray(self.npages)
        self.used[0] = self.used[self.mirror] = 1
        for img in self.slot_images:
            if img is not None:
                for pg in img.pages:
                    self.used[pg] = 1
        for pg in self.pending:
            self.used[pg] = 1

    # -- writing ---------------------------------------------------------------------------
    def write_page(self, data: bytes | memoryview) -> tuple[int, int]:
        """Store one page in a fresh SCM page (written and flushed); returns (page, crc32)."""
        pg = self.alloc(1)
        self.m.persist(pg * PAGE, data)
        return pg, zlib.crc32(data)

    def commit(self, meta: dict[str, Any], pages: set[int]) -> int:
        """Make `meta` (which lists `pages`) the newest image: metadata, mfence, slot, flush,
        mfence. Returns the new sequence number."""
        if not self.formatted:
            self.format()
        seq = 1 + max([self.last_seq] + [img.slot.seq for img in self.slot_images if img is not None])
        self.last_seq = seq
        meta = dict(meta, seq=seq)
        blob = _ZSTD.compress(msgpack.packb(meta, use_bin_type=True))
        npg = (len(blob) + PAGE - 1) // PAGE
        first = self.alloc(npg)
        self.m.persist(first * PAGE, blob)
        self.m.fence()
        target = 0 if self.newest is None else 1 - self.newest
        slot = Slot(target, seq, first, npg, len(blob), zlib.crc32(blob))
        self._persist_line(1 + target, _sealed(_SLOT, seq, first, npg, len(blob), slot.meta_crc).ljust(LINE, b"\0"))
        self.m.fence()
        self.slot_images[target] = Image(slot, meta, pages | set(range(first, first + npg)))
        self.newest = target
        self.pending = set()
        self._recount()  # the image this one replaced frees what only it used
        return seq

    def abandon(self) -> None:
        """Forget the pages of an image that will not be committed."""
        self.pending = set()
        self._recount()

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
        """Read and check one image: metadata checksum, then every page it lists."""
        if not (1 <= slot.meta_page and slot.meta_page + slot.meta_pages <= self.mirror):
            raise CorruptImage(f"image {slot.seq}: metadata outside the range")
        blob = self.m.read(slot.meta_page * PAGE, slot.meta_len)
        if zlib.crc32(blob) != slot.meta_crc:
            raise CorruptImage(f"image {slot.seq}: metadata checksum mismatch")
        try:
            meta = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(blob), raw=False)
        except (zstandard.ZstdError, ValueError, TypeError, msgpack.UnpackException) as e:
            raise CorruptImage(f"image {slot.seq}: unreadable metadata ({e})") from None
        if not isinstance(meta, dict):
            raise CorruptImage(f"image {slot.seq}: unreadable metadata (not a map)")
        pages = set(range(slot.meta_page, slot.meta_page + slot.meta_pages))
        for pg, crc in page_refs(meta):
            if not 1 <= pg < self.mirror:
                raise CorruptImage(f"image {slot.seq}: page {pg} outside the range")
            if zlib.crc32(self.m.page_view(pg)) != crc:
                raise CorruptImage(f"image {slot.seq}: page {pg} checksum mismatch")
            pages.add(pg)
        return Image(slot, meta, pages)

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
    for _blk, pg, crc in meta.get("blocks", ()):
        yield pg, crc
