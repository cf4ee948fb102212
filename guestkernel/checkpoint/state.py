"""The process group as a checkpoint sees it: every process's registers, memory map and pages,
open file descriptions (shared across fork and dup), pipes with their buffered bytes, cwd, brk,
executable, signal state and the syscall each one must re-execute on resume.

`capture` turns the live kernel into JSON-able metadata plus the pages to store; `restore` builds
the processes back in a freshly booted kernel. Pages are stored only when they are the process's
own (anonymous or copied-on-write): pages shared from the page cache are the file's content and
come back by demand paging, since the file system on storage matches the checkpoint.

A checkpoint at every syscall must cost little when little changed, so `capture` splits the
metadata: a *static* description (processes' ids, mappings, signal actions; apart from it the
descriptor tables and what each open file is, which every open and close changes) is built and
encoded again only when its fingerprint moved (`_fingerprint`: those fields by value, the VMAs
by the mm's `vm_version`; `_fd_fingerprint`: the tables, open files by identity), each of the
two stored as a metadata part shared between images while its bytes stay the same; so are the
page lists (store.py). Each kind of open file is described and rebuilt by its codec (files.py). What changes at any syscall (registers, offsets, counters,
signal masks) is built every time. `verify` (EMU_CKPT_VERIFY=1, on in the tests) builds the
static description afresh at every checkpoint and checks the reused one against it.

Registers: the general registers, rip, rflags, fs/gs base, SSE (xmm0-15, mxcsr) and x87 (control,
status and tag words, st0-7 with all 80 bits, read raw: the Python binding's typed read drops the
exponent). Unicorn's TCG has no AVX, so there is no wider vector state.
"""
from __future__ import annotations

import ctypes
import struct
from array import array
from typing import TYPE_CHECKING, Any, Callable

from unicorn import x86_const as X

from guestkernel.checkpoint.files import BY_KIND, Numbering, Rebuilt, Unsupported, codec_of
from guestkernel.checkpoint.store import encode_static, pack_pages, unpack_pages
from guestkernel.checkpoint.tables import lock_state, restore_locks, restore_sockets, socket_state, socket_table
from guestkernel.futex import futex_table
from guestkernel.gfp import Gfp
from guestkernel.mm import MM, PAGE, TASK_SIZE, VMA
from guestkernel.process import RUNNABLE, ZOMBIE, FDTable, FsContext, Process, SharedPending, SigAction
from guestkernel.shm import Segment, ShmBacking, ShmObject
from guestkernel.siginfo import SigInfo
from guestkernel.syscalls.numbers import NUMBERS as NR
from guestkernel.vfs import DEV_DIR, OpenFile, Pipe

if TYPE_CHECKING:
    from guestkernel.checkpoint.live import LivePages
    from guestkernel.kernel import Kernel

REG_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
             "r12", "r13", "r14", "r15", "rip", "rflags", "fs_base", "gs_base", "mxcsr", "fpcw",
             "fpsw", "fptag") + tuple(f"xmm{i}" for i in range(16))
REG_IDS = tuple(getattr(X, "UC_X86_REG_" + n.upper()) for n in REG_NAMES)
ST_IDS = tuple(getattr(X, f"UC_X86_REG_ST{i}") for i in range(8))
SYSCALL_INSN = 2  # `syscall` is 0f 05
NR_WRITE, NR_FUTEX = NR["write"], NR["futex"]
SLEEPS = (NR["nanosleep"], NR["clock_nanosleep"])
# Calls re-run after a restart with the time they had left: where their timeout is (an argument
# register naming a timeval or timespec, or holding milliseconds)
TIMEOUTS = {NR["select"]: ("r8", "timeval"), NR["pselect6"]: ("r8", "timespec"), NR["ppoll"]: ("rdx", "timespec"),
            NR["poll"]: ("rdx", "ms"), NR["epoll_wait"]: ("r10", "ms"), NR["epoll_pwait"]: ("r10", "ms")}
# Parked part way, they go on after a restart (syscalls/net.py: resume_transfer)
RESUMABLE = tuple(NR[n] for n in ("write", "writev", "sendto", "recvfrom", "sendmsg", "recvmsg"))


# ----------------------------------------------------------------------------------------------
# registers


ALL_IDS = REG_IDS + ST_IDS
_WIDTH = {"mxcsr": 4, "fpcw": 2, "fpsw": 2, "fptag": 2}


# One unpack of the raw registers (16 bytes each): ints of their width, xmm as their 16 bytes,
# st0-7 as their 10 bytes.
_RAW = struct.Struct("<" + "".join("16s" if n.startswith("xmm") else {4: "I12x", 2: "H14x"}.get(_WIDTH.get(n, 8), "Q8x")
                                   for n in REG_NAMES) + "10s6x" * 8)
_ST_NAMES = tuple(f"st{i}" for i in range(8))


def _decode(raw: bytes) -> dict[str, Any]:
    """Registers by name: ints, xmm as their 16 bytes (the metadata's msgpack has no 128-bit
    integers), st0-7 as the hex of their 10 bytes."""
    vals = _RAW.unpack_from(raw)
    n = len(REG_NAMES)
    regs: dict[str, Any] = dict(zip(REG_NAMES, vals))
    for name, v in zip(_ST_NAMES, vals[n:]):
        regs[name] = v.hex()
    return regs


def read_regs(k: "Kernel") -> dict[str, Any]:
    """The running process's registers (inside its syscall hook)."""
    return _decode(k.cpu.read_regs_raw(ALL_IDS))


def regs_of(k: "Kernel", ctx: object, overrides: dict[str, int]) -> dict[str, Any]:
    """Registers of a saved context, read from the context itself (the CPU is not touched)."""
    regs = _decode(k.cpu.read_regs_raw(ALL_IDS, ctx))
    regs.update({n: v & 0xFFFFFFFFFFFFFFFF for n, v in overrides.items()})
    return regs


def context_from(k: "Kernel", regs: dict[str, int]) -> object:
    cpu = k.cpu
    cpu.restore_context(k.pristine_ctx)
    cpu.uc.reg_write_batch([(getattr(X, "UC_X86_REG_" + n.upper()), int.from_bytes(v, "little") if isinstance(v, bytes) else v)
                            for n, v in regs.items() if not n.startswith("st")])
    for i, rid in enumerate(ST_IDS):  # after fpsw (its TOP field says which register is st0)
        if f"st{i}" in regs:
            raw = bytes.fromhex(regs[f"st{i}"]).ljust(16, b"\0")
            cpu.uc._do_reg_write(rid, ctypes.byref((ctypes.c_uint8 * 16).from_buffer_copy(raw)))
    return cpu.save_context()


# ----------------------------------------------------------------------------------------------
# capture


