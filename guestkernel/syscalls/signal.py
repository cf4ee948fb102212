"""Signal syscalls: rt_sigaction, rt_sigprocmask, rt_sigreturn, kill, tgkill, rt_sigqueueinfo,
rt_sigtimedwait, sigaltstack, pause, and the timers that send signals (alarm, setitimer,
getitimer). What each signal carries (sender, code, value) is guestkernel/siginfo.py."""
from __future__ import annotations

import struct
from dataclasses import replace

from guestkernel.errors import EAGAIN, EINVAL, ENOMEM, EPERM, ESRCH, Block, SyscallError
from guestkernel.process import SS_AUTODISARM, SS_DISABLE, SS_ONSTACK, STACK_T, ZOMBIE, SigAction
from guestkernel.siginfo import SI_TKILL, SI_USER, SIGINFO_SIZE, SigInfo, discard, pending, take_lowest
from guestkernel.signalfd import signal_waitq
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import s32
from guestkernel.timerfd import unpack_timespec
from guestkernel.vfs import WaitQueue

SIGKILL, SIGSTOP = 9, 19
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))


@syscall("rt_sigaction")
def sys_rt_sigaction(k, p, sig, act, oldact, sigsetsize, *_):  # type: ignore[no-untyped-def]
    if not 1 <= sig <= 64 or sigsetsize != 8:
        raise SyscallError(EINVAL)
    cur = p.action(sig)
    if oldact:
        p.mm.copy_out(oldact, struct.pack("<QQQQ", cur.handler, cur.flags, cur.restorer, cur.mask))
    if act:
        if sig in (SIGKILL, SIGSTOP):
            raise SyscallError(EINVAL)
        handler, flags, restorer, mask = struct.unpack("<QQQQ", p.mm.copy_in(act, 32))
        p.sigactions[sig] = SigAction(handler, flags, restorer, mask & ~UNBLOCKABLE)
        if handler == 1:  # SIG_IGN discards what is pending, in every thread of the group
            leader = p.leader or p
            discard(leader.shared, sig)
            for t in k.procs.values():
                if (t.leader or t) is leader:
                    discard(t, sig)
    return 0


@syscall("rt_sigprocmask")
def sys_rt_sigprocmask(k, p, how, set_ptr, old_ptr, sigsetsize, *_):  # type: ignore[no-untyped-def]
    if sigsetsize != 8:
        raise SyscallError(EINVAL)
    old = p.sigmask
    if set_ptr:
        new = int.from_bytes(p.mm.copy_in(set_ptr, 8), "little")
        if how == SIG_BLOCK:
            p.sigmask |= new
        elif how == SIG_UNBLOCK:
            p.sigmask &= ~new
        elif how == SIG_SETMASK:
            p.sigmask = new
        else:
            raise SyscallError(EINVAL)
        p.sigmask &= ~UNBLOCKABLE
    if old_ptr:
        p.mm.copy_out(old_ptr, old.to_bytes(8, "little"))
    if k.deliverable(p):
        k.cpu.request_stop()
    return 0


@syscall("rt_sigpending")
def sys_rt_sigpending(k, p, ptr, size, *_):  # type: ignore[no-untyped-def]
    p.mm.copy_out(ptr, (pending(p) & p.sigmask).to_bytes(8, "little"))
    return 0


@syscall("rt_sigreturn")
def sys_rt_sigreturn(k, p, *_):  # type: ignore[no-untyped-def]
    k.sigreturn(p)
    from guestkernel.kernel import NO_RETURN

    return NO_RETURN


MINSIGSTKSZ = 2048


@syscall("sigaltstack")
def sys_sigaltstack(k, p, ss, old, *_):  # type: ignore[no-untyped-def]
    """The calling thread's alternate signal stack (handlers with SA_ONSTACK run on it)."""
    sp = k.cpu.reg("rsp")
    new = STACK_T.unpack(p.mm.copy_in(ss, STACK_T.size)) if ss else None
    if old:
        base, _flags, size = p.altstack
        p.mm.copy_out(old, STACK_T.pack(base, p.altstack_flags(sp), size))
    if new is not None:
        base, flags, size = new
        if p.on_altstack(sp):
            raise SyscallError(EPERM)
        mode = flags & ~SS_AUTODISARM
        if mode not in (0, SS_ONSTACK, SS_DISABLE):
            raise SyscallError(EINVAL)
        if mode == SS_DISABLE:
            p.altstack = (0, 0, 0)
        else:
            if size < MINSIGSTKSZ:
                raise SyscallError(ENOMEM)
            p.altstack = (base, flags & SS_AUTODISARM, size)
    return 0


