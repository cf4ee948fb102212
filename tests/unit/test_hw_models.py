"""The memory-hierarchy model (hw/native/cachemodel.c through hw/cachemodel.py), driven directly
without a guest: persistence semantics, power failure at every event, exact counters, LRU, wear,
the statistics registry, and a differential test against a pure-Python reference model."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.cachemodel import CacheModel
from hw.stats import Epochs, Stat, StatsRegistry, pcm_memory_table, wear_histogram

DRAM_BASE, DRAM_SIZE = 0x0, 0x40000          # channel 0
SCM_BASE, SCM_SIZE = 0x100000, 0x10000       # channel 1
LINE = 64


class Rig:
    """A model with one DRAM and one SCM range; stores land in the CPU view after the hook, as
    with Unicorn."""

    def __init__(self, size: int = 8 << 20, ways: int = 16, level: str = "full") -> None:
        self.m = CacheModel(size, ways, LINE, level=level)
        self.dram = bytearray(DRAM_SIZE)
        self.cpu = bytearray(SCM_SIZE)
        self.media = bytearray(SCM_SIZE)
        self.m.add_range("dram0", "dram", DRAM_BASE, DRAM_SIZE, 0, self.dram)
        self.m.add_range("scm0", "scm", SCM_BASE, SCM_SIZE, 1, self.cpu, self.media)

    def view(self, hpa: int) -> tuple[bytearray, int]:
        if hpa >= SCM_BASE:
            return self.cpu, hpa - SCM_BASE
        return self.dram, hpa - DRAM_BASE

    def store(self, hpa: int, value: int, size: int = 8, kernel: bool = False, nt: bool = False) -> None:
        if nt:
            self.m.mark_nt()
        self.m.access(hpa, size, True, kernel, value)
        buf, off = self.view(hpa)
        buf[off : off + size] = value.to_bytes(size, "little")
        if nt:
            self.m.end_nt()

    def load(self, hpa: int, size: int = 8, kernel: bool = False) -> None:
        self.m.access(hpa, size, False, kernel)

    def durable(self, hpa: int, size: int = 8) -> int:
        return int.from_bytes(self.media[hpa - SCM_BASE : hpa - SCM_BASE + size], "little")


def scm(i: int) -> int:
    return SCM_BASE + i * LINE


# ------------------------------------------------------------------ persistence semantics

def test_store_lost_on_power_failure_unless_written_back() -> None:
    r = Rig()
    r.store(scm(0), 0x1111)
    assert r.m.line_state(scm(0)) == "dirty"
    loss = r.m.power_fail()
    assert r.durable(scm(0)) == 0
    assert loss.dirty_scm_lines == 1 and loss.pending_writebacks == 0
    assert r.m.line_state(scm(0)) == "absent" and r.m.power_failed


def test_clflush_persists_at_once() -> None:
    r = Rig()
    r.store(scm(0), 0x2222)
    r.m.clflush(scm(0), is_kernel=False)
    assert r.durable(scm(0)) == 0x2222
    assert r.m.line_state(scm(0)) == "absent"
    assert r.m.power_fail().dirty_scm_lines == 0
    assert r.durable(scm(0)) == 0x2222


@pytest.mark.parametrize("op", ["clwb", "clflushopt"])
@pytest.mark.parametrize("fenced", [False, True])
def test_clwb_clflushopt_durable_only_after_fence(op: str, fenced: bool) -> None:
    r = Rig()
    r.store(scm(0), 0x3333)
    getattr(r.m, op)(scm(0), is_kernel=False)
    assert r.durable(scm(0)) == 0
    assert r.m.line_state(scm(0)) == ("clean" if op == "clwb" else "absent")
    r.store(scm(1), 0x4444)  # not flushed: never durable
    if fenced:
        r.m.fence("sfence", is_kernel=False)
    loss = r.m.power_fail()
    assert r.durable(scm(0)) == (0x3333 if fenced else 0)
    assert r.durable(scm(1)) == 0
    assert loss.pending_writebacks == (0 if fenced else 1)
    assert loss.dirty_scm_lines == 1


def test_pending_snapshot_is_taken_at_clwb_time() -> None:
    r = Rig()
    r.store(scm(0), 1)
    r.m.clwb(scm(0))
    r.store(scm(0), 2)  # after the clwb: not part of the snapshot
    r.m.fence()
    assert r.durable(scm(0)) == 1
    assert r.m.line_state(scm(0)) == "dirty"


def test_later_durable_write_supersedes_older_pending_snapshot() -> None:
    r = Rig()
    r.store(scm(0), 1)
    r.m.clwb(scm(0))
    r.store(scm(0), 2)
    r.m.clflush(scm(0))  # durable now, newer than the snapshot
    r.m.fence()
    assert r.durable(scm(0)) == 2


@pytest.mark.parametrize("fenced", [False, True])
def test_nt_store_durable_only_after_fence(fenced: bool) -> None:
    r = Rig()
    r.store(scm(0) + 8, 0xAA)  # line cached and dirty: the NT store writes it back first
    r.store(scm(0), 0x5555, nt=True)
    assert r.m.line_state(scm(0)) == "absent"
    assert r.durable(scm(0) + 8) == 0xAA   # the dirty line's write-back is durable
    assert r.durable(scm(0)) == 0           # the NT store is pending
    if fenced:
        r.m.fence("mfence", is_kernel=False)
    loss = r.m.power_fail()
    assert r.durable(scm(0)) == (0x5555 if fenced else 0)
    assert loss.pending_nt_stores == (0 if fenced else 1)
    s = r.m.stats
    assert s.nt_stores == 1 and (s.mfence, s.sfence) == (int(fenced), 0)
    assert r.m.channel(1)["write_bytes.user"] == 64 + 8  # write-back + direct NT write


def test_movntdq_two_halves_and_kernel_nt_store() -> None:
    r = Rig()
    r.m.mark_nt()
    for half in range(2):
        r.m.access(scm(2) + 8 * half, 8, True, False, 0x0101010101010101 * (half + 1))
    r.m.end_nt()
    r.m.nt_store(scm(3), bytes(range(20)))  # kernel: 8 + 8 + 4 bytes
    assert r.cpu[3 * LINE : 3 * LINE + 20] == bytes(range(20))
    assert r.m.pending == 5
    r.m.fence()
    assert r.media[2 * LINE : 2 * LINE + 16] == b"\x01" * 8 + b"\x02" * 8
    assert r.media[3 * LINE : 3 * LINE + 20] == bytes(range(20))
    assert r.m.channel(1)["write_bytes.kernel"] == 20
    assert r.m.stats.kfence == 1


def test_eviction_persists() -> None:
    r = Rig(size=2 * 2 * LINE, ways=2)  # 2 sets x 2 ways: lines 0, 2, 4 share set 0
    for i in (0, 2, 4):
        r.store(scm(i), 0x100 + i)
    assert r.durable(scm(0)) == 0x100   # LRU victim written back
    assert r.durable(scm(2)) == 0 and r.durable(scm(4)) == 0
    s = r.m.stats
    assert (s.evictions, s.dirty_evictions, s.writebacks) == (1, 1, 1)


def test_eadr_keeps_dirty_lines_and_pending_queues() -> None:
    r = Rig()
    r.store(scm(0), 7)
    r.store(scm(1), 8)
    r.m.clwb(scm(1))
    r.store(scm(2), 9, nt=True)
    loss = r.m.power_fail(eadr=True)
    assert (r.durable(scm(0)), r.durable(scm(1)), r.durable(scm(2))) == (7, 8, 9)
    assert loss.eadr and loss.dirty_scm_lines == 0 and loss.eadr_flushed_lines == 1
    assert loss.eadr_flushed_pending == 2
    assert r.m.dirty_lines == 0 and r.m.pending == 0


def test_after_power_failure_nothing_reaches_media_until_power_on() -> None:
    r = Rig()
    r.m.power_fail()
    r.store(scm(0), 1)
    r.m.clflush(scm(0))
    assert r.durable(scm(0)) == 0 and r.m.stats.clflush == 0
    r.m.power_on()
    r.store(scm(0), 1)
    r.m.clflush(scm(0))
    assert r.durable(scm(0)) == 1


# ------------------------------------------------------------------ fail at event K

N_LINES = 6


@pytest.mark.parametrize("k", range(1, N_LINES + 2))
def test_fail_at_event_clflush_sequence(k: int) -> None:
    r = Rig()
    fired: list[int] = []
    r.m.set_power_fail_callback(lambda: fired.append(1))
    r.m.fail_at_event(k)
    for i in range(N_LINES):
        r.store(scm(i), 0x1000 + i)
        r.m.clflush(scm(i))            # event i + 1
    made_it = [r.durable(scm(i)) == 0x1000 + i for i in range(N_LINES)]
    assert made_it == [i + 1 < k for i in range(N_LINES)]
    assert fired == ([1] if k <= N_LINES else [])
    assert r.m.power_failed == (k <= N_LINES)
    assert r.m.stats.events == min(k - 1, N_LINES)
    if k <= N_LINES:
        loss = r.m.last_loss()
        assert loss.failed_at_event == k and loss.dirty_scm_lines == 1  # the line being flushed


@pytest.mark.parametrize("k", range(1, N_LINES + 4))
def test_fail_at_event_clwb_then_fence(k: int) -> None:
    """Events: the fence (1), then each pending write-back landing (2 .. n+1), then a block
    write of the storage device (n+2)."""
    r = Rig()
    r.m.fail_at_event(k)
    for i in range(N_LINES):
        r.store(scm(i), 0x2000 + i)
        r.m.clwb(scm(i))
    r.m.fence()
    block_ok = r.m.event()
    made_it = [r.durable(scm(i)) == 0x2000 + i for i in range(N_LINES)]
    assert made_it == [i + 2 < k for i in range(N_LINES)]
    assert block_ok == (k > N_LINES + 2)
    assert r.m.power_failed == (k <= N_LINES + 2)
    if k <= N_LINES + 1:
        assert r.m.last_loss().pending_writebacks == N_LINES - max(k - 2, 0)


# ------------------------------------------------------------------ exact counters

def test_streaming_stores_then_clflush_counters() -> None:
    n = 16 * 1024
    r = Rig()
    for a in range(SCM_BASE, SCM_BASE + n, 8):
        r.store(a, a)
    for a in range(SCM_BASE, SCM_BASE + n, LINE):
        r.m.clflush(a, is_kernel=False)
    s, ch = r.m.stats, r.m.channel(1)
    assert (s.misses, s.hits) == (n // LINE, n // 8 - n // LINE)
    assert ch["read_req.user"] == n // LINE and ch["read_bytes.user"] == n
    assert ch["write_req.user"] == n // LINE and ch["write_bytes.user"] == n
    assert s.media_line_writes == n // LINE and s.writebacks == n // LINE and s.clflush == n // LINE
    assert ch["read_bytes.kernel"] == ch["write_bytes.kernel"] == 0
    assert r.m.channel(0) == {k: 0 for k in r.m.channel(0)}
    assert bytes(r.media[:n]) == bytes(r.cpu[:n])


def test_read_only_pass_gives_only_reads() -> None:
    r = Rig()
    r.m.access_range(SCM_BASE, SCM_SIZE, False, True)
    r.m.access_range(SCM_BASE, SCM_SIZE, False, True)  # all hits now
    r.m.wbinvd()
    s, ch = r.m.stats, r.m.channel(1)
    assert (s.misses, s.hits, s.writebacks) == (SCM_SIZE // LINE, SCM_SIZE // LINE, 0)
    assert ch["read_bytes.kernel"] == SCM_SIZE and ch["write_bytes.kernel"] == 0
    assert ch["write_req.kernel"] == 0 and s.events == 0


@pytest.mark.parametrize("level", ["fast", "persist", "full"])
def test_levels(level: str) -> None:
    r = Rig(level=level)
    for a in range(DRAM_BASE, DRAM_BASE + 4096, 8):
        r.store(a, 1)
        r.load(a)
    r.store(scm(0), 5)
    r.m.clflush(scm(0), is_kernel=False)
    dram = r.m.channel(0)
    if level == "full":
        assert dram["read_bytes.user"] == 4096 and r.m.stats.misses == 4096 // LINE + 1
    else:
        assert sum(dram.values()) == 0
    if level == "fast":
        assert r.m.stats.accesses == 0 and r.durable(scm(0)) == 0
    else:
        assert r.m.channel(1)["write_bytes.user"] == LINE and r.durable(scm(0)) == 5


def test_straddling_access_touches_two_lines_and_kernel_attribution() -> None:
    r = Rig()
    r.m.access(scm(0) + 60, 8, False, True)
    assert r.m.stats.misses == 2 and r.m.channel(1)["read_req.kernel"] == 2
    r.m.access_range(DRAM_BASE + 10, 100, True, True)  # lines 0 and 1 of dram
    assert r.m.channel(0)["read_bytes.kernel"] == 128 and r.m.dirty_lines == 2


def test_lru_order_two_sets_two_ways() -> None:
    r = Rig(size=2 * 2 * LINE, ways=2)
    a, b, c, d = scm(0), scm(2), scm(4), scm(1)  # a, b, c in set 0; d in set 1
    for page in (a, b, d, a):
        r.load(page)   # set 0 LRU order: b, a
    r.load(c)                                     # evicts b
    assert [r.m.line_state(x) for x in (a, b, c, d)] == ["clean", "absent", "clean", "clean"]
    r.load(b)                                     # evicts a (LRU now)
    assert [r.m.line_state(x) for x in (a, b, c)] == ["absent", "clean", "clean"]
    assert (r.m.stats.misses, r.m.stats.hits, r.m.stats.evictions) == (5, 1, 2)


def test_wear_histogram_counts() -> None:
    r = Rig()
    for _ in range(3):
        r.store(SCM_BASE, 1)
        r.m.clflush(SCM_BASE)                       # page 0: 3
    r.store(SCM_BASE + 4096 + 128, 1, nt=True)
    r.m.fence()                                     # page 1: 1 (NT)
    for i in range(5):
        r.store(SCM_BASE + 2 * 4096 + i * LINE, 1)
        r.m.clwb(SCM_BASE + 2 * 4096 + i * LINE)
    r.m.fence()                                     # page 2: 5
    w = r.m.wear("scm0")
    assert list(w[:4]) == [3, 1, 5, 0] and len(w) == SCM_SIZE // 4096
    assert wear_histogram(w) == [("0", 13), ("1", 1), ("2-3", 1), ("4-7", 1)]
    r.m.reset_stats()
    assert sum(r.m.wear(1)) == 0


# ------------------------------------------------------------------ statistics registry

def test_stats_registry_renders(tmp_path) -> None:
    r = Rig()
    r.store(scm(0), 1)
    r.m.clflush(scm(0), is_kernel=False)
    r.load(DRAM_BASE)
    reg = StatsRegistry()
    r.m.register_stats(reg)
    reg.register(lambda: {"sim.instructions": 42}, [Stat("sim.instructions", "instructions", "retired")])
    text = reg.render_text()
    assert any(line.split()[:2] == ["channel1.write_bytes.user", "64"] for line in text.splitlines())
    assert "# bytes written to channel 1 by user work (bytes)" in text
    j = reg.to_json()
    assert j["cache.misses"] == {"value": 2, "unit": "accesses", "description": j["cache.misses"]["description"]}
    json.dumps(j)
    ep = Epochs(reg, ["cache.misses", "sim.instructions"])
    ep.sample(100)
    r.load(DRAM_BASE + 64)
    ep.sample(200)
    ep.write_csv(tmp_path / "e.csv")
    assert (tmp_path / "e.csv").read_text().splitlines() == [
        "instructions,cache.misses,sim.instructions", "100,2,42", "200,3,42"]
    with pytest.raises(ValueError):
        reg.declare(Stat("sim.instructions", "s", "other"))

    from rich.console import Console

    table = pcm_memory_table(reg.snapshot(), r.m.ranges)
    con = Console(record=True, width=120)
    con.print(table)
    out = con.export_text()
    assert "Ch0 (dram)" in out and "Ch1 (scm)" in out and "Total" in out
    assert table.row_count == 3


# ------------------------------------------------------------------ differential test

class RefModel:
    """Pure-Python reference of the same cache and persistence semantics. Sets are lists of
    ways (None or [line, stamp, dirty]); a miss fills the first free way, else the LRU one;
    wbinvd walks sets then ways in order (the order of its persistence events)."""

    def __init__(self, nsets: int, ways: int, level: int) -> None:
        self.nsets, self.ways, self.level = nsets, ways, level
        self.sets: list[list] = [[None] * ways for _ in range(nsets)]
        self.clock = 0
        self.cpu = bytearray(SCM_SIZE)
        self.media = bytearray(SCM_SIZE)
        self.pend: list[list] = []  # [line, hpa, data, 'wb' | 'nt'], issue order
        self.c = dict(hits=0, misses=0, evictions=0, writebacks=0, events=0, media_line_writes=0)
        self.fail_at = 0
        self.failed = False

    @staticmethod
    def is_scm(hpa: int) -> bool:
        return hpa >= SCM_BASE

    def modelled(self, hpa: int) -> bool:
        return self.level == 2 or self.is_scm(hpa)

    def find(self, line: int) -> tuple[list, int]:
        s = self.sets[line % self.nsets]
        for w, e in enumerate(s):
            if e is not None and e[0] == line:
                return s, w
        return s, -1

    def event(self) -> bool:
        if self.failed:
            return False
        if self.fail_at and self.c["events"] + 1 >= self.fail_at:
            self.failed = True
            self.sets = [[None] * self.ways for _ in range(self.nsets)]
            self.pend.clear()
            return False
        self.c["events"] += 1
        return True

    def wb_durable(self, line: int) -> bool:
        hpa = line * LINE
        if self.is_scm(hpa):
            if not self.event():
                return False
            o = hpa - SCM_BASE
            self.media[o : o + LINE] = self.cpu[o : o + LINE]
            self.c["media_line_writes"] += 1
            self.pend = [p for p in self.pend if p[0] != line]
        self.c["writebacks"] += 1
        return True

    def line_access(self, line: int, write: bool) -> bool:
        s, w = self.find(line)
        self.clock += 1
        if w >= 0:
            self.c["hits"] += 1
            s[w][1] = self.clock
            s[w][2] |= write
            return True
        self.c["misses"] += 1
        free = [i for i, e in enumerate(s) if e is None]
        if free:
            v = free[0]
        else:
            v = min(range(self.ways), key=lambda i: s[i][1])
            self.c["evictions"] += 1
            if s[v][2] and not self.wb_durable(s[v][0]):
                return False
        s[v] = [line, self.clock, write]
        return True

    def access(self, hpa: int, size: int, write: bool, value: int, nt: bool) -> None:
        if self.failed:
            return
        if nt and write:
            a = hpa
            while a < hpa + size:
                n = min(hpa + size, (a // LINE + 1) * LINE) - a
                if self.modelled(a):
                    line = a // LINE
                    s, w = self.find(line)
                    if w >= 0:
                        if s[w][2] and not self.wb_durable(line):
                            return
                        s[w] = None
                    if self.is_scm(a):
                        self.pend.append([line, a, (value & ((1 << (8 * n)) - 1)).to_bytes(n, "little"), "nt"])
                value >>= 8 * n
                a += n
            return
        for line in range(hpa // LINE, (hpa + size - 1) // LINE + 1):
            if self.modelled(line * LINE) and not self.line_access(line, write):
                return

    def flush(self, hpa: int, op: str) -> None:
        if self.failed or not self.modelled(hpa):
            return
        line = hpa // LINE
        s, w = self.find(line)
        if w < 0:
            return
        if s[w][2]:
            if op == "clflush":
                if not self.wb_durable(line):
                    return
            else:
                self.c["writebacks"] += 1
                if self.is_scm(hpa):
                    o = line * LINE - SCM_BASE
                    self.pend.append([line, line * LINE, bytes(self.cpu[o : o + LINE]), "wb"])
        if op == "clwb":
            s[w][2] = False
        else:
            s[w] = None

    def fence(self) -> None:
        if self.failed or not self.event():
            return
        while self.pend:
            if not self.event():
                return
            _line, hpa, data, kind = self.pend.pop(0)
            o = hpa - SCM_BASE
            self.media[o : o + len(data)] = data
            self.c["media_line_writes"] += kind == "wb"

    def wbinvd(self) -> None:
        if self.failed:
            return
        for s in self.sets:
            for w, e in enumerate(s):
                if e is not None and e[2] and not self.wb_durable(e[0]):
                    return
                s[w] = None


ADDRS = ([SCM_BASE + i * 8 for i in range(3 * 16 * 8)] + [SCM_BASE + i * LINE + 60 for i in range(8)]
         + [DRAM_BASE + i * 8 for i in range(64)] + [DRAM_BASE + 60])
op_st = st.one_of(
    st.tuples(st.just("load"), st.sampled_from(ADDRS), st.sampled_from([1, 4, 8])),
    st.tuples(st.just("store"), st.sampled_from(ADDRS), st.sampled_from([1, 4, 8]), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("nt"), st.sampled_from(ADDRS), st.just(8), st.integers(0, 2**64 - 1)),
    st.tuples(st.sampled_from(["clflush", "clwb", "clflushopt"]), st.sampled_from(ADDRS)),
    st.tuples(st.just("fence")),
    st.tuples(st.just("wbinvd")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_st, max_size=120), level=st.sampled_from([1, 2]),
       geometry=st.sampled_from([(2, 2), (4, 2), (1, 4), (8, 1), (3, 2)]),
       fail_at=st.integers(0, 40), eadr=st.booleans())
def test_matches_reference_model(ops, level, geometry, fail_at, eadr) -> None:
    nsets, ways = geometry
    r = Rig(size=nsets * ways * LINE, ways=ways, level="persist" if level == 1 else "full")
    ref = RefModel(nsets, ways, level)
    r.m.fail_at_event(fail_at)
    ref.fail_at = fail_at
    for op in ops:
        kind = op[0]
        if kind in ("load", "store", "nt"):
            _, a, size = op[:3]
            value = op[3] if len(op) > 3 else 0
            value &= (1 << (8 * size)) - 1
            if kind == "load":
                r.load(a, size)
            else:
                r.store(a, value, size, nt=kind == "nt")
            ref.access(a, size, kind != "load", value, kind == "nt")
            if kind != "load" and a >= SCM_BASE:  # the store lands in the CPU view after the hook
                ref.cpu[a - SCM_BASE : a - SCM_BASE + size] = value.to_bytes(size, "little")
        elif kind in ("clflush", "clwb", "clflushopt"):
            getattr(r.m, kind)(op[1])
            ref.flush(op[1], kind)
        elif kind == "fence":
            r.m.fence()
            ref.fence()
        else:
            r.m.wbinvd()
            ref.wbinvd()
        assert r.m.power_failed == ref.failed
    s = r.m.stats
    assert {k: int(getattr(s, k)) for k in ref.c} == ref.c
    assert bytes(r.cpu) == bytes(ref.cpu)
    if not ref.failed:
        if eadr:
            for p in ref.pend:
                o = p[1] - SCM_BASE
                ref.media[o : o + len(p[2])] = p[2]
            for st_ in ref.sets:
                for e in st_:
                    if e is not None and e[2] and e[0] * LINE >= SCM_BASE:
                        line = e[0]
                        o = line * LINE - SCM_BASE
                        ref.media[o : o + LINE] = ref.cpu[o : o + LINE]
        r.m.power_fail(eadr=eadr)
    assert bytes(r.media) == bytes(ref.media)


# ------------------------------------------------------------------ Unicorn memory hook

def test_unicorn_memory_hook_feeds_the_model() -> None:
    """cm_uc_mem_hook registered straight with libunicorn (user data: the struct cm *): a
    guest store + clflush + load sequence reaches the model from C."""
    import ctypes

    from unicorn import UC_ARCH_X86, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MODE_64, Uc
    from unicorn.unicorn_py3.unicorn import uclib as _uc
    from unicorn.x86_const import UC_X86_REG_RAX

    code_at, data_at = 0x10000, 0x20000
    # store, load (same line: a hit), store to the next line
    code = bytes.fromhex("48ba" + data_at.to_bytes(8, "little").hex()  # movabs rdx, data_at
                         + "488902"        # mov [rdx], rax
                         + "488b0a"        # mov rcx, [rdx]
                         + "48894240")     # mov [rdx+0x40], rax
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(code_at, 0x1000)
    cpu = bytearray(0x1000)
    media = bytearray(0x1000)
    cbuf = (ctypes.c_char * len(cpu)).from_buffer(cpu)
    uc.mem_map_ptr(data_at, 0x1000, 3, ctypes.addressof(cbuf))
    uc.mem_write(code_at, code)
    uc.reg_write(UC_X86_REG_RAX, 0x1234)
    m = CacheModel()
    m.add_range("scm0", "scm", data_at, 0x1000, 1, cpu, media)
    hh = ctypes.c_size_t()
    err = _uc.uc_hook_add(uc._uch, ctypes.byref(hh), UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE,
                          ctypes.c_void_p(m.hook_address),
                          ctypes.c_void_p(int(m.ffi.cast("uintptr_t", m.ptr))),
                          ctypes.c_uint64(1), ctypes.c_uint64(0))
    assert err == 0
    uc.emu_start(code_at, code_at + len(code))
    assert cpu[:2] == b"\x34\x12"
    s = m.stats
    assert (s.misses, s.hits) == (2, 1) and m.line_state(data_at) == "dirty"
    assert m.channel(1)["read_bytes.user"] == 128
    m.clflush(data_at, is_kernel=False)
    assert media[:2] == b"\x34\x12" and m.power_fail().dirty_scm_lines == 1
    del cbuf


def test_model_levels_are_the_native_headers():
    """LEVELS (known without a native build) are the CM_LEVEL_* values of hw/native/emu_abi.h."""
    from hw import native
    from hw.cachemodel import LEVELS

    _ffi, lib = native.load()
    assert LEVELS == {"fast": lib.CM_LEVEL_FAST, "persist": lib.CM_LEVEL_PERSIST, "full": lib.CM_LEVEL_FULL}


# -- private storage (a crash campaign's fork server) -------------------------------------------


def test_private_block_device_keeps_its_writes_and_saves_the_image(tmp_path):  # type: ignore[no-untyped-def]
    import os

    from hw.blockdev import BlockDevice, copy_image

    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(1 << 20)
        f.seek(4096)
        f.write(b"base" * 1024)
    before = img.read_bytes()
    dev = BlockDevice(str(img), private=True)
    dev.write_at(8192, b"new!" * 256)
    dev.write_at(4096 + 1024, b"x" * 1024)
    assert dev.read_at(8192, 4) == b"new!" and dev.read_at(4096, 4) == b"base"
    assert img.read_bytes() == before  # the file never changes
    expect = bytearray(before)
    expect[8192:9216] = b"new!" * 256
    expect[5120:6144] = b"x" * 1024
    dev.save_to(tmp_path / "saved.img")
    assert (tmp_path / "saved.img").read_bytes() == bytes(expect) and dev.dirty_pages == {1, 2}
    copy_image(img, tmp_path / "copy.img")  # holes kept: only the data extent is allocated
    assert (tmp_path / "copy.img").read_bytes() == before
    assert os.stat(tmp_path / "copy.img").st_blocks * 512 < (1 << 20)


def test_image_copy_without_copy_file_range_keeps_data_and_holes(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Where copy_file_range is refused (EXDEV, old kernels, some file systems) the copy reads
    and writes; a snapshot's disk copy (vmm.snapshot.files.copy_file) is this copy."""
    import errno
    import os

    from vmm.snapshot.files import copy_file

    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(4 << 20)
        f.seek(1 << 20)
        f.write(os.urandom(300_000))
    def refuse(*a):  # type: ignore[no-untyped-def]
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    assert copy_file(img, tmp_path / "copy.img", durable=True) in ("copy", "reflink")
    assert (tmp_path / "copy.img").read_bytes() == img.read_bytes()
    assert os.stat(tmp_path / "copy.img").st_blocks * 512 < (2 << 20)


def test_forked_copy_of_guest_memory_is_its_own(tmp_path):  # type: ignore[no-untyped-def]
    """Guest RAM is private memory: what a forked copy of emu writes never reaches the original
    (the fork server's copies run on after their fork)."""
    import os

    from hw.physmem import PhysicalMemory
    from vmm.config import default_machine

    pm = PhysicalMemory(default_machine().range_specs())
    dram = pm.dram_ranges()[0]
    dram.buffer[0:4] = b"orig"
    pid = os.fork()
    if pid == 0:
        dram.buffer[0:4] = b"copy"
        os._exit(0 if dram.buffer[0:4] == b"copy" else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and dram.buffer[0:4] == b"orig"
