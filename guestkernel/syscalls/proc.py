"""Process syscalls: fork/vfork/clone, execve, exit, wait4, identities, process groups, limits."""
from __future__ import annotations

import struct

from guestkernel.errors import E2BIG, ECHILD, EINVAL, ENOSYS, EPERM, Block, SyscallError
from guestkernel.process import ZOMBIE
from guestkernel import futex
from guestkernel.siginfo import child_info
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import path_arg, process_arg, s32

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_VFORK, CLONE_PARENT, CLONE_THREAD, CLONE_SETTLS = 0x4000, 0x8000, 0x10000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID = 0x100000, 0x200000, 0x1000000
WNOHANG, WUNTRACED = 1, 2
ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_CET_STATUS = 0x3001


THREAD_FLAGS = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD


def do_clone(k, p, flags, stack, parent_tid, child_tid, tls):  # type: ignore[no-untyped-def]
    thread = bool(flags & CLONE_THREAD)
    if thread and flags & THREAD_FLAGS != THREAD_FLAGS:
        raise SyscallError(EINVAL, "a thread shares memory, files, fs and signal actions")
    if flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(EINVAL)
    share_vm = bool(flags & CLONE_VM)
    if share_vm and not thread and not flags & CLONE_VFORK:
        raise SyscallError(ENOSYS, "CLONE_VM without CLONE_VFORK or CLONE_THREAD")

    child = k.fork(p, share_vm=share_vm)
    if thread:
        # One address space, descriptor table and signal actions; not a child to wait for.
        for f in child.fds.fds.values():
            f.refs -= 1
        child.fds, child.sigactions, child.fs, child.shared = p.fds, p.sigactions, p.fs, p.shared
        leader = p.leader or p
        child.leader, child.ppid = leader, leader.ppid
        p.children.remove(child)
    if stack:
        child.set_regs["rsp"] = stack
    if flags & CLONE_SETTLS:
        child.set_regs["fs_base"] = tls
    if flags & CLONE_PARENT_SETTID and parent_tid:
        p.mm.copy_out(parent_tid, struct.pack("<i", child.pid))
    if flags & CLONE_CHILD_SETTID and child_tid:
        child.mm.copy_out(child_tid, struct.pack("<i", child.pid))
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = child_tid
    if flags & CLONE_VFORK:
        from guestkernel.vfs import WaitQueue

        child.vfork_waitq = WaitQueue("vfork")
        q = child.vfork_waitq
        pid = child.pid
        k.park(p, lambda: pid, 0, q)
        p.vfork_parent_blocked = True  # until the parked vfork returns the pid (finish_parked)
        k.cpu.request_stop()
        from guestkernel.kernel import NO_RETURN

        return NO_RETURN
    return child.pid


@syscall("fork")
def sys_fork(k, p, *_):  # type: ignore[no-untyped-def]
    return do_clone(k, p, 17, 0, 0, 0, 0)


@syscall("vfork")
def sys_vfork(k, p, *_):  # type: ignore[no-untyped-def]
    return do_clone(k, p, CLONE_VM | CLONE_VFORK | 17, 0, 0, 0, 0)


@syscall("clone")
def sys_clone(k, p, flags, stack, parent_tid, child_tid, tls, *_):  # type: ignore[no-untyped-def]
    return do_clone(k, p, flags, stack, parent_tid, child_tid, tls)


CLONE_ARGS = struct.Struct("<11Q")  # flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
#                                     tls, set_tid, set_tid_size, cgroup
CLONE_ARGS_SIZE_VER0 = 64
CLONE_PIDFD, CLONE_NEWNS, CLONE_INTO_CGROUP = 0x1000, 0x20000, 1 << 33


