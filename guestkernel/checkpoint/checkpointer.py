"""The checkpointing policy and its commits: when to checkpoint (the first paper's rules), what a
checkpoint writes, and how a restart resumes from the newest good image.

At every syscall entry, before the syscall's work, `at_syscall` decides:

  forced   the syscall changes a directory (mkdir, rename, unlink, open with O_CREAT/O_TRUNC,
           ...), writes or truncates a file read since the last checkpoint (read(2) or a demand
           fill of a private mapping of it), appends (O_APPEND: the offset is the file's size),
           asks for durability (fsync, sync), or a page of a shared file mapping was
           demand-filled since the last checkpoint (every file-backed fill with mmap_rule
           'every'; see note_mmap_fill);
  clean    no dirty page-cache page (nothing on storage would disagree with the image);
  tcp      dirty pages, but `tcp` of virtual time has passed since the last checkpoint;
  else     skipped.

A checkpoint with dirty pages first syncs them, atomically with the image: the dirty blocks go
into the image as a block log, the image commits (shadow paging, see store.py), then the blocks
are written in place ("write-back"). A dirty block that was free on storage as the previous
checkpoint left it (allocated since: `Ext2.fresh_blocks`) is written in place before the commit
instead, like ext3's ordered mode: no image references it until the commit, so a cut before it
leaves storage as that image has it (a new file's data, tar's archive, is not copied to SCM). A restart re-applies the newest image's block log before it
mounts the file system, so storage always matches the newest committed image; the kernel never
writes storage outside a checkpoint (the periodic write-back is off and the page cache keeps dirty
blocks until one). The consistency rules still matter: when the newest image is corrupt the
restart resumes from the previous one, over storage that is one checkpoint ahead of it.

A directory-changing syscall's result is recorded (the outcome line of the table) as soon as it
returns; a replay of it from that checkpoint that fails with EEXIST/ENOENT/ENOTEMPTY while the
record says it succeeded answers with the recorded success.

A restart either resumes faithfully or refuses (`RestartRefused`, before it changes anything).
It starts the program over only when nothing was ever committed: both copies of the image table
blank (store.py) and storage never written by a checkpoint (generation.py). When images were
committed, it resumes from the newest readable one if storage agrees with it: storage holds no
blocks of a newer image (generation `begun` <= the image), or exactly the next image's blocks,
completely (then the paper's rules make the replay consistent). Anything else is refused.

**On storage as memory** (DAX, guestkernel/dax.py) the file system changes at every operation,
committed by its own redo log, not with the checkpoints: storage runs ahead of the newest image by
the operations since, which is the state the rules were made for (they make re-executing those
operations over their own effects give the same results). There is no block log and no "clean"
rule (nothing is ever dirty); the first syscall of a run is forced. The generation on storage then
says which image storage is consistent with: before the first change after image S, storage
notes S (one line, flushed and fenced); after a checkpoint that had to be skipped, S + 1 (the rules
cannot vouch for what follows: only the next image can). A restart refuses an image older than
the note. A directory change commits in one DAX transaction T, which is already on storage when
the syscall returns: its success is recorded just before T commits, naming T, and a restart
believes the record only if T committed (the DAX log says which transaction was last durable).
The images themselves live in the SCM range or in a file of the same file system (imagefile.py).
In a file, the group's private pages live there between checkpoints (live.py): a checkpoint
copies a page into the file once and maps it from there, the pages written since are flushed in
place and listed (`pages_in_place`, `lines_in_place`), not copied, and a restart maps them back.

The console is part of the guarantee: every image records how many bytes each console stream had
shown; after a restart the console swallows the bytes already shown before the power failed.
"""
from __future__ import annotations

