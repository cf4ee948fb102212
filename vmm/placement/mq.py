"""MQ, the paper's policy (after Zhou et al.'s Multi-Queue buffer cache), as its section 3.4.2
describes it:

- Queues Q0..Q(m-1) of guest pages, head = oldest. At the start Q0 holds the pages DRAM backs.
- A page found written for the n-th time moves to the tail of Q(floor(log2 n)) (capped at the
  top queue); a written slow page in no queue joins like any other (n = 1: Q0).
- The head of each queue is checked every scan: when it has not been written for `lifetime`, it
  moves down to the head of the next lower queue (its expiry restarts, as in MQ); the head of Q0
  goes to the tail of Q_victim if DRAM backs it, else it is forgotten (its count cleared).
- A migration walks the queues from the top, each from tail to head, and pairs every slow page
  it meets with the head of Q_victim (a DRAM page that left Q0 unwritten), until `max_pairs` or
  either side runs out. The swapped-out page leaves Q_victim; the swapped-in page keeps its queue.

What the paper leaves open is ours: the number of queues (`queues`), the lifetime, and that a
written page in Q_victim rejoins the queues.
"""
from __future__ import annotations

from collections import OrderedDict

from vmm.config import PlacementConfig
from vmm.placement.policy import Policy, RamPages


class MQ(Policy):
    name = "mq"

    def __init__(self, cfg: PlacementConfig, ram: RamPages) -> None:
        super().__init__(cfg, ram)
        self.queues: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(cfg.queues)]
        self.victim: OrderedDict[int, None] = OrderedDict()
        self.where: dict[int, int] = {}    # gpfn -> its queue
        self.count: dict[int, int] = {}    # gpfn -> writes detected
        self.expire: dict[int, int] = {}   # gpfn -> scan after which its queue's head moves down
        for g in ram.gpfns:
            if ram.in_dram[g]:
                self._enter(g, 0, self.lifetime_scans)

    def _enter(self, g: int, q: int, expire: int, head: bool = False) -> None:
        self.queues[q][g] = None
        if head:
            self.queues[q].move_to_end(g, last=False)
        self.where[g] = q
        self.expire[g] = expire

    def _leave(self, g: int) -> None:
        q = self.where.pop(g, None)
        if q is not None:
            del self.queues[q][g]
        else:
            self.victim.pop(g, None)

    def observe(self, scan: int, dirty: list[int]) -> None:
        top = len(self.queues) - 1
        for g in dirty:
            n = self.count.get(g, 0) + 1
            self.count[g] = n
            self._leave(g)
            self._enter(g, min(n.bit_length() - 1, top), scan + self.lifetime_scans)
        self._demote(scan)

    def _demote(self, scan: int) -> None:
        in_dram = self.ram.in_dram
        for k, q in enumerate(self.queues):
            while q:
                g = next(iter(q))
                if self.expire[g] > scan:
                    break
                del q[g]
                del self.where[g]
                if k > 0:
                    self._enter(g, k - 1, scan + self.lifetime_scans, head=True)
                elif in_dram[g]:
                    self.victim[g] = None
                else:
                    self.count.pop(g, None)
                    self.expire.pop(g, None)

    def pick(self, scan: int, max_pairs: int) -> list[tuple[int, int]]:
        in_dram = self.ram.in_dram
        hot = [g for q in reversed(self.queues) for g in reversed(q) if not in_dram[g]]
        victims = [g for g in self.victim if in_dram[g]]
        wanted = list(zip(hot, victims))
        self.wanted = len(wanted)
        pairs = wanted[:max_pairs]
        for _slow, fast in pairs:
            del self.victim[fast]
            self.count.pop(fast, None)
        return pairs