@syscall("clone3")
def sys_clone3(k, p, uargs, size, *_):  # type: ignore[no-untyped-def]
    """clone3(2) as glibc's pthread_create calls it first: the same clone, its arguments in a
    struct (the stack given as base and size); pidfds, set_tid and cgroups are not offered."""
    if size < CLONE_ARGS_SIZE_VER0 or size > 4096:
        raise SyscallError(EINVAL)
    raw = p.mm.copy_in(uargs, min(size, CLONE_ARGS.size)).ljust(CLONE_ARGS.size, b"\0")
    if size > CLONE_ARGS.size and any(p.mm.copy_in(uargs + CLONE_ARGS.size, size - CLONE_ARGS.size)):
        raise SyscallError(E2BIG)  # fields this kernel does not know are set
    flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup = \
        CLONE_ARGS.unpack(raw)
    if exit_signal & ~0xFF or exit_signal > 64 or flags & 0xFF or (stack == 0) != (stack_size == 0):
        raise SyscallError(EINVAL)
    if flags & (CLONE_PIDFD | CLONE_INTO_CGROUP) or set_tid or set_tid_size:
        raise SyscallError(EINVAL)  # (not offered: no pidfds, no pid namespaces, no cgroups)
    if flags & CLONE_THREAD and exit_signal:
        raise SyscallError(EINVAL)
    return do_clone(k, p, flags | exit_signal, stack + stack_size if stack else 0, parent_tid, child_tid, tls)


@syscall("execve")
def sys_execve(k, p, path, argv, envp, *_):  # type: ignore[no-untyped-def]
    path_b = path_arg(k, p, path)
    args = [p.mm.read_cstr(a, 1 << 17) for a in p.mm.read_ptr_array(argv)] if argv else []
    env = [p.mm.read_cstr(e, 1 << 17) for e in p.mm.read_ptr_array(envp)] if envp else []
    k.exec(p, path_b, args, env)
    from guestkernel.kernel import NO_RETURN

    return NO_RETURN


@syscall("exit")
def sys_exit(k, p, code, *_):  # type: ignore[no-untyped-def]
    """The calling thread ends (a process's only thread: the process)."""
    k.exit_process(p, (code & 0xFF) << 8)
    from guestkernel.kernel import NO_RETURN

    return NO_RETURN


@syscall("exit_group")
def sys_exit_group(k, p, code, *_):  # type: ignore[no-untyped-def]
    """Every thread of the group ends; the leader carries the status."""
    leader = p.leader or p
    k.exit_process(leader, (code & 0xFF) << 8)
    if p.state != ZOMBIE:
        k.exit_process(p, (code & 0xFF) << 8)
    from guestkernel.kernel import NO_RETURN

    return NO_RETURN


def matches(p, child, pid: int) -> bool:  # type: ignore[no-untyped-def]
    if pid == -1:
        return True
    if pid > 0:
        return child.pid == pid
    if pid == 0:
        return child.pgid == p.pgid
    return child.pgid == -pid


@syscall("wait4")
def sys_wait4(k, p, pid, status_ptr, options, rusage, *_):  # type: ignore[no-untyped-def]
    pid = s32(pid)
    candidates = [c for c in p.children if matches(p, c, pid)]
    if not candidates:
        raise SyscallError(ECHILD)
    for c in candidates:
        if c.state == ZOMBIE:
            if status_ptr:
                p.mm.copy_out(status_ptr, struct.pack("<i", c.exit_status))
            if rusage:
                p.mm.copy_out(rusage, bytes(144))
            k.reap(p, c)
            return c.pid
    if options & WNOHANG:
        return 0
    raise Block(p.child_waitq)


@syscall("waitid")
def sys_waitid(k, p, idtype, id_, infop, options, *_):  # type: ignore[no-untyped-def]
    pid = -1 if idtype == 0 else id_ if idtype == 1 else -id_
    candidates = [c for c in p.children if matches(p, c, pid)]
    if not candidates:
        raise SyscallError(ECHILD)
    for c in candidates:
        if c.state == ZOMBIE:
            if infop:
                p.mm.copy_out(infop, child_info(c.exit_status, c.pid, k.cpu_ticks(c)).pack())
            if not options & 0x01000000:  # WNOWAIT
                k.reap(p, c)
            return 0
    if options & WNOHANG:
        return 0
    raise Block(p.child_waitq)


