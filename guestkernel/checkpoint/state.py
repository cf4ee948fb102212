"""The process group as a checkpoint sees it: every process's registers, memory map and pages,
open file descriptions (shared across fork and dup), pipes with their buffered bytes, cwd, brk,
executable, signal state and the syscall each one must re-execute on resume.

`capture` turns the live kernel into JSON-able metadata plus the pages to store; `restore` builds
the processes back in a freshly booted kernel. Pages are stored only when they are the process's
own (anonymous or copied-on-write): pages shared from the page cache are the file's content and
come back by demand paging, since the file system on storage matches the checkpoint.

Registers: the general registers, rip, rflags, fs/gs base, SSE (xmm0-15, mxcsr) and x87 (control,
status and tag words, st0-7 with all 80 bits, read raw: the Python binding's typed read drops the
exponent). Unicorn's TCG has no AVX, so there is no wider vector state.
"""
from __future__ import annotations

import ctypes
from array import array
from typing import TYPE_CHECKING, Any, Callable

from unicorn import x86_const as X

from guestkernel.checkpoint.store import pack_pages, unpack_pages
from guestkernel.gfp import Gfp
from guestkernel.mm import MM, PAGE, TASK_SIZE, VMA
from guestkernel.process import RUNNABLE, ZOMBIE, FDTable, Process, SigAction
from guestkernel.vfs import DEV_DIR, ConsoleFile, DevDirFile, DevFile, InodeFile, OpenFile, Pipe, PipeEnd

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel

REG_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
             "r12", "r13", "r14", "r15", "rip", "rflags", "fs_base", "gs_base", "mxcsr", "fpcw",
             "fpsw", "fptag") + tuple(f"xmm{i}" for i in range(16))
REG_IDS = tuple(getattr(X, "UC_X86_REG_" + n.upper()) for n in REG_NAMES)
ST_IDS = tuple(getattr(X, f"UC_X86_REG_ST{i}") for i in range(8))
SYSCALL_INSN = 2  # `syscall` is 0f 05
NR_WRITE = 1


class Unsupported(Exception):
    """The group holds something a checkpoint cannot describe (the checkpoint is skipped)."""


# ----------------------------------------------------------------------------------------------
# registers


ALL_IDS = REG_IDS + ST_IDS
_WIDTH = {"mxcsr": 4, "fpcw": 2, "fpsw": 2, "fptag": 2}


def _decode(raw: bytes) -> dict[str, Any]:
    """Registers by name: ints, xmm as their 16 bytes (the metadata's msgpack has no 128-bit
    integers), st0-7 as the hex of their 10 bytes."""
    regs: dict[str, Any] = {}
    for i, name in enumerate(REG_NAMES):
        if name.startswith("xmm"):
            regs[name] = raw[16 * i : 16 * i + 16]
        else:
            regs[name] = int.from_bytes(raw[16 * i : 16 * i + _WIDTH.get(name, 8)], "little")
    base = 16 * len(REG_NAMES)
    for i in range(8):
        regs[f"st{i}"] = raw[base + 16 * i : base + 16 * i + 10].hex()
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
        # Image pages a restart mapped back in place (images in a file on the storage window):
        # per window page from img_base, the image page it is and its crc (CKPT_NEW: none).
        # Kept across reset(): they are the image's as long as a process maps them.
        self.img_base = 0
        self.img_pg: array | None = None
        self.img_crc: array | None = None

    def note_mapped(self, gpfn: int, pg: int, crc: int, base: int, n: int) -> None:
        """A restart mapped image page `pg` (window page gpfn) into a process."""
        if self.img_pg is None:
            self.img_base = base
            self.img_pg, self.img_crc = array("I", [CKPT_NEW]) * n, array("I", bytes(4 * n))
        assert self.img_crc is not None
        self.img_pg[gpfn - self.img_base] = pg
        self.img_crc[gpfn - self.img_base] = crc

    def reset(self) -> None:
        """Forget everything (after an abandoned checkpoint): the next one copies all pages."""
        self.spaces.clear()
        self.pipes.clear()

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


