"""The default guest kernel: processes, memory, files and signals over the machine's hardware.

It implements the kernel interface (`guestkernel/interface.py`): the machine calls `boot`, then
loops `resume` (pick a process and load it on the CPU) -> CPU runs -> `stop` (what made the CPU
stop), while the CPU's syscall hook calls `syscall`. Everything a process owns lives in guest
frames from the buddy allocator; the ext2 root file system is read and written through the page
cache, which is written back on sync, periodically in virtual time and at shutdown.
"""
from __future__ import annotations

import dataclasses
import heapq
import stat as S
import struct
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from hw.clock import FAULT_NS, SYSCALL_NS
from guestkernel import elf
from guestkernel.buddy import OutOfMemory
from guestkernel.errors import (EACCES, ENOENT, ENOEXEC, ENOMEM, ENOSYS, EINTR, ELOOP, Block,
                                SyscallError)
from guestkernel.ext2 import Ext2, FsError, probe_block_size
from guestkernel.balloon import BalloonDriver
from guestkernel.frames import Frames
from guestkernel.gfp import Gfp
from guestkernel.ids import IdSource
from guestkernel.interface import KernelConfig, KernelPanic
from guestkernel.locks import Locks
from guestkernel.mm import MM, PAGE, VMA, page_up
from guestkernel.fragment import Fragmenter
from guestkernel.mounts import INO_MASK, ROOT_DEVICE, ROOT_RDEV, Mount, MountTable
from guestkernel.dax import DaxStats, DaxStore, open_dax
from guestkernel.pagecache import PageCache
from guestkernel.vfs.pseudo import PseudoNode
from guestkernel.pseudofs import procmem
from guestkernel.pseudofs.procfs import ProcFS
from guestkernel.pseudofs.sysfs import SysFS
from guestkernel.reclaim import Reclaim, oom_victim
from guestkernel.slab import SlabAllocator
from guestkernel.swap import SwapAreas
from guestkernel.zones import MIGRATE_NAMES
from guestkernel.siginfo import (BUS_ADRERR, FPE_INTDIV, ILL_ILLOPN, SEGV_ACCERR, SEGV_MAPERR, SI_KERNEL, SI_USER,
                                 USER_HZ, SigInfo, child_info, pending, queue, take_lowest)
from guestkernel.process import BLOCKED, RUNNABLE, SS_AUTODISARM, STACK_T, ZOMBIE, FDTable, FsContext, Process, SigAction
from guestkernel.syscalls import NAMES, NUMBERS, load_all
from guestkernel.vfs import (VFS, ConsoleFile, DevNode, InodeFile, O_RDONLY, O_WRONLY, OpenFile, PipeEnd, PmemRegion,
                             WaitQueue)
from hw.cpu import STOP_DEADLINE, STOP_EXCEPTION, STOP_FAULT, STOP_INVALID, Stop

if TYPE_CHECKING:
    from hw.sites import Site
    from hw.stats import StatsRegistry
    from guestkernel.checkpoint import Checkpointer
    from guestkernel.interface import MachineView

NO_RETURN = object()  # a handler that replaced the registers (execve, exit, sigreturn)

SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL = 1, 2, 3, 4, 5, 6, 7, 8, 9
SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM = 10, 11, 12, 13, 14, 15
SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ = 17, 18, 19, 20, 21, 22, 23, 24, 25
SIGWINCH, SIGSYS = 28, 31
SIG_DFL, SIG_IGN = 0, 1
SA_SIGINFO, SA_RESTORER, SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND = 4, 0x04000000, 0x08000000, 0x10000000, 0x40000000, 0x80000000
DEFAULT_IGNORE = {SIGCHLD, SIGCONT, SIGURG, SIGWINCH}
DEFAULT_STOP = {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU}
DEFAULT_CORE = {SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU, SIGXFSZ, SIGSYS}
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))
EXCEPTION_SIGNAL = {0: SIGFPE, 1: SIGTRAP, 3: SIGTRAP, 4: SIGSEGV, 5: SIGSEGV, 6: SIGILL, 13: SIGSEGV, 14: SIGSEGV, 16: SIGFPE, 17: SIGBUS, 19: SIGFPE}
# (si_code, whether si_addr is the instruction) per exception, as Linux's traps.c: the rest SI_KERNEL
EXCEPTION_CODE = {0: (FPE_INTDIV, True), 6: (ILL_ILLOPN, True)}

DEFAULT_ENV = [b"PATH=/bin:/usr/bin:/sbin", b"HOME=/root", b"TERM=dumb", b"LANG=C", b"PWD=/"]
UNAME = dict(sysname=b"Linux", nodename=b"emu", release=b"6.1.0-emu", version=b"#1 SMP emu", machine=b"x86_64", domainname=b"(none)")