import errno as E
import os
import time
from array import array
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from hw.clock import CKPT_NS, CKPT_SCAN_NS, COPY_NS_PER_KIB
from guestkernel.checkpoint import generation
from guestkernel.checkpoint.live import LivePages
from guestkernel.checkpoint.state import PageTracker, Unsupported, capture, restore
from guestkernel.checkpoint.store import PAGE, CorruptImage, ImageStore, ScmMedium, pack_pages
from guestkernel.interface import RestartRefused
from guestkernel.syscalls.numbers import NUMBERS as NR

if TYPE_CHECKING:
    from guestkernel.dax import DaxStore
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process

# The syscalls the rules look at (by number, as Kernel.syscall meets them).
DIR_CHANGING = {NR[n]: n for n in ("mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "unlink", "unlinkat",
                                   "link", "linkat", "symlink", "symlinkat", "mknod", "mknodat", "creat")}
OPEN, OPENAT = NR["open"], NR["openat"]
O_CREAT, O_TRUNC, O_EXCL, O_APPEND = 0o100, 0o1000, 0o200, 0o2000
SYNCING = {NR[n]: n for n in ("fsync", "fdatasync", "sync", "syncfs", "msync")}
WRITE_FD = {**{NR[n]: 0 for n in ("write", "pwrite64", "writev", "pwritev", "pwritev2", "ftruncate", "fallocate",
                                  "sendfile")},
            NR["copy_file_range"]: 2}  # nr -> the argument that is the file written
TRUNCATE = NR["truncate"]
REPLAYED_ERRORS = (E.EEXIST, E.ENOENT, E.ENOTEMPTY)


@dataclass
class CheckpointStats:
    checkpoints: int = 0
    forced: int = 0
    clean: int = 0
    tcp: int = 0
    skipped: int = 0
    unsupported: int = 0
    pages_scanned: int = 0
    pages_copied: int = 0
    blocks_logged: int = 0
    blocks_in_place: int = 0    # dirty blocks free in the previous image, written before the commit
    generation_notes: int = 0   # blocks written to note the generation storage is consistent with
    bytes_copied: int = 0
    lines_flushed: int = 0
    fences: int = 0
    ns: int = 0                 # virtual time charged to checkpoints (kernel time)
    restarts: int = 0
    fallbacks: int = 0          # restarts that had to use an older image
    replayed_outcomes: int = 0  # replays answered with a recorded success
    restart_pages_copied: int = 0  # image pages a restart copied into RAM
    restart_pages_mapped: int = 0  # ... mapped back in place (images in a file on the storage window)
    # Private pages living in the image file (checkpoint/live.py):
    pages_in_place: int = 0     # pages a checkpoint listed as written in place, not copied
    lines_in_place: int = 0     # ... their lines written back (clflush) before the commit
    pages_remapped: int = 0     # RAM frames a checkpoint freed, their pages mapped from the file
    live_copies: int = 0        # write faults that copied an image page to a fresh page of the file