CKPT_NEW = 0xFFFFFFFF  # (native/emu_abi.h) no image page


class PageTracker:
    """What the previous image holds of each address space: per gva the frame, its generation,
    the SCM page and crc. A page is unchanged when the same frame (same generation) is still
    mapped there, no PTE mapping it has its dirty bit set, and it is not newly written by the
    kernel (which bumps the generation)."""

    def __init__(self) -> None:
        # asid -> (struct ckpt_page[] in gva order, count): see native/ckptscan.c
        self.spaces: dict[int, tuple[Any, int]] = {}
        self._dirty: Any = None  # a byte per frame, all 0 between checkpoints
        # pid -> (saved context object, set_regs, registers): a process that has not run since
        # the last checkpoint still holds the same context object, so its registers are known.
        self.regs: dict[int, tuple[object, dict[str, int], dict[str, int]]] = {}
        self.pipes: dict[int, dict[int, tuple[int, int]]] = {}  # pipe serial -> ring page -> (page, crc)
        # id(shared anonymous object) -> what the last image stored of its pages (_object_pages)
        self.shmem: dict[int, ObjectPages] = {}
        self.static: StaticCache | None = None  # the last image's static description ...
        self.fdstatic: StaticCache | None = None  # ... and its descriptor tables and open files
        self.rows: dict[int, tuple[Any, int]] = {}  # asid -> (leaf rows buffer, its capacity in rows)
        # The last image's metadata parts: key -> (bytes, reference, group); see capture.
        self.parts: dict[Any, tuple[bytes, list[int], bytes]] = {}
        # Pages of the image file mapped in place (images in a file on the storage window: a
        # restart's, and those living in the file, live.py): per window page from img_base,
        # the image page it is, its crc (CKPT_NEW: none), and whether it was written in place
        # since the last checkpoint (img_dirty: in no image yet, flushed and listed by the next).
        # Kept across reset(): they are the image's as long as a process maps them.
        self.img_base = 0
        self.img_pg: array | None = None
        self.img_crc: array | None = None
        self.img_dirty: bytearray | None = None

    def image_window(self, base: int, n: int) -> None:
        """The window pages [base, base+n) may be image pages mapped in place."""
        if self.img_pg is None:
            self.img_base = base
            self.img_pg, self.img_crc = array("I", [CKPT_NEW]) * n, array("I", bytes(4 * n))
            self.img_dirty = bytearray(n)

    def note_mapped(self, gpfn: int, pg: int, crc: int, base: int, n: int) -> None:
        """Image page `pg` (window page gpfn) is mapped in place into a process."""
        self.image_window(base, n)
        assert self.img_pg is not None and self.img_crc is not None and self.img_dirty is not None
        self.img_pg[gpfn - self.img_base] = pg
        self.img_crc[gpfn - self.img_base] = crc
        self.img_dirty[gpfn - self.img_base] = 0

    def note_live(self, gpfn: int, pg: int) -> None:
        """Page `pg` of the image file (window page gpfn) is a process's, written in place."""
        assert self.img_pg is not None and self.img_crc is not None and self.img_dirty is not None
        self.img_pg[gpfn - self.img_base] = pg
        self.img_crc[gpfn - self.img_base] = 0
        self.img_dirty[gpfn - self.img_base] = 1

    def reset(self) -> None:
        """Forget everything (after an abandoned checkpoint): the next one copies all pages."""
        self.spaces.clear()
        self.pipes.clear()
        self.shmem.clear()
        self.static = self.fdstatic = None
        self.parts = {}

    def leaf_rows(self, cpu: Any, asid: int, cr3: int, rows: dict[int, tuple[Any, int]]) -> tuple[Any, int]:
        """cpu.pt_leaf_rows of a whole address space into the buffer kept for it (one walk of
        the page table when the buffer is large enough); `rows` collects the buffers in use."""
        buf, cap = self.rows.get(asid, (None, 0))
        n = cpu.lib.emu_pt_leaves(cpu.st, cr3, 0, TASK_SIZE, buf if buf is not None else cpu.ffi.NULL, cap)
        if buf is None or n > cap:
            cap = n + n // 4 + 64
            buf = cpu.ffi.new("uint64_t[]", 3 * cap)
            n = cpu.lib.emu_pt_leaves(cpu.st, cr3, 0, TASK_SIZE, buf, cap)
        rows[asid] = (buf, cap)
        return buf, n

    def dirty_mask(self, ffi: Any, npfn: int) -> Any:
        """uint8_t[npfn] of zeros, kept between checkpoints (each pass unmarks what it marked)."""
        if self._dirty is None or len(self._dirty) != npfn:
            self._dirty = ffi.new("uint8_t[]", npfn)
        return self._dirty

    def regs_of(self, k: "Kernel", p: Process) -> dict[str, int]:
        known = self.regs.get(p.pid)
        if known is not None and known[0] is p.ctx and known[1] == p.set_regs:
            return dict(known[2])
        regs = regs_of(k, p.ctx, p.set_regs)
        self.regs[p.pid] = (p.ctx, dict(p.set_regs), regs)
        return dict(regs)


def _refusal(mm: MM) -> str | None:
    """Why a checkpoint cannot describe this address space (None: it can); computed again only
    when its mappings changed."""
    if mm.ckpt_checked[0] != mm.vm_version:
        why = None
        if any(v.device and not isinstance(v.backing, ShmBacking) for v in mm.vmas):
            why = "a device (pmem) mapping"  # (shared memory objects, System V segments too: described)
        elif any(v.shared and hasattr(v.backing, "page_dirtied") for v in mm.vmas):
            why = "a shared writable file mapping"  # its writes go to the page cache at any instruction
        mm.ckpt_checked = (mm.vm_version, why)
    return mm.ckpt_checked[1]


def _fingerprint(p: Process) -> tuple[Any, ...]:
    """Everything the static description of `p` but its descriptors is made of, by value, except
    its VMAs (by the mm's vm_version). Equal fingerprints, equal descriptions (`verify` checks
    it). The objects named by identity are held by the fingerprint, so that their ids stay
    theirs."""
    if p.state == ZOMBIE:
        return (p.pid, p.ppid, p.pgid, p.sid, p.umask, p.exe, p.comm, p.start_ns)
    mm, fds = p.mm, p.fds
    return (p.pid, p.ppid, p.pgid, p.sid, p.umask, p.exe, p.comm, p.start_ns, id(p.fs), p.fs, id(p.shared), p.shared, p.cwd, p.clear_child_tid,
            p.pdeath_signal, p.leader.pid if p.leader is not None else None, fds, id(p.sigactions), p.sigactions, tuple(p.sigactions.items()), tuple(p.rlimits.items()),
            mm, mm.vm_version, mm.brk_start, mm.brk, mm.arg_start, mm.arg_end, mm.env_start, mm.env_end,
            mm.start_stack)


