"""Processes: identity, memory, descriptors, signal state, and the saved CPU context.

A process is runnable, blocked (a parked syscall waiting on a wait queue, retried when woken) or a
zombie (exited, waiting for its parent's wait4). The scheduler is round-robin over runnable
processes, switching at syscalls that block or exit and when the instruction quantum runs out.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from guestkernel.errors import EBADF, EMFILE, SyscallError
from guestkernel.mm import MM
from guestkernel.slab import NO_OBJECTS
from guestkernel.siginfo import SigInfo
from guestkernel.vfs import Node, OpenFile, WaitQueue

SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31  # sigaltstack's flags
STACK_T = struct.Struct("<Qi4xQ")  # stack_t: ss_sp, ss_flags, ss_size

if TYPE_CHECKING:
    from guestkernel.slab import Objects

RUNNABLE, BLOCKED, ZOMBIE = "runnable", "blocked", "zombie"
MAX_FDS = 1024
NSIG = 64


@dataclass
class SigAction:
    handler: int = 0  # SIG_DFL
    flags: int = 0
    restorer: int = 0
    mask: int = 0


class FDTable:
    def __init__(self, objects: "Objects" = NO_OBJECTS) -> None:
        self.fds: dict[int, OpenFile] = {}
        self.cloexec: set[int] = set()
        self.objects = objects  # where an open file description takes its filp object

    def get(self, fd: int) -> OpenFile:
        f = self.fds.get(fd)
        if f is None:
            raise SyscallError(EBADF)
        return f

    def lowest_free(self, start: int = 0) -> int:
        fd = start
        while fd in self.fds:
            fd += 1
        if fd >= MAX_FDS:
            raise SyscallError(EMFILE)
        return fd

    def install(self, f: OpenFile, fd: int | None = None, cloexec: bool = False, start: int = 0) -> int:
        if fd is None:
            fd = self.lowest_free(start)
        if not f.obj:
            f.obj = self.objects.alloc("filp")
        self.fds[fd] = f
        if cloexec:
            self.cloexec.add(fd)
        else:
            self.cloexec.discard(fd)
        return fd

    def remove(self, fd: int) -> OpenFile:
        f = self.fds.pop(fd, None)
        if f is None:
            raise SyscallError(EBADF)
        self.cloexec.discard(fd)
        return f

    def copy(self) -> "FDTable":
        t = FDTable(self.objects)
        t.fds = dict(self.fds)
        t.cloexec = set(self.cloexec)
        for f in t.fds.values():
            f.refs += 1
        return t


@dataclass(eq=False)
class SharedPending:
    """Signals sent to a whole thread group (kill, sigqueue, a child's SIGCHLD, the real-time
    timer), pending once for all its threads (Linux's signal->shared_pending): the first thread
    that does not block one takes it. A thread's own pending set (tgkill, its faults) is
    Process.sigpending."""
    sigpending: int = 0
    siginfo: dict[int, list[SigInfo]] = field(default_factory=dict)


@dataclass
class FsContext:
    """What clone's CLONE_FS shares (Linux's fs_struct): the working directory and the umask.
    The threads of a process share one; fork copies it."""
    cwd: Node
    umask: int = 0o022


@dataclass
class Process:
    pid: int
    ppid: int
    mm: MM
    fds: FDTable
    fs: FsContext
    exe: bytes = b""
    comm: bytes = b""
    pgid: int = 0
    sid: int = 0
    affinity: int = 0                       # sched_setaffinity's mask (0: every CPU)
    sigwaitq: WaitQueue | None = None       # woken when a signal becomes pending (signalfd)
    altstack: tuple[int, int, int] = (0, 0, 0)  # sigaltstack: (ss_sp, SS_AUTODISARM or 0, ss_size); size 0: none
    state: str = RUNNABLE
    ctx: object = None                      # saved Unicorn context while not on the CPU
    set_regs: dict[str, int] = field(default_factory=dict)  # applied when next put on the CPU
    pending_call: Callable[[], int] | None = None  # a parked syscall to retry when woken
    pending_nr: int = 0
    pending_done: int = 0                   # bytes a parked write had already written
    pending_takes: int = 0                  # signals the parked call takes itself (Block.takes)
    futex_wait: Any = None                  # the Waiter of its last futex wait (futex.py; checkpoints)
    pending_block: Any = None               # the Block its parked call raised last (a sleep's end, its EINTR)
    waiting_on: WaitQueue | None = None
    exit_status: int = 0                    # the wait(2) status word of a zombie
    children: list["Process"] = field(default_factory=list)
    child_waitq: WaitQueue = field(default_factory=lambda: WaitQueue("wait4"))
    vfork_waitq: WaitQueue | None = None    # woken when this vfork child execs or exits
    vfork_parent_blocked: bool = False      # parked inside vfork until its pid is returned
    sigactions: dict[int, SigAction] = field(default_factory=dict)
    sigmask: int = 0
    saved_sigmask: int | None = None        # the mask before sigsuspend/ppoll/pselect6 replaced it
    sigpending: int = 0
    siginfo: dict[int, list[SigInfo]] = field(default_factory=dict)  # what each pending signal carries
    shared: SharedPending = field(default_factory=SharedPending)  # the group's pending signals
    sigframes: list[tuple[object, int]] = field(default_factory=list)  # (saved context, old mask)
    clear_child_tid: int = 0
    leader: "Process | None" = None         # a thread's group leader (None: a process)
    rlimits: dict[int, tuple[int, int]] = field(default_factory=dict)
    pdeath_signal: int = 0                  # prctl(PR_SET_PDEATHSIG): sent when the parent exits
    itimer_real: tuple[int, int] = (0, 0)   # alarm/ITIMER_REAL: (uptime deadline ns or 0, interval ns)
    itimer_gen: int = 0                     # bumped when the timer is set: older expiries are void
    utime_insns: int = 0                    # instructions retired while on the CPU
    cutime_insns: int = 0                   # those of its reaped children (and theirs)
    start_ns: int = 0                       # uptime when it was created
    syscalls: int = 0

    @property
    def cwd(self) -> Node:
        return self.fs.cwd

    @cwd.setter
    def cwd(self, node: Node) -> None:
        self.fs.cwd = node

    @property
    def umask(self) -> int:
        return self.fs.umask

    @umask.setter
    def umask(self, mask: int) -> None:
        self.fs.umask = mask

    def on_altstack(self, sp: int) -> bool:
        """Linux's on_sig_stack: is sp inside the thread's alternate signal stack?"""
        base, _flags, size = self.altstack
        return bool(size) and base < sp <= base + size

    def restore_altstack(self, ss_sp: int, ss_flags: int, ss_size: int, sp: int) -> None:
        """rt_sigreturn puts back the alternate stack its frame recorded (Linux's
        restore_altstack: what a handler changed is undone; refused, silently, when the
        resumed code runs on the alternate stack)."""
        if self.on_altstack(sp):
            return
        mode = ss_flags & ~SS_AUTODISARM
        if mode == SS_DISABLE:
            self.altstack = (0, 0, 0)
        elif mode in (0, SS_ONSTACK) and ss_size >= 2048:  # MINSIGSTKSZ
            self.altstack = (ss_sp, ss_flags & SS_AUTODISARM, ss_size)

    def altstack_flags(self, sp: int) -> int:
        """The ss_flags sigaltstack and a signal frame report: SS_DISABLE, SS_ONSTACK or 0."""
        _base, flags, size = self.altstack
        return (SS_DISABLE if not size else SS_ONSTACK if self.on_altstack(sp) else 0) | (flags & SS_AUTODISARM)

    def action(self, sig: int) -> SigAction:
        return self.sigactions.setdefault(sig, SigAction())
