"""Wait queues: where a blocked syscall parks its process until something wakes the queue."""
from __future__ import annotations

from typing import Any


class WaitQueue:
    """Processes blocked on something; waking makes them runnable, and the scheduler then
    retries their parked syscalls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.waiters: list[Any] = []
        self.pollers: list["WaitQueue"] = []  # select/poll calls watching this queue too
        self.wakeups = 0  # wake-ups so far (edge-triggered epoll entries report a new one)

    def wake(self) -> None:
        self.wakeups += 1
        for p in self.waiters:
            p.state = "runnable"
            p.waiting_on = None
        self.waiters.clear()
        for q in self.pollers:
            q.wake()