def _fd_fingerprint(procs: list[Process]) -> tuple[Any, ...]:
    """What the descriptor part of the static description is made of: the processes (a /proc
    file names one) and their descriptor tables, open files by identity (what a description
    stores of one never changes)."""
    return tuple((p.pid, p.state, tuple(p.fds.fds.items()), frozenset(p.fds.cloexec)) if p.state != ZOMBIE
                 else (p.pid, p.state) for p in procs)


def _static(procs: list[Process], segments: list[Segment]) -> tuple[dict[str, Any], list[ShmObject]]:
    """The group's static description but its descriptors ({"procs"}: what changes only with
    processes, mappings and signal actions), with the shared memory objects in the order it
    numbers them (the System V segments first, attached or not, then the shared anonymous
    objects the mappings name)."""
    obj_ids: dict[int, int] = {id(seg): i for i, seg in enumerate(segments)}
    objs: list[ShmObject] = list(segments)

    def obj_id(v: VMA) -> int | None:
        """The number of the shared memory object a VMA maps (None: not one)."""
        if not isinstance(v.backing, ShmBacking):
            return None
        obj = v.backing.obj
        i = obj_ids.get(id(obj))
        if i is None:
            i = obj_ids[id(obj)] = len(objs)
            objs.append(obj)
        return i
    out = []
    first: dict[int, int] = {}
    first_mm: dict[int, int] = {}
    first_sighand: dict[int, int] = {}
    first_fs: dict[int, int] = {}
    first_shared: dict[int, int] = {}
    for p in procs:
        d: dict[str, Any] = {
            "pid": p.pid, "ppid": p.ppid, "pgid": p.pgid, "sid": p.sid, "umask": p.umask,
            "exe": p.exe.decode("latin-1"), "comm": p.comm.decode("latin-1"), "start_ns": p.start_ns,
        }
        out.append(d)
        if p.state == ZOMBIE:
            continue
        mm = p.mm
        # Which processes share a descriptor table, an mm (vfork, threads), signal actions or
        # the working directory and umask (threads) is named by the first holder.
        d.update(
            cwd=p.cwd if p.cwd != DEV_DIR else "dev", fs=first_fs.setdefault(id(p.fs), p.pid),
            sigshared=first_shared.setdefault(id(p.shared), p.pid),
            sigactions={str(s): [a.handler, a.flags, a.restorer, a.mask] for s, a in p.sigactions.items()},
            clear_child_tid=p.clear_child_tid,
            rlimits={str(r): list(v) for r, v in p.rlimits.items()}, pdeath_signal=p.pdeath_signal,
            fdtable=first.setdefault(id(p.fds), p.pid),
            sighand=first_sighand.setdefault(id(p.sigactions), p.pid),
            leader=p.leader.pid if p.leader is not None else None,
            mm={"asid": first_mm.setdefault(id(mm), p.pid), "brk_start": mm.brk_start, "brk": mm.brk,
                "layout": [mm.arg_start, mm.arg_end, mm.env_start, mm.env_end, mm.start_stack],
                "vmas": [[v.start, v.end, v.prot, v.shared, getattr(v.backing, "ino", None), v.offset, v.name, obj_id(v)]
                         for v in mm.vmas]},
        )
    return {"procs": out}, objs


def _static_files(procs: list[Process]) -> tuple[dict[str, Any], list[OpenFile], list[Pipe]]:
    """The static description's descriptor part ({"procs": each one's descriptors, "files": what
    each open file is}: it changes with every open and close), with the open files and pipes in
    the order it numbers them."""
    files: list[dict[str, Any]] = []
    file_objs: list[OpenFile] = []
    file_ids: dict[int, int] = {}
    cx = Numbering(pids={p.pid for p in procs})

    def file_id(f: OpenFile) -> int:
        i = file_ids.get(id(f))
        if i is None:
            codec = codec_of(f)
            d = {"kind": codec.kind, **codec.describe(f, cx)}
            i = file_ids[id(f)] = len(files)
            files.append(d)
            file_objs.append(f)
        return i

    out: list[dict[str, Any]] = []
    for p in procs:
        out.append({} if p.state == ZOMBIE else
                   {"fds": {str(fd): file_id(f) for fd, f in sorted(p.fds.fds.items())}, "cloexec": sorted(p.fds.cloexec)})
    return {"procs": out, "files": files}, file_objs, cx.pipes


class StaticCache:
    """A part of the last image's static description: its fingerprint, the description, the
    open files, pipes (the descriptor part) or shared anonymous objects (the other) in its
    order, and the bytes of the part it was stored in."""

    def __init__(self, key: tuple[Any, ...], desc: dict[str, Any], blob: bytes, files: list[OpenFile] | None = None,
                 pipes: list[Pipe] | None = None, objs: list[ShmObject] | None = None) -> None:
        self.key, self.desc, self.blob = key, desc, blob
        self.files, self.pipes, self.objs = files or [], pipes or [], objs or []


def _cached(prev: StaticCache | None, key: tuple[Any, ...], desc: dict[str, Any], **objects: Any) -> StaticCache:
    """A new cache entry (its part's bytes the previous entry's very object when equal: the part
    is then shared with the previous image)."""
    blob = encode_static(desc)
    return StaticCache(key, desc, prev.blob if prev is not None and prev.blob == blob else blob, **objects)


def _part(tracker: PageTracker, store: Any, key: Any, blob: bytes, parts: list[list[int]],
          groups: list[bytes], new_parts: dict[Any, tuple[bytes, list[int], bytes]]) -> tuple[int, bytes]:
    """The metadata part holding `blob`: the previous image's when its bytes are the same (then
    `blob` is that image's very object), else written afresh. Returns its index in `parts`."""
    prev = tracker.parts.get(key)
    if prev is not None and prev[0] == blob:
        got = prev
    else:
        ref, group = store.write_part(blob)
        got = (blob, ref, group)
    new_parts[key] = got
    parts.append(got[1])
    groups.append(got[2])
    return len(parts) - 1, got[0]


