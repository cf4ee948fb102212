"""Epoch listeners: host-side work done with the guest paused, every N instructions or every T of
virtual time (stats sampling, placement policies, balloon control, snapshots).

The run loop asks `next_deadline()` for the instruction count at which the CPU must stop, and
calls `fire_due()` after each stop. The CPU stops on a translation-block boundary at or before a
deadline, so a listener fires there (it is told the exact count) rather than never: the next
block may run past its deadline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from hw.clock import Clock

Callback = Callable[[int], None]  # called with the retired-instruction count


@dataclass
class _Listener:
    callback: Callback
    every_insns: int = 0
    every_ns: int = 0
    next_insns: int = 0      # due at or after this many instructions (every_insns)
    next_ns: int = 0         # due at or after this virtual time (every_ns)
    deadline: int = -1       # the instruction count last asked of the CPU for it


class EpochListeners:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._listeners: list[_Listener] = []

    def add(self, callback: Callback, *, every_insns: int = 0, every_ns: int = 0) -> None:
        """Call `callback(instructions)` every `every_insns` instructions or every `every_ns` of
        virtual time (exactly one of them), in the order listeners were added."""
        if (every_insns > 0) == (every_ns > 0):
            raise ValueError("an epoch listener needs exactly one of every_insns or every_ns (> 0)")
        icount = self.clock.instructions()
        self._listeners.append(_Listener(callback, every_insns, every_ns, icount + every_insns,
                                         self.clock.uptime_ns() + every_ns))

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def next_deadline(self) -> int | None:
        """The instruction count by which the CPU must stop for the next listener, or None."""
        best: int | None = None
        hz = self.clock.cpu_hz
        for ls in self._listeners:
            if ls.every_insns:
                at = ls.next_insns
            else:  # kernel time only brings the moment closer: stop at the latest possible count
                wait_ns = max(0, ls.next_ns - self.clock.uptime_ns())
                at = self.clock.instructions() + max(1, wait_ns * hz // 10**9)
            ls.deadline = at
            best = at if best is None else min(best, at)
        return best

    def fire_due(self, stopped_at_deadline: int | None) -> None:
        """Call every listener that is due; `stopped_at_deadline`: the deadline the CPU just
        stopped for (its block boundary may lie a few instructions before it)."""
        icount = self.clock.instructions()
        for ls in self._listeners:
            at_deadline = stopped_at_deadline is not None and stopped_at_deadline == ls.deadline
            if ls.every_insns:
                if icount >= ls.next_insns or at_deadline:
                    ls.callback(icount)
                    ls.next_insns = max(ls.next_insns, icount // ls.every_insns * ls.every_insns) + ls.every_insns
            elif self.clock.uptime_ns() >= ls.next_ns or at_deadline:
                ls.callback(icount)
                now = self.clock.uptime_ns()
                ls.next_ns = max(ls.next_ns, now // ls.every_ns * ls.every_ns) + ls.every_ns