@syscall("getpid")
def sys_getpid(k, p, *_):  # type: ignore[no-untyped-def]
    return (p.leader or p).pid


@syscall("gettid")
def sys_gettid(k, p, *_):  # type: ignore[no-untyped-def]
    return p.pid


@syscall("getppid")
def sys_getppid(k, p, *_):  # type: ignore[no-untyped-def]
    return (p.leader or p).ppid


@syscall("getuid", "geteuid", "getgid", "getegid")
def sys_getuid(k, p, *_):  # type: ignore[no-untyped-def]
    return 0


@syscall("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid", "setgroups")
def sys_setuid(k, p, *_):  # type: ignore[no-untyped-def]
    return 0


@syscall("getresuid", "getresgid")
def sys_getresuid(k, p, a, b, c, *_):  # type: ignore[no-untyped-def]
    for ptr in (a, b, c):
        p.mm.copy_out(ptr, b"\0\0\0\0")
    return 0


@syscall("getgroups")
def sys_getgroups(k, p, size, lst, *_):  # type: ignore[no-untyped-def]
    return 0


@syscall("getpgrp")
def sys_getpgrp(k, p, *_):  # type: ignore[no-untyped-def]
    return p.pgid


@syscall("getpgid")
def sys_getpgid(k, p, pid, *_):  # type: ignore[no-untyped-def]
    return process_arg(k, p, pid).pgid


@syscall("setpgid")
def sys_setpgid(k, p, pid, pgid, *_):  # type: ignore[no-untyped-def]
    q = process_arg(k, p, pid)
    q.pgid = q.pid if pgid == 0 else pgid
    return 0


@syscall("getsid")
def sys_getsid(k, p, pid, *_):  # type: ignore[no-untyped-def]
    return process_arg(k, p, pid).sid


@syscall("setsid")
def sys_setsid(k, p, *_):  # type: ignore[no-untyped-def]
    if p.pgid == p.pid:
        raise SyscallError(EPERM)
    p.sid = p.pgid = p.pid
    return p.pid


@syscall("set_tid_address")
def sys_set_tid_address(k, p, ptr, *_):  # type: ignore[no-untyped-def]
    p.clear_child_tid = ptr
    return p.pid


@syscall("arch_prctl")
def sys_arch_prctl(k, p, code, addr, *_):  # type: ignore[no-untyped-def]
    if code == ARCH_SET_FS:
        k.cpu.set_reg("fs_base", addr)
        return 0
    if code == ARCH_SET_GS:
        k.cpu.set_reg("gs_base", addr)
        return 0
    if code == ARCH_GET_FS:
        p.mm.copy_out(addr, struct.pack("<Q", k.cpu.reg("fs_base")))
        return 0
    if code == ARCH_GET_GS:
        p.mm.copy_out(addr, struct.pack("<Q", k.cpu.reg("gs_base")))
        return 0
    raise SyscallError(EINVAL)


@syscall("prctl")
def sys_prctl(k, p, option, arg2, *_):  # type: ignore[no-untyped-def]
    if option == 1:  # PR_SET_PDEATHSIG (cleared in a fork's child, as Linux)
        if arg2 > 64:
            raise SyscallError(EINVAL)
        p.pdeath_signal = arg2
        return 0
    if option == 2:  # PR_GET_PDEATHSIG
        p.mm.copy_out(arg2, struct.pack("<i", p.pdeath_signal))
        return 0
    if option == 15:  # PR_SET_NAME
        p.comm = p.mm.read_cstr(arg2, 16)[:15]
        return 0
    if option == 16:  # PR_GET_NAME
        p.mm.copy_out(arg2, p.comm.ljust(16, b"\0"))
        return 0
    raise SyscallError(EINVAL)


RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF
DEFAULT_RLIMITS = {3: (8 << 20, RLIM_INFINITY), 7: (1024, 1024)}  # RLIMIT_STACK, RLIMIT_NOFILE