def capture(k: "Kernel", tracker: PageTracker, store: Any, cur_nr: int, rng: list[Any] | None = None,
            verify: bool = False, live: "LivePages | None" = None) -> tuple[dict[str, Any], dict[str, int], list[bytes]]:
    """Metadata of the whole group, stats {pages_scanned, pages_copied, pages_in_place} and the
    SCM pages the metadata lists, as groups (see store.Image). `store` (an ImageStore) stores
    pages and metadata parts. The current process is inside syscall `cur_nr`. `rng`: the
    kernel's random generator [version, packed state, gauss], its state stored as a part.
    `verify`: describe the group afresh even when its fingerprint says it did not change, and
    check that it did not. `live`: private pages live in the image file (live.py): pages written
    in place are flushed there and listed, not copied, and the frames copied are handed to
    `live` to be mapped from the file once the image commits."""
    cpu = k.cpu
    cur = k.current
    procs = sorted(k.procs.values(), key=lambda q: q.pid)

    # What a checkpoint cannot describe is refused before anything is written or cleared.
    if len(k.fs.mounts) > 1 or any(d.file is not None for d in k.vfs.loops.devices.values()):
        # A mount's page cache and a loop device's binding are not in the image (a restart
        # mounts the root alone): no checkpoint until they are gone.
        raise Unsupported("a mounted loop device or a bound loop device")
    for p in procs:
        if p.state == ZOMBIE:
            continue
        # A vfork child that has not exec'd yet shares its parent's memory and the parent waits
        # inside vfork: no consistent picture. Once the child exec'd or exited, the parent's
        # vfork only has to return the child's pid.
        if p.vfork_waitq is not None or (p.vfork_parent_blocked and p.state != RUNNABLE):
            raise Unsupported("a vfork in progress")
        if p is not cur and p.ctx is None:
            raise Unsupported(f"process {p.pid} has no saved context")
        if p is not cur and p.pending_call is not None and p.pending_done and p.pending_nr not in RESUMABLE:
            # (write, writev and the socket transfers resume with their progress: run again, the
            # bytes would go twice; anything else parked with progress is refused)
            raise Unsupported("a transfer parked part way")
        why = _refusal(p.mm) if p.mm is not None else None
        if why is not None:
            raise Unsupported(why)

    # A parked futex wait is described, not run again (a wake it already had, a requeue, the
    # time left of a timed wait would be lost).
    futex_waits: dict[int, dict[str, Any]] = {}
    for p in procs:
        if p is not cur and p.pending_call is not None and p.pending_nr == NR_FUTEX and p.futex_wait is not None:
            d = futex_table(k).describe(p.futex_wait, k.clock.uptime_ns())
            if d is None:
                raise Unsupported("a futex wait on a shared word its process does not map")
            futex_waits[p.pid] = d

    # The static description: the last image's when nothing it is made of changed.
    reg = getattr(k, "shm", None)
    segments = sorted(reg.segments.values(), key=lambda seg: seg.index) if reg is not None else []
    key = (*(_fingerprint(p) for p in procs), *((seg.index, seg.seq, seg.removed) for seg in segments))
    sc = tracker.static
    if sc is None or sc.key != key:
        desc, objs = _static(procs, segments)
        sc = _cached(sc, key, desc, objs=objs)
    elif verify:
        desc, objs = _static(procs, segments)
        assert desc == sc.desc and objs == sc.objs, "checkpoint: the group changed under an unchanged fingerprint"
    fkey = _fd_fingerprint(procs)  # (apart: every open and close changes it)
    fc = tracker.fdstatic
    if fc is None or fc.key != fkey:
        desc, files, pipes = _static_files(procs)
        fc = _cached(fc, fkey, desc, files=files, pipes=pipes)
    elif verify:
        desc, files, pipes = _static_files(procs)
        assert desc == fc.desc and files == fc.files and pipes == fc.pipes, \
            "checkpoint: the descriptors changed under an unchanged fingerprint"
    index, socks = socket_table(fc.files)
    locks = lock_state(k, fc.files, fc.pipes)
    stats = {"pages_scanned": 0, "pages_copied": 0, "pages_in_place": 0}
    groups: list[bytes] = []
    parts: list[list[int]] = []
    new_parts: dict[Any, tuple[bytes, list[int], bytes]] = {}

    # Pass 1: leaves of every address space; frames written through any mapping.
    ffi, lib = cpu.ffi, cpu.lib
    # Frames outside the allocator's (Frames.ram: RAM and storage lent as memory) are device
    # pages (pmem, the DAX storage window's file pages): never the process's own, except image
    # pages a restart mapped back (native/ckptscan.c).
    ram = ffi.from_buffer("uint8_t[]", k.frames.ram)
    npfn = len(k.frames.ram)
    dirty = tracker.dirty_mask(ffi, npfn)
    leaves: dict[int, tuple[Any, int]] = {}
    mms: dict[int, MM] = {}
    row_bufs: dict[int, tuple[Any, int]] = {}
    scanned = 0
    for p in procs:
        if p.state == ZOMBIE or p.mm is None or p.mm.asid in leaves:
            continue
        mm = p.mm
        mms[mm.asid] = mm
        rows, n = tracker.leaf_rows(cpu, mm.asid, mm.aspace.cr3, row_bufs)
        lib.emu_ckpt_mark_dirty(rows, n, dirty, ram, npfn, 1)
        scanned += n
        leaves[mm.asid] = (rows, n)

    # Pass 2 (native/ckptscan.c): pages per address space, shared with the previous image when
    # unchanged, stored when changed (once per frame per checkpoint); dirty bits cleared.
    skip = ffi.from_buffer("uint8_t[]", k.pagecache.frame_mask)
    img = ((ffi.from_buffer("uint32_t[]", tracker.img_pg), ffi.from_buffer("uint32_t[]", tracker.img_crc),
            ffi.from_buffer("uint8_t[]", tracker.img_dirty), tracker.img_base, len(tracker.img_pg))
           if tracker.img_pg is not None and tracker.img_crc is not None and tracker.img_dirty is not None
           else (ffi.NULL, ffi.NULL, ffi.NULL, 0, 0))
    gen = ffi.from_buffer("uint32_t[]", k.frames.gen)
    log = ffi.from_buffer("uint8_t[]", k.frames.memory.ept.log)
    nfresh, ncleared = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    fresh: dict[int, tuple[int, int]] = {}
    new_spaces: dict[int, tuple[Any, int]] = {}
    pages_of: dict[int, bytes] = {}
    copied = cleared = in_place = 0
    ram_mask = k.frames.ram
    # frame -> (mm, gva, record) of each private mapping of a frame copied (live: see LivePages.remap)
    remap: dict[int, list[tuple[MM, int, Any]]] = {}
    try:
        for asid, (rows, n) in leaves.items():
            prev, m = tracker.spaces.get(asid, (ffi.NULL, 0))
            out = ffi.new("struct ckpt_page[]", max(n, 1))
            todo = ffi.new("uint32_t[]", max(n, 1))
            nout = lib.emu_ckpt_diff(cpu.st, rows, n, prev, m, skip, dirty, gen, ram, npfn, log, out, todo, nfresh, ncleared,
                                     *img)
            cleared += ncleared[0]
            mm = mms[asid]
            todo_ix = ffi.unpack(todo, nfresh[0])
            copied += _store_new(k, store, out, todo_ix, fresh, ram_mask)  # the process's own frames first
            for i in todo_ix:
                rec = out[i]
                own = ram_mask[rec.pfn]
                got = fresh.get(rec.pfn)
                if got is None:  # a page of the image file written in place: flushed there
                    assert live is not None and not own
                    got = live.flush(rec.pfn)
                    in_place += 1
                    fresh[rec.pfn] = got
                rec.pg, rec.crc = got
                if own and live is not None:
                    v = mm.find(rec.gva)
                    if v is not None and not v.shared and not v.device and not v.prot & 4:
                        remap.setdefault(rec.pfn, []).append((mm, rec.gva, rec))
            packed = ffi.new("uint8_t[]", 16 * nout)
            lib.emu_ckpt_pack(out, nout, packed)
            pages_of[asid] = ffi.buffer(packed)[:]
            new_spaces[asid] = (out, nout)
        shmem, new_shmem, n = _object_pages(k, tracker, store, sc.objs, fresh, (skip, dirty, gen, ram, npfn, log))
        copied += n
    finally:  # also when a page cannot be stored (SCM full): the checkpoint fails, not the next
        for asid, (rows, n) in leaves.items():
            lib.emu_ckpt_mark_dirty(rows, n, dirty, ram, npfn, 0)  # the mask is all zeros between passes
            if cleared:  # the next write to a page made clean must fault to set its dirty bit again
                cpu.tlb_flush_dirty(asid, rows, n)
    tracker.spaces = new_spaces
    tracker.shmem = new_shmem
    tracker.rows = row_bufs
    if live is not None:
        _more_mappings(remap, new_spaces, mms, k.frames.refs)
        live.copied(remap, fresh)

    # Page lists and the static description are parts of the metadata, shared with the previous
    # image when unchanged (store.py); a page list is also the group of the data pages it lists.
    part_of: dict[int, int] = {}
    for asid, raw in pages_of.items():
        part_of[asid], raw = _part(tracker, store, ("pages", asid), raw, parts, groups, new_parts)
        groups.append(raw)
    static_part, sc.blob = _part(tracker, store, "static", sc.blob, parts, groups, new_parts)
    files_part, fc.blob = _part(tracker, store, "static-files", fc.blob, parts, groups, new_parts)
    if rng is not None:  # 2.5 KiB that change only when the guest draws from it
        rng = [rng[0], _part(tracker, store, "rng", rng[1], parts, groups, new_parts)[0], rng[2]]

    # Pipes: ring position and ring pages, copied when written since the last checkpoint (the
    # pipe marks them) and shared with the previous image otherwise.
    new_pipes: dict[int, dict[int, tuple[int, int]]] = {}
    pipes = []
    for pipe in fc.pipes:
        prev_ring = tracker.pipes.get(pipe.serial, {})
        ring = {}
        for idx in range(Pipe.PAGES):
            got = prev_ring.get(idx)
            if got is None or idx in pipe.dirty:
                got = store.write_page(k.frames.page(pipe.pfn + idx))
                stats["pages_copied"] += 1
            ring[idx] = got
        new_pipes[pipe.serial] = ring
        packed_ring = pack_pages([(idx, pg, crc) for idx, (pg, crc) in sorted(ring.items())])
        groups.append(packed_ring)
        pipes.append({"head": pipe.head, "count": pipe.count, "ring": packed_ring})

    # The dynamic description: what may change at any syscall.
    out_procs = []
    now = k.clock.uptime_ns()
    for p in procs:
        d: dict[str, Any] = {"state": p.state, "exit_status": p.exit_status, "utime_insns": p.utime_insns,
                             "syscalls": p.syscalls, "cutime_insns": p.cutime_insns}
        out_procs.append(d)
        if p.state == ZOMBIE:
            continue
        regs: dict[str, Any] | bytes
        if p is cur:
            regs = k.cpu.read_regs_raw(ALL_IDS)  # raw: decoded by restore (the common case, kept cheap)
            resume: dict[str, Any] = {"kind": "syscall", "nr": cur_nr}   # rip is on the syscall
        else:
            regs = tracker.regs_of(k, p)
            if p.pending_call is not None:
                done = getattr(p, "pending_done", 0)
                if done and p.pending_nr == NR_WRITE:
                    resume = {"kind": "write_rest", "done": done}    # rip after the syscall
                elif done:  # (writev, sendto, recvfrom, sendmsg, recvmsg: RESUMABLE)
                    resume = {"kind": "transfer_rest", "nr": p.pending_nr, "done": done}
                elif p.pending_nr == NR_FUTEX and p.futex_wait is not None:  # rip after the syscall
                    resume = {"kind": "futex", "wait": futex_waits[p.pid]}
                elif p.pending_nr in SLEEPS and p.pending_block is not None and p.pending_block.deadline is not None:
                    # (the time left, not the whole sleep again; rem as its call gave it)
                    rem = regs["rsi"] if p.pending_nr == SLEEPS[0] else 0 if regs["rsi"] & 1 else regs["r10"]
                    resume = {"kind": "sleep", "nr": p.pending_nr, "left": max(0, p.pending_block.deadline - now),
                              "rem": rem}
                elif p.vfork_parent_blocked:  # a released vfork: returns the child's pid
                    resume = {"kind": "return", "value": p.pending_call()}
                else:
                    regs["rip"] -= SYSCALL_INSN
                    resume = {"kind": "syscall", "nr": p.pending_nr}
                    if p.pending_nr in TIMEOUTS and p.pending_block is not None and p.pending_block.deadline is not None:
                        # run again with the time it had left (the timeout it reads, as Linux's
                        # select would leave it on return; poll's and epoll_wait's in ms)
                        resume["left"] = max(0, p.pending_block.deadline - now)
            else:
                resume = {"kind": "user"}
        d.update(
            regs=regs, resume=resume, sigmask=p.sigmask, saved_sigmask=p.saved_sigmask, sigpending=p.sigpending,
            siginfo={str(s): [i.record() for i in q] for s, q in p.siginfo.items()},
            shared_pending=[p.shared.sigpending, {str(s): [i.record() for i in q] for s, q in p.shared.siginfo.items()}],
            itimer_real=[max(0, p.itimer_real[0] - now) if p.itimer_real[0] else 0, p.itimer_real[1]],
            altstack=p.altstack, affinity=p.affinity,
            sigframes=[[regs_of(k, ctx, {}), mask] for ctx, mask in p.sigframes],
            pages=part_of[p.mm.asid],
        )
    tracker.pipes = new_pipes
    tracker.static, tracker.fdstatic = sc, fc
    tracker.parts = new_parts
    for pipe in fc.pipes:
        pipe.dirty.clear()
    for i, entry in enumerate(shmem):  # (a part each, as the page lists: shared while unchanged)
        entry[1], raw = _part(tracker, store, ("shmem", i), entry[1], parts, groups, new_parts)
        groups.append(raw)
    cx = Numbering(index=index)
    meta = {"procs": out_procs, "files": [_file_state(f, cx, now) for f in fc.files],
            "pipes": pipes, "shmem": shmem, "parts": parts, "static": [static_part, files_part], "rng": rng,
            "swap": k.swap.describe()}  # storage lent as memory: lent again before the pages
    if reg is not None:
        meta["shm_seq"] = reg.seq  # (the next segment's sequence number: its shmid)
    if locks:
        meta["locks"] = locks
    if socks:
        meta["sockets"] = [socket_state(k, sk, index) for sk in socks]
        meta["autobind"] = getattr(k, "_unix_autobind", 0)
    stats["pages_scanned"] = scanned
    stats["pages_copied"] += copied
    stats["pages_in_place"] = in_place
    return meta, stats, groups


