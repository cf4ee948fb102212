"""Futexes: FUTEX_WAIT/WAKE (and the _BITSET forms) with timeouts in virtual time, REQUEUE,
CMP_REQUEUE and WAKE_OP; the priority-inheritance ops answer ENOSYS (glibc then does without).

A waiter parks on a wait queue of its own, so that FUTEX_WAKE wakes exactly the waiters it
picks (oldest first). Futexes are keyed as Linux keys them: a private futex (FUTEX_PRIVATE_FLAG,
or a word in a private mapping) by (address space, address), a shared one by the guest-physical
address of the word, so that processes sharing a MAP_SHARED or System V segment meet on it.

A timed wait registers a timer with the kernel (`Kernel.add_timer`): when it expires the waiter
is woken and its call returns ETIMEDOUT; when every process waits, the machine clock jumps to
the next timer, as an idle CPU would sleep until its next interrupt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from guestkernel.errors import EAGAIN, EINVAL, ENOSYS, ETIMEDOUT, Block, SyscallError
from guestkernel.mm import TASK_SIZE
from guestkernel.paging import PTE_ADDR
from guestkernel.timerfd import unpack_timespec
from guestkernel.vfs import WaitQueue

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process

FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF
FUTEX_OP_OPARG_SHIFT = 8


def _s12(x: int) -> int:
    """A sign-extended 12-bit field (WAKE_OP's oparg and cmparg)."""
    x &= 0xFFF
    return x - 0x1000 if x & 0x800 else x


@dataclass
class Waiter:
    proc: "Process"
    bitset: int
    key: object = None  # the futex it waits on (a requeue moves it)
    waitq: WaitQueue = field(default_factory=lambda: WaitQueue("futex"))
    woken: bool = False
    timed_out: bool = False
    deadline: int | None = None  # uptime ns when a timed wait ends
    pos: int = 0  # its place in its futex's queue when an image was taken (a restart keeps it)


class Futexes:
    def __init__(self) -> None:
        self.waiters: dict[object, list[Waiter]] = {}

    @staticmethod
    def key(p: "Process", uaddr: int, private: bool) -> object:
        if not private:
            v = p.mm.find(uaddr)
            if v is not None and v.shared:
                return ("shared", p.mm._gpa(uaddr, 0))
        return ("private", id(p.mm), uaddr)

    def wait(self, k: "Kernel", p: "Process", uaddr: int, val: int, deadline_ns: int | None, bitset: int,
             private: bool) -> int:
        if uaddr % 4:
            raise SyscallError(EINVAL)
        if bitset == 0:
            raise SyscallError(EINVAL)
        if int.from_bytes(p.mm.copy_in(uaddr, 4), "little") != val & 0xFFFFFFFF:
            raise SyscallError(EAGAIN)
        if deadline_ns is not None and k.clock.uptime_ns() >= deadline_ns:
            raise SyscallError(ETIMEDOUT)
        w = Waiter(p, bitset, self.key(p, uaddr, private), deadline=deadline_ns)
        self._enqueue(k, w)
        raise Block(w.waitq, retry=self._until_woken(w))

    def _enqueue(self, k: "Kernel", w: Waiter) -> None:
        self.waiters.setdefault(w.key, []).append(w)
        w.proc.futex_wait = w
        if w.deadline is not None:
            def expire() -> None:
                if not w.woken:
                    w.timed_out = True
                    self._drop(w.key, w)
                    w.waitq.wake()
            k.add_timer(w.deadline, expire)

    @staticmethod
    def _until_woken(w: Waiter) -> Callable[[], int]:
        """The parked call: 0 once woken, ETIMEDOUT once its time is up, else wait on."""
        def retry() -> int:
            if w.woken:
                return 0
            if w.timed_out:
                raise SyscallError(ETIMEDOUT)
            raise Block(w.waitq, retry=retry)
        return retry

    # -- across a restart (checkpoint/state.py) ------------------------------------------------
    def describe(self, w: Waiter, now: int) -> dict[str, Any] | None:
        """What an image keeps of a parked wait: woken or timed out already (the call returns
        that), or the word it waits on now (a requeue may have moved it) as an address of its
        process, its bitset, place in the queue and time left. None: a shared futex its process
        does not map (a checkpoint cannot describe it)."""
        if w.woken or w.timed_out:
            return {"woken": w.woken, "timed_out": w.timed_out}
        key = w.key
        assert isinstance(key, tuple)
        if key[0] == "private":
            gva: int | None = key[2]  # (a private futex is its address space's: requeued within it)
        else:
            page, off = key[1] & ~0xFFF, key[1] & 0xFFF
            gva = next((g + off for g, _slot, pte in w.proc.mm.aspace.leaves(0, TASK_SIZE)
                        if pte & PTE_ADDR == page), None)
            if gva is None:
                return None
        return {"private": key[0] == "private", "uaddr": gva, "bitset": w.bitset,
                "pos": self.waiters.get(key, []).index(w) if w in self.waiters.get(key, []) else 0,
                "left": max(1, w.deadline - now) if w.deadline is not None else None}

    def rewait(self, k: "Kernel", p: "Process", d: dict[str, Any]) -> tuple[Callable[[], int], WaitQueue | None]:
        """A parked wait a restart brings back: queued on its futex at once (before any process
        runs and could wake it), without comparing the word again. Returns the parked call and
        the queue to park the process on (None: woken or timed out already, it just returns).
        The queues are put back in their order by `reorder` once every process is back."""
        if d.get("woken") or d.get("timed_out"):
            w = Waiter(p, 0, woken=d["woken"], timed_out=d["timed_out"])
            p.futex_wait = w
            return self._until_woken(w), None
        left = d["left"]
        w = Waiter(p, d["bitset"], self.key(p, d["uaddr"], d["private"]), pos=d["pos"],
                   deadline=k.clock.uptime_ns() + left if left is not None else None)
        self._enqueue(k, w)
        return self._until_woken(w), w.waitq

    def reorder(self) -> None:
        for ws in self.waiters.values():
            ws.sort(key=lambda w: w.pos)

    def wake(self, p: "Process", uaddr: int, n: int, bitset: int, private: bool) -> int:
        if bitset == 0:
            raise SyscallError(EINVAL)
        return self.wake_key(self.key(p, uaddr, private), n, bitset)

    def wake_key(self, key: object, n: int, bitset: int = FUTEX_BITSET_MATCH_ANY) -> int:
        woken = 0
        for w in list(self.waiters.get(key, [])):
            if woken >= n:
                break
            if w.proc.waiting_on is not w.waitq or w.proc.state != "blocked":
                self._drop(key, w)  # interrupted by a signal or gone: no longer waiting
                continue
            if not w.bitset & bitset:
                continue
            w.woken = True
            self._drop(key, w)
            w.waitq.wake()
            woken += 1
        return woken

    def requeue(self, p: "Process", uaddr: int, uaddr2: int, wake: int, move: int, cmpval: int | None,
                private: bool) -> int:
        """Wake up to `wake` waiters of uaddr and move up to `move` of the others to uaddr2 (if
        the word still holds `cmpval`); returns how many were woken or moved, as Linux does."""
        if uaddr % 4 or uaddr2 % 4:
            raise SyscallError(EINVAL)
        key, key2 = self.key(p, uaddr, private), self.key(p, uaddr2, private)
        if cmpval is not None and int.from_bytes(p.mm.copy_in(uaddr, 4), "little") != cmpval & 0xFFFFFFFF:
            raise SyscallError(EAGAIN)
        woken = self.wake_key(key, wake)
        moved = 0
        for w in list(self.waiters.get(key, [])):
            if moved >= move:
                break
            self._drop(key, w)
            if w.proc.waiting_on is not w.waitq or w.proc.state != "blocked":
                continue
            w.key = key2
            self.waiters.setdefault(key2, []).append(w)
            moved += 1
        return woken + moved

    def wake_op(self, p: "Process", uaddr: int, uaddr2: int, wake: int, wake2: int, encoded: int,
                private: bool) -> int:
        """FUTEX_WAKE_OP: *uaddr2 = op(old, oparg); wake up to `wake` of uaddr and, if
        cmp(old, cmparg), up to `wake2` of uaddr2."""
        if uaddr % 4 or uaddr2 % 4:
            raise SyscallError(EINVAL)
        op, cmp = (encoded >> 28) & 7, (encoded >> 24) & 15
        oparg, cmparg = _s12(encoded >> 12), _s12(encoded)
        if encoded & (FUTEX_OP_OPARG_SHIFT << 28):
            oparg = 1 << (oparg & 31)  # (Linux masks an out-of-range shift and says so in its log)
        if op > 4 or cmp > 5:
            raise SyscallError(ENOSYS)
        old = int.from_bytes(p.mm.copy_in(uaddr2, 4), "little")
        new = (oparg, old + oparg, old | oparg, old & ~oparg, old ^ oparg)[op] & 0xFFFFFFFF
        p.mm.copy_out(uaddr2, new.to_bytes(4, "little"))
        signed = old - (1 << 32) if old & 0x80000000 else old
        woken = self.wake_key(self.key(p, uaddr, private), wake)
        if (signed == cmparg, signed != cmparg, signed < cmparg, signed <= cmparg, signed > cmparg,
                signed >= cmparg)[cmp]:
            woken += self.wake_key(self.key(p, uaddr2, private), wake2)
        return woken

    def _drop(self, key: object, w: Waiter) -> None:
        ws = self.waiters.get(key)
        if ws is not None and w in ws:
            ws.remove(w)
            if not ws:
                del self.waiters[key]


def futex_table(k: "Kernel") -> Futexes:
    ft = getattr(k, "futexes", None)
    if ft is None:
        ft = k.futexes = Futexes()
    return ft


def sys_futex(k: "Kernel", p: "Process", uaddr: int, op: int, val: int, timeout: int, uaddr2: int,
              val3: int) -> int:
    cmd = op & 0x7F
    private = bool(op & FUTEX_PRIVATE_FLAG)
    ft = futex_table(k)
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        bitset = FUTEX_BITSET_MATCH_ANY if cmd == FUTEX_WAIT else val3 & 0xFFFFFFFF
        deadline = None
        if timeout:
            ns = unpack_timespec(p.mm.copy_in(timeout, 16))
            if cmd == FUTEX_WAIT:
                deadline = k.clock.uptime_ns() + ns  # relative, CLOCK_MONOTONIC
            elif op & FUTEX_CLOCK_REALTIME:
                deadline = k.clock.uptime_ns() + (ns - k.clock.now_ns())
            else:
                deadline = ns  # absolute CLOCK_MONOTONIC (= uptime)
        return ft.wait(k, p, uaddr, val, deadline, bitset, private)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        bitset = FUTEX_BITSET_MATCH_ANY if cmd == FUTEX_WAKE else val3 & 0xFFFFFFFF
        return ft.wake(p, uaddr, val & 0x7FFFFFFF, bitset, private)
    val2 = timeout & 0xFFFFFFFF  # these ops pass a count (an int) where the others pass a timeout
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        if (val | val2) & 0x80000000:
            raise SyscallError(EINVAL)
        return ft.requeue(p, uaddr, uaddr2, val, val2, val3 if cmd == FUTEX_CMP_REQUEUE else None, private)
    if cmd == FUTEX_WAKE_OP:
        return ft.wake_op(p, uaddr, uaddr2, val & 0x7FFFFFFF, val2 & 0x7FFFFFFF, val3 & 0xFFFFFFFF, private)
    raise SyscallError(ENOSYS)  # the PI ops: glibc falls back
