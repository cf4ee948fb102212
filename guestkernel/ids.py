"""Identifiers handed out in order (address-space ids, pipe serials), kept in the kernel's own
state: a module-level counter would start again at 1 in another process that loads a machine
snapshot, and an address space made there would share an id with one already running, whose
stale TLB entries the CPU would then keep."""
from __future__ import annotations


class IdSource:
    def __init__(self, first: int = 1) -> None:
        self.next_id = first

    def __next__(self) -> int:
        n = self.next_id
        self.next_id += 1
        return n