def _file_state(f: OpenFile, cx: Numbering, now: int) -> dict[str, Any]:
    """What may change of an open file at any syscall: its flags and offset, and what its kind
    adds (files.py)."""
    d: dict[str, Any] = {"flags": f.flags, "offset": f.offset}
    d.update(codec_of(f).state(f, cx, now))
    return d


class ObjectPages:
    """What an image stored of a shared anonymous object's pages: records (offset, frame,
    generation, SCM page, crc) in offset order, and what they were made from: the object's
    `unmaps` and, as leaf rows for native/ckptscan.c, its frames at its `version`."""

    def __init__(self, obj: ShmObject, rows: Any, n: int, recs: Any, nrecs: int) -> None:
        self.obj, self.unmaps, self.version = obj, obj.unmaps, obj.version
        self.rows, self.n, self.recs, self.nrecs = rows, n, recs, nrecs


def _store_new(k: "Kernel", store: Any, recs: Any, todo: list[int], fresh: dict[int, tuple[int, int]],
               own: Any = None) -> int:
    """Store, all in one step, the frames of records recs[i] (i in `todo`) this checkpoint has
    not stored yet (`fresh`: frame -> (page, crc), a frame two spaces or an object map stored
    once), only those `own` marks when given; returns how many were stored."""
    pfns = [pfn for pfn in dict.fromkeys(recs[i].pfn for i in todo) if pfn not in fresh and (own is None or own[pfn])]
    if pfns:
        fresh.update(zip(pfns, store.write_frames(pfns, k.frames.page)))
    return len(pfns)