class Checkpointer:
    force_next = False  # the host wants an image at the next syscall entry (rejuvenation)
    # Describe the group afresh at every checkpoint and check the cached description against it
    # (tests: EMU_CKPT_VERIFY=1).
    verify = os.environ.get("EMU_CKPT_VERIFY") == "1"

    def __init__(self, k: "Kernel", tcp_ns: int, medium: ScmMedium, dax: "DaxStore | None" = None) -> None:
        """`medium`: the persistent pages holding the images (the SCM range, or a file on the
        storage window: imagefile.py); `dax`: the root's DAX store when storage is memory."""
        self.k = k
        self.tcp_ns = tcp_ns
        self.mmap_rule = k.config.checkpoint_mmap_rule  # see note_mmap_fill
        self.medium = medium
        self.store = ImageStore(self.medium)
        self.dax = dax
        self.outcome_txn = 0        # the DAX transaction that carried the due directory change
        self.uncovered = False      # DAX: a checkpoint was skipped; storage may leave the rules
        if dax is not None:
            dax.before_change = self._storage_changing
            dax.on_commit = self._committing
        self.tracker = PageTracker()
        self.live: LivePages | None = None  # private pages living in the image file
        if dax is not None and medium.gpfns is not None and k.config.checkpoint_live:
            self.live = LivePages(k, self.store, medium, self.tracker, k.config.checkpoint_flush_in_place)
        self._rng_packed: list[Any] = [None, None, None]  # see _rng_state
        self.stats = CheckpointStats()
        # Host time inside checkpoints, in ns: it depends on the host's speed, so it is no
        # statistic of the run (those are deterministic); the run's result reports it apart.
        self.host_ns = 0
        self.last_ns = 0
        self.read_since: set[int] = set()   # inodes read (or stat'ed) since the last checkpoint
        self.mmap_filled = False            # a file-backed page was demand-filled since then
        self.seq = 0
        self.storage_gen = 0        # storage holds every block of images up to this one
        self.resumed_from: dict[str, Any] = {}  # what the restart chose, and why (reports)
        self.outcome_due: tuple[int, int] | None = None   # (pid, nr) of a dir op to record
        self.replay: tuple[int, int, int] | None = None   # (pid, nr, recorded result)
        self.reported: set[str] = set()                   # reasons for skipped checkpoints, logged once
        self.phase: str | None = None   # "commit" or "write-back" while a checkpoint runs
        # (seq, first persistence event, last event, blocks) of every checkpoint (crash campaigns)
        self.spans: list[tuple[int, int, int, int]] = []

    # -- hooks from the kernel ----------------------------------------------------------------
    def note_read(self, ino: int) -> None:
        self.read_since.add(ino)

    def note_mmap_fill(self, shared: bool, ino: int | None) -> None:
        """A page of a file mapping was demand-filled. The paper checkpoints after every such
        fill, for the case of its Fig. 7: stores through the mapping reach the file, so a replay
        from an older image would find the file ahead of it. That is a shared mapping's case. A
        private mapping's page is the file's own until written (a restart maps it again from
        storage, which matches the image): its fill is a read of the file, under the read rule
        (a later write to that file forces a checkpoint). mmap_rule 'every': the literal rule."""
        if shared or self.mmap_rule == "every":
            self.mmap_filled = True
        elif ino is not None:
            self.read_since.add(ino)

    def at_syscall(self, p: "Process", nr: int, args: tuple[int, ...]) -> tuple[int, ...]:
        """Syscall entry, before its work: checkpoint if the rules say so. Returns the arguments
        to run the syscall with (a replayed exclusive create drops O_EXCL, see after_syscall)."""
        k = self.k
        if (self.replay is not None and self.replay[0] == p.pid and self.replay[1] == nr == OPENAT
                and self.replay[2] >= 0 and args[2] & O_EXCL):
            args = (args[0], args[1], (args[2] & ~O_EXCL) | O_TRUNC) + args[3:]
        elif (self.replay is not None and self.replay[0] == p.pid and self.replay[1] == nr == OPEN
                and self.replay[2] >= 0 and args[1] & O_EXCL):
            args = (args[0], (args[1] & ~O_EXCL) | O_TRUNC) + args[2:]
        forced = self.force_next or self._forced(p, nr, args) or (self.dax is not None and self.seq == 0)
        dirty = self.dax is not None or bool(k.pagecache.dirty) or k.fs.rootfs._meta_dirty
        if forced:
            why = "forced"
        elif not dirty:
            why = "clean"
        elif k.clock.uptime_ns() - self.last_ns >= self.tcp_ns:
            why = "tcp"
        else:
            self.stats.skipped += 1
            return args
        try:
            self.checkpoint(nr)
        except Unsupported as e:
            self.stats.unsupported += 1
            self.uncovered = True
            if str(e) not in self.reported:
                self.reported.add(str(e))
                k.log.append(f"checkpoint skipped: {e}")
            return args
        setattr(self.stats, why, getattr(self.stats, why) + 1)
        self.force_next = False
        if nr in DIR_CHANGING or (nr in (OPEN, OPENAT) and args[_flags_arg(nr)] & O_CREAT):
            self.outcome_due = (p.pid, nr)
        return args

    def after_syscall(self, p: "Process", nr: int, ret: int) -> int:
        """The syscall returned `ret`: record a directory change's outcome; on the first replay
        after a restart, turn a failure the original run did not see into its recorded result."""
        if self.replay is not None and self.replay[0] == p.pid:
            pid, rnr, recorded = self.replay
            self.replay = None
            if rnr == nr and ret < 0 and -ret in REPLAYED_ERRORS and recorded >= 0 and nr not in (OPEN, OPENAT):
                self.stats.replayed_outcomes += 1
                ret = recorded
        if self.outcome_due is not None and self.outcome_due == (p.pid, nr):
            self.outcome_due = None
            self.store.record_outcome(self.seq, nr, ret, self.outcome_txn)
            self.outcome_txn = 0
        return ret

    def _committing(self, txn: int) -> None:
        """DAX: transaction `txn` is about to commit. A due directory change records its success
        first, naming txn: once txn is durable the change is on storage before the syscall
        returns (see the module docstring)."""
        if self.outcome_due is not None:
            self.outcome_txn = txn
            self.store.record_outcome(self.seq, self.outcome_due[1], 0, txn)

    def _storage_changing(self) -> None:
        """DAX: storage is about to change. The first change after image S notes S on storage
        (S + 1 after a skipped checkpoint), so that a restart never takes an older image."""
        need = self.seq + 1 if self.uncovered else self.seq
        if need > self.storage_gen:
            assert self.dax is not None
            generation.write_device(self.dax.write_at, need, need)
            self.storage_gen = need

    def _forced(self, p: "Process", nr: int, args: tuple[int, ...]) -> bool:
        if self.mmap_filled or nr in DIR_CHANGING or nr in SYNCING:
            return True
        if nr in (OPEN, OPENAT):
            return bool(args[_flags_arg(nr)] & (O_CREAT | O_TRUNC))
        ino = None
        if nr in WRITE_FD:
            f = p.fds.fds.get(args[WRITE_FD[nr]] & 0xFFFFFFFF)
            ino = getattr(f, "ino", None)
            if ino is not None and f.flags & O_APPEND:  # type: ignore[union-attr]
                return True
        elif nr == TRUNCATE:
            try:
                node = self.k.vfs.resolve(p.mm.read_cstr(args[0]), p.cwd)
                ino = node if isinstance(node, int) else None
            except Exception:  # noqa: BLE001 - a bad path fails in the syscall itself
                ino = None
        return ino is not None and ino in self.read_since

    # -- taking a checkpoint ------------------------------------------------------------------
    def checkpoint(self, nr: int = -1, finished: bool = False) -> None:
        """Write one image of the whole group (and the dirty blocks), commit it, then write the
        blocks in place."""
        t_host = time.perf_counter_ns()
        try:
            self._checkpoint(nr, finished)
        finally:
            self.host_ns += time.perf_counter_ns() - t_host

    def _checkpoint(self, nr: int, finished: bool) -> None:
        k = self.k
        st = self.stats
        t0 = k.clock.uptime_ns()
        ev0 = self._events()
        lines0, fences0 = self.medium.lines_flushed, self.medium.fences
        live_lines0 = self.live.lines if self.live is not None else 0
        self.phase = "commit"
        try:
            ordered: list[int] = []
            if self.dax is None:  # (DAX commits them with every operation)
                fs = k.fs.rootfs
                fs.store_meta()  # group descriptors and superblock counts into their blocks
                fresh = fs.fresh_blocks
                if fresh:  # free in the newest image: in place now, before this one commits
                    ordered = [b for b in sorted(k.pagecache.dirty) if b in fresh]
                    for blockno in ordered:
                        k.pagecache._write_back(blockno)
            if finished:
                meta: dict[str, Any] = {"procs": [], "files": [], "pipes": [], "rng": _rng_state(k, self._rng_packed)}
                scan = {"pages_scanned": 0, "pages_copied": 0, "pages_in_place": 0}
                groups: list[bytes] = []
            else:
                meta, scan, groups = capture(k, self.tracker, self.store, nr, _rng_state(k, self._rng_packed), self.verify,
                                             self.live)
            bs = k.pagecache.block_size
            blocks = []
            for blockno in sorted(k.pagecache.dirty):
                data = bytes(k.pagecache.get(blockno)[:bs]).ljust(PAGE, b"\0")
                pg, crc = self.store.write_page(data)
                blocks.append([blockno, pg, crc])
            if blocks:
                groups.append(pack_pages(blocks))
            meta.update(
                blocks=blocks, block_size=bs, finished=finished, init_status=k.init_status,
                next_pid=k.next_pid, uptime_ns=k.clock.uptime_ns(), console=k.console_position(),
                last_pid=getattr(k, "_last_pid", 0),
                current=k.current.pid if k.current is not None and not finished else None,
            )
            self.seq = self.store.commit(meta, groups)
            if self.dax is None:
                k.fs.rootfs.track_fresh()  # storage is this image's, but for the log's blocks
        except (Unsupported, MemoryError) as e:
            # Nothing was committed: forget the pages written so far, and what the tracker
            # learnt from this attempt (the next checkpoint copies every page afresh).
            self.store.abandon()
            self.tracker.reset()
            if self.live is not None:
                self.live.abandoned()
            self.phase = None
            raise e if isinstance(e, Unsupported) else Unsupported(str(e)) from None
        try:
            if self.live is not None:  # the pages just copied are mapped from the file now
                st.pages_remapped += self.live.committed()[1]
                st.live_copies = self.live.copies
            # Write-back: the logged blocks in place (a cut here is repaired by the restart),
            # between two notes of the generation on storage.
            self.phase = "write-back"
            if blocks:
                self._note_generation(self.seq, self.storage_gen)
                for blockno, _pg, _crc in blocks:
                    k.pagecache._write_back(blockno)
                self._note_generation(self.seq, self.seq)
                self.storage_gen = self.seq
            # (a page flushed in place is read once for its crc: half a copy; its lines were
            # charged as they were written back; the page cache charged the blocks it wrote, the
            # fresh ones, the logged ones and the two generation notes, as the disk times them)
            k.clock.charge(CKPT_NS + scan["pages_scanned"] * CKPT_SCAN_NS
                           + (scan["pages_copied"] + len(blocks)) * 4 * COPY_NS_PER_KIB
                           + scan["pages_in_place"] * 2 * COPY_NS_PER_KIB)
            st.checkpoints += 1
            self.uncovered = False
            st.pages_scanned += scan["pages_scanned"]
            st.pages_copied += scan["pages_copied"]
            st.pages_in_place += scan["pages_in_place"]
            st.lines_in_place += (self.live.lines if self.live is not None else 0) - live_lines0
            st.blocks_logged += len(blocks)
            st.blocks_in_place += len(ordered)
            st.generation_notes += 2 * bool(blocks)
            st.bytes_copied += (scan["pages_copied"] + len(blocks)) * PAGE
            st.lines_flushed += self.medium.lines_flushed - lines0
            st.fences += self.medium.fences - fences0
            self.last_ns = k.clock.uptime_ns()
            self.read_since.clear()
            self.mmap_filled = False
            self.spans.append((self.seq, ev0 + 1, self._events(), len(blocks) + len(ordered)))  # blocks written
        except Exception:
            self.phase = None  # a PowerFailure (BaseException) leaves the phase for the report
            raise
        self.phase = None
        st.ns += k.clock.uptime_ns() - t0

    def _events(self) -> int:
        return self.k.memory.persistence_events()

    def _note_generation(self, begun: int, done: int) -> None:
        """Block 0's boot sector records the generation; written at once (a persistence event)."""
        pc = self.k.pagecache
        generation.write(pc.get(0), begun, done)
        pc.write_now(0)

    def finish(self) -> None:
        """The group has ended: a last image records that (and syncs storage with it)."""
        try:
            self.checkpoint(finished=True)
        except Unsupported as e:
            # Storage moves past every image: a restart from here must refuse.
            self.k.log.append(f"last checkpoint skipped ({e}): plain write-back")
            if self.dax is not None:
                self.uncovered = True
                self._storage_changing()
                return
            self._note_generation(self.seq + 1, self.seq + 1)
            self.k.sync()

    # -- restart ------------------------------------------------------------------------------
    def open_image(self, dev: Any, start_over: bool = False) -> dict[str, Any] | None:
        """Before the file system is mounted: pick the newest good image and replay its block
        log onto storage. None: start the program over (nothing was ever committed, or the
        user asked). RestartRefused, with storage untouched, when the persistent state cannot
        reproduce an uninterrupted run (see the module docstring)."""
        k = self.k
        gen = generation.decode(dev.read_at)
        if start_over:
            self.resumed_from = {"how": "started over", "why": "asked (--start-over)"}
            self._note_start_over(dev, gen)
            return None
        table = self.store.table_state()
        img, rejected = self.store.open_newest()
        self.resumed_from = {"rejected": rejected, "table_damaged": table.damaged,
                             "storage_generation": {"begun": gen.begun, "done": gen.done, "damaged": gen.damaged}}
        if img is None:
            if rejected or table.committed is not False or gen.begun or gen.damaged:
                raise RestartRefused(self._refusal("no checkpoint image is readable", rejected, table, gen))
            self.resumed_from.update(how="started", why="no checkpoint was ever committed")
            return None
        s = img.slot.seq
        if gen.damaged:
            raise RestartRefused(self._refusal(f"image {s} is readable but the generation on storage is not",
                                               rejected, table, gen))
        if self.dax is not None and s < gen.begun:
            raise RestartRefused(self._refusal(f"storage moved on from image {gen.begun}, newer than the newest "
                                               f"readable image {s}", rejected, table, gen))
        if s < gen.begun and not (s == gen.begun - 1 and not gen.torn):
            state = f"part of image {gen.begun}" if gen.torn else f"image {gen.begun}"
            raise RestartRefused(self._refusal(f"storage holds {state}, newer than the newest readable image {s}",
                                               rejected, table, gen))
        cur = img.meta.get("current")
        try:
            self.store.read_outcome()
        except CorruptImage as e:
            # Only a resumed directory change needs its outcome: without it a replay could
            # answer EEXIST where the original run succeeded.
            if cur is not None and any(_resumes_syscall(img.meta, cur, nr) for nr in (*DIR_CHANGING, OPEN, OPENAT)):
                raise RestartRefused(self._refusal(f"image {s} resumes a directory change whose outcome is unreadable ({e})",
                                                   rejected, table, gen)) from None
        for why in rejected:
            k.log.append(f"checkpoint: {why}; using an older image")
        if rejected:
            self.stats.fallbacks += 1
        meta = img.meta
        bs = meta["block_size"]
        for blockno, pg, _crc in meta["blocks"]:
            dev.write_at(blockno * bs, self.store.page(pg)[:bs])
        if self.dax is not None:
            self.storage_gen = gen.begun  # the re-executed run notes s before it changes storage
        else:
            # Storage now holds image s (or the next one, completely): say so on storage again,
            # since the log's copy of block 0 may have carried an older note.
            self.storage_gen = max(s, gen.done)
            generation.write_device(dev.write_at, self.storage_gen, self.storage_gen)
        self.store.last_seq = max(self.store.last_seq, table.max_seq, gen.begun)
        self.seq = s
        self.stats.restarts += 1
        self.resumed_from.update(how="resumed", image=s, skipped=len(rejected),
                                 why="newest readable image" + (f" (skipped: {'; '.join(rejected)})" if rejected else ""))
        return meta

    def fresh_boot(self, dev: Any) -> None:
        """A boot (not a restart) on storage an earlier checkpointing run wrote (its generation
        in the boot sector) or on SCM holding its images: number this run's images above them,
        as a start over does, so that a restart never mistakes their notes for this run's."""
        gen = generation.decode(dev.read_at)
        if gen.begun or gen.done or gen.damaged or self.store.table_state().max_seq:
            self._note_start_over(dev, gen)

    def _note_start_over(self, dev: Any, gen: "generation.Generation") -> None:
        """A start over on storage checkpoints already changed: number the new images above
        anything seen, so that the old notes cannot vouch for them."""
        self.store.last_seq = max(self.store.table_state().max_seq, gen.begun)
        self.storage_gen = self.store.last_seq
        if gen.begun or gen.damaged:
            generation.write_device(dev.write_at, self.storage_gen, self.storage_gen)

    @staticmethod
    def _refusal(what: str, rejected: list[str], table: Any, gen: "generation.Generation") -> str:
        failed = list(rejected) + [f"table {name}" for name in table.damaged]
        if gen.damaged:
            failed.append("storage generation (both copies)")
        past = ("checkpoints were committed" if table.committed else
                "checkpoints may have been committed" if table.committed is None or gen.damaged else
                f"storage was written by checkpoint {gen.begun}")
        return f"{what}; {past}" + (f"; failed checks: {', '.join(failed)}" if failed else "")

    def resume(self, meta: dict[str, Any]) -> None:
        """After the mount: rebuild the group of `meta` and arm the outcome replay."""
        k = self.k
        k.clock.base_ns = meta["uptime_ns"]  # first: restored timers count from it
        got = restore(k, meta, self.store.page, self.tracker, in_place=self.medium.gpfns)
        self.stats.restart_pages_copied += got["pages_copied"]
        self.stats.restart_pages_mapped += got["pages_mapped"]
        k.clock.charge(got["pages_copied"] * 4 * COPY_NS_PER_KIB)
        k.next_pid = meta["next_pid"]
        k._last_pid = meta["last_pid"]
        k.init_status = meta["init_status"]
        if meta["rng"] is not None:
            k.vfs.rng.setstate(_rng_from(meta["rng"]))
        self.last_ns = k.clock.uptime_ns()
        cur = meta.get("current")
        try:
            outcome = self.store.read_outcome()
        except CorruptImage:
            outcome = None  # open_image refused if the resumed syscall needed it
        if (outcome is not None and outcome[0] == self.seq and cur is not None and _resumes_syscall(meta, cur, outcome[1])
                and (self.dax is None or outcome[3] <= self.dax.committed_at_mount)):
            self.replay = (cur, outcome[1], outcome[2])  # (a DAX change whose transaction never committed: re-run)

    def stats_dict(self) -> dict[str, int]:
        return asdict(self.stats)


def _flags_arg(nr: int) -> int:
    return 1 if nr == OPEN else 2


def _resumes_syscall(meta: dict[str, Any], pid: int, nr: int) -> bool:
    for d in meta["procs"]:
        if d["pid"] == pid:
            r = d.get("resume") or {}
            return r.get("kind") == "syscall" and r.get("nr") == nr
    return False


def _rng_state(k: "Kernel", last: list[Any]) -> list[Any]:
    """The guest's random generator (Mersenne Twister: 625 words), packed. `last` keeps the
    generator, its draw count and the packed state: most checkpoints find it as it was."""
    rng = k.vfs.rng
    draws = getattr(rng, "draws", None)  # (vfs.core.CountingRandom)
    if draws is None or last[0] is not rng or last[1] != draws:
        version, internal, gauss = rng.getstate()
        last[:] = [rng, draws, [version, array("I", internal).tobytes(), gauss]]
    return last[2]


def _rng_from(state: list[Any]) -> tuple[Any, ...]:
    return (state[0], tuple(array("I", state[1])), state[2])