def targets(k, p, pid: int):  # type: ignore[no-untyped-def]
    if pid > 0:
        q = k.procs.get(pid)
        return [q] if q is not None and q.state != ZOMBIE else []
    if pid == 0:
        return [q for q in k.procs.values() if q.pgid == p.pgid and q.state != ZOMBIE]
    if pid == -1:
        return [q for q in k.procs.values() if q.pid != 1 and q is not p and q.state != ZOMBIE]
    return [q for q in k.procs.values() if q.pgid == -pid and q.state != ZOMBIE]


def send(k, p, pid: int, sig: int, info: SigInfo | None, thread: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Signal `sig` (0: only check) to the processes `pid` names (their thread groups; with
    `thread`, the one thread), each with its own copy of `info`."""
    if not 0 <= sig <= 64:
        raise SyscallError(EINVAL)
    qs = targets(k, p, pid)
    if not qs:
        raise SyscallError(ESRCH)
    if sig:
        for q in qs:
            (k.send_signal if thread else k.send_group_signal)(q, sig, None if info is None else replace(info, signo=sig))
    return 0


@syscall("kill")
def sys_kill(k, p, pid, sig, *_):  # type: ignore[no-untyped-def]
    return send(k, p, s32(pid), s32(sig), SigInfo(s32(sig), SI_USER, (p.leader or p).pid))


@syscall("tgkill")
def sys_tgkill(k, p, tgid, tid, sig, *_):  # type: ignore[no-untyped-def]
    return sys_tkill(k, p, tid, sig)


@syscall("tkill")
def sys_tkill(k, p, tid, sig, *_):  # type: ignore[no-untyped-def]
    if s32(tid) <= 0:
        raise SyscallError(EINVAL)
    return send(k, p, s32(tid), s32(sig), SigInfo(s32(sig), SI_TKILL, (p.leader or p).pid), thread=True)


def user_info(k, p, pid: int, sig: int, uinfo: int) -> SigInfo:  # type: ignore[no-untyped-def]
    """rt_sigqueueinfo's siginfo from the program. A process may not pose as the kernel or as
    kill(2) towards another (Linux: EPERM for si_code >= 0 or SI_TKILL)."""
    info = SigInfo.unpack_user(p.mm.copy_in(uinfo, SIGINFO_SIZE), sig)
    if (info.code >= 0 or info.code == SI_TKILL) and pid != (p.leader or p).pid:
        raise SyscallError(EPERM)
    return info


@syscall("rt_sigqueueinfo")
def sys_rt_sigqueueinfo(k, p, pid, sig, uinfo, *_):  # type: ignore[no-untyped-def]
    pid, sig = s32(pid), s32(sig)
    return send(k, p, pid, sig, user_info(k, p, pid, sig, uinfo))


@syscall("rt_tgsigqueueinfo")
def sys_rt_tgsigqueueinfo(k, p, tgid, tid, sig, uinfo, *_):  # type: ignore[no-untyped-def]
    tgid, tid, sig = s32(tgid), s32(tid), s32(sig)
    if tgid <= 0 or tid <= 0:
        raise SyscallError(EINVAL)
    return send(k, p, tid, sig, user_info(k, p, tgid, sig, uinfo), thread=True)


@syscall("rt_sigtimedwait")
def sys_rt_sigtimedwait(k, p, set_ptr, info_ptr, timeout, sigsetsize, *_):  # type: ignore[no-untyped-def]
    """sigwaitinfo/sigtimedwait: take one pending signal of the set (the lowest) with its
    information instead of delivering it; wait for one (the set is let through meanwhile, as
    Linux's real_blocked), until the timeout (EAGAIN) or another signal (EINTR)."""
    if sigsetsize != 8:
        raise SyscallError(EINVAL)
    wanted = int.from_bytes(p.mm.copy_in(set_ptr, 8), "little") & ~UNBLOCKABLE
    timeout_ns = unpack_timespec(p.mm.copy_in(timeout, 16)) if timeout else None
    if timeout_ns is not None and timeout_ns < 0:
        raise SyscallError(EINVAL)
    own = WaitQueue("sigtimedwait")
    state = {"timed_out": timeout_ns == 0}
    if timeout_ns:
        def expire() -> None:
            state["timed_out"] = True
            own.wake()
        k.add_timer(k.clock.uptime_ns() + timeout_ns, expire)
    sigq = signal_waitq(p)

    def attempt() -> int:
        ready = pending(p) & wanted
        if ready:
            if own in sigq.pollers:
                sigq.pollers.remove(own)
            sig, info = take_lowest(p, ready)
            if info_ptr:
                p.mm.copy_out(info_ptr, info.pack())
            return sig
        if state["timed_out"]:
            if own in sigq.pollers:
                sigq.pollers.remove(own)
            raise SyscallError(EAGAIN)
        if own not in sigq.pollers:
            sigq.pollers.append(own)
        raise Block(own, retry=attempt, takes=wanted)

    return attempt()


@syscall("pause")
def sys_pause(k, p, *_):  # type: ignore[no-untyped-def]
    raise Block(WaitQueue("pause"))


def use_temporary_mask(p, mask_ptr: int) -> None:  # type: ignore[no-untyped-def]
    """sigsuspend, ppoll and pselect6 wait with another mask: the original comes back when the
    call returns to user mode, or when the handler it let in returns (Kernel.deliver_signals).
    A call retried after a wake-up keeps the original it saved first."""
    mask = int.from_bytes(p.mm.copy_in(mask_ptr, 8), "little") & ~UNBLOCKABLE
    if p.saved_sigmask is None:
        p.saved_sigmask = p.sigmask
    p.sigmask = mask


@syscall("rt_sigsuspend")
def sys_rt_sigsuspend(k, p, mask_ptr, size, *_):  # type: ignore[no-untyped-def]
    if size != 8:
        raise SyscallError(EINVAL)
    use_temporary_mask(p, mask_ptr)
    raise Block(WaitQueue("sigsuspend"))


# The real-time interval timer (alarm, ITIMER_REAL): SIGALRM when the machine's uptime reaches
# it, reloaded with its interval. Kernel timers cannot be cancelled: a generation number makes a
# replaced timer's expiry do nothing. Not inherited by fork, kept across exec, as Linux.
ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
SIGALRM = 14
_ITIMERVAL = struct.Struct("<qqqq")  # it_interval (sec, usec), it_value (sec, usec)


def arm_itimer(k, p, value_ns: int, interval_ns: int) -> None:  # type: ignore[no-untyped-def]
    p.itimer_gen += 1
    if value_ns <= 0:
        p.itimer_real = (0, 0)
        return
    gen = p.itimer_gen

    def fire(deadline: int) -> None:
        if p.itimer_gen != gen or p.state == ZOMBIE:
            return
        k.send_group_signal(p, SIGALRM)
        if interval_ns:
            now = k.clock.uptime_ns()
            nxt = deadline + max(1, (now - deadline) // interval_ns + 1) * interval_ns
            p.itimer_real = (nxt, interval_ns)
            k.add_timer(nxt, lambda: fire(nxt))
        else:
            p.itimer_real = (0, 0)

    deadline = k.clock.uptime_ns() + value_ns
    p.itimer_real = (deadline, interval_ns)
    k.add_timer(deadline, lambda: fire(deadline))


def itimer_left(k, p) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(ns until the real timer expires, 0 when disarmed; its interval)."""
    deadline, interval = p.itimer_real
    return (max(1, deadline - k.clock.uptime_ns()) if deadline else 0), interval


def _timeval(ns: int) -> tuple[int, int]:
    us = (ns + 999) // 1000  # a timer never reads as expired while it is armed
    return us // 1_000_000, us % 1_000_000


@syscall("alarm")
def sys_alarm(k, p, seconds, *_):  # type: ignore[no-untyped-def]
    left, _ = itimer_left(k, p)
    arm_itimer(k, p, (seconds & 0xFFFFFFFF) * 1_000_000_000, 0)
    sec, usec = divmod(left // 1000, 1_000_000)
    return sec + 1 if (left and sec == 0) or usec >= 500_000 else sec  # Linux rounds, at least 1


@syscall("setitimer")
def sys_setitimer(k, p, which, new, old, *_):  # type: ignore[no-untyped-def]
    which = s32(which)
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise SyscallError(EINVAL)
    val = _ITIMERVAL.unpack(p.mm.copy_in(new, 32)) if new else (0, 0, 0, 0)
    if any(u < 0 or u >= 1_000_000 for u in (val[1], val[3])) or val[0] < 0 or val[2] < 0:
        raise SyscallError(EINVAL)
    if which != ITIMER_REAL:  # CPU-time timers are not modelled: they never fire
        if old:
            p.mm.copy_out(old, bytes(32))
        return 0
    left, interval = itimer_left(k, p)
    if old:
        p.mm.copy_out(old, _ITIMERVAL.pack(*_timeval(interval), *_timeval(left)))
    arm_itimer(k, p, val[2] * 1_000_000_000 + val[3] * 1000, val[0] * 1_000_000_000 + val[1] * 1000)
    return 0


@syscall("getitimer")
def sys_getitimer(k, p, which, cur, *_):  # type: ignore[no-untyped-def]
    which = s32(which)
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise SyscallError(EINVAL)
    left, interval = itimer_left(k, p) if which == ITIMER_REAL else (0, 0)
    p.mm.copy_out(cur, _ITIMERVAL.pack(*_timeval(interval), *_timeval(left)))
    return 0