def _object_pages(k: "Kernel", tracker: PageTracker, store: Any, objs: list[ShmObject], fresh: dict[int, tuple[int, int]],
                  masks: tuple[Any, ...]) -> tuple[list[list[Any]], dict[int, ObjectPages], int]:
    """Every page of each shared anonymous object, mapped or not (a page a child wrote before it
    exited is the object's alone): [object pages, packed (offset, SCM page, crc)] per object in
    the static description's order, the tracker's new records and how many pages were stored.
    The object's frames go through pass 2's diff (native/ckptscan.c) as if mapped at their
    offsets: a page is the previous image's when it is the same frame of the same generation
    and no PTE has it dirty (pass 1's mask), unless a VMA of the object went since (its dirty
    bits went with its PTEs): then every page is stored again. A page pass 2 stored already
    (`fresh`) is not stored twice. `masks`: pass 2's (skip, dirty, gen, ram, npfn, log)."""
    ffi, lib, st = k.cpu.ffi, k.cpu.lib, k.cpu.st
    nfresh, ncleared = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    out: list[list[Any]] = []
    new: dict[int, ObjectPages] = {}
    copied = 0
    for obj in objs:
        prev = tracker.shmem.get(id(obj))
        if prev is not None and prev.obj is obj and prev.version == obj.version:
            rows, n = prev.rows, prev.n
        else:  # (its frames changed: rows again)
            leaves = [x for idx, pfn in enumerate(obj.pfns) if pfn >= 0 for x in (idx * PAGE, 0, pfn << 12 | 1)]
            rows, n = ffi.new("uint64_t[]", leaves or [0]), len(leaves) // 3
        known = prev is not None and prev.obj is obj and prev.unmaps == obj.unmaps
        recs, todo = ffi.new("struct ckpt_page[]", max(n, 1)), ffi.new("uint32_t[]", max(n, 1))
        nrecs = lib.emu_ckpt_diff(st, rows, n, prev.recs if known else ffi.NULL, prev.nrecs if known else 0,  # type: ignore[union-attr]
                                  *masks, recs, todo, nfresh, ncleared, ffi.NULL, ffi.NULL, ffi.NULL, 0, 0)
        todo_ix = ffi.unpack(todo, nfresh[0])
        copied += _store_new(k, store, recs, todo_ix, fresh)
        for i in todo_ix:
            rec = recs[i]
            rec.pg, rec.crc = fresh[rec.pfn]
        packed = ffi.new("uint8_t[]", 16 * nrecs)
        lib.emu_ckpt_pack(recs, nrecs, packed)
        new[id(obj)] = ObjectPages(obj, rows, n, recs, nrecs)
        out.append([obj.pages, ffi.buffer(packed)[:], _object_fields(obj)])
    return out, new, copied


SEGMENT_FIELDS = ("size", "index", "seq", "key", "mode", "cpid", "ctime", "uid", "gid", "atime", "dtime", "lpid",
                  "removed", "locked")


def _object_fields(obj: ShmObject) -> dict[str, Any]:
    """What names an object besides its pages: a segment's shmid_ds and place in the registry,
    a shared anonymous object's inode number (/proc/PID/maps)."""
    if isinstance(obj, Segment):
        return {name: getattr(obj, name) for name in SEGMENT_FIELDS}
    return {"serial": obj.serial}


def _more_mappings(remap: dict[int, list[tuple[MM, int, Any]]], spaces: dict[int, tuple[Any, int]],
                   mms: dict[int, MM], refs: array) -> None:
    """A frame copied for one mapping may be mapped elsewhere unchanged (shared after a fork
    since the last checkpoint): find those mappings too (one walk of the records, only then), so
    that the frame can leave RAM. A frame with a mapping that cannot move (shared, executable)
    is dropped from `remap`."""
    short = {pfn for pfn, maps in remap.items() if refs[pfn] > len(maps)}
    if not short:
        return
    bad: set[int] = set()
    for asid, (out, nout) in spaces.items():
        mm = mms[asid]
        for i in range(nout):
            rec = out[i]
            if rec.pfn not in short or any(r is rec or (m is mm and g == rec.gva) for m, g, r in remap[rec.pfn]):
                continue
            v = mm.find(rec.gva)
            if v is None or v.shared or v.device or v.prot & 4:
                bad.add(rec.pfn)
            else:
                remap[rec.pfn].append((mm, rec.gva, rec))
    for pfn in bad:
        del remap[pfn]