class InodeBacking:
    """What a file mapping reads pages from: an inode of the root file system. Whole pages of
    a 4 KiB-block file are mapped straight from the page cache (shared until written, as Linux
    does), so every process running a binary shares its code frames."""

    def __init__(self, fs: Ext2, cache: PageCache, ino: int,
                 on_unmapped: Callable[[int], None] | None = None) -> None:
        self.fs = fs
        self.cache = cache
        self.ino = ino
        self.on_unmapped = on_unmapped  # a mapping keeps an unlinked file alive, as an open fd

    def vma_closed(self) -> None:
        if self.on_unmapped is not None:
            self.on_unmapped(self.ino)

    def read_at(self, offset: int, n: int) -> bytes:
        return self.fs.read(self.ino, offset, n)

    def beyond_eof(self, offset: int) -> bool:
        """Is the page at offset wholly past the end of the file (an access is SIGBUS)?"""
        return offset >= self.fs.stat(self.ino).size

    def page_frame(self, offset: int) -> int | None:
        if self.cache.block_size != PAGE or offset % PAGE or offset + PAGE > self.fs.stat(self.ino).size:
            return None
        blockno = self.fs.bmap(self.ino, offset // PAGE)
        return self.cache.pin(blockno) if blockno else None

    @property
    def dax(self) -> bool:
        """Is the file on DAX storage (a mapping maps the window's pages, not reference-counted)?"""
        return isinstance(self.cache, DaxStore)

    @property
    def shareable(self) -> bool:
        """Can a shared writable mapping map the file's pages (whole pages: 4 KiB blocks)?"""
        return self.cache.block_size == PAGE

    def shared_frame(self, offset: int) -> int | None:
        """The page a shared mapping maps at `offset`: the page-cache frame (with a reference for
        the mapping) or, on DAX storage, the window's page; a hole gets its block. None past the
        end of the file (SIGBUS)."""
        if offset >= self.fs.stat(self.ino).size:
            return None
        return self.cache.pin(self.fs.map_block(self.ino, offset // PAGE))

    def page_dirtied(self, offset: int, gpfn: int) -> None:
        """A shared mapping's write fault made the page at `offset` writable: its block is dirty
        (written back by sync, msync, fsync; the pages are then write-protected again)."""
        if self.dax:
            self.cache.page_dirtied(gpfn, self.ino)  # type: ignore[attr-defined]
        else:
            self.cache.mark_dirty(self.fs.bmap(self.ino, offset // PAGE), self.ino & INO_MASK)  # (the mount's inode)


class Kernel:
    name = "emu-default"

    def __init__(self, config: KernelConfig | None = None) -> None:
        self.config = config or KernelConfig()
        self.table = load_all()
        self.procs: dict[int, Process] = {}
        self.next_pid = 1
        self.asids = IdSource()         # address-space ids (the CPU's TLB tags)
        self.pipe_serials = IdSource()  # pipes' identities
        self.current: Process | None = None   # the process whose context is on the CPU
        self.halted = False
        self.init_status: int | None = None
        self.syscall_counts: Counter[str] = Counter()
        self.unknown_reported: set[int] = set()
        self.log: list[str] = []
        self.page_faults = 0
        self.next_writeback_ns = 0
        self._site_scan: dict[tuple[int, int, int, int], list] = {}
        self._sites_hooked: set[int] = set()
        self.rdtsc_emulated = 0
        self.uname = dict(UNAME)
        self.checkpointer: "Checkpointer | None" = None  # on with the machine's [checkpoint]
        self.dax: DaxStore | None = None        # the root's blocks on storage as memory
        self.checkpoint_file_ino = 0            # the image file's inode (checkpoint.into = file:...)
        self.file_io: Counter[str] = Counter()  # bytes read and written by file syscalls (rchar/wchar)
        self.unix_names: dict[object, object] = {}  # bound AF_UNIX names -> sockets (unixsock.py)
        self.locks = Locks()                   # flock, POSIX and OFD file locks
        self.timers: list[tuple[int, int, Callable[[], None]]] = []  # (uptime ns, seq, fire)
        self._timer_seq = 0
        if self.config.checkpoint_tcp_ns is not None:
            # A kernel configured to checkpoint has its checkpoint code loaded with it (as Linux's
            # is built in), not at its first syscall: 9 ms of imports (msgpack, zstandard) that
            # a run's time would otherwise count.
            import guestkernel.checkpoint  # noqa: F401

    # ------------------------------------------------------------------------------------------
    # boot and shutdown

    def boot(self, machine: "MachineView", argv: list[bytes], envp: list[bytes] | None = None) -> None:
        def open_images(dev: Any) -> None:
            if self.checkpointer is not None:  # images numbered above what storage and SCM saw
                self.checkpointer.fresh_boot(dev)

        self._bring_up(machine, open_images)
        self.boot_init(argv, envp)

    def restart_from_state(self, machine: "MachineView", argv: list[bytes], envp: list[bytes] | None = None,
                           start_over: bool = False) -> str:
        """Boot after a power failure: replay the newest good checkpoint image's block log,
        mount, rebuild its processes and let them re-execute their interrupted syscalls. With
        nothing ever committed (the power failed before the first checkpoint, when storage was
        still untouched) the program starts over from `argv`, and the console swallows what the
        failed run had shown. Returns what was done: "resumed", "finished" (the image says the
        group had ended), "started", or "started over" (`start_over`: the user's choice, on
        storage as it is, showing everything again). RestartRefused (from the checkpointer,
        before anything changed) when the state cannot reproduce an uninterrupted run."""
        if self.config.checkpoint_tcp_ns is None:
            raise ValueError("restart needs a kernel with checkpointing on")
        meta: dict | None = None

        def open_images(dev: Any) -> None:
            nonlocal meta
            assert self.checkpointer is not None
            meta = self.checkpointer.open_image(dev, start_over)

        self._bring_up(machine, open_images)
        ck = self.checkpointer
        assert ck is not None
        shown = machine.console.shown_before()
        if start_over:
            machine.console.resume_at({1: 0, 2: 0}, {1: 0, 2: 0})
            self.boot_init(argv, envp)
            return "started over"
        if meta is None:
            machine.console.resume_at({1: 0, 2: 0}, shown)
            self.boot_init(argv, envp)
            return "started"
        machine.console.resume_at({int(s): n for s, n in meta["console"].items()}, shown)
        ck.resume(meta)
        if meta["finished"]:
            self.halted = True
            return "finished"
        return "resumed"

    def boot_init(self, argv: list[bytes], envp: list[bytes] | None = None) -> None:
        init = self.new_process(ppid=0, mm=None, fds=FDTable(self.slab), cwd=self.fs.root_ino)
        for fd, mode in ((0, O_RDONLY), (1, O_WRONLY), (2, O_WRONLY)):
            init.fds.install(ConsoleFile(self.vfs, fd, mode), fd)
        init.pgid = init.sid = init.pid
        path = self.find_program(argv[0])
        self.exec(init, path, argv, envp if envp is not None else DEFAULT_ENV)

    @property
    def checkpoint_phase(self) -> str | None:
        """"commit" or "write-back" while a checkpoint is being taken (crash campaigns)."""
        return self.checkpointer.phase if self.checkpointer is not None else None

    def console_position(self) -> dict[str, int]:
        return {str(s): n for s, n in self.machine.console.position.items()}

    def _bring_up(self, machine: "MachineView", open_images: Callable[[Any], None] | None = None) -> None:
        """Devices, memory, the root file system and the VFS (no process yet). With
        checkpointing, `open_images(device)` looks at the images and the generation on the root
        device before the block mode's mount (a restart replays a block log first); on DAX
        storage after it, since the images may live in a file of it (imagefile.py)."""
        self.machine = machine
        self.cpu = machine.cpu
        self.clock = machine.clock
        self.memory = machine.memory
        ram = [(g.name, g.base_gpa, g.size_bytes) for g in machine.guest_map if g.kind == "ram"]
        frag = self.config.fragmenting_zone_bytes or sum(size for _n, _b, size in ram) // 4 // (1 << 20) << 20
        self.frames = Frames(machine.memory, ram, self.config.zones, frag)
        self.frames.on_code_reuse = self.cpu.flush_translations
        self.slab = SlabAllocator(self.frames)
        self.sentinel_pfn = self.frames.alloc()
        dev = getattr(machine, "balloon", None)  # a machine may have no balloon device
        self.balloon = BalloonDriver(self, dev) if dev is not None else None
        storage = next((g for g in machine.guest_map if g.kind == "storage"), None)
        dev = machine.blockdev if storage is None else None
        if self.config.checkpoint_tcp_ns is not None and storage is None:
            self._start_checkpointer(machine, open_images)
        try:
            if storage is None:
                block_size = probe_block_size(dev.read_at)
                self.pagecache = PageCache(dev, self.frames, block_size, self.config.page_cache_pages)
                self.pagecache.time_io(self.clock)
            else:  # storage as memory: ext2 on the window itself (guestkernel/dax.py)
                self.pagecache = self.dax = open_dax(self, storage)
            self.reclaim = Reclaim(self)
            self.swap = SwapAreas(self)  # storage lent as memory (swapon on storage as memory)
            rootfs = Ext2(self.pagecache, now=self.clock.now_s, log=self.log.append)
            rootfs.use_objects(self.slab.alloc, self.slab.free)
            self.slab.register_shrinker(rootfs.shrink_caches)
        except FsError as e:  # the driver refuses the image: the machine reports it in one line
            raise ValueError(e.msg or str(e)) from None
        self.fs = MountTable(Mount(0, rootfs, self.pagecache, ROOT_DEVICE, b"/", ROOT_RDEV, device=dev))
        if self.config.checkpoint_tcp_ns is not None and storage is not None:
            self._start_checkpointer(machine, open_images)
        ck = self.checkpointer
        # The persistent-memory devices of the guest map (the checkpoint window is the kernel's).
        pmem = [PmemRegion(g.name, g.base_gpa, g.size_bytes) for g in machine.guest_map if g.kind == "pmem"]
        sysfs = {"kernel/debug/extfrag/unusable_index": lambda: procmem.unusable_index_file(self),
                 "kernel/debug/extfrag/extfrag_index": lambda: procmem.extfrag_index_file(self)}
        if self.balloon is not None:
            sysfs.update(self.balloon.sysfs_files())
        sys = SysFS(sysfs, cpus=self.config.cpus)
        self.fragmenter = Fragmenter(self)  # the split-zone paper's injectors, in debugfs
        for path, (read, write) in self.fragmenter.files().items():
            sys.add(path, read, write=write)
        self.vfs = VFS(self.fs, machine.console, now=self.clock.now_s, seed=self.config.seed,
                       frames=self.frames, pmem=pmem, pseudo=[sys, ProcFS(self)],
                       disks=getattr(machine, "disks", None),  # the extra disks, /dev/vdb onwards
                       clock=self.clock)
        rootfs.is_open = self.vfs.in_use
        self.vfs.mapped = self.inode_mapped
        self.vfs.on_data_change = self.file_data_changed
        if ck is not None:
            self.pagecache.may_write_back = False
            self.vfs.on_file_read = ck.note_read
            if self.checkpoint_file_ino:
                self.vfs.kernel_files.add(self.checkpoint_file_ino)
        self.rng = self.vfs.rng
        # The FPU state a process starts with, as Linux sets it at exec (x87 control word 0x37f:
        # 64-bit precision, exceptions masked; MXCSR 0x1f80). Unicorn's reset leaves both 0.
        self.cpu.set_reg("fpcw", 0x37F)
        self.cpu.set_reg("mxcsr", 0x1F80)
        self.pristine_ctx = self.cpu.save_context()
        self.cpu.on_syscall = self.syscall
        self.next_writeback_ns = self.clock.uptime_ns() + self.config.writeback_interval_ns

    def _start_checkpointer(self, machine: "MachineView", open_images: Callable[[Any], None] | None) -> None:
        """The checkpointer on its images (the SCM range, or a file of the DAX root), then a
        look at them (`open_images`) with the root device it checks them against."""
        from guestkernel.checkpoint import Checkpointer
        from guestkernel.checkpoint.imagefile import file_medium
        from guestkernel.scm import ScmMedium

        assert self.config.checkpoint_tcp_ns is not None
        if self.config.checkpoint_file is not None:
            medium, self.checkpoint_file_ino = file_medium(self, self.config.checkpoint_file,
                                                           self.config.checkpoint_file_bytes)
        else:
            window = next(g for g in machine.guest_map if g.kind == "checkpoint")
            medium = ScmMedium.window(self, window.base_gpa, window.size_bytes)
        self.checkpointer = Checkpointer(self, self.config.checkpoint_tcp_ns, medium, self.dax)
        if open_images is not None:
            open_images(self.dax if self.dax is not None else machine.blockdev)

    def find_program(self, name: bytes) -> bytes:
        """Resolve a command name like a shell does (PATH=/bin:/usr/bin:/sbin); 127 if absent."""
        if b"/" in name:
            return name
        for d in (b"/bin", b"/usr/bin", b"/sbin", b"/usr/sbin"):
            try:
                node = self.vfs.resolve(d + b"/" + name, self.fs.root_ino)
                if isinstance(node, int) and S.S_ISREG(self.fs.stat(node).mode):
                    return d + b"/" + name
            except SyscallError:
                continue
        return name  # exec fails with ENOENT and the boot reports it

    def shutdown(self) -> None:
        """Kill what is left, close everything and write the page cache back (with
        checkpointing: a last image that says the group ended, with the write-back; on DAX
        storage: the log retired, so that tools may change the image before the next boot)."""
        for p in list(self.procs.values()):
            if p.state != ZOMBIE:
                self.exit_process(p, SIGKILL)
        if self.checkpointer is not None:
            self.checkpointer.finish()
        else:
            self.sync()
        if self.dax is not None:
            self.dax.retire()

    def fs_commit(self) -> None:
        """The end of a kernel operation on DAX storage: its file-system changes committed
        (guestkernel/dax.py); nothing to do with a page cache, which writes back later."""
        if self.dax is not None and self.dax.pending:
            self.fs.rootfs.sync()

    # -- rejuvenation: the group handed to a new kernel instance (vmm Machine.rejuvenate) ------
    handover_ready = False  # the image a new kernel resumes from is committed: stop using this one

    def checkpoint_now(self) -> bool:
        """The host asks, at a pause (the CPU stopped between blocks, the current process in user
        mode), for one checkpoint image of the whole group now, for a new kernel instance to
        resume with `restart_from_state`. True: it is committed (and written back: storage
        equals it) and `handover_ready` is set. False: it cannot be taken here (the current
        process is inside a parked syscall, a vfork is in progress, ...): the checkpointer takes
        it at the next syscall entry as a forced checkpoint, before the call's work, and the
        kernel then stops the CPU with `handover_ready` set (the call runs under the new
        kernel, which re-executes it from the image)."""
        ck = self.checkpointer
        if ck is None:
            raise ValueError("a handover to a new kernel needs checkpointing on")
        if self.handover_ready:
            return True
        cur = self.current
        if cur is None or (cur.state == RUNNABLE and cur.pending_call is None and cur.ctx is None):
            from guestkernel.checkpoint.state import Unsupported

            # The process on the CPU is captured as one off it, from a saved context: it
            # resumes in user mode where it stopped (capture's "user"), not in a syscall.
            if cur is not None:
                cur.ctx = self.cpu.save_context()
            self.current = None
            try:
                ck.checkpoint()
                self.handover_ready = True
            except Unsupported as e:
                self.log.append(f"rejuvenation: no image at the pause ({e}): taken at the next syscall entry")
            finally:
                self.current = cur
                if cur is not None:
                    cur.ctx = None
        if not self.handover_ready:
            ck.force_next = True
        return self.handover_ready

    def release_machine(self) -> None:
        """This kernel is replaced by another instance (rejuvenation): let go of what it holds
        of the machine's host resources (the CPU's per-address-space instruction caches)
        without writing anything: no shutdown, no sync; storage and SCM stay as the last
        image left them."""
        for mm in self._live_mms():
            if mm.icache is not None:
                self.cpu.free_icache(mm.icache)
                mm.icache = None
        self.cpu.on_syscall = lambda: None

    # -- the whole kernel's state (machine snapshots; see guestkernel/snapshot.py) -------------
    def save_state(self) -> bytes:
        """Everything the kernel holds: processes with their registers, address spaces and
        parked syscalls, open files and pipes, the VFS and page-cache index, allocators, locks,
        timers. The machine's devices are named, not copied: they save their own state."""
        from guestkernel.snapshot import dump

        return dump(self, self.machine)

    def load_state(self, machine: "MachineView", state: bytes) -> None:
        """Become the kernel `state` was saved from, on `machine` (whose devices hold their
        saved state already): the CPU's hooks and the running address space are set again."""
        from guestkernel.snapshot import load

        self.__dict__ = load(state, self, machine)
        self.cpu.on_syscall = self.syscall
        hooked, self._sites_hooked = self._sites_hooked, set()
        for sites in self._site_scan.values():
            for site in sites:
                if site.gva in hooked:
                    self._hook_site(site)
        if self.balloon is not None:
            self.balloon.attach()
        p = self.current
        if p is not None and p.mm is not None:
            self.cpu.set_address_space(p.mm.asid, p.mm.aspace.cr3, p.mm.icache)

    # -- the host's paravirtual requests (vmm/snapshot) ----------------------------------------
    def prepare_snapshot(self) -> dict[str, int]:
        """A cooperative snapshot is about to be taken (see guestkernel/balloon.py): drop what
        can be rebuilt and hand free pages to the host; returns the counts, in pages."""
        if self.balloon is None:
            raise KernelPanic("a cooperative snapshot needs the balloon device")
        return self.balloon.prepare_snapshot()

    def after_snapshot(self) -> int:
        """The snapshot is saved (or restored): take the handed-over pages back."""
        return self.balloon.after_snapshot() if self.balloon is not None else 0

    def page_kinds(self) -> bytes:
        """What each guest frame holds, one byte per gpfn (PAGE_KINDS of the kernel interface),
        as the guest driver tells the host what a snapshot's pages are."""
        from guestkernel.interface import PAGE_KINDS

        f = self.frames
        of_gfp = {Gfp.USER: "anonymous", Gfp.PAGECACHE: "page cache", Gfp.RECLAIMABLE: "slab",
                  Gfp.KERNEL: "kernel", Gfp.BUFFER: "kernel"}
        table = bytes(PAGE_KINDS.index(of_gfp[Gfp(g)]) if g < len(Gfp) else 0 for g in range(256))
        kinds = bytearray(f.kind.translate(table))
        free = PAGE_KINDS.index("free")
        for z in f.zones:  # the free blocks, from the free lists
            for fl_order, fl in enumerate(z.free_lists):
                for pfn in fl:
                    kinds[pfn : pfn + (1 << fl_order)] = bytes([free]) * (1 << fl_order)
        if self.balloon is not None:  # the host's balloon; pages handed over for a snapshot are free
            ball = PAGE_KINDS.index("balloon")
            for blocks, kind in ((self.balloon.blocks, ball), (self.balloon.hinted, free)):
                for pfn, order in blocks:
                    kinds[pfn : pfn + (1 << order)] = bytes([kind]) * (1 << order)
        return bytes(kinds)

    def register_stats(self, reg: "StatsRegistry") -> None:
        """The kernel's counters in the machine's statistics (see the kernel interface)."""
        from hw.stats import Stat

        def values() -> dict[str, int]:
            pc = getattr(self, "pagecache", None)  # none before boot
            f = getattr(self, "frames", None)
            dax = self.dax.dax if self.dax is not None else DaxStats()
            return {"pagecache.hits": pc.stats.hits if pc else 0, "pagecache.misses": pc.stats.misses if pc else 0,
                    "pagecache.writebacks": pc.stats.writebacks if pc else 0,
                    "pagecache.new_blocks": pc.stats.new_blocks if pc else 0,
                    "pagecache.pages": sum(len(c.pages) for c in self.caches()) if pc else 0,
                    "mm.file_pages_copied": f.events["file_pages_copied"] if f else 0,
                    "mm.text_pages_copied": f.events["text_pages_copied"] if f else 0,
                    "mm.frames_peak": f.peak if f else 0,
                    "mm.lent_pages_taken": f.events["pgalloc_storage"] if f else 0,
                    "mm.lent_pages_moved": self.swap.pages_moved if hasattr(self, "swap") else 0,
                    "io.file_read_bytes": self.file_io["read_bytes"], "io.file_write_bytes": self.file_io["write_bytes"],
                    **{f"dax.{k}": v for k, v in dataclasses.asdict(dax).items()}}

        reg.register(values, [
            Stat("pagecache.hits", "lookups", "page-cache lookups that found the block"),
            Stat("pagecache.misses", "lookups", "page-cache lookups that read the block from storage"),
            Stat("pagecache.writebacks", "blocks", "dirty blocks written back to storage"),
            Stat("pagecache.new_blocks", "blocks", "blocks just allocated, cached without a read from storage"),
            Stat("pagecache.pages", "pages", "pages in the page caches at the end"),
            Stat("mm.file_pages_copied", "pages", "data pages of file mappings copied into memory at page "
                 "faults (a DAX mapping maps the storage window's page until it is written)"),
            Stat("mm.text_pages_copied", "pages", "pages of executable file mappings copied at page faults "
                 "(a page-cache page or a window page is mapped instead where a whole page can be)"),
            Stat("mm.frames_peak", "pages", "most guest RAM frames allocated at once"),
            Stat("mm.lent_pages_taken", "pages", "pages given out from storage lent as memory (swapon on "
                 "storage as memory: they live on the storage window)"),
            Stat("mm.lent_pages_moved", "pages", "pages swapoff moved from lent storage back to RAM"),
            Stat("io.file_read_bytes", "bytes", "bytes read(2) from regular files (rchar, files only)"),
            Stat("io.file_write_bytes", "bytes", "bytes write(2) to regular files (wchar, files only)"),
            Stat("dax.commits", "operations", "DAX: operations whose metadata was logged and committed"),
            Stat("dax.blocks_logged", "blocks", "DAX: metadata blocks written to the redo log, then in place"),
            Stat("dax.data_bytes_read", "bytes", "DAX: file bytes copied out of the storage window"),
            Stat("dax.data_bytes_written", "bytes", "DAX: file bytes written into the storage window"),
            Stat("dax.replays", "logs", "DAX: committed logs replayed at mount (after a cut)"),
            Stat("dax.split_commits", "operations", "DAX: operations larger than the log, committed in parts"),
            Stat("dax.pages_mapped", "pages", "DAX: storage-window pages mapped into page tables (XIP, mmap)"),
            Stat("dax.pages_written_back", "pages", "DAX: pages of shared mappings flushed by msync, fsync, sync"),
        ])

    def memory_state(self) -> dict[str, object]:
        """The kernel's memory as the host side reads it (--stats-json "kernel_memory"): per
        zone its size, watermarks, free blocks per order (and per migrate type), frames per
        allocation kind, placements (and those by fallback); per slab cache its counters; the vm
        event counters (/proc/vmstat's); the page cache."""
        f = self.frames
        zones = [{"name": z.name, "start_pfn": z.base_pfn, "frames": z.nframes, "free": z.free_frames,
                  "watermarks": {"min": z.wmark_min, "low": z.wmark_low, "high": z.wmark_high},
                  "free_blocks_per_order": [len(fl) for fl in z.free_lists],
                  "free_blocks_per_type": dict(zip(MIGRATE_NAMES, z.free_by_type())),
                  "pageblocks_per_type": dict(zip(MIGRATE_NAMES, z.blocks_by_type())),
                  "frames_by_kind": {g.label: z.used_by_kind[g] for g in Gfp},
                  "placed_by_kind": {g.label: f.placements[(g, z.name)] for g in Gfp},
                  "fallback_by_kind": {g.label: f.fallbacks[(g, z.name)] for g in Gfp}} for z in f.zones]
        slabs = {c.name: {"active_objs": c.active_objs, "num_objs": c.num_objs, "object_size": c.size,
                          "pages": c.pages, "reclaimable": c.reclaimable} for c in self.slab.caches.values()}
        return {"zone_policy": f.policy, "zones": zones, "slab": slabs, "slab_totals": self.slab.totals(),
                "vm_events": dict(sorted(f.events.items())),
                "page_cache": {"pages": len(self.pagecache.pages), "dirty": len(self.pagecache.dirty),
                               "evictions": self.pagecache.stats.evictions},
                "min_free_kbytes": self.reclaim.min_free_kb}

    def lost_state(self) -> dict[str, object]:
        """What a power failure took from the kernel: dirty page-cache pages, live processes."""
        out: dict[str, object] = {}
        pc = getattr(self, "pagecache", None)
        if pc is not None:
            out["dirty_page_cache_pages"] = len(pc.dirty)
            out["dirty_page_cache_inodes"] = sorted({ino for ino in pc.dirty.values() if ino})
        out["processes"] = sorted(p.pid for p in self.procs.values() if p.state != ZOMBIE)
        return out

    def sync(self) -> None:
        self.fs.sync()  # (each cache charges the blocks it writes to its disk)
        if self.dax is not None:
            self.dax.write_back_mapped()
        for mm in self._live_mms():  # shared file pages were written back: the next write
            mm.write_protect(None)   # marks them dirty again (Linux's page_mkclean)

    def dax_write_back(self, gpfns: list[int]) -> None:
        """DAX msync: flush what shared mappings wrote to the pages `gpfns`, and write-protect
        them in every address space, so that the next write marks them dirty again."""
        assert self.dax is not None
        done = set(self.dax.write_back_mapped(gpfns))
        if done:
            for mm in self._live_mms():
                mm.write_protect(done)

    def _live_mms(self) -> list[MM]:
        return list({id(p.mm): p.mm for p in self.procs.values() if p.mm is not None}.values())

    def caches(self) -> "list[PageCache]":
        """The page cache of every mounted file system, the root's first."""
        return self.fs.caches()

    def on_dir_change(self, p: Process) -> None:
        """Called before a directory-changing syscall does its work (a policy hook: the
        checkpointing kernel takes a checkpoint here)."""

    # ------------------------------------------------------------------------------------------
    # processes

    def new_process(self, ppid: int, mm: MM | None, fds: FDTable, cwd: object) -> Process:
        pid = self.next_pid
        self.next_pid += 1
        p = Process(pid=pid, ppid=ppid, mm=mm, fds=fds, fs=FsContext(cwd))  # type: ignore[arg-type]
        p.start_ns = self.clock.uptime_ns()
        self.procs[pid] = p
        if ppid in self.procs:
            self.procs[ppid].children.append(p)
        return p

    def file_backing(self, ino: int) -> InodeBacking:
        """What a mapping of inode `ino` reads from; unmapping it may free an unlinked file."""
        return InodeBacking(self.fs, self.fs.of(ino).cache, ino, on_unmapped=self._file_unmapped)

    def _file_unmapped(self, ino: int) -> None:
        try:
            self.vfs.maybe_release(ino)
        except SyscallError:  # corrupt metadata (logged by the driver): the inode stays
            pass

    def inode_mapped(self, ino: int) -> bool:
        """Does a live address space map inode `ino` (an ELF image or an mmap of the file)?"""
        return any(getattr(v.backing, "ino", None) == ino and not v.device
                   for mm in {id(p.mm): p.mm for p in self.procs.values() if p.mm is not None}.values()
                   for v in mm.vmas)

    def new_mm(self) -> MM:
        mm = MM(self.frames, self.cpu.access, self.cpu.tlb_flush, self.sentinel_pfn, self.asids, self.cpu.tlb_flush_page)
        mm.icache = self.cpu.new_icache()
        mm.on_exec_map = self.watch_sites
        mm.objects = self.slab
        return mm

    # Instructions the machine must see one by one (hw/sites.py): rdtsc/rdtscp read the host's
    # time stamp counter under Unicorn, so they answer from the virtual clock instead; the
    # persistence instructions drive the cache model (C hooks, only when there is a model).
    def watch_sites(self, vma: "VMA") -> None:
        from hw.sites import scan

        backing = vma.backing
        key = (getattr(backing, "ino", id(backing)), vma.offset, vma.end - vma.start, vma.start)
        sites = self._site_scan.get(key)
        if sites is None:
            sites = scan(backing.read_at(vma.offset, vma.end - vma.start), vma.start)  # type: ignore[union-attr]
            self._site_scan[key] = sites
        for site in sites:
            self._hook_site(site)

    def _hook_site(self, site: "Site") -> None:
        if site.gva in self._sites_hooked:
            return
        if site.kind in ("rdtsc", "rdtscp"):
            self._sites_hooked.add(site.gva)
            self.cpu.add_code_hook(site.gva, self._rdtsc)
        elif self.memory.modelled:
            self._sites_hooked.add(site.gva)
            self.cpu.add_site(site)

    def _rdtsc(self, gva: int) -> None:
        """A hooked site is about to execute; if it is rdtsc/rdtscp there, emulate it."""
        p = self.current
        if p is None:
            return
        try:
            insn = p.mm.copy_in(gva, 3)
        except SyscallError:
            return
        if insn[:2] == b"\x0f\x31":
            size = 2
        elif insn == b"\x0f\x01\xf9":
            size = 3
        else:
            return  # another process's code at this address
        self.cpu.skip_instruction(gva, size)
        tsc = self.clock.uptime_ns() * self.clock.cpu_hz // 10**9
        self.cpu.write_gprs({"rax": tsc & 0xFFFFFFFF, "rdx": (tsc >> 32) & 0xFFFFFFFF})
        if size == 3:
            self.cpu.set_reg("rcx", 0)  # IA32_TSC_AUX: cpu 0
        self.rdtsc_emulated += 1

    def drop_mm(self, mm: MM, owner: Process) -> None:
        if any(q.mm is mm for q in self.procs.values() if q is not owner and q.state != ZOMBIE):
            return  # still shared with a vfork parent
        self.cpu.free_icache(mm.icache)
        mm.icache = None
        mm.release()

    def fork(self, parent: Process, share_vm: bool = False) -> Process:
        mm = parent.mm if share_vm else parent.mm.fork()
        if not share_vm:
            mm.icache = self.cpu.new_icache()
        child = self.new_process(parent.pid, mm, parent.fds.copy(), parent.cwd)
        child.exe, child.comm = parent.exe, parent.comm
        child.pgid, child.sid, child.umask = parent.pgid, parent.sid, parent.umask  # (a thread shares fs: proc.py)
        child.affinity = parent.affinity
        child.altstack = parent.altstack if not share_vm else (0, 0, 0)  # (a thread starts without one)
        child.sigactions = {k: SigAction(v.handler, v.flags, v.restorer, v.mask) for k, v in parent.sigactions.items()}
        child.sigmask = parent.sigmask
        child.rlimits = dict(parent.rlimits)
        child.ctx = self.cpu.save_context()
        rip = self.cpu.reg("rip")
        child.set_regs = {"rax": 0, "rip": rip + 2}
        return child

    def exec(self, p: Process, path: bytes, argv: list[bytes], envp: list[bytes], depth: int = 0) -> None:
        """execve: replace p's memory image. Raises SyscallError leaving p untouched on failure."""
        node = self.vfs.resolve(path, p.cwd)
        if not isinstance(node, int):
            raise SyscallError(EACCES)
        st = self.fs.stat(node)
        if S.S_ISDIR(st.mode):
            raise SyscallError(EACCES)
        if not S.S_ISREG(st.mode) or not st.mode & 0o111:
            raise SyscallError(EACCES)
        header = self.fs.read(node, 0, 256)
        if header.startswith(b"#!"):
            if depth >= 4:
                raise SyscallError(ELOOP)
            line = header[2:].split(b"\n")[0].strip()
            if not line:
                raise SyscallError(ENOEXEC)
            interp, _, arg = line.partition(b" ")
            arg = arg.strip()
            new_argv = [interp] + ([arg] if arg else []) + [path] + argv[1:]
            return self.exec(p, interp, new_argv, envp, depth + 1)
        img = elf.parse(header, lambda off, n: self.fs.read(node, off, n))
        interp_img = interp_node = None
        if img.interp:
            interp_node = self.vfs.resolve(img.interp, p.cwd)
            if not isinstance(interp_node, int) or not S.S_ISREG(self.fs.stat(interp_node).mode):
                raise SyscallError(ENOENT)
            interp_img = elf.parse(self.fs.read(interp_node, 0, 256), lambda off, n: self.fs.read(interp_node, off, n))
            if interp_img.interp:
                raise SyscallError(ENOEXEC)

        mm = self.new_mm()
        try:
            bias = elf.load_bias(img, is_interp=False)
            _, brk = elf.map_image(mm, img, self.file_backing(node), bias, path)
            entry = img.entry + bias
            base = 0
            if interp_img is not None:
                ibias = elf.load_bias(interp_img, is_interp=True)
                base, _ = elf.map_image(mm, interp_img, self.file_backing(interp_node), ibias,  # type: ignore[arg-type]
                                        img.interp)
                entry = interp_img.entry + ibias
            mm.brk_start = mm.brk = page_up(brk)
            auxv = [
                (elf.AT_PHDR, elf.phdr_address(img, bias)), (elf.AT_PHENT, 56), (elf.AT_PHNUM, img.phnum),
                (elf.AT_PAGESZ, PAGE), (elf.AT_BASE, base), (elf.AT_FLAGS, 0), (elf.AT_ENTRY, img.entry + bias),
                (elf.AT_UID, 0), (elf.AT_EUID, 0), (elf.AT_GID, 0), (elf.AT_EGID, 0), (elf.AT_SECURE, 0),
                (elf.AT_HWCAP, 0x178BFBFF), (elf.AT_CLKTCK, 100), (elf.AT_MINSIGSTKSZ, 2048),
            ]
            sp = elf.build_stack(mm, argv, envp, auxv, path, self.rng.randbytes(16))
        except SyscallError:
            self.cpu.free_icache(mm.icache)
            mm.release()
            raise
        # Point of no return. The other threads of the group end (from the leader: Linux
        # would also let a thread's exec take over the leader; not modelled).
        for t in [q for q in self.procs.values() if q.leader is p]:
            self.exit_thread(t)
        old = p.mm
        p.mm = mm
        if old is not None:
            self.drop_mm(old, p)
        for fd in sorted(p.fds.cloexec):
            self.close_fd(p, fd)
        for sig, act in p.sigactions.items():
            if act.handler not in (SIG_DFL, SIG_IGN):
                p.sigactions[sig] = SigAction()
        p.exe = path
        p.comm = path.rsplit(b"/", 1)[-1][:15]
        p.sigframes = []
        p.altstack = (0, 0, 0)  # exec drops the alternate signal stack
        p.ctx = self.pristine_ctx
        p.set_regs = {"rip": entry, "rsp": sp, "rdx": 0}
        if self.current is p:
            self.cpu.set_address_space(mm.asid, mm.aspace.cr3, mm.icache)
        self.vfork_release(p)

    def vfork_release(self, child: Process) -> None:
        if child.vfork_waitq is not None:
            child.vfork_waitq.wake()
            child.vfork_waitq = None

    def drop_file(self, f: OpenFile) -> None:
        """A reference to an open file goes (a descriptor closed, a loop device's backing file
        released); the last one closes it."""
        f.refs -= 1
        if f.refs == 0:
            f.close()
            self.slab.free(f.obj)

    def close_fd(self, p: Process, fd: int) -> None:
        f = p.fds.remove(fd)
        self.locks.on_close(p, f, last=f.refs == 1)
        self.drop_file(f)

    def exit_thread(self, t: Process) -> None:
        """A thread ends alone (the descriptors, memory and signal actions stay with its
        group) and is reaped at once; a futex waiter on its clear_child_tid word is woken
        (pthread_join)."""
        if t.state == ZOMBIE:
            return
        self._clear_child_tid(t)
        if t.waiting_on is not None and t in t.waiting_on.waiters:
            t.waiting_on.waiters.remove(t)
        t.pending_call = None
        t.state = ZOMBIE
        mm, t.mm = t.mm, None  # type: ignore[assignment]
        self.drop_mm(mm, t)
        if self.current is t:
            self.account_cpu()
            self.current = None
        del self.procs[t.pid]

    def _clear_child_tid(self, p: Process) -> None:
        if p.clear_child_tid and p.mm is not None:
            try:
                p.mm.copy_out(p.clear_child_tid, b"\0\0\0\0")
            except SyscallError:
                return
            from guestkernel.futex import futex_table

            ft = futex_table(self)
            ft.wake_key(ft.key(p, p.clear_child_tid, private=False), 1)

    def exit_process(self, p: Process, status: int) -> None:
        """Make p a zombie with the given wait status; wake its parent. A thread ends alone;
        a group leader takes its threads with it (exit_group)."""
        if p.state == ZOMBIE:
            return
        if p.leader is not None:
            self.exit_thread(p)
            return
        for t in [q for q in self.procs.values() if q.leader is p]:
            self.exit_thread(t)
        for fd in sorted(p.fds.fds):
            self.close_fd(p, fd)
        self._clear_child_tid(p)
        if p.waiting_on is not None and p in p.waiting_on.waiters:
            p.waiting_on.waiters.remove(p)
        p.pending_call = None
        p.state = ZOMBIE
        p.exit_status = status
        mm, p.mm = p.mm, None  # type: ignore[assignment]
        if mm is not None:
            self.drop_mm(mm, p)
        self.vfork_release(p)
        if self.current is p:
            self.account_cpu()
            self.current = None
        init = self.procs.get(1)
        for c in p.children:
            if c.pdeath_signal and c.state != ZOMBIE:
                self.send_group_signal(c, c.pdeath_signal, SigInfo(c.pdeath_signal, SI_USER, (p.leader or p).pid))
            c.ppid = 1
            if init is not None and init is not p:
                init.children.append(c)
        p.children = []
        parent = self.procs.get(p.ppid)
        if p.pid == 1:
            self.init_status = status
            self.halted = True
        if parent is not None and parent.state != ZOMBIE:
            self.send_group_signal(parent, SIGCHLD, child_info(status, p.pid, self.cpu_ticks(p)))
            parent.child_waitq.wake()
        else:
            del self.procs[p.pid]  # nobody will reap it

    def node_path(self, node: object) -> bytes:
        return self.vfs.node_path(node)

    def open_file_path(self, f: OpenFile) -> bytes:
        """What /proc/PID/fd/N points to: the path a file was opened by (as given, when it was
        relative), a device's, a pseudo file's, or Linux's names of pipes."""
        if isinstance(f, InodeFile):
            return f.path
        if isinstance(f, PipeEnd):
            return b"pipe:[%d]" % f.pipe.serial
        if isinstance(f, ConsoleFile):
            return b"/dev/console"
        node = getattr(f, "node", None)
        if isinstance(node, PseudoNode):
            return node.guest_path
        if isinstance(node, DevNode):
            return b"/dev/" + node.name.encode()
        return b"anon_inode:[" + f.kind.encode() + b"]"

    def oom_kill(self, order: int, gfp: Gfp) -> bool:
        """Out of memory after reclaim: kill the process with the most memory, as Linux's
        OOM killer (logged in its words). A victim other than the caller ends now, freeing its
        memory, and the allocation is retried (True); the caller itself gets SIGKILL and
        finishes its allocation from the reserves (False), dying on its way back to user mode."""
        victim = oom_victim(self)
        if victim is None:
            return False
        cur = self.current
        who = cur.comm.decode(errors="replace") if cur is not None else "kernel"
        mm = victim.mm
        self.log.append(f"{who} invoked oom-killer: gfp_mask={gfp.label}, order={order}, oom_score_adj=0")
        self.log.append(f"Out of memory: Killed process {victim.pid} ({victim.comm.decode(errors='replace')}) "
                        f"total-vm:{sum(v.end - v.start for v in mm.vmas) // 1024}kB, "
                        f"anon-rss:{mm.resident_pages() * 4}kB, file-rss:0kB, shmem-rss:0kB, UID:0 "
                        f"pgtables:{len(mm.aspace.table_frames) * 4}kB oom_score_adj:0")
        self.frames.events["oom_kill"] += 1
        if victim is cur:
            self.send_signal(victim, SIGKILL)
            return False
        self.exit_process(victim, SIGKILL)
        return True

    def reap(self, parent: Process, child: Process) -> None:
        parent.cutime_insns += child.utime_insns + child.cutime_insns
        parent.children.remove(child)
        del self.procs[child.pid]

    # ------------------------------------------------------------------------------------------
    # signals

    def send_signal(self, p: Process, sig: int, info: SigInfo | None = None) -> None:
        """Make `sig` pending for thread p with `info` (None: the kernel's, SI_KERNEL): tgkill,
        a fault, SIGPIPE (guestkernel/siginfo.py). As Linux's signal_wake_up: a receiver blocked
        in a call wakes when the signal is not masked (the call is then retried or interrupted,
        see finish_parked); one on the CPU takes it on its way back to user mode."""
        if p.state == ZOMBIE or not 1 <= sig <= 64 or self._ignored_at_generation(p, sig):
            return
        queue(p, info if info is not None else SigInfo(sig))
        self._signal_wake(p, sig)

    def send_group_signal(self, p: Process, sig: int, info: SigInfo | None = None) -> None:
        """Make `sig` pending for p's whole thread group (kill, sigqueue, SIGCHLD, the
        real-time timer): once, in the set its threads share; the thread that takes it is the
        leader when it does not block it, else the first other thread that does not (Linux's
        complete_signal). Readers of a signalfd or sigtimedwait in any thread look."""
        leader = p.leader or p
        if leader.state == ZOMBIE or not 1 <= sig <= 64 or self._ignored_at_generation(leader, sig):
            return
        queue(leader.shared, info if info is not None else SigInfo(sig))
        group = [leader] + [t for t in self.procs.values() if t.leader is leader and t.state != ZOMBIE]
        bit = 1 << (sig - 1)
        taker = next((t for t in group if sig == SIGKILL or not t.sigmask & bit), None)
        for t in group:
            if t is taker:
                self._signal_wake(t, sig)
            elif t.sigwaitq is not None:
                t.sigwaitq.wake()

    def _ignored_at_generation(self, p: Process, sig: int) -> bool:
        """Ignored signals that are not blocked are discarded when sent, as on Linux."""
        act = p.action(sig)
        return sig != SIGKILL and not p.sigmask & 1 << (sig - 1) and \
            (act.handler == SIG_IGN or (act.handler == SIG_DFL and sig in DEFAULT_IGNORE))

    def _signal_wake(self, p: Process, sig: int) -> None:
        if p.sigwaitq is not None:
            p.sigwaitq.wake()  # a signalfd reader or poller
        if p.state == BLOCKED:  # (it may still be `current`: nobody else ran since it blocked)
            if sig == SIGKILL or not p.sigmask & 1 << (sig - 1):
                p.state = RUNNABLE
        elif self.current is p:
            self.cpu.request_stop()  # deliver on the way back to user mode

    def cpu_ticks(self, p: Process) -> int:
        """p's user time in clock ticks (USER_HZ), as SIGCHLD and waitid report it."""
        return p.utime_insns * USER_HZ // self.clock.cpu_hz

    def deliverable(self, p: Process) -> int:
        return pending(p) & ~(p.sigmask & ~UNBLOCKABLE)

    def deliver_signals(self, p: Process) -> None:
        """p is on the CPU, on its way back to user mode: act on its pending, unblocked signals.
        A mask that sigsuspend/ppoll/pselect6 put in place lasts until here: a handler's frame
        records the original (restored by rt_sigreturn); without a handler it comes back now."""
        while p.state != ZOMBIE:
            ready = self.deliverable(p)
            if not ready:
                if p.saved_sigmask is None:
                    return
                p.sigmask, p.saved_sigmask = p.saved_sigmask, None  # what it unblocks comes now
                continue
            sig, info = take_lowest(p, ready)
            act = p.action(sig)
            if act.handler == SIG_IGN:
                continue
            if act.handler == SIG_DFL:
                if sig in DEFAULT_IGNORE or sig in DEFAULT_STOP:
                    continue
                self.exit_process(p.leader or p, sig | (0x80 if sig in DEFAULT_CORE else 0))  # the whole group
                return
            self.setup_frame(p, sig, act, info)
            return

    def force_signal(self, p: Process, sig: int, code: int = SI_KERNEL, addr: int = 0) -> None:
        """A synchronous fault (si_code `code`, at `addr`): deliver now, or kill if it is
        blocked or left at default."""
        act = p.action(sig)
        if act.handler in (SIG_DFL, SIG_IGN) or p.sigmask & (1 << (sig - 1)):
            self.exit_process(p.leader or p, sig | (0x80 if sig in DEFAULT_CORE else 0))
            return
        self.setup_frame(p, sig, act, SigInfo(sig, code, addr=addr))

    def setup_frame(self, p: Process, sig: int, act: SigAction, info: SigInfo) -> None:
        """Push an rt_sigframe (siginfo + ucontext) and enter the handler; rt_sigreturn undoes it."""
        cpu = self.cpu
        regs = cpu.read_gprs()
        old_mask = p.sigmask if p.saved_sigmask is None else p.saved_sigmask
        p.saved_sigmask = None
        p.sigframes.append((cpu.save_context(), old_mask))
        sp = regs["rsp"] - 128  # red zone
        stack = (p.altstack[0], p.altstack_flags(regs["rsp"]), p.altstack[2])  # the frame's uc_stack
        if act.flags & SA_ONSTACK and p.altstack[2] and not p.on_altstack(regs["rsp"]):
            sp = p.altstack[0] + p.altstack[2]  # the top of the alternate stack
            if p.altstack[1] & SS_AUTODISARM:
                p.altstack = (0, 0, 0)  # until the handler returns (rt_sigreturn restores it)
        sp -= 128
        siginfo_at = sp & ~15
        siginfo = info.pack()
        uc_size = 8 + 8 + 24 + 23 * 8 + 8 + 64 + 8
        uc_at = (siginfo_at - uc_size) & ~15
        order = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx", "rax", "rcx", "rsp", "rip")
        gregs = [regs[n] for n in order] + [regs["rflags"], 0x33, 0, 0, old_mask, 0]
        ucontext = struct.pack("<QQ", 0, 0) + STACK_T.pack(*stack) + struct.pack("<23Q", *[g & 0xFFFFFFFFFFFFFFFF for g in gregs]) + struct.pack("<Q", 0) + b"\0" * 64 + struct.pack("<Q", old_mask)
        frame_at = uc_at - 8  # return address slot: the restorer
        try:
            p.mm.copy_out(siginfo_at, siginfo)
            p.mm.copy_out(uc_at, ucontext)
            p.mm.copy_out(frame_at, struct.pack("<Q", act.restorer))
        except SyscallError:
            p.sigframes.pop()
            self.exit_process(p, SIGSEGV | 0x80)
            return
        if not act.flags & SA_NODEFER:
            p.sigmask |= 1 << (sig - 1)
        p.sigmask |= act.mask
        if act.flags & SA_RESETHAND:
            p.sigactions[sig] = SigAction()
        cpu.write_gprs({"rsp": frame_at, "rip": act.handler, "rdi": sig, "rsi": siginfo_at, "rdx": uc_at, "rax": 0})

    def sigreturn(self, p: Process) -> None:
        rsp = self.cpu.reg("rsp")
        uc_at = rsp  # the handler's `ret` popped the restorer address
        if not p.sigframes:
            self.force_signal(p, SIGSEGV)  # (Linux: SI_KERNEL)
            return
        ctx, _ = p.sigframes.pop()
        try:
            raw = p.mm.copy_in(uc_at + 40, 23 * 8)
            mask = int.from_bytes(p.mm.copy_in(uc_at + 40 + 23 * 8 + 8 + 64, 8), "little")
            ss_sp, ss_flags, ss_size = STACK_T.unpack(p.mm.copy_in(uc_at + 16, STACK_T.size))
        except SyscallError:
            self.exit_process(p, SIGSEGV | 0x80)
            return
        p.restore_altstack(ss_sp, ss_flags, ss_size, struct.unpack_from("<Q", raw, 15 * 8)[0])  # (the resumed rsp)
        g = struct.unpack("<23Q", raw)
        order = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx", "rax", "rcx", "rsp", "rip")
        regs = dict(zip(order, g))
        regs["rflags"] = (g[17] & 0x0DD5) | 0x202
        p.sigmask = mask & ~UNBLOCKABLE
        p.ctx = ctx
        p.set_regs = regs

    # ------------------------------------------------------------------------------------------
    # the machine-facing interface: resume / syscall / stop

    def runnable(self) -> list[Process]:
        return [p for p in self.procs.values() if p.state == RUNNABLE]

    def resume(self) -> int | None:
        """Load the next process to run on the CPU; returns the instruction deadline, or None
        when the machine should halt."""
        while not self.halted:
            self.fs_commit()  # what exits and signals changed (an unlinked file's last close)
            self.tick()
            p = self.pick()
            if p is None and self.timers and any(q.state == BLOCKED for q in self.procs.values()):
                # Idle: the clock jumps to the next timer, as a halted CPU sleeps until it.
                self.clock.charge(max(0, self.timers[0][0] - self.clock.uptime_ns()))
                continue
            if p is None:
                if any(q.state == BLOCKED for q in self.procs.values()):
                    blocked = ", ".join(f"{q.pid}:{q.comm.decode(errors='replace')}" for q in self.procs.values() if q.state == BLOCKED)
                    raise KernelPanic(f"every process is blocked (deadlock): {blocked}")
                return None
            self.switch_to(p)
            if p.pending_call is not None and not self.finish_parked(p):
                continue
            self.deliver_signals(p)
            if p.state != RUNNABLE or p is not self.current:
                continue
            quantum = self.config.quantum_insns if len(self.runnable()) > 1 else 10 * self.config.quantum_insns
            return self.cpu.icount + quantum
        return None

    def pick(self) -> Process | None:
        """Round robin by pid, starting after the process that ran last."""
        ready = sorted((p for p in self.procs.values() if p.state == RUNNABLE), key=lambda p: p.pid)
        if not ready:
            return None
        last = getattr(self, "_last_pid", 0)
        if self.current is not None and self.current.state == RUNNABLE and not self._quantum_over:
            return self.current
        for p in ready:
            if p.pid > last:
                return p
        return ready[0]

    _quantum_over = False

    def account_cpu(self) -> None:
        """Charge the instructions retired since the last call to the process on the CPU."""
        now = self.cpu.icount
        if self.current is not None:
            self.current.utime_insns += now - self._cpu_mark
        self._cpu_mark = now

    _cpu_mark = 0
    context_switches = 0

    def switch_to(self, p: Process) -> None:
        cur = self.current
        if cur is not p:
            self.account_cpu()
            self.context_switches += 1
            if cur is not None and cur.state != ZOMBIE and cur.ctx is None:
                cur.ctx = self.cpu.save_context()
            self.current = p
        if p.ctx is not None:
            self.cpu.restore_context(p.ctx)
            p.ctx = None
        if p.set_regs:
            self.cpu.write_gprs(p.set_regs)
            p.set_regs = {}
        self.cpu.set_address_space(p.mm.asid, p.mm.aspace.cr3, p.mm.icache)
        self._last_pid = p.pid
        self._quantum_over = False

    def finish_parked(self, p: Process) -> bool:
        """Retry p's parked syscall; False if it is still blocked (or was interrupted and the
        process must first take a signal)."""
        call, nr = p.pending_call, p.pending_nr
        # Signals interrupt a parked call, except a vfork parent's wait (uninterruptible on Linux).
        if not p.vfork_parent_blocked and self._interrupting(p):
            p.pending_call = None
            p.pending_takes = 0
            block, p.pending_block = p.pending_block, None
            if p.pending_done:  # part of the transfer is done: that is the result (Linux: a
                self.cpu.set_reg("rax", p.pending_done)  # short count, whatever SA_RESTART says)
                p.pending_done = 0
                return True
            act_restart = nr not in NO_RESTART and any(p.action(s).flags & SA_RESTART
                                                       for s in _bits(self.deliverable(p)))
            if act_restart:
                self.cpu.write_gprs({"rax": nr, "rip": self.cpu.reg("rip") - 2})
            else:
                if block is not None and block.interrupted is not None:
                    block.interrupted()
                self.cpu.set_reg("rax", -EINTR)
            return True
        try:
            ret = call()  # type: ignore[misc]
        except SyscallError as e:
            ret = -e.errno
        except Block as b:
            self.park(p, b.retry or call, nr, b.waitq)  # type: ignore[arg-type]
            p.pending_done = b.done or p.pending_done
            p.pending_takes = b.takes or p.pending_takes
            p.pending_block = b
            self.no_sleep_with_signal(p)
            return False
        self.fs_commit()
        p.pending_call = None
        p.pending_done = p.pending_takes = 0
        p.pending_block = None
        p.vfork_parent_blocked = False
        if ret is not NO_RETURN:
            self.cpu.set_reg("rax", ret)  # type: ignore[arg-type]
        return p.state == RUNNABLE

    def _interrupting(self, p: Process) -> int:
        """The pending signals that interrupt p's parked call: deliverable, not ignored, not
        among those the call takes itself (sigtimedwait's set: Linux unblocks them for the wait
        and dequeues them after it)."""
        return self.deliverable(p) & ~self._ignored_mask(p) & ~p.pending_takes

    def _ignored_mask(self, p: Process) -> int:
        m = 0
        for s in _bits(pending(p)):
            a = p.action(s)
            if a.handler == SIG_IGN or (a.handler == SIG_DFL and (s in DEFAULT_IGNORE or s in DEFAULT_STOP)):
                m |= 1 << (s - 1)
        return m

    def no_sleep_with_signal(self, p: Process) -> None:
        """A call about to sleep while a signal it can take is pending (sigsuspend unmasking one
        sent before) does not sleep: Linux checks signal_pending() before it schedules."""
        if self.deliverable(p) & ~self._ignored_mask(p):
            p.state = RUNNABLE

    def park(self, p: Process, call: Callable[[], int], nr: int, waitq: WaitQueue) -> None:
        p.pending_call = call
        p.pending_nr = nr
        p.state = BLOCKED
        p.waiting_on = waitq
        waitq.waiters.append(p)

    def syscall(self) -> None:
        """The CPU executed `syscall`: serve it. Runs inside the CPU's hook."""
        cpu = self.cpu
        nr, a0, a1, a2, a3, a4, a5 = cpu.syscall_args()
        p = self.current
        assert p is not None
        p.syscalls += 1
        self.clock.charge(SYSCALL_NS)
        entry = self.table.get(nr)
        if entry is None:
            name = NAMES.get(nr, f"syscall_{nr}")
            self.syscall_counts[name] += 1
            if nr not in self.unknown_reported:
                self.unknown_reported.add(nr)
                self.log.append(f"unimplemented syscall {name} ({nr}) from pid {p.pid} ({p.comm.decode(errors='replace')}): ENOSYS")
            cpu.set_reg("rax", -ENOSYS)
            return
        name, fn = entry
        self.syscall_counts[name] += 1
        ck = self.checkpointer
        if ck is not None:
            wanted = ck.force_next
            a0, a1, a2, a3, a4, a5 = ck.at_syscall(p, nr, (a0, a1, a2, a3, a4, a5))
            if wanted and not ck.force_next:  # the handover's image is taken (checkpoint_now):
                self.handover_ready = True    # the call is the new kernel's to run
                cpu.request_stop()
                return
        try:
            ret = fn(self, p, a0, a1, a2, a3, a4, a5)
        except SyscallError as e:
            ret = -e.errno
        except OutOfMemory:  # not even the reserves were left
            ret = -ENOMEM
        except Block as b:
            self.park(p, b.retry or (lambda: fn(self, p, a0, a1, a2, a3, a4, a5)), nr, b.waitq)
            p.pending_done, p.pending_takes, p.pending_block = b.done, b.takes, b
            self.no_sleep_with_signal(p)
            cpu.request_stop()
            return
        if self.dax is not None:
            self.fs_commit()
        if ret is NO_RETURN:
            cpu.request_stop()
            return
        if ck is not None:
            ret = ck.after_syscall(p, nr, ret)
        cpu.set_rax(ret)
        if p.state != RUNNABLE or self.halted:
            cpu.request_stop()

    def file_data_changed(self, ino: int, size: int | None) -> None:
        """Every mapping of the file follows a write or a truncation (see MM.drop_file_pages)."""
        for p in self.procs.values():
            if p.mm is not None:
                p.mm.drop_file_pages(ino, size)

    def stop(self, stop: Stop) -> None:
        """The CPU stopped; find out why and act."""
        p = self.current
        if p is None:
            return
        if stop.kind == STOP_FAULT:
            self.page_faults += 1
            self.clock.charge(FAULT_NS)
            try:
                ok = p.mm.fault(stop.fault_gva, stop.fault_access)
            except SyscallError:  # the file behind the mapping could not be read (EIO)
                self.force_signal(p, SIGBUS, BUS_ADRERR, stop.fault_gva)
                return
            except OutOfMemory:  # not even the reserves were left for this page
                self.send_signal(p, SIGKILL)
                return
            self.fs_commit()  # a shared DAX mapping's fault may have filled a hole
            if not ok:
                if p.mm.fault_beyond_eof:
                    self.force_signal(p, SIGBUS, BUS_ADRERR, stop.fault_gva)
                else:  # no mapping there, or one that does not allow the access
                    code = SEGV_MAPERR if p.mm.find(stop.fault_gva) is None else SEGV_ACCERR
                    self.force_signal(p, SIGSEGV, code, stop.fault_gva)
            elif self.checkpointer is not None:
                v = p.mm.find(stop.fault_gva)
                # (a write to a page living in the image file filled nothing from a file)
                if v is not None and v.file and not p.mm.shadowed:
                    self.checkpointer.note_mmap_fill(v.shared, getattr(v.backing, "ino", None))
        elif stop.kind == STOP_INVALID:
            self.force_signal(p, SIGILL, ILL_ILLOPN, stop.pc)
        elif stop.kind == STOP_EXCEPTION:
            sig = EXCEPTION_SIGNAL.get(stop.intno, SIGSEGV)
            code, at = EXCEPTION_CODE.get(stop.intno, (SI_KERNEL, 0))
            self.force_signal(p, sig, code, stop.pc if at else 0)
        elif stop.kind == STOP_DEADLINE:
            self._quantum_over = True

    def add_timer(self, deadline_ns: int, fire: Callable[[], None]) -> None:
        """Call `fire` once the machine's uptime reaches deadline_ns (sleeps, futex and select
        timeouts, timerfd)."""
        self._timer_seq += 1
        heapq.heappush(self.timers, (deadline_ns, self._timer_seq, fire))

    def tick(self) -> None:
        """Periodic kernel work in virtual time: due timers, and the page-cache write-back
        (not with checkpointing, where storage changes only together with a checkpoint)."""
        while self.timers and self.timers[0][0] <= self.clock.uptime_ns():
            heapq.heappop(self.timers)[2]()
        self.reclaim.kswapd()
        if self.balloon is not None and self.balloon.pending:
            self.balloon.adjust()
        if self.checkpointer is None and self.clock.uptime_ns() >= self.next_writeback_ns:
            self.sync()
            self.next_writeback_ns = self.clock.uptime_ns() + self.config.writeback_interval_ns


# Calls Linux ends with EINTR when a handler runs, SA_RESTART or not (-ERESTARTNOHAND,
# -ERESTART_RESTARTBLOCK; pause and sigsuspend are never restarted).
NO_RESTART = frozenset(NUMBERS[n] for n in ("pause", "rt_sigsuspend", "nanosleep", "clock_nanosleep", "select",
                                            "pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait")
                       if n in NUMBERS)


def _bits(mask: int):  # type: ignore[no-untyped-def]
    sig = 1
    while mask:
        if mask & 1:
            yield sig
        mask >>= 1
        sig += 1