def capture(k: "Kernel", tracker: PageTracker, store_page: Callable[[memoryview], tuple[int, int]],
            cur_nr: int) -> tuple[dict[str, Any], dict[str, int], set[int]]:
    """Metadata of the whole group, stats {pages_scanned, pages_copied} and the SCM pages the
    metadata lists. `store_page` writes a page to SCM and returns (page, crc). The current
    process is inside syscall `cur_nr`."""
    cpu = k.cpu
    cur = k.current
    files: list[dict[str, Any]] = []
    file_ids: dict[int, int] = {}
    pipes: list[dict[str, Any]] = []
    pipe_ids: dict[int, int] = {}

    new_pipes: dict[int, dict[int, tuple[int, int]]] = {}
    captured_pipes: list[Pipe] = []

    def pipe_id(pipe: Pipe) -> int:
        """A pipe: its ring position and the ring pages, copied when written since the last
        checkpoint (the pipe marks them) and shared with the previous image otherwise."""
        i = pipe_ids.get(pipe.serial)
        if i is None:
            prev = tracker.pipes.get(pipe.serial, {})
            ring = {}
            for idx in range(Pipe.PAGES):
                got = prev.get(idx)
                if got is None or idx in pipe.dirty:
                    got = store_page(k.frames.page(pipe.pfn + idx))
                    stats["pages_copied"] += 1
                ring[idx] = got
                referenced.add(got[0])
            new_pipes[pipe.serial] = ring
            captured_pipes.append(pipe)
            i = pipe_ids[pipe.serial] = len(pipes)
            pipes.append({"head": pipe.head, "count": pipe.count,
                          "ring": pack_pages([(idx, pg, crc) for idx, (pg, crc) in sorted(ring.items())])})
        return i

    def file_id(f: OpenFile) -> int:
        i = file_ids.get(id(f))
        if i is not None:
            return i
        d: dict[str, Any] = {"flags": f.flags, "offset": f.offset}
        if isinstance(f, InodeFile):
            d.update(kind="inode", ino=f.ino, path=f.path.decode("latin-1"))
        elif isinstance(f, PipeEnd):
            d.update(kind="pipe", pipe=pipe_id(f.pipe), write=f.write_end)
        elif isinstance(f, ConsoleFile):
            d.update(kind="console", stream=f.stream)
        elif isinstance(f, DevFile):
            d.update(kind="dev", name=f.node.name)
        elif isinstance(f, DevDirFile):
            d.update(kind="devdir")
        else:
            raise Unsupported(f"open file of kind {f.kind}")
        i = file_ids[id(f)] = len(files)
        files.append(d)
        return i

    # What a checkpoint cannot describe is refused before anything is written or cleared.
    if len(k.fs.mounts) > 1 or any(d.file is not None for d in k.vfs.loops.devices.values()):
        # A mount's page cache and a loop device's binding are not in the image (a restart
        # mounts the root alone): no checkpoint until they are gone.
        raise Unsupported("a mounted loop device or a bound loop device")
    if any(a.used for a in k.swap.areas):
        # Pages living on storage lent as memory are above the RAM the scan covers (ram_top):
        # not in an image yet (guestkernel/swap.py).
        raise Unsupported("pages living on storage lent as memory (swapon)")
    for p in k.procs.values():
        # A vfork child that has not exec'd yet shares its parent's memory and the parent waits
        # inside vfork: no consistent picture. Once the child exec'd or exited, the parent's
        # vfork only has to return the child's pid.
        if p.state != ZOMBIE and (p.vfork_waitq is not None
                                  or (p.vfork_parent_blocked and p.state != RUNNABLE)):
            raise Unsupported("a vfork in progress")
        if p.state != ZOMBIE and p is not cur and p.ctx is None:
            raise Unsupported(f"process {p.pid} has no saved context")
        if p.state != ZOMBIE and p.mm is not None and any(v.device for v in p.mm.vmas):
            raise Unsupported("a device (pmem) or System V shared memory mapping")
        if p.state != ZOMBIE and p.mm is not None and any(v.shared and hasattr(v.backing, "page_dirtied")
                                                          for v in p.mm.vmas):
            # its writes go to the page cache at any instruction, not at syscalls
            raise Unsupported("a shared writable file mapping")
    stats = {"pages_scanned": 0, "pages_copied": 0}
    referenced: set[int] = set()  # every SCM page the metadata lists

    # Pass 1: leaves of every address space; frames written through any mapping.
    ffi, lib = cpu.ffi, cpu.lib
    # Frames from ram_top on are device pages (pmem, the DAX storage window): never the
    # process's own, except image pages a restart mapped back (native/ckptscan.c).
    npfn = k.frames.ram_top
    dirty = tracker.dirty_mask(ffi, npfn)
    leaves: dict[int, tuple[Any, int]] = {}
    spaces: dict[int, MM] = {}
    scanned = 0
    for p in k.procs.values():
        if p.state == ZOMBIE or p.mm is None or p.mm.asid in leaves:
            continue
        mm = p.mm
        rows, n = cpu.pt_leaf_rows(mm.aspace.cr3, 0, TASK_SIZE)
        lib.emu_ckpt_mark_dirty(rows, n, dirty, npfn, 1)
        scanned += n
        leaves[mm.asid] = (rows, n)
        spaces[mm.asid] = mm

    # Pass 2 (native/ckptscan.c): pages per address space, shared with the previous image when
    # unchanged, stored when changed (once per frame per checkpoint); dirty bits cleared.
    skip = ffi.from_buffer("uint8_t[]", k.pagecache.frame_mask)
    img = ((ffi.from_buffer("uint32_t[]", tracker.img_pg), ffi.from_buffer("uint32_t[]", tracker.img_crc),
            tracker.img_base, len(tracker.img_pg)) if tracker.img_pg is not None and tracker.img_crc is not None
           else (ffi.NULL, ffi.NULL, 0, 0))
    gen = ffi.from_buffer("uint32_t[]", k.frames.gen)
    log = ffi.from_buffer("uint8_t[]", k.frames.memory.ept.log)
    nfresh, ncleared = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    fresh: dict[int, tuple[int, int]] = {}
    new_spaces: dict[int, tuple[Any, int]] = {}
    pages_of: dict[int, bytes] = {}
    copied = cleared = 0
    try:
        for asid, (rows, n) in leaves.items():
            prev, m = tracker.spaces.get(asid, (ffi.NULL, 0))
            out = ffi.new("struct ckpt_page[]", max(n, 1))
            todo = ffi.new("uint32_t[]", max(n, 1))
            nout = lib.emu_ckpt_diff(cpu.st, rows, n, prev, m, skip, dirty, gen, npfn, log, out, todo, nfresh, ncleared,
                                     *img)
            cleared += ncleared[0]
            for i in ffi.unpack(todo, nfresh[0]):
                rec = out[i]
                got = fresh.get(rec.pfn)
                if got is None:
                    got = fresh[rec.pfn] = store_page(k.frames.page(rec.pfn))
                    copied += 1
                rec.pg, rec.crc = got
            packed = ffi.new("uint8_t[]", 16 * nout)
            lib.emu_ckpt_pack(out, nout, packed)
            raw = ffi.buffer(packed)[:]
            referenced.update(memoryview(raw).cast("I")[2::4])  # the page of each 16-byte record
            pages_of[asid] = raw
            new_spaces[asid] = (out, nout)
    finally:  # also when a page cannot be stored (SCM full): the checkpoint fails, not the next
        for rows, n in leaves.values():
            lib.emu_ckpt_mark_dirty(rows, n, dirty, npfn, 0)  # the mask is all zeros between passes
        if cleared:
            cpu.tlb_flush()  # the next write to a clean page must fault to set its dirty bit again
    tracker.spaces = new_spaces

    procs = []
    for p in sorted(k.procs.values(), key=lambda q: q.pid):
        d: dict[str, Any] = {
            "pid": p.pid, "ppid": p.ppid, "pgid": p.pgid, "sid": p.sid, "umask": p.umask,
            "exe": p.exe.decode("latin-1"), "comm": p.comm.decode("latin-1"), "state": p.state,
            "exit_status": p.exit_status, "utime_insns": p.utime_insns, "syscalls": p.syscalls,
            "cutime_insns": p.cutime_insns, "start_ns": p.start_ns,
        }
        procs.append(d)
        if p.state == ZOMBIE:
            continue
        if p is cur:
            regs = read_regs(k)
            resume: dict[str, Any] = {"kind": "syscall", "nr": cur_nr}   # rip is on the syscall
        else:
            regs = tracker.regs_of(k, p)
            if p.pending_call is not None:
                done = getattr(p, "pending_done", 0)
                if done and p.pending_nr == NR_WRITE:
                    resume = {"kind": "write_rest", "done": done}    # rip after the syscall
                elif p.vfork_parent_blocked:  # a released vfork: returns the child's pid
                    resume = {"kind": "return", "value": p.pending_call()}
                else:
                    regs["rip"] -= SYSCALL_INSN
                    resume = {"kind": "syscall", "nr": p.pending_nr}
            else:
                resume = {"kind": "user"}
        mm = p.mm
        d.update(
            regs=regs, resume=resume, cwd=p.cwd if p.cwd != DEV_DIR else "dev",
            sigactions={str(s): [a.handler, a.flags, a.restorer, a.mask] for s, a in p.sigactions.items()},
            sigmask=p.sigmask, saved_sigmask=p.saved_sigmask, sigpending=p.sigpending, clear_child_tid=p.clear_child_tid,
            rlimits={str(r): list(v) for r, v in p.rlimits.items()}, pdeath_signal=p.pdeath_signal,
            itimer_real=[max(0, p.itimer_real[0] - k.clock.uptime_ns()) if p.itimer_real[0] else 0, p.itimer_real[1]],
            sigframes=[[regs_of(k, ctx, {}), mask] for ctx, mask in p.sigframes],
            fds={str(fd): file_id(f) for fd, f in sorted(p.fds.fds.items())},
            cloexec=sorted(p.fds.cloexec), fdtable=id(p.fds), sighand=id(p.sigactions),
            leader=p.leader.pid if p.leader is not None else None,
            mm={"asid": id(mm), "brk_start": mm.brk_start, "brk": mm.brk,
                "layout": [mm.arg_start, mm.arg_end, mm.env_start, mm.env_end, mm.start_stack],
                "vmas": [[v.start, v.end, v.prot, v.shared, getattr(v.backing, "ino", None), v.offset, v.name]
                         for v in mm.vmas]},
            pages=pages_of[mm.asid],
        )
    # Which processes share a descriptor table, an mm (vfork, threads) or signal actions
    # (threads) is named by the first holder.
    first: dict[int, int] = {}
    first_mm: dict[int, int] = {}
    first_sighand: dict[int, int] = {}
    for d in procs:
        if "fdtable" in d:
            d["fdtable"] = first.setdefault(d["fdtable"], d["pid"])
            d["mm"]["asid"] = first_mm.setdefault(d["mm"]["asid"], d["pid"])  # named by its first holder
            d["sighand"] = first_sighand.setdefault(d["sighand"], d["pid"])
    tracker.pipes = new_pipes
    for pipe in captured_pipes:
        pipe.dirty.clear()
    meta = {"procs": procs, "files": files, "pipes": pipes}
    stats["pages_scanned"] = scanned
    stats["pages_copied"] += copied
    return meta, stats, referenced


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
    from guestkernel.syscalls.rw import resume_write

    vfs = k.vfs
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
    files: list[OpenFile] = []
    for fd in meta["files"]:
        kind = fd["kind"]
        if kind == "inode":
            f: OpenFile = InodeFile(vfs, fd["ino"], fd["flags"], fd["path"].encode("latin-1"))
        elif kind == "pipe":
            f = PipeEnd(pipes[fd["pipe"]], fd["write"], fd["flags"])
        elif kind == "console":
            f = ConsoleFile(vfs, fd["stream"], fd["flags"])
        elif kind == "dev":
            f = DevFile(vfs, vfs.devices[fd["name"]], fd["flags"])
        else:
            f = DevDirFile(vfs, fd["flags"])
        f.flags, f.offset, f.refs = fd["flags"], fd["offset"], 0
        files.append(f)

    mms: dict[int, MM] = {}
    tables: dict[int, FDTable] = {}
    sighands: dict[int, dict] = {}  # threads share their group's signal actions
    by_scm: dict[int, int] = {}  # SCM page -> frame already holding it (shared after fork)
    procs: dict[int, Process] = {}
    for d in meta["procs"]:
        p = Process(pid=d["pid"], ppid=d["ppid"], mm=None, fds=FDTable(k.slab), cwd=k.fs.root_ino)  # type: ignore[arg-type]
        p.pgid, p.sid, p.umask = d["pgid"], d["sid"], d["umask"]
        p.exe, p.comm = d["exe"].encode("latin-1"), d["comm"].encode("latin-1")
        p.exit_status, p.utime_insns, p.syscalls = d["exit_status"], d["utime_insns"], d["syscalls"]
        p.cutime_insns, p.start_ns = d.get("cutime_insns", 0), d.get("start_ns", 0)
        procs[p.pid] = p
        if d["state"] == ZOMBIE:
            p.state = ZOMBIE
            continue
        p.cwd = DEV_DIR if d["cwd"] == "dev" else d["cwd"]
        p.sigactions = sighands.setdefault(d.get("sighand", p.pid),
                                           {int(s): SigAction(*a) for s, a in d["sigactions"].items()})
        p.sigmask, p.sigpending, p.clear_child_tid = d["sigmask"], d["sigpending"], d["clear_child_tid"]
        p.saved_sigmask = d.get("saved_sigmask")
        p.rlimits = {int(r): (v[0], v[1]) for r, v in d["rlimits"].items()}
        p.pdeath_signal = d.get("pdeath_signal", 0)
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
                                               in_place, counts)
        p.mm = mm
        regs = d["regs"]
        resume = d["resume"]
        if resume["kind"] == "syscall":
            regs = dict(regs, rax=resume["nr"])
        p.ctx = context_from(k, regs)
        p.sigframes = [(context_from(k, r), mask) for r, mask in d["sigframes"]]
        if resume["kind"] == "write_rest":
            f = p.fds.get(regs["rdi"] & 0xFFFFFFFF)
            buf, count, done = regs["rsi"], regs["rdx"], resume["done"]
            p.pending_call = (lambda p=p, f=f, buf=buf, count=count, done=done:
                              resume_write(k, p, f, buf, count, done))
            p.pending_nr = NR_WRITE
        elif resume["kind"] == "return":
            p.pending_call = lambda value=resume["value"]: value
            p.pending_nr = 0
            p.vfork_parent_blocked = True
        p.state = RUNNABLE
    for d in meta["procs"]:
        if d.get("leader") is not None:  # a thread: of its group, nobody's child to wait for
            procs[d["pid"]].leader = procs[d["leader"]]
    for p in procs.values():
        parent = procs.get(p.ppid)
        if parent is not None and p.leader is None:
            parent.children.append(p)
    k.procs = dict(sorted(procs.items()))
    k.next_pid = max(procs, default=0) + 1
    return counts