# ----------------------------------------------------------------------------------------------
# restore


def restore(k: "Kernel", meta: dict[str, Any], page_at: Callable[[int], memoryview],
            tracker: PageTracker, in_place: "list[int] | None" = None) -> dict[str, int]:
    """Rebuild the group of `meta` in a kernel that has mounted the file system but runs no
    process yet. `page_at(scm_page)` reads an image page. `in_place`: the guest page of each
    image page when the images live in a file on the storage window: a private page is then
    mapped back where it is, read-only (a write copies it into RAM), not copied. Returns
    {pages_copied, pages_mapped}."""
    counts = {"pages_copied": 0, "pages_mapped": 0}
    from guestkernel.syscalls.net import resume_transfer
    from guestkernel.syscalls.rw import resume_write
    from guestkernel.syscalls.time import sleep_until

    k.swap.lend_again(meta.get("swap", []))  # some private pages lived on lent storage

    pipes = []
    tracker.pipes = {}
    for pd in meta["pipes"]:
        pipe = Pipe("pipe", k.frames, next(k.pipe_serials), k.slab)
        ring = {}
        for idx, pg, crc in unpack_pages(pd["ring"]):
            k.frames.page(pipe.pfn + idx)[:] = page_at(pg)
            ring[idx] = (pg, crc)
        pipe.head, pipe.count = pd["head"], pd["count"]
        pipe.dirty.clear()
        tracker.pipes[pipe.serial] = ring
        pipes.append(pipe)
    objs = _restore_objects(k, meta.get("shmem", []), page_at, tracker, counts)
    socks = restore_sockets(k, meta)
    rx = Rebuilt(k, pipes, socks)
    files = rx.files
    for i, fd in enumerate(meta["files"]):
        f = BY_KIND[fd["kind"]].rebuild(fd, rx, i)
        f.flags, f.offset, f.refs = fd["flags"], fd["offset"], 0
        files.append(f)

    mms: dict[int, MM] = {}
    tables: dict[int, FDTable] = {}
    sighands: dict[int, dict] = {}  # threads share their group's signal actions
    fss: dict[int, FsContext] = {}  # ... and their working directory and umask
    shareds: dict[int, SharedPending] = {}  # ... and the signals sent to the group
    by_scm: dict[int, int] = {}  # SCM page -> frame already holding it (shared after fork)
    procs: dict[int, Process] = {}
    for d in meta["procs"]:
        p = Process(pid=d["pid"], ppid=d["ppid"], mm=None, fds=FDTable(k.slab), fs=FsContext(k.fs.root_ino))  # type: ignore[arg-type]
        p.pgid, p.sid, p.umask = d["pgid"], d["sid"], d["umask"]
        p.exe, p.comm = d["exe"].encode("latin-1"), d["comm"].encode("latin-1")
        p.exit_status, p.utime_insns, p.syscalls = d["exit_status"], d["utime_insns"], d["syscalls"]
        p.cutime_insns, p.start_ns = d.get("cutime_insns", 0), d.get("start_ns", 0)
        procs[p.pid] = p
        if d["state"] == ZOMBIE:
            p.state = ZOMBIE
            continue
        p.fs = fss.setdefault(d.get("fs", p.pid), p.fs)
        p.cwd = DEV_DIR if d["cwd"] == "dev" else d["cwd"]
        p.sigactions = sighands.setdefault(d.get("sighand", p.pid),
                                           {int(s): SigAction(*a) for s, a in d["sigactions"].items()})
        p.sigmask, p.sigpending, p.clear_child_tid = d["sigmask"], d["sigpending"], d["clear_child_tid"]
        p.siginfo = {int(s): [SigInfo(*r) for r in q] for s, q in d.get("siginfo", {}).items()}
        bits, infos = d.get("shared_pending", (0, {}))
        p.shared = shareds.setdefault(d.get("sigshared", p.pid), SharedPending(
            bits, {int(s): [SigInfo(*r) for r in q] for s, q in infos.items()}))
        p.saved_sigmask = d.get("saved_sigmask")
        p.rlimits = {int(r): (v[0], v[1]) for r, v in d["rlimits"].items()}
        p.pdeath_signal = d.get("pdeath_signal", 0)
        p.altstack, p.affinity = tuple(d.get("altstack", (0, 0, 0))), d.get("affinity", 0)  # type: ignore[assignment]
        left, interval = d.get("itimer_real", (0, 0))
        if left:
            from guestkernel.syscalls.signal import arm_itimer

            arm_itimer(k, p, left, interval)
        owner = d["fdtable"]
        if owner in tables:
            p.fds = tables[owner]
        else:
            tables[owner] = p.fds
            for fd, fi in d["fds"].items():
                f = files[fi]
                f.refs += 1
                p.fds.install(f, int(fd), cloexec=int(fd) in d["cloexec"])
        md = d["mm"]
        mm = mms.get(md["asid"])
        if mm is None:
            mm = mms[md["asid"]] = _restore_mm(k, md, unpack_pages(d["pages"]), page_at, by_scm, tracker,
                                               in_place, counts, objs)
        p.mm = mm
        regs = d["regs"]
        if isinstance(regs, bytes):  # the running process's, as the CPU gave them
            regs = _decode(regs)
        resume = d["resume"]
        if resume["kind"] == "syscall":
            regs = dict(regs, rax=resume["nr"])
            if "left" in resume:
                regs = _time_left(p, regs, resume["nr"], resume["left"])
        p.ctx = context_from(k, regs)
        p.sigframes = [(context_from(k, r), mask) for r, mask in d["sigframes"]]
        if resume["kind"] == "write_rest":
            f = p.fds.get(regs["rdi"] & 0xFFFFFFFF)
            buf, count, done = regs["rsi"], regs["rdx"], resume["done"]
            p.pending_call = (lambda p=p, f=f, buf=buf, count=count, done=done:
                              resume_write(k, p, f, buf, count, done))
            p.pending_nr, p.pending_done = NR_WRITE, done  # (a signal then returns the short count)
        elif resume["kind"] == "sleep":
            until, rem = k.clock.uptime_ns() + resume["left"], resume["rem"]
            p.pending_call = lambda p=p, until=until, rem=rem: sleep_until(k, p, until, rem)
            p.pending_nr = resume["nr"]
        elif resume["kind"] == "futex":
            parked = futex_table(k).rewait(k, p, resume["wait"])
            p.pending_call, p.pending_nr = parked[0], NR_FUTEX
        elif resume["kind"] == "transfer_rest":
            nr, done = resume["nr"], resume["done"]
            p.pending_call = lambda p=p, nr=nr, regs=regs, done=done: resume_transfer(k, p, nr, regs, done)
            p.pending_nr, p.pending_done = nr, done
        elif resume["kind"] == "return":
            p.pending_call = lambda value=resume["value"]: value
            p.pending_nr = 0
            p.vfork_parent_blocked = True
        p.state = RUNNABLE
        if resume["kind"] == "futex" and parked[1] is not None:  # (waiting: a wake finds it so)
            k.park(p, parked[0], NR_FUTEX, parked[1])
    for d in meta["procs"]:
        if d.get("leader") is not None:  # a thread: of its group, nobody's child to wait for
            procs[d["pid"]].leader = procs[d["leader"]]
    for p in procs.values():
        parent = procs.get(p.ppid)
        if parent is not None and p.leader is None:
            parent.children.append(p)
    k.procs = dict(sorted(procs.items()))
    k.next_pid = max(procs, default=0) + 1
    futex_table(k).reorder()  # (the restored waits, each back in its place in its queue)
    restore_locks(k, meta.get("locks", []), files, pipes)
    for f, fd in zip(files, meta["files"]):  # (once every file and process is back)
        BY_KIND[fd["kind"]].relink(f, fd, rx)
    return counts


