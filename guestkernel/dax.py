"""DAX: the root file system on storage mapped as memory (the third paper), no block device.

In memory mode the machine maps the image file into a persistent guest-physical window (see
vmm/storage.py) and the kernel runs ext2 straight on it. `DaxStore` is the root mount's block
store: a page cache that never holds a page, so reclaim, drop_caches and /proc see none.

- **File data** (`data_read`, `data_view`, `data_written`): a regular file's blocks are the
  window's own bytes: read() and write() copy between the user's buffer and the window, mmap maps
  window pages into page tables (`pin`: execute in place, shared writable mappings). Data written
  in place is flushed (clflush of its lines) when the operation's metadata commits, before the
  commit record: ordered mode, as ext3's data=ordered. An overwrite is not atomic (as with Linux
  DAX): a cut inside it leaves part of the new bytes.
- **Metadata** (`get`, `mark_dirty`): inodes, bitmaps, descriptors, directories and indirect
  blocks are read into the operation's working copies (host buffers, dropped at commit), never
  changed in place before they are logged. `commit()` (after each syscall: Kernel.fs_commit)
  writes the changed blocks into the redo log behind the file system (the window's log area,
  which the host's label describes), with their block numbers, flushes them and fences; writes
  the log header (sequence, a crc32 of numbers and contents), flushes and fences: the commit point;
  then writes the blocks in place, flushes and fences. Replaying a log is idempotent (whole
  blocks), so the header is never retired: mounting replays the last committed log whose crc
  checks, which repairs a cut during the in-place writes; a cut before the header is durable
  leaves the file system as before the operation (its in-place writes had not started). The next
  commit's records overwrite the log only after the previous commit's in-place writes are fenced.
- A transaction larger than the log is committed in log-sized parts (logged: the operation is
  then not atomic).
- The header is one cache line (magic, sequence, records, crc32), written whole: the commit
  point is atomic, and the header on storage always names the last committed transaction (the
  block numbers go beside the records, before the fence). Its crc then only says whether the
  records are still that transaction's (the next one's overwrite them once it is in place).
  Sequence numbers only grow: a clean unmount retires the log by a header with no records. The
  checkpointer ties a directory change's outcome record to the transaction that carried it
  (`on_commit`) and notes on storage, before the first change after each image, that storage
  moved past it (`before_change`); see checkpoint/checkpointer.py.
- The device's first 1 KiB is not the file system's (the boot sector: the checkpoint generation
  lives there): the log may carry block 0 whole, but only its bytes from 1024 on go in place.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from guestkernel.frames import Frames
from guestkernel.pagecache import PageCache
from guestkernel.scm import PAGE, ScmMedium
from hw.storagelabel import WindowLabel, read_label

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel

LOG_MAGIC = b"EMUDAXL1"
_HDR = struct.Struct("<8sQII")   # magic, sequence, records, crc32 (numbers + contents): one line
_NUMBERS = 64                    # the block numbers, from the log page's second line
BOOT_BYTES = 1024                # the boot sector(s) ext2 leaves alone (checkpoint/generation.py)


@dataclass
class DaxStats:
    commits: int = 0            # transactions that changed metadata
    blocks_logged: int = 0      # metadata blocks written into the log (and then in place)
    data_bytes_read: int = 0    # file bytes copied from the window
    data_bytes_written: int = 0  # file bytes written into the window
    replays: int = 0            # committed logs replayed at mount
    split_commits: int = 0      # transactions larger than the log
    pages_mapped: int = 0       # window pages mapped into page tables (XIP, DAX mmap)
    pages_written_back: int = 0  # pages of shared mappings flushed by msync, fsync or sync


class DaxStore(PageCache):
    """The root file system's blocks in memory mode: the storage window itself (see above)."""

    def __init__(self, medium: ScmMedium, label: WindowLabel, frames: Frames, block_size: int,
                 window_gpa: int, log: Callable[[str], None] = lambda s: None, ordered: bool = True) -> None:
        """`ordered` False is a debug switch: metadata written in place at commit and nothing
        flushed (the crash tests show that the file system is then left inconsistent)."""
        if PAGE % block_size:
            raise ValueError(f"block size {block_size} does not divide a page")
        super().__init__(None, frames, block_size, nblocks=label.data_bytes // block_size)
        self.m = medium
        self.label = label
        self.window_gpfn = window_gpa // PAGE
        self.window_pages = label.window_bytes // PAGE
        self.log = log
        self.shadow: dict[int, bytearray] = {}   # blockno -> this operation's working copy
        self.changed: set[int] = set()          # metadata blocks the operation changed
        self.data_pending: list[tuple[int, int]] = []  # (offset, bytes) written in place, to flush
        self.on_code_write: Callable[[], None] = lambda: None  # translated code may be stale
        # window pages a shared mapping made writable since they were last written back (gpfn ->
        # inode): msync, fsync and sync flush them (Linux's dirty DAX entries)
        self.mapped_dirty: dict[int, int] = {}
        self.log_slots = min(label.log_bytes // PAGE - 1, (PAGE - _NUMBERS) // 8)
        self.seq = 0           # the last transaction begun (its header written, perhaps torn)
        self.committed = 0     # the last transaction whose header is durable and checks
        self.committed_at_mount = 0  # ... as the mount found it (a restart's outcome check)
        self.ordered = ordered
        self.dax = DaxStats()
        # the checkpointer's hooks (checkpoint/checkpointer.py): storage is about to change (data
        # stores, a shared mapping made writable, a commit); transaction `seq` is about to commit
        self.before_change: Callable[[], None] = lambda: None
        self.on_commit: Callable[[int], None] = lambda seq: None

    # -- metadata: working copies, logged at commit ---------------------------------------------
    def get(self, blockno: int, new: bool = False) -> memoryview:
        buf = self.shadow.get(blockno)
        if buf is None:
            if not 0 <= blockno < self.nblocks:
                raise OSError(f"block {blockno} is outside the device")
            if new:  # just allocated: the caller fills it whole
                buf = self.shadow[blockno] = bytearray(self.block_size)
                return memoryview(buf)
            off = blockno * self.block_size
            self.m.note_access(off, self.block_size, False)
            buf = self.shadow[blockno] = bytearray(self.m.read(off, self.block_size))
        return memoryview(buf)

    def mark_dirty(self, blockno: int, ino: int = 0) -> None:
        if blockno in self.shadow:
            self.changed.add(blockno)

    def forget(self, blockno: int) -> None:
        self.shadow.pop(blockno, None)
        self.changed.discard(blockno)

    def sync(self) -> None:
        self.commit()

    def write_now(self, blockno: int) -> None:
        raise OSError("DAX storage has no write-back")

    # -- file data: the window's bytes -----------------------------------------------------------
    def data_read(self, blockno: int, offset: int, n: int) -> bytes:
        buf = self.shadow.get(blockno)  # a slow symlink written in this operation
        if buf is not None:
            return bytes(buf[offset:offset + n])
        at = blockno * self.block_size + offset
        self.m.note_access(at, n, False)
        self.dax.data_bytes_read += n
        return self.m.read(at, n)

    def data_view(self, blockno: int, new: bool = False) -> memoryview:
        self.before_change()  # the caller stores into the view
        self.forget(blockno)  # data now, whatever it was before in this operation
        off = blockno * self.block_size
        pg, at = divmod(off, PAGE)
        return self.m.page_view(pg)[at:at + self.block_size]

    def data_written(self, blockno: int, offset: int, n: int, ino: int) -> None:
        at = blockno * self.block_size + offset
        self.m.note_access(at, n, True)
        self.data_pending.append((at, n))
        self.dax.data_bytes_written += n
        if self.frames.code[self.window_gpfn + at // PAGE]:  # a page mapped executable (XIP)
            self.on_code_write()

    def pin(self, blockno: int) -> int:
        """The window page holding a block, to map into a page table (no reference counting:
        device memory, as a pmem mapping)."""
        self.dax.pages_mapped += 1
        return self.window_gpfn + blockno * self.block_size // PAGE

    def page_dirtied(self, gpfn: int, ino: int) -> None:
        """A shared mapping's write fault made a window page writable."""
        self.before_change()
        self.mapped_dirty[gpfn] = ino

    def write_back_mapped(self, gpfns: "list[int] | None" = None) -> list[int]:
        """Flush the lines of dirty mapped pages (all, or those of `gpfns`) and fence; returns
        the pages written back, which the caller write-protects again."""
        done = sorted(self.mapped_dirty if gpfns is None else [g for g in gpfns if g in self.mapped_dirty])
        for gpfn in done:
            self.m.flush((gpfn - self.window_gpfn) * PAGE, PAGE)
            del self.mapped_dirty[gpfn]
        if done:
            self.m.fence()
            self.dax.pages_written_back += len(done)
        return done

    # -- commit ------------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        return bool(self.changed or self.data_pending or self.shadow)

    def commit(self) -> None:
        """End of an operation: data flushed, changed metadata logged, committed and written in
        place (see the module docstring); the working copies are dropped."""
        m = self.m
        blocks = sorted(self.changed)
        if blocks:
            self.before_change()
        if self.ordered:
            for at, n in self.data_pending:
                m.flush(at, n)
        self.data_pending.clear()
        if not blocks:
            self.shadow.clear()
            return
        if not self.ordered:  # the debug switch: in place, left in the cache
            for b in blocks:
                m.write(b * self.block_size, self.shadow[b])
            self.dax.commits += 1
            self.changed.clear()
            self.shadow.clear()
            return
        if len(blocks) > self.log_slots:
            self.dax.split_commits += 1
            self.log(f"dax: an operation changed {len(blocks)} metadata blocks, more than the log's "
                     f"{self.log_slots}: committed in parts")
        self.on_commit(self.seq + 1)
        for i in range(0, len(blocks), self.log_slots):
            self._commit_part(blocks[i:i + self.log_slots])
        self.dax.commits += 1
        self.changed.clear()
        self.shadow.clear()

    def _commit_part(self, blocks: list[int]) -> None:
        m, bs, log0 = self.m, self.block_size, self.label.log_offset
        crc = 0
        for i, b in enumerate(blocks):
            data = self.shadow[b]
            m.write(log0 + (1 + i) * PAGE, data)
            m.flush(log0 + (1 + i) * PAGE, bs)
            crc = zlib.crc32(data, crc)
        numbers = struct.pack(f"<{len(blocks)}Q", *blocks)
        crc = zlib.crc32(numbers, crc)
        m.persist(log0 + _NUMBERS, numbers)
        m.fence()
        self.seq += 1
        m.persist(log0, _HDR.pack(LOG_MAGIC, self.seq, len(blocks), crc))
        m.fence()  # committed
        self.committed = self.seq
        for b in blocks:
            self._in_place(b, self.shadow[b])
        m.fence()
        self.dax.blocks_logged += len(blocks)

    def _in_place(self, b: int, data: bytes | bytearray) -> None:
        lo = BOOT_BYTES if b == 0 else 0  # the boot sector is not the file system's
        if lo < self.block_size:
            self.m.persist(b * self.block_size + lo, memoryview(data)[lo:self.block_size])

    def recover(self) -> int:
        """At mount: write the last committed log in place again (idempotent); returns the
        number of blocks written (0: no valid log)."""
        magic, seq, n, crc = _HDR.unpack(self.m.read(self.label.log_offset, _HDR.size))
        if magic != LOG_MAGIC:
            return 0
        try:
            return self._recover(seq, n, crc)
        finally:
            self.committed_at_mount = self.committed

    def _recover(self, seq: int, n: int, crc: int) -> int:
        m, bs, log0 = self.m, self.block_size, self.label.log_offset
        self.seq = self.committed = seq  # the header line is written whole, at the commit point
        if not 0 <= n <= self.log_slots:
            return 0
        numbers = struct.unpack(f"<{n}Q", m.read(log0 + _NUMBERS, 8 * n))
        records = [m.read(log0 + (1 + i) * PAGE, bs) for i in range(n)]
        got = 0
        for data in records:
            got = zlib.crc32(data, got)
        if zlib.crc32(struct.pack(f"<{n}Q", *numbers), got) != crc or any(b >= self.nblocks for b in numbers):
            return 0  # the next transaction's records: this one had been written in place before
        if not n:
            return 0  # retired at a clean unmount
        for b, data in zip(numbers, records):
            self._in_place(b, data)
        m.fence()
        self.dax.replays += 1
        return n

    def retire(self) -> None:
        """A clean unmount: the log is no longer replayed (tools may change the image); its
        header keeps the sequence."""
        self.m.persist(self.label.log_offset, _HDR.pack(LOG_MAGIC, self.seq, 0, zlib.crc32(b"")))
        self.m.fence()

    # -- the device's bytes, for the checkpointer's notes in the boot sector ---------------------
    def read_at(self, off: int, n: int) -> bytes:
        return self.m.read(off, n)

    def write_at(self, off: int, data: bytes | memoryview) -> None:
        """Written, flushed and fenced at once (outside any transaction)."""
        self.m.persist(off, data)
        self.m.fence()


def open_dax(k: "Kernel", window: Any) -> DaxStore:
    """The root's DAX store on the machine's storage window: its label read, its committed log
    replayed (a cut left it), the file system's block size probed."""
    from guestkernel.ext2 import probe_block_size

    medium = ScmMedium.window(k, window.base_gpa, window.size_bytes)
    label = read_label(medium.read(window.size_bytes - PAGE, PAGE), window.size_bytes)
    if label is None:
        raise ValueError("the storage window has no valid label (the host writes it)")
    block_size = probe_block_size(lambda off, n: medium.read(off, n) if off + n <= label.data_bytes else b"")
    store = DaxStore(medium, label, k.frames, block_size, window.base_gpa, log=k.log.append,
                     ordered=k.config.dax_ordering)
    store.on_code_write = k.cpu.flush_translations
    replayed = store.recover()
    if replayed:
        k.log.append(f"dax: replayed the committed log ({replayed} blocks) at mount")
    return store