def _restore_mm(k: "Kernel", md: dict[str, Any], pages: list[tuple[int, int, int]], page_at: Callable[[int], memoryview],
                by_scm: dict[int, int], tracker: PageTracker, in_place: "list[int] | None",
                counts: dict[str, int]) -> MM:
    mm = k.new_mm()
    mm.brk_start, mm.brk = md["brk_start"], md["brk"]
    mm.arg_start, mm.arg_end, mm.env_start, mm.env_end, mm.start_stack = md.get("layout", [0] * 5)
    for start, end, prot, shared, ino, offset, name in md["vmas"]:
        backing = k.file_backing(ino) if ino is not None else None
        v = VMA(start, end, prot, shared, backing, offset, name)
        mm.vmas.append(v)
        if backing is not None and prot & 4:
            k.watch_sites(v)
    mm._reindex()
    ffi = k.cpu.ffi
    space = ffi.new("struct ckpt_page[]", max(len(pages), 1))
    frames = k.frames
    for i, (gva, pg, crc) in enumerate(pages):
        v = mm.find(gva)
        assert v is not None, f"image page {gva:#x} outside every mapping"
        executable = bool(v.prot & 4)
        if in_place is not None and not v.shared:
            pfn = in_place[pg]  # the image page itself, on the storage window: read-only, a
            tracker.note_mapped(pfn, pg, crc, k.dax.window_gpfn, k.dax.window_pages)  # write copies it
            writable, gen = False, 0
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
            writable, gen = bool(v.prot & 2) and (v.shared or frames.refs[pfn] == 1), frames.gen[pfn]
        if executable:
            frames.code[pfn] = 1
        mm.aspace.map(gva, pfn, writable=writable, executable=executable)
        rec = space[i]
        rec.gva, rec.pfn, rec.gen, rec.pg, rec.crc = gva, pfn, gen, pg, crc
    tracker.spaces[mm.asid] = (space, len(pages))
    return mm


__all__ = ["PageTracker", "Unsupported", "capture", "restore"]