def _time_left(p: Process, regs: dict[str, Any], nr: int, left: int) -> dict[str, Any]:
    """A timed wait run again after a restart gets the time it had left: written into its
    timeval or timespec (what select would leave there on return anyway), or into the register
    that holds poll's or epoll_wait's milliseconds (rounded up)."""
    reg, form = TIMEOUTS[nr]
    if form == "ms":
        return dict(regs, **{reg: -(-left // 1_000_000)})
    unit = 1000 if form == "timeval" else 1
    p.mm.copy_out(regs[reg], struct.pack("<qq", left // 10**9, left % 10**9 // unit))
    return regs


def _restore_objects(k: "Kernel", shmem: list[list[Any]], page_at: Callable[[int], memoryview], tracker: PageTracker,
                     counts: dict[str, int]) -> list[ShmBacking]:
    """The shared memory objects of an image (System V segments back in the registry, shared
    anonymous objects), each with all its pages (a backing for each, its VMAs share it), in the
    order the VMAs number them."""
    from guestkernel.syscalls.ipc import registry

    tracker.shmem = {}  # (the next image stores the objects' pages again)
    if not shmem:
        return []
    reg = registry(k)
    frames = k.frames
    out = []
    for npages, packed, *more in shmem:
        fields = more[0] if more else {}
        obj: ShmObject
        if "index" in fields:  # a System V segment, at its index with its id and shmid_ds
            obj = reg.segments[fields["index"]] = Segment(pfns=[-1] * npages, **fields)
        else:
            obj = reg.new_anon(npages * PAGE)
            obj.serial = fields.get("serial", obj.serial)
            reg.serials = max(reg.serials, obj.serial)
        for offset, pg, _crc in unpack_pages(packed):
            pfn = frames.alloc(zero=False, gfp=Gfp.USER)
            frames.page(pfn)[:] = page_at(pg)
            frames.kernel_access(pfn << 12, PAGE, True)
            counts["pages_copied"] += 1
            obj.pfns[offset // PAGE] = pfn
        out.append(ShmBacking(reg, obj))
    return out


def _restore_mm(k: "Kernel", md: dict[str, Any], pages: list[tuple[int, int, int]], page_at: Callable[[int], memoryview],
                by_scm: dict[int, int], tracker: PageTracker, in_place: "list[int] | None",
                counts: dict[str, int], objs: list[ShmBacking]) -> MM:
    mm = k.new_mm()
    mm.brk_start, mm.brk = md["brk_start"], md["brk"]
    mm.arg_start, mm.arg_end, mm.env_start, mm.env_end, mm.start_stack = md.get("layout", [0] * 5)
    for start, end, prot, shared, ino, offset, name, obj in md["vmas"]:
        backing = k.file_backing(ino) if ino is not None else objs[obj] if obj is not None else None
        v = VMA(start, end, prot, shared, backing, offset, name)
        mm.vmas.append(v)
        if v.file and prot & 4:
            k.watch_sites(v)
    mm._reindex()
    ffi = k.cpu.ffi
    space = ffi.new("struct ckpt_page[]", max(len(pages), 1))
    frames = k.frames
    for i, (gva, pg, crc) in enumerate(pages):
        v = mm.find(gva)
        assert v is not None, f"image page {gva:#x} outside every mapping"
        executable = bool(v.prot & 4)
        if isinstance(v.backing, ShmBacking):  # the object's page (restored with it)
            pfn = v.backing.obj.pfns[(v.offset + gva - v.start) // PAGE]
            assert pfn >= 0, f"image page {gva:#x} not in its object"
            if executable:
                frames.code[pfn] = 1
            mm.aspace.map(gva, pfn, writable=bool(v.prot & 2), executable=executable)
        elif in_place is not None and not v.shared:
            pfn = in_place[pg]  # the image page itself, on the storage window (read-only)
            map_image_page(k, mm, gva, pfn, pg, crc, tracker, executable)
            counts["pages_mapped"] += 1
        else:
            pfn = by_scm.get(pg) if v.shared else None
            if pfn is None:
                counts["pages_copied"] += 1
                pfn = frames.alloc(zero=False, gfp=Gfp.USER)
                frames.page(pfn)[:] = page_at(pg)
                frames.kernel_access(pfn << 12, PAGE, True)
                by_scm.setdefault(pg, pfn)
            else:
                frames.get(pfn)
            # Mapped writable only if nobody else has this frame: a write will copy it otherwise.
            writable = bool(v.prot & 2) and (v.shared or frames.refs[pfn] == 1)
            if executable:
                frames.code[pfn] = 1
            mm.aspace.map(gva, pfn, writable=writable, executable=executable)
        rec = space[i]
        rec.gva, rec.pfn, rec.gen, rec.pg, rec.crc = gva, pfn, frames.gen[pfn] if frames.is_ram(pfn) else 0, pg, crc
    tracker.spaces[mm.asid] = (space, len(pages))
    return mm


def map_image_page(k: "Kernel", mm: MM, gva: int, gpfn: int, pg: int, crc: int, tracker: PageTracker,
                   executable: bool) -> None:
    """Map image page `pg` (window page gpfn of the image file) at gva in place, read-only: a
    write copies it (mm.fault: to a fresh page of the file, checkpoint/live.py, or into RAM).
    A restart maps an image's private pages so; so does a checkpoint the pages it copied, when
    private pages live in the file."""
    assert k.dax is not None
    tracker.note_mapped(gpfn, pg, crc, k.dax.window_gpfn, k.dax.window_pages)
    if executable:
        k.frames.code[gpfn] = 1
    mm.aspace.map(gva, gpfn, writable=False, executable=executable)


__all__ = ["PageTracker", "Unsupported", "capture", "restore"]