def get_rlimit(p, res: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    return p.rlimits.get(res, DEFAULT_RLIMITS.get(res, (RLIM_INFINITY, RLIM_INFINITY)))


@syscall("prlimit64")
def sys_prlimit64(k, p, pid, res, new, old, *_):  # type: ignore[no-untyped-def]
    if res >= 16:
        raise SyscallError(EINVAL)
    q = process_arg(k, p, pid)
    if old:
        p.mm.copy_out(old, struct.pack("<QQ", *get_rlimit(q, res)))
    if new:
        q.rlimits[res] = struct.unpack("<QQ", p.mm.copy_in(new, 16))
    return 0


@syscall("getrlimit")
def sys_getrlimit(k, p, res, ptr, *_):  # type: ignore[no-untyped-def]
    return sys_prlimit64(k, p, 0, res, 0, ptr)


@syscall("setrlimit")
def sys_setrlimit(k, p, res, ptr, *_):  # type: ignore[no-untyped-def]
    return sys_prlimit64(k, p, 0, res, ptr, 0)


@syscall("getrusage")
def sys_getrusage(k, p, who, ptr, *_):  # type: ignore[no-untyped-def]
    us = k.clock.user_ns() // 1000
    p.mm.copy_out(ptr, struct.pack("<qqqq", us // 10**6, us % 10**6, 0, 0).ljust(144, b"\0"))
    return 0


@syscall("times")
def sys_times(k, p, ptr, *_):  # type: ignore[no-untyped-def]
    ticks = k.clock.uptime_ns() // 10**7
    if ptr:
        p.mm.copy_out(ptr, struct.pack("<qqqq", k.clock.user_ns() // 10**7, k.clock.kernel_ns // 10**7, 0, 0))
    return ticks


@syscall("getpriority")
def sys_getpriority(k, p, *_):  # type: ignore[no-untyped-def]
    return 20


@syscall("setpriority", "sched_setscheduler", "sched_setparam")
def sys_setpriority(k, p, *_):  # type: ignore[no-untyped-def]
    return 0


def _mask_bytes(k) -> int:  # type: ignore[no-untyped-def]
    """cpumask_size(): whole longs for the machine's CPUs."""
    return (k.config.cpus + 63) // 64 * 8


@syscall("sched_getaffinity")
def sys_sched_getaffinity(k, p, pid, size, mask, *_):  # type: ignore[no-untyped-def]
    size &= 0xFFFFFFFF
    if size * 8 < k.config.cpus or size % 8:
        raise SyscallError(EINVAL)
    t = process_arg(k, p, s32(pid))
    n = min(size, _mask_bytes(k))
    p.mm.copy_out(mask, (t.affinity or (1 << k.config.cpus) - 1).to_bytes(n, "little"))
    return n


@syscall("sched_setaffinity")
def sys_sched_setaffinity(k, p, pid, size, mask, *_):  # type: ignore[no-untyped-def]
    """The mask is kept (and inherited); the scheduler runs everything on one host thread."""
    t = process_arg(k, p, s32(pid))
    raw = p.mm.copy_in(mask, min(size & 0xFFFFFFFF, _mask_bytes(k) + 64))
    want = int.from_bytes(raw, "little") & ((1 << k.config.cpus) - 1)
    if not want:
        raise SyscallError(EINVAL)
    t.affinity = want
    return 0


@syscall("sched_yield")
def sys_sched_yield(k, p, *_):  # type: ignore[no-untyped-def]
    k._quantum_over = True
    k.cpu.request_stop()
    return 0


@syscall("set_robust_list", "get_robust_list")
def sys_robust_list(k, p, *_):  # type: ignore[no-untyped-def]
    return 0


@syscall("futex")
def sys_futex(k, p, uaddr, op, val, timeout, uaddr2, val3):  # type: ignore[no-untyped-def]
    return futex.sys_futex(k, p, uaddr, s32(op), val, timeout, uaddr2, val3)
