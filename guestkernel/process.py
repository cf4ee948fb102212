"""Processes: identity, memory, descriptors, signal state, and the saved CPU context.

A process is runnable, blocked (a parked syscall waiting on a wait queue, retried when woken) or a
zombie (exited, waiting for its parent's wait4). The scheduler is round-robin over runnable
processes, switching at syscalls that block or exit and when the instruction quantum runs out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from guestkernel.errors import EBADF, EMFILE, SyscallError
from guestkernel.mm import MM
from guestkernel.slab import NO_OBJECTS
from guestkernel.vfs import Node, OpenFile, WaitQueue

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


@dataclass
class Process:
    pid: int
    ppid: int
    mm: MM
    fds: FDTable
    cwd: Node
    exe: bytes = b""
    comm: bytes = b""
    pgid: int = 0
    sid: int = 0
    umask: int = 0o022
    affinity: int = 0                       # sched_setaffinity's mask (0: every CPU)
    sigwaitq: WaitQueue | None = None       # woken when a signal becomes pending (signalfd)
    state: str = RUNNABLE
    ctx: object = None                      # saved Unicorn context while not on the CPU
    set_regs: dict[str, int] = field(default_factory=dict)  # applied when next put on the CPU
    pending_call: Callable[[], int] | None = None  # a parked syscall to retry when woken
    pending_nr: int = 0
    pending_done: int = 0                   # bytes a parked write had already written
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

    def action(self, sig: int) -> SigAction:
        return self.sigactions.setdefault(sig, SigAction())
