"""Strict parsers for Linux's /proc memory and process formats, written from the kernel's printf formats.

They exist to check the text the emulator's guest kernel serves under /proc against what Linux 6.x itself
prints, so they are strict: anything Linux would never print (a wrong header, a missing or extra field, a
letter in a number, a leading zero, padding that differs from the fixed-width format, a required key
missing, an impossible relation such as MemFree > MemTotal) raises :class:`FormatError` naming the file and
the line. Where Linux pads fields to a fixed width, the parsers re-render the parsed values with the
kernel's own format and compare the result with the line character for character.

Sources (Linux 6.x):

- mm/vmstat.c: ``frag_show_print`` (buddyinfo), ``pagetypeinfo_showfree_print`` /
  ``pagetypeinfo_showblockcount_print`` / ``pagetypeinfo_showmixedcount_print`` (pagetypeinfo),
  ``zoneinfo_show_print`` (zoneinfo), ``vmstat_show`` (vmstat), ``unusable_show_print`` /
  ``extfrag_show_print`` with ``fill_contig_page_info``, ``unusable_free_index`` and
  ``__fragmentation_index`` (debugfs extfrag/{unusable_index,extfrag_index});
- mm/slab_common.c: ``print_slabinfo_header`` and ``cache_show``;
- fs/proc/meminfo.c ``show_val_kb`` (plus mm/hugetlb.c ``hugetlb_report_meminfo``, mm/memory-failure.c
  HardwareCorrupted and arch/x86/mm/pat/set_memory.c DirectMap*);
- fs/proc/array.c ``do_task_stat``, ``proc_pid_status`` (task_state, task_mem in fs/proc/task_mmu.c,
  render_sigset_t, render_cap_t), ``proc_pid_statm``;
- fs/proc/stat.c ``show_stat``; fs/proc/loadavg.c; fs/proc/uptime.c;
- fs/proc/task_mmu.c ``show_vma_header_prefix`` / ``show_map_vma`` with seq_setwidth/seq_pad (maps).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn

__all__ = [
    "FormatError",
    "ZONE_NAMES", "MIGRATE_TYPES", "TASK_STATES",
    "parse_meminfo", "parse_vmstat",
    "BuddyZone", "parse_buddyinfo", "format_buddyinfo_line",
    "PageTypeInfo", "parse_pagetypeinfo",
    "Pageset", "Zone", "parse_zoneinfo",
    "SlabLine", "parse_slabinfo",
    "PidStat", "parse_pid_stat", "parse_pid_status", "parse_pid_statm",
    "CpuTimes", "ProcStat", "parse_stat",
    "LoadAvg", "parse_loadavg", "Uptime", "parse_uptime",
    "MapsEntry", "parse_maps_line", "parse_maps",
    "IndexZone", "parse_extfrag_index", "parse_unusable_index",
    "format_index", "format_extfrag_line", "format_unusable_line",
    "unusable_index", "extfrag_index",
]


class FormatError(ValueError):
    """Text that Linux would never print in this file's format."""


# Zone names in the kernel's order (mm/page_alloc.c zone_names[]); a node lists its zones in this order.
ZONE_NAMES: tuple[str, ...] = ("DMA", "DMA32", "Normal", "HighMem", "Movable", "Device")
# Migrate type names in the kernel's order (mm/page_alloc.c migratetype_names[]); which appear depends on
# the configuration (CMA, memory isolation), but never in another order.
MIGRATE_TYPES: tuple[str, ...] = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
# fs/proc/array.c task_state_array[] (Linux >= 4.14): the state letter and its /proc/PID/status text.
TASK_STATES: dict[str, str] = {
    "R": "R (running)", "S": "S (sleeping)", "D": "D (disk sleep)", "T": "T (stopped)",
    "t": "t (tracing stop)", "X": "X (dead)", "Z": "Z (zombie)", "P": "P (parked)", "I": "I (idle)",
}

# seq_put_decimal_ull / %lu / %u: no sign, no leading zeros, no padding.
_UDEC = r"(?:0|[1-9][0-9]*)"
# seq_put_decimal_ll / %ld / %d.
_SDEC = r"(?:0|-?[1-9][0-9]*)"
_UDEC_RE = re.compile(_UDEC)
_SDEC_RE = re.compile(_SDEC)


# --- helpers --------------------------------------------------------------------------------------------

def _fail(what: str, lineno: int, line: str, msg: str) -> NoReturn:
    raise FormatError(f"{what} line {lineno}: {msg}: {line!r}")


def _lines(text: str, what: str) -> list[str]:
    """The lines of a seq_file's text; Linux ends every line, the last included, with a newline."""
    if not isinstance(text, str):
        raise TypeError(f"{what}: expected str, got {type(text).__name__}")
    if not text:
        raise FormatError(f"{what} line 1: the file is empty")
    lines = text.split("\n")
    if lines[-1] != "":
        _fail(what, len(lines), lines[-1], "the last line does not end with a newline")
    return lines[:-1]


def _u(tok: str, what: str, lineno: int, line: str, name: str = "field") -> int:
    if not _UDEC_RE.fullmatch(tok):
        _fail(what, lineno, line, f"{name} {tok!r} is not an unsigned decimal number")
    return int(tok)


def _s(tok: str, what: str, lineno: int, line: str, name: str = "field") -> int:
    if not _SDEC_RE.fullmatch(tok):
        _fail(what, lineno, line, f"{name} {tok!r} is not a decimal number")
    return int(tok)


def _same(expected: str, line: str, what: str, lineno: int) -> None:
    """The line must be exactly what the kernel's printf renders from the parsed values."""
    if line != expected:
        _fail(what, lineno, line, f"spacing or layout differs from Linux's format, which prints {expected!r}")


def _zone_name(name: str, what: str, lineno: int, line: str) -> str:
    if name not in ZONE_NAMES:
        _fail(what, lineno, line, f"unknown zone name {name!r} (Linux's are {', '.join(ZONE_NAMES)})")
    return name


def _check_zone_order(seen: list[tuple[int, str]], node: int, zone: str, what: str, lineno: int, line: str) -> None:
    """Nodes ascend; within a node, zones follow ZONE_NAMES and appear once."""
    if seen:
        pnode, pzone = seen[-1]
        if node < pnode or (node == pnode and ZONE_NAMES.index(zone) <= ZONE_NAMES.index(pzone)):
            _fail(what, lineno, line, f"node {node} zone {zone} is out of Linux's order (after node {pnode} zone {pzone})")
    seen.append((node, zone))


def _c_divmod(a: int, b: int) -> tuple[int, int]:
    """C's int division and remainder (truncation toward zero)."""
    q = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        q = -q
    return q, a - q * b


# --- /proc/meminfo --------------------------------------------------------------------------------------

# "HugePages_Total:   %5lu\n" (mm/hugetlb.c) and "HardwareCorrupted: %5lu kB\n": a 19-column label and a
# 5-column value; every other line is show_val_kb's 16-column label and 8-column value, then " kB".
_MEMINFO_NARROW = frozenset({"HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp", "HardwareCorrupted"})
_MEMINFO_NO_KB = frozenset({"HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp"})
_MEMINFO_FIRST = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached")
_MEMINFO_LINE = re.compile(r"([A-Za-z][A-Za-z0-9_()]*):( *)([0-9]+)( kB)?")


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as {name: value}; values in kB, except the HugePages_* counts (plain numbers of pages)."""
    what = "meminfo"
    out: dict[str, int] = {}
    where: dict[str, tuple[int, str]] = {}
    lines = _lines(text, what)
    for n, line in enumerate(lines, 1):
        m = _MEMINFO_LINE.fullmatch(line)
        if not m:
            _fail(what, n, line, "not a 'Name:   value kB' line")
        name = m.group(1)
        value = _u(m.group(3), what, n, line, name)
        label_w, value_w = (19, 5) if name in _MEMINFO_NARROW else (16, 8)
        unit = "" if name in _MEMINFO_NO_KB else " kB"
        _same(f"{name + ':':<{label_w}}{value:>{value_w}}{unit}", line, what, n)
        if name in out:
            _fail(what, n, line, f"{name} appears twice")
        out[name] = value
        where[name] = (n, line)
    keys = list(out)
    for i, name in enumerate(_MEMINFO_FIRST):
        # Linux always opens with these five, in this order.
        if i >= len(keys) or keys[i] != name:
            _fail(what, i + 1, lines[i] if i < len(lines) else "", f"required key {name} is missing: Linux prints it here")
    for small, big in (("MemFree", "MemTotal"), ("SwapFree", "SwapTotal"), ("HugePages_Free", "HugePages_Total")):
        if small in out and big in out and out[small] > out[big]:
            _fail(what, *where[small], f"{small} {out[small]} exceeds {big} {out[big]}")
    return out


# --- /proc/vmstat ---------------------------------------------------------------------------------------

_VMSTAT_LINE = re.compile(r"([a-z0-9_]+) (\S+)")


def parse_vmstat(text: str) -> dict[str, int]:
    """/proc/vmstat: one 'name value' per line (seq_puts(name); seq_put_decimal_ull(" ", value))."""
    what = "vmstat"
    out: dict[str, int] = {}
    for n, line in enumerate(_lines(text, what), 1):
        m = _VMSTAT_LINE.fullmatch(line)
        if not m:
            _fail(what, n, line, "not a 'name value' line")
        name = m.group(1)
        if name in out:
            _fail(what, n, line, f"{name} appears twice")
        out[name] = _u(m.group(2), what, n, line, name)
    if next(iter(out)) != "nr_free_pages":
        raise FormatError(f"{what} line 1: Linux's first counter is nr_free_pages, not {next(iter(out))}")
    return out


# --- /proc/buddyinfo ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuddyZone:
    node: int
    zone: str
    free: list[int]  # free blocks per order 0..MAX_PAGE_ORDER


_NODE_ZONE_PREFIX = re.compile(r"Node (" + _UDEC + r"), zone +(\S+) (.*)")


def format_buddyinfo_line(node: int, zone: str, free: list[int]) -> str:
    """frag_show_print: "Node %d, zone %8s " then "%6lu " per order (no newline)."""
    return f"Node {node}, zone {zone:>8} " + "".join(f"{c:>6} " for c in free)


def parse_buddyinfo(text: str) -> list[BuddyZone]:
    """/proc/buddyinfo: one line per populated zone, the free block count at each order."""
    what = "buddyinfo"
    out: list[BuddyZone] = []
    seen: list[tuple[int, str]] = []
    for n, line in enumerate(_lines(text, what), 1):
        m = _NODE_ZONE_PREFIX.fullmatch(line)
        if not m:
            _fail(what, n, line, "not a 'Node N, zone NAME counts...' line")
        node = int(m.group(1))
        zone = _zone_name(m.group(2), what, n, line)
        free = [_u(t, what, n, line, "count") for t in m.group(3).split()]
        if not free:
            _fail(what, n, line, "no free counts")
        if out and len(free) != len(out[0].free):
            _fail(what, n, line, f"{len(free)} orders, but line 1 has {len(out[0].free)}")
        _same(format_buddyinfo_line(node, zone, free), line, what, n)
        _check_zone_order(seen, node, zone, what, n, line)
        out.append(BuddyZone(node, zone, free))
    return out


# --- /proc/pagetypeinfo ---------------------------------------------------------------------------------

@dataclass
class PageTypeInfo:
    pageblock_order: int
    pages_per_block: int
    orders: int                  # number of order columns (MAX_PAGE_ORDER + 1)
    types: tuple[str, ...]       # migrate types, as named by the "Number of blocks type" header
    free: dict[tuple[int, str, str], list[int]] = field(default_factory=dict)   # (node, zone, type) -> per order
    blocks: dict[tuple[int, str], dict[str, int]] = field(default_factory=dict)  # (node, zone) -> {type: count}
    mixed: dict[tuple[int, str], dict[str, int]] = field(default_factory=dict)   # CONFIG_PAGE_OWNER only
    overflow: set[tuple[int, str, str, int]] = field(default_factory=set)        # printed ">100000": (n, z, t, order)


_PTI_FREE_TITLE = "Free pages count per migrate type at order"
_PTI_BLOCKS_TITLE = "Number of blocks type "
_PTI_MIXED_TITLE = "Number of mixed blocks "
_PTI_FREE_ROW = re.compile(r"Node +(" + _UDEC + r"), zone +(\S+), type +(\S+) (.*)")
_PTI_FREECOUNT_CAP = 100000  # pagetypeinfo_showfree_print stops counting a free list here and prints ">"


def _pti_types_header(title: str, line: str, what: str, n: int) -> tuple[str, ...]:
    # seq_printf(m, "\n%-23s", title); then "%12s " per migrate type.
    head = f"{title:<23}"
    if not line.startswith(head):
        _fail(what, n, line, f"expected the {title.strip()!r} header")
    types = tuple(line[len(head):].split())
    if not types:
        _fail(what, n, line, "the header names no migrate types")
    for t in types:
        if t not in MIGRATE_TYPES:
            _fail(what, n, line, f"unknown migrate type {t!r}")
    if list(types) != sorted(types, key=MIGRATE_TYPES.index) or len(set(types)) != len(types):
        _fail(what, n, line, "migrate types out of Linux's order")
    _same(head + "".join(f"{t:>12} " for t in types), line, what, n)
    return types


def _pti_count_rows(lines: list[str], i: int, types: tuple[str, ...], node: int, what: str,
                    dest: dict[tuple[int, str], dict[str, int]]) -> int:
    # pagetypeinfo_showblockcount_print: "Node %d, zone %8s " then "%12lu " per migrate type.
    seen: list[tuple[int, str]] = []
    while i < len(lines) and lines[i].startswith("Node "):
        line, n = lines[i], i + 1
        m = _NODE_ZONE_PREFIX.fullmatch(line)
        if not m:
            _fail(what, n, line, "not a 'Node N, zone NAME counts...' line")
        rnode = int(m.group(1))
        zone = _zone_name(m.group(2), what, n, line)
        if rnode != node:
            _fail(what, n, line, f"node {rnode} inside node {node}'s section")
        counts = [_u(t, what, n, line, "count") for t in m.group(3).split()]
        if len(counts) != len(types):
            _fail(what, n, line, f"{len(counts)} counts for {len(types)} migrate types")
        _same(f"Node {rnode}, zone {zone:>8} " + "".join(f"{c:>12} " for c in counts), line, what, n)
        _check_zone_order(seen, rnode, zone, what, n, line)
        dest[(rnode, zone)] = dict(zip(types, counts))
        i += 1
    if not seen:
        _fail(what, i + 1, lines[i] if i < len(lines) else "", "the table has no zone rows")
    return i


def parse_pagetypeinfo(text: str) -> PageTypeInfo:
    """/proc/pagetypeinfo: per node with memory, the pageblock header, the free-pages-per-migrate-type table
    and the pageblocks-per-migrate-type table (and, with CONFIG_PAGE_OWNER, the mixed-blocks table)."""
    what = "pagetypeinfo"
    lines = _lines(text, what)
    info: PageTypeInfo | None = None
    i = 0
    nodes: list[int] = []

    def expect(pattern: str, name: str) -> re.Match[str]:
        nonlocal i
        line = lines[i] if i < len(lines) else ""
        m = re.fullmatch(pattern, line) if i < len(lines) else None
        if not m:
            _fail(what, i + 1, line, f"expected {name}")
        i += 1
        return m

    while i < len(lines):
        # pagetypeinfo_show: "Page block order: %d\n" "Pages per block:  %lu\n" "\n"
        order = int(expect(r"Page block order: (" + _UDEC + ")", "'Page block order: N'").group(1))
        ppb = int(expect(r"Pages per block:  (" + _UDEC + ")", "'Pages per block:  N'").group(1))
        if ppb != 1 << order:
            _fail(what, i, lines[i - 1], f"pages per block must be 1 << {order} = {1 << order}")
        expect(r"", "an empty line")
        # pagetypeinfo_showfree: "%-43s " title, then "%6d " per order.
        hn, hline = i + 1, lines[i] if i < len(lines) else ""
        m = expect(re.escape(_PTI_FREE_TITLE) + r" +(.*)", f"the {_PTI_FREE_TITLE!r} header")
        cols = [_u(t, what, hn, hline, "order") for t in m.group(1).split()]
        if not cols or cols != list(range(len(cols))):
            _fail(what, hn, hline, "the orders must be 0, 1, 2, ...")
        _same(f"{_PTI_FREE_TITLE:<43} " + "".join(f"{o:>6} " for o in cols), hline, what, hn)
        if info is None:
            info = PageTypeInfo(order, ppb, len(cols), ())
        elif (order, ppb, len(cols)) != (info.pageblock_order, info.pages_per_block, info.orders):
            _fail(what, hn, hline, "this node's pageblock order or order count differs from the first node's")
        # pagetypeinfo_showfree_print: "Node %4d, zone %8s, type %12s " then "%s%6lu " per order.
        free_rows: list[tuple[int, int, str, str, list[int], str]] = []
        while i < len(lines) and lines[i].startswith("Node "):
            line, n = lines[i], i + 1
            m = _PTI_FREE_ROW.fullmatch(line)
            if not m:
                _fail(what, n, line, "not a 'Node N, zone NAME, type TYPE counts...' line")
            rnode, zone, mtype = int(m.group(1)), _zone_name(m.group(2), what, n, line), m.group(3)
            if mtype not in MIGRATE_TYPES:
                _fail(what, n, line, f"unknown migrate type {mtype!r}")
            counts: list[int] = []
            rendered = f"Node {rnode:>4}, zone {zone:>8}, type {mtype:>12} "
            for o, tok in enumerate(m.group(4).split()):
                over = tok.startswith(">")
                c = _u(tok[1:] if over else tok, what, n, line, "count")
                if over:
                    if c != _PTI_FREECOUNT_CAP:
                        _fail(what, n, line, f"'>' only marks the cap {_PTI_FREECOUNT_CAP}")
                    info.overflow.add((rnode, zone, mtype, o))
                elif c >= _PTI_FREECOUNT_CAP:
                    _fail(what, n, line, f"Linux stops counting at {_PTI_FREECOUNT_CAP} and prints '>{_PTI_FREECOUNT_CAP}'")
                counts.append(c)
                rendered += (">" if over else "") + f"{c:>6} "
            if len(counts) != len(cols):
                _fail(what, n, line, f"{len(counts)} counts for {len(cols)} orders")
            _same(rendered, line, what, n)
            free_rows.append((n, rnode, zone, mtype, counts, line))
            i += 1
        if not free_rows:
            _fail(what, i + 1, lines[i] if i < len(lines) else "", "the free pages table has no rows")
        node = free_rows[0][1]
        if nodes and node <= nodes[-1]:
            _fail(what, free_rows[0][0], free_rows[0][5], "nodes must ascend")
        nodes.append(node)
        # pagetypeinfo_showblockcount: "\n" then the header, then the rows.
        expect(r"", "an empty line")
        hn, hline = i + 1, lines[i] if i < len(lines) else ""
        types = _pti_types_header(_PTI_BLOCKS_TITLE, hline, what, hn)
        i += 1
        if info.types and types != info.types:
            _fail(what, hn, hline, "this node's migrate types differ from the first node's")
        info.types = types
        i = _pti_count_rows(lines, i, types, node, what, info.blocks)
        # The free table lists, for each zone of the block table, every migrate type once in order.
        zones = [z for (nd, z) in info.blocks if nd == node]
        expected_rows = [(z, t) for z in zones for t in types]
        got_rows = [(z, t) for (_, _, z, t, _, _) in free_rows]
        for (n, rnode, zone, mtype, counts, line), want in zip(free_rows, expected_rows + [None] * len(free_rows)):
            if rnode != node:
                _fail(what, n, line, f"node {rnode} inside node {node}'s section")
            if (zone, mtype) != want:
                _fail(what, n, line, f"Linux prints zone {want[0]} type {want[1]} here" if want else "row beyond the zones and types")
            info.free[(rnode, zone, mtype)] = counts
        if len(got_rows) != len(expected_rows):
            _fail(what, hn, hline, f"node {node}'s free table has {len(got_rows)} rows, its zones times these types make "
                  f"{len(expected_rows)}")
        # pagetypeinfo_showmixedcount (CONFIG_PAGE_OWNER): "\n" then its header and rows.
        if i + 1 < len(lines) and lines[i] == "" and lines[i + 1].startswith(_PTI_MIXED_TITLE):
            i += 1
            if _pti_types_header(_PTI_MIXED_TITLE, lines[i], what, i + 1) != types:
                _fail(what, i + 1, lines[i], "the mixed blocks header names other migrate types")
            i = _pti_count_rows(lines, i + 1, types, node, what, info.mixed)
    if info is None:
        raise FormatError(f"{what} line 1: no node section")
    return info


# --- /proc/zoneinfo -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pageset:
    cpu: int
    count: int
    high: int
    batch: int
    high_min: int | None         # Linux >= 6.7
    high_max: int | None
    stat_threshold: int | None   # "vm stats threshold" (CONFIG_SMP)


@dataclass
class Zone:
    node: int
    name: str
    free: int
    boost: int
    min: int
    low: int
    high: int
    promo: int | None            # Linux >= 6.1
    spanned: int
    present: int
    managed: int
    cma: int | None
    protection: tuple[int, ...]
    per_node_stats: dict[str, int] | None = None  # only in the node's first populated zone
    stats: dict[str, int] = field(default_factory=dict)  # zone stat items and NUMA events (populated zones)
    pagesets: list[Pageset] = field(default_factory=list)
    node_unreclaimable: int | None = None
    start_pfn: int | None = None

    @property
    def populated(self) -> bool:
        return self.present != 0


_ZI_HEADER = re.compile(r"Node (" + _UDEC + r"), zone +(\S+)")
_ZI_STAT = re.compile(r"      ([a-z0-9_]+) +(\S+)")
# zoneinfo_show_print's watermark block: (label, attribute, optional in Linux 6.x).
_ZI_PAGES = (
    ("  pages free     ", "free", False),
    ("        boost    ", "boost", False),
    ("        min      ", "min", False),
    ("        low      ", "low", False),
    ("        high     ", "high", False),
    ("        promo    ", "promo", True),
    ("        spanned  ", "spanned", False),
    ("        present  ", "present", False),
    ("        managed  ", "managed", False),
    ("        cma      ", "cma", True),
)
_ZI_PROTECTION = re.compile(r"        protection: \((.*)\)")
_ZI_PCP = (
    ("              count:    ", "count", False),
    ("              high:     ", "high", False),
    ("              batch:    ", "batch", False),
    ("              high_min: ", "high_min", True),
    ("              high_max: ", "high_max", True),
)


def parse_zoneinfo(text: str) -> list[Zone]:
    """/proc/zoneinfo: every zone of every online node, populated or not."""
    what = "zoneinfo"
    lines = _lines(text, what)
    zones: list[Zone] = []
    header_at: list[int] = []  # the line number of each zone's header
    seen: list[tuple[int, str]] = []
    i = 0

    def line_at(k: int) -> str:
        return lines[k] if k < len(lines) else ""

    def stat_block(first: int) -> tuple[dict[str, int], int]:
        # "\n      %-12s %lu" per item
        k, out = first, {}
        while k < len(lines):
            m = _ZI_STAT.fullmatch(lines[k])
            if not m:
                break
            name, val = m.group(1), _u(m.group(2), what, k + 1, lines[k], m.group(1))
            _same(f"      {name:<12} {val}", lines[k], what, k + 1)
            if name in out:
                _fail(what, k + 1, lines[k], f"{name} appears twice in the block")
            out[name] = val
            k += 1
        return out, k

    def labelled(k: int, label: str, signed: bool = False) -> int:
        line = line_at(k)
        if not line.startswith(label):
            _fail(what, k + 1, line, f"expected {label.strip()!r}")
        tok = line[len(label):]
        return _s(tok, what, k + 1, line, label.strip()) if signed else _u(tok, what, k + 1, line, label.strip())

    while i < len(lines):
        line, n = lines[i], i + 1
        m = _ZI_HEADER.fullmatch(line)
        if not m:
            _fail(what, n, line, "expected a 'Node N, zone NAME' header")
        node, name = int(m.group(1)), _zone_name(m.group(2), what, n, line)
        _same(f"Node {node}, zone {name:>8}", line, what, n)
        _check_zone_order(seen, node, name, what, n, line)
        i += 1
        per_node: dict[str, int] | None = None
        if line_at(i) == "  per-node stats":
            per_node, i = stat_block(i + 1)
            if not per_node:
                _fail(what, i + 1, line_at(i), "'per-node stats' without any stat")
        vals: dict[str, int | None] = {}
        for label, attr, optional in _ZI_PAGES:
            if optional and not line_at(i).startswith(label):
                vals[attr] = None
                continue
            vals[attr] = labelled(i, label)
            i += 1
        pm = _ZI_PROTECTION.fullmatch(line_at(i))
        if not pm:
            _fail(what, i + 1, line_at(i), "expected '        protection: (N, N, ...)'")
        protection = tuple(_s(t, what, i + 1, lines[i], "protection") for t in pm.group(1).split(", "))
        _same("        protection: (" + ", ".join(map(str, protection)) + ")", lines[i], what, i + 1)
        i += 1
        zone = Zone(node=node, name=name, protection=protection, per_node_stats=per_node, **vals)  # type: ignore[arg-type]
        zn = n
        if zone.populated:
            zone.stats, i = stat_block(i)
            if "nr_free_pages" not in zone.stats:
                _fail(what, i + 1, line_at(i), f"populated zone {name} lacks its zone stats (nr_free_pages ...)")
            if line_at(i) != "  pagesets":
                _fail(what, i + 1, line_at(i), "expected '  pagesets'")
            i += 1
            while line_at(i).startswith("    cpu: "):
                cpu = labelled(i, "    cpu: ")
                i += 1
                pcp: dict[str, int | None] = {}
                for label, attr, optional in _ZI_PCP:
                    if optional and not line_at(i).startswith(label):
                        pcp[attr] = None
                        continue
                    pcp[attr] = labelled(i, label, signed=True)
                    i += 1
                if (pcp["high_min"] is None) != (pcp["high_max"] is None):
                    _fail(what, i, lines[i - 1], "high_min and high_max come together")
                threshold = None
                if line_at(i).startswith("  vm stats threshold: "):
                    threshold = labelled(i, "  vm stats threshold: ", signed=True)
                    i += 1
                if zone.pagesets and cpu <= zone.pagesets[-1].cpu:
                    _fail(what, i, lines[i - 1], "cpus must ascend")
                if zone.pagesets and (threshold is None) != (zone.pagesets[0].stat_threshold is None):
                    _fail(what, i, lines[i - 1], "'vm stats threshold' is printed for every cpu or for none")
                zone.pagesets.append(Pageset(cpu=cpu, stat_threshold=threshold, **pcp))  # type: ignore[arg-type]
            if not zone.pagesets:
                _fail(what, i + 1, line_at(i), "pagesets without any cpu")
            zone.node_unreclaimable = labelled(i, "  node_unreclaimable:  ")
            if zone.node_unreclaimable not in (0, 1):
                _fail(what, i + 1, lines[i], "node_unreclaimable is a boolean")
            zone.start_pfn = labelled(i + 1, "  start_pfn:           ")
            i += 2
        if i < len(lines) and not lines[i].startswith("Node "):
            _fail(what, i + 1, lines[i], "unexpected line" if zone.populated else
                  f"zone {name} is empty (present 0): Linux prints nothing after its protection line")
        # Relations Linux's arithmetic guarantees.
        if not (zone.managed <= zone.present <= zone.spanned):
            _fail(what, zn, line, f"needs managed {zone.managed} <= present {zone.present} <= spanned {zone.spanned}")
        marks = [zone.min, zone.low, zone.high] + ([zone.promo] if zone.promo is not None else [])
        if marks != sorted(marks):
            _fail(what, zn, line, f"watermarks min/low/high/promo must not decrease: {marks}")
        zones.append(zone)
        header_at.append(zn)
    if not zones:
        raise FormatError(f"{what} line 1: no zone")
    # Per node: every zone has a protection entry per zone of the node (MAX_NR_ZONES), the entries for the
    # zone itself and lower zones are 0, and the per-node stats sit in the first populated zone.
    for node in sorted({z.node for z in zones}):
        nz = [(z, n) for z, n in zip(zones, header_at) if z.node == node]
        first_populated = next((z for z, _ in nz if z.populated), None)
        for idx, (z, n) in enumerate(nz):
            if len(z.protection) != len(nz):
                _fail(what, n, lines[n - 1], f"{len(z.protection)} protection entries, but node {node} has {len(nz)} zones")
            if any(z.protection[: idx + 1]):
                _fail(what, n, lines[n - 1], "protection against the zone itself and lower zones must be 0")
            if (z is first_populated) != (z.per_node_stats is not None):
                _fail(what, n, lines[n - 1], "'per-node stats' belong to the node's first populated zone only"
                      if z.per_node_stats is not None else "the node's first populated zone lacks 'per-node stats'")
    return zones


# --- /proc/slabinfo -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SlabLine:
    name: str
    active_objs: int
    num_objs: int
    objsize: int
    objperslab: int
    pagesperslab: int
    limit: int
    batchcount: int
    sharedfactor: int
    active_slabs: int
    num_slabs: int
    sharedavail: int


SLABINFO_VERSION = "slabinfo - version: 2.1"
SLABINFO_HEADER = ("# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
                   " : tunables <limit> <batchcount> <sharedfactor>"
                   " : slabdata <active_slabs> <num_slabs> <sharedavail>")
_SLAB_LINE = re.compile(r"(\S+) +(\S+) +(\S+) +(\S+) +(\S+) +(\S+) : tunables +(\S+) +(\S+) +(\S+)"
                        r" : slabdata +(\S+) +(\S+) +(\S+)")


def parse_slabinfo(text: str) -> list[SlabLine]:
    """/proc/slabinfo version 2.1 (cache_show: "%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u
    : slabdata %6lu %6lu %6lu")."""
    what = "slabinfo"
    lines = _lines(text, what)
    if lines[0] != SLABINFO_VERSION:
        _fail(what, 1, lines[0], f"expected {SLABINFO_VERSION!r}")
    if len(lines) < 2 or lines[1] != SLABINFO_HEADER:
        _fail(what, 2, lines[1] if len(lines) > 1 else "", "expected the '# name <active_objs> ...' column header")
    out: list[SlabLine] = []
    for n, line in enumerate(lines[2:], 3):
        m = _SLAB_LINE.fullmatch(line)
        if not m:
            _fail(what, n, line, "not 'name 5 numbers : tunables 3 numbers : slabdata 3 numbers'")
        nums = [_u(t, what, n, line) for t in m.groups()[1:]]
        s = SlabLine(m.group(1), *nums)
        _same(f"{s.name:<17} {s.active_objs:>6} {s.num_objs:>6} {s.objsize:>6} {s.objperslab:>4} {s.pagesperslab:>4}"
              f" : tunables {s.limit:>4} {s.batchcount:>4} {s.sharedfactor:>4}"
              f" : slabdata {s.active_slabs:>6} {s.num_slabs:>6} {s.sharedavail:>6}", line, what, n)
        if s.active_objs > s.num_objs:
            _fail(what, n, line, f"active_objs {s.active_objs} exceeds num_objs {s.num_objs}")
        if s.active_slabs > s.num_slabs:
            _fail(what, n, line, f"active_slabs {s.active_slabs} exceeds num_slabs {s.num_slabs}")
        if s.objsize == 0 or s.objperslab == 0:
            _fail(what, n, line, "objsize and objperslab are never 0")
        if s.pagesperslab & (s.pagesperslab - 1) or s.pagesperslab == 0:
            _fail(what, n, line, "pagesperslab is 1 << order, a power of two")
        out.append(s)
    return out


# --- /proc/PID/stat, status, statm ----------------------------------------------------------------------

# proc(5) field numbers that do_task_stat prints with seq_put_decimal_ll (may be negative); all other
# numeric fields are seq_put_decimal_ull.
_STAT_SIGNED = frozenset({4, 5, 6, 7, 8, 16, 17, 18, 19, 20, 38, 39, 44, 52})
_STAT_MIN_FIELDS = 44
_TASK_COMM_MAX = 64  # proc_task_name: "%.64s" (kthread and workqueue worker names exceed TASK_COMM_LEN)


@dataclass(frozen=True)
class PidStat:
    pid: int
    comm: str
    state: str
    fields: tuple[int, ...]  # proc(5) fields 4 (ppid) onwards; Linux 6.x prints up to 52 (exit_code)

    def field(self, number: int) -> int:
        """A numeric field by its proc(5) number (4 = ppid ... 52 = exit_code)."""
        if number < 4:
            raise IndexError("fields 1-3 are pid, comm and state")
        return self.fields[number - 4]

    ppid = property(lambda self: self.field(4))
    pgrp = property(lambda self: self.field(5))
    session = property(lambda self: self.field(6))
    tty_nr = property(lambda self: self.field(7))
    tpgid = property(lambda self: self.field(8))
    flags = property(lambda self: self.field(9))
    minflt = property(lambda self: self.field(10))
    majflt = property(lambda self: self.field(12))
    utime = property(lambda self: self.field(14))
    stime = property(lambda self: self.field(15))
    priority = property(lambda self: self.field(18))
    nice = property(lambda self: self.field(19))
    num_threads = property(lambda self: self.field(20))
    starttime = property(lambda self: self.field(22))
    vsize = property(lambda self: self.field(23))
    rss = property(lambda self: self.field(24))
    processor = property(lambda self: self.field(39))


def parse_pid_stat(text: str) -> PidStat:
    """/proc/PID/stat: 'pid (comm) S n n ...'. comm may hold spaces, parentheses and even newlines, so it
    ends at the LAST ')'."""
    what = "stat"
    if not isinstance(text, str) or not text.endswith("\n"):
        raise FormatError(f"{what} line 1: does not end with a newline: {text!r}")
    line = text[:-1]
    open_at, close_at = line.find(" ("), line.rfind(")")
    if open_at < 0 or close_at < open_at:
        _fail(what, 1, line, "no 'pid (comm)'")
    pid = _u(line[:open_at], what, 1, line, "pid")
    comm = line[open_at + 2:close_at]
    if len(comm) > _TASK_COMM_MAX:
        _fail(what, 1, line, f"comm longer than {_TASK_COMM_MAX} characters")
    rest = line[close_at + 1:]
    m = re.fullmatch(r" (\S) (.*)", rest, re.DOTALL)
    if not m:
        _fail(what, 1, line, "expected ') S ' after comm")
    state = m.group(1)
    if state not in TASK_STATES:
        _fail(what, 1, line, f"state {state!r} is none of {''.join(TASK_STATES)}")
    toks = m.group(2).split(" ")
    if 3 + len(toks) < _STAT_MIN_FIELDS:
        _fail(what, 1, line, f"{3 + len(toks)} fields, Linux prints at least {_STAT_MIN_FIELDS} (52 in 6.x)")
    nums = tuple(
        (_s if (no in _STAT_SIGNED or no > 52) else _u)(tok, what, 1, line, f"field {no}")
        for no, tok in enumerate(toks, 4)
    )
    return PidStat(pid, comm, state, nums)


_STATUS_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):\t(.*)")
_STATUS_REQUIRED = ("Name", "State", "Tgid", "Pid", "PPid", "TracerPid", "Uid", "Gid")
_STATUS_DECIMAL = frozenset({"Tgid", "Ngid", "Pid", "PPid", "TracerPid", "FDSize", "Threads", "Kthread",
                             "CoreDumping", "NoNewPrivs", "Seccomp", "Seccomp_filters",
                             "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"})
_STATUS_KB = re.compile(r"Vm[A-Za-z]+|Rss[A-Za-z]+|HugetlbPages")
_STATUS_HEX16 = frozenset({"SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})


def parse_pid_status(text: str) -> dict[str, str]:
    """/proc/PID/status as {key: value}, the value exactly as printed after 'Key:\\t' (Vm* values keep
    their padding, e.g. '    1796 kB'; Groups keeps Linux's trailing space)."""
    what = "status"
    out: dict[str, str] = {}
    at: dict[str, int] = {}
    lines = _lines(text, what)
    for n, line in enumerate(lines, 1):
        m = _STATUS_LINE.fullmatch(line)
        if not m:
            _fail(what, n, line, "not a 'Key:\\tvalue' line")
        key, val = m.groups()
        if key in out:
            _fail(what, n, line, f"{key} appears twice")
        if n == 1 and key != "Name":
            _fail(what, n, line, "Linux prints Name first")
        if key == "State" and val not in TASK_STATES.values():
            _fail(what, n, line, f"state {val!r} is not one of Linux's")
        elif key in _STATUS_DECIMAL:
            _u(val, what, n, line, key)
        elif key in ("Uid", "Gid"):
            ids = val.split("\t")
            if len(ids) != 4:
                _fail(what, n, line, f"{key} has real, effective, saved and filesystem ids")
            for t in ids:
                _u(t, what, n, line, key)
        elif key == "Umask" and not re.fullmatch(r"0[0-7]{3}", val):
            _fail(what, n, line, "Umask is '%#04o'")
        elif key in _STATUS_HEX16 and not re.fullmatch(r"[0-9a-f]{16}", val):
            _fail(what, n, line, f"{key} is 16 lower-case hex digits")
        elif key == "SigQ" and not re.fullmatch(_UDEC + "/" + _UDEC, val):
            _fail(what, n, line, "SigQ is 'queued/limit'")
        elif _STATUS_KB.fullmatch(key):
            num = re.fullmatch(r" *(" + _UDEC + ") kB", val)
            if not num:
                _fail(what, n, line, f"{key} is '%8lu kB'")
            _same(f"{key}:\t{int(num.group(1)):>8} kB", line, what, n)
        out[key] = val
        at[key] = n
    # Linux prints the required keys in this order; a missing one is reported where it belonged.
    prev = 0
    for key in _STATUS_REQUIRED:
        if key not in out or at[key] <= prev:
            n = min(prev + 1, len(lines))
            _fail(what, n, lines[n - 1], f"required key {key} is missing or out of order: Linux prints it by here")
        prev = at[key]
    return out


def parse_pid_statm(text: str) -> tuple[int, ...]:
    """/proc/PID/statm: "%lu %lu %lu %lu 0 %lu 0" = size resident shared text lib(0) data dt(0), in pages."""
    what = "statm"
    lines = _lines(text, what)
    if len(lines) != 1:
        _fail(what, 2, lines[1], "statm is one line")
    line = lines[0]
    toks = line.split(" ")
    if len(toks) != 7:
        _fail(what, 1, line, f"{len(toks)} fields, Linux prints 7")
    vals = tuple(_u(t, what, 1, line) for t in toks)
    if vals[4] != 0 or vals[6] != 0:
        _fail(what, 1, line, "fields 5 (lib) and 7 (dt) are always 0")
    return vals


# --- /proc/stat -----------------------------------------------------------------------------------------

class CpuTimes(NamedTuple):
    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int
    guest: int
    guest_nice: int


@dataclass
class ProcStat:
    cpu: CpuTimes
    cpus: dict[int, CpuTimes]
    intr_total: int
    intr: tuple[int, ...]
    ctxt: int
    btime: int
    processes: int
    procs_running: int
    procs_blocked: int
    softirq_total: int
    softirq: tuple[int, ...]


_NR_SOFTIRQS = 10  # HI TIMER NET_TX NET_RX BLOCK IRQ_POLL TASKLET SCHED HRTIMER RCU


def parse_stat(text: str) -> ProcStat:
    """/proc/stat (fs/proc/stat.c show_stat)."""
    what = "/proc/stat"
    lines = _lines(text, what)

    def numbers(n: int, line: str, prefix: str) -> list[int]:
        if not line.startswith(prefix):
            _fail(what, n, line, f"expected a line starting {prefix!r}")
        rest = line[len(prefix):]
        return [_u(t, what, n, line) for t in rest.split(" ")] if rest else []

    # seq_put_decimal_ull(p, "cpu  ", user); then " %llu" for the other nine.
    agg = numbers(1, lines[0], "cpu  ")
    if len(agg) != 10:
        _fail(what, 1, lines[0], f"{len(agg)} cpu times, Linux prints 10")
    i, cpus = 1, {}
    while i < len(lines) and (m := re.match(r"cpu(" + _UDEC + ") ", lines[i])):
        cpu = int(m.group(1))
        vals = numbers(i + 1, lines[i], f"cpu{cpu} ")
        if len(vals) != 10:
            _fail(what, i + 1, lines[i], f"{len(vals)} cpu times, Linux prints 10")
        if cpus and cpu <= max(cpus):
            _fail(what, i + 1, lines[i], "cpus must ascend")
        cpus[cpu] = CpuTimes(*vals)
        i += 1
    if not cpus:
        _fail(what, i + 1, lines[i] if i < len(lines) else "", "no cpuN line")
    rest = lines[i:]
    names = ["intr", "ctxt", "btime", "processes", "procs_running", "procs_blocked", "softirq"]
    if len(rest) != len(names):
        raise FormatError(f"{what} line {i + 1}: after the cpu lines Linux prints exactly {', '.join(names)}")
    vals_by: dict[str, list[int]] = {}
    for k, (name, line) in enumerate(zip(names, rest), i + 1):
        vals_by[name] = numbers(k, line, name + " ")
        single = name not in ("intr", "softirq")
        if not vals_by[name] or (single and len(vals_by[name]) != 1):
            _fail(what, k, line, f"{name} takes {'one number' if single else 'a total and its counts'}")
    soft = vals_by["softirq"]
    if len(soft) != 1 + _NR_SOFTIRQS:
        _fail(what, len(lines), rest[-1], f"softirq has a total and {_NR_SOFTIRQS} counts")
    if sum(soft[1:]) != soft[0]:
        _fail(what, len(lines), rest[-1], f"softirq total {soft[0]} is not the sum of its counts {sum(soft[1:])}")
    return ProcStat(
        cpu=CpuTimes(*agg), cpus=cpus, intr_total=vals_by["intr"][0], intr=tuple(vals_by["intr"][1:]),
        ctxt=vals_by["ctxt"][0], btime=vals_by["btime"][0], processes=vals_by["processes"][0],
        procs_running=vals_by["procs_running"][0], procs_blocked=vals_by["procs_blocked"][0],
        softirq_total=soft[0], softirq=tuple(soft[1:]),
    )


# --- /proc/loadavg, /proc/uptime ------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadAvg:
    load_centi: tuple[int, int, int]  # the 1, 5 and 15 minute averages in hundredths
    running: int
    threads: int
    last_pid: int

    @property
    def loads(self) -> tuple[float, float, float]:
        return tuple(c / 100 for c in self.load_centi)  # type: ignore[return-value]


_FIX2 = r"(" + _UDEC + r")\.([0-9]{2})"


def parse_loadavg(text: str) -> LoadAvg:
    """/proc/loadavg: "%lu.%02lu %lu.%02lu %lu.%02lu %u/%d %d\\n"."""
    what = "loadavg"
    lines = _lines(text, what)
    m = re.fullmatch(" ".join([_FIX2] * 3) + r" (" + _UDEC + r")/(" + _SDEC + r") (" + _SDEC + r")", lines[0])
    if len(lines) != 1 or not m:
        _fail(what, 1, lines[0] if len(lines) == 1 else "\n".join(lines), "expected 'N.NN N.NN N.NN R/T PID'")
    g = [int(x) for x in m.groups()]
    return LoadAvg((g[0] * 100 + g[1], g[2] * 100 + g[3], g[4] * 100 + g[5]), g[6], g[7], g[8])


@dataclass(frozen=True)
class Uptime:
    uptime_centi: int
    idle_centi: int  # summed over cpus, so it may exceed the uptime

    @property
    def uptime(self) -> float:
        return self.uptime_centi / 100

    @property
    def idle(self) -> float:
        return self.idle_centi / 100


def parse_uptime(text: str) -> Uptime:
    """/proc/uptime: "%lu.%02lu %lu.%02lu\\n"."""
    what = "uptime"
    lines = _lines(text, what)
    m = re.fullmatch(_FIX2 + " " + _FIX2, lines[0])
    if len(lines) != 1 or not m:
        _fail(what, 1, lines[0] if len(lines) == 1 else "\n".join(lines), "expected 'N.NN N.NN'")
    g = [int(x) for x in m.groups()]
    return Uptime(g[0] * 100 + g[1], g[2] * 100 + g[3])


# --- /proc/PID/maps -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MapsEntry:
    start: int
    end: int
    perms: str
    offset: int
    dev_major: int
    dev_minor: int
    inode: int
    path: str | None  # None when Linux prints nothing after the inode (anonymous mapping without a name)


# seq_put_hex_ll(m, sep, v, width): lower-case hex, zero-padded to `width`, never longer with a leading 0.
_HEX8 = r"(?:[0-9a-f]{8}|[1-9a-f][0-9a-f]{8,})"
_HEX2 = r"(?:[0-9a-f]{2}|[1-9a-f][0-9a-f]{2,})"
_MAPS_PREFIX = re.compile(
    r"(" + _HEX8 + r")-(" + _HEX8 + r") ([r-][w-][x-][ps]) (" + _HEX8 + r") (" + _HEX2 + r"):(" + _HEX2 + r") ("
    + _UDEC + r") ")
_MAPS_PAD_TO = 25 + 8 * 6 - 1  # show_vma_header_prefix: seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)


def parse_maps_line(line: str) -> MapsEntry:
    """One /proc/PID/maps line (with or without its newline): "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu "
    then, if the mapping has a name, spaces up to column 72 (seq_pad), one more space, and the name."""
    what = "maps"
    if line.endswith("\n"):
        line = line[:-1]
    if "\n" in line:
        _fail(what, 1, line, "one line only (Linux escapes newlines in paths as \\012)")
    m = _MAPS_PREFIX.match(line)
    if not m:
        _fail(what, 1, line, "not 'start-end perms offset major:minor inode '")
    start, end = int(m.group(1), 16), int(m.group(2), 16)
    prefix, tail = m.group(0), line[m.end():]
    path: str | None = None
    if tail:
        pad = " " * max(0, _MAPS_PAD_TO - len(prefix)) + " "
        path = tail[len(pad):]
        # Names are "/..." paths, "[heap]"-style names or "anon_inode:..."; none starts with a space.
        if not tail.startswith(pad) or not path or path.startswith(" "):
            _fail(what, 1, line, f"the name must start at column {len(prefix) + len(pad)} (seq_pad to {_MAPS_PAD_TO}, then ' ')")
    if start >= end:
        _fail(what, 1, line, "start must be below end")
    if start % 4096 or end % 4096:
        _fail(what, 1, line, "a mapping is page aligned")
    return MapsEntry(start, end, m.group(3), int(m.group(4), 16), int(m.group(5), 16), int(m.group(6), 16),
                     int(m.group(7)), path)


def parse_maps(text: str) -> list[MapsEntry]:
    """A whole /proc/PID/maps: every line parses, and the mappings ascend without overlapping."""
    out: list[MapsEntry] = []
    if text == "":
        return out  # a kernel thread (no mm) has an empty maps file
    for n, line in enumerate(_lines(text, "maps"), 1):
        try:
            e = parse_maps_line(line)
        except FormatError as exc:
            raise FormatError(str(exc).replace("maps line 1:", f"maps line {n}:", 1)) from None
        if out and e.start < out[-1].end:
            _fail("maps", n, line, "mappings must ascend without overlapping")
        out.append(e)
    return out


# --- debugfs extfrag/{unusable_index,extfrag_index} and their formulas ----------------------------------

@dataclass(frozen=True)
class IndexZone:
    node: int
    zone: str
    index: list[int]  # per order, in thousandths as the kernel computes it (-1000 prints as -1.000)


def format_index(value: int, int_width: int) -> str:
    """C's "%<w>d.%03d" of value / 1000, value % 1000 (truncating division; e.g. -500 prints " 0.-500")."""
    q, r = _c_divmod(value, 1000)
    return f"{q:>{int_width}d}.{r:03d}" if int_width else f"{q}.{r:03d}"


def format_unusable_line(node: int, zone: str, indices: list[int]) -> str:
    """unusable_show_print: "Node %d, zone %8s " then "%d.%03d " per order."""
    return f"Node {node}, zone {zone:>8} " + "".join(format_index(v, 0) + " " for v in indices)


def format_extfrag_line(node: int, zone: str, indices: list[int]) -> str:
    """extfrag_show_print: "Node %d, zone %8s " then "%2d.%03d " per order."""
    return f"Node {node}, zone {zone:>8} " + "".join(format_index(v, 2) + " " for v in indices)


def _parse_index_file(text: str, what: str, extfrag: bool) -> list[IndexZone]:
    out: list[IndexZone] = []
    seen: list[tuple[int, str]] = []
    for n, line in enumerate(_lines(text, what), 1):
        m = _NODE_ZONE_PREFIX.fullmatch(line)
        if not m:
            _fail(what, n, line, "not a 'Node N, zone NAME indices...' line")
        node, zone = int(m.group(1)), _zone_name(m.group(2), what, n, line)
        vals: list[int] = []
        for tok in m.group(3).split():
            im = re.fullmatch(r"(" + _SDEC + r")\.(-?[0-9]{3,})", tok)
            if not im:
                _fail(what, n, line, f"index {tok!r} is not '%d.%03d'")
            vals.append(int(im.group(1)) * 1000 + int(im.group(2)))
        if not vals:
            _fail(what, n, line, "no indices")
        if out and len(vals) != len(out[0].index):
            _fail(what, n, line, f"{len(vals)} orders, but line 1 has {len(out[0].index)}")
        _same((format_extfrag_line if extfrag else format_unusable_line)(node, zone, vals), line, what, n)
        for v in vals:
            # unusable_free_index is in [0, 1000]; __fragmentation_index is -1000 (a request would succeed),
            # or 1000 - (1000 + free*1000/requested) / blocks, which lies in (-1000, 1000].
            if not (-1000 <= v <= 1000 if extfrag else 0 <= v <= 1000):
                _fail(what, n, line, f"index {format_index(v, 0)} is outside what the formula yields")
        _check_zone_order(seen, node, zone, what, n, line)
        out.append(IndexZone(node, zone, vals))
    return out


def parse_unusable_index(text: str) -> list[IndexZone]:
    """/sys/kernel/debug/extfrag/unusable_index."""
    return _parse_index_file(text, "unusable_index", extfrag=False)


def parse_extfrag_index(text: str) -> list[IndexZone]:
    """/sys/kernel/debug/extfrag/extfrag_index."""
    return _parse_index_file(text, "extfrag_index", extfrag=True)


def _contig_page_info(free: list[int], suitable_order: int) -> tuple[int, int, int]:
    """mm/vmstat.c fill_contig_page_info: (free_pages, free_blocks_total, free_blocks_suitable)."""
    if not 0 <= suitable_order < len(free):
        raise ValueError(f"order {suitable_order} outside 0..{len(free) - 1}")
    free_pages = total = suitable = 0
    for order, blocks in enumerate(free):
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return free_pages, total, suitable


def unusable_index(free_counts_per_order: list[int], order: int) -> int:
    """mm/vmstat.c unusable_free_index, in thousandths: the share of free memory in blocks too small for an
    allocation of 1 << order pages; 1000 when nothing is free."""
    free_pages, _total, suitable = _contig_page_info(free_counts_per_order, order)
    if free_pages == 0:
        return 1000
    return (free_pages - (suitable << order)) * 1000 // free_pages


def extfrag_index(free_counts_per_order: list[int], order: int) -> int:
    """mm/vmstat.c __fragmentation_index, in thousandths: -1000 when an allocation of 1 << order pages would
    succeed, 0 when nothing is free, else 1000 - (1000 + free_pages * 1000 / requested) / free_blocks_total
    (unsigned integer divisions)."""
    free_pages, total, suitable = _contig_page_info(free_counts_per_order, order)
    requested = 1 << order
    if not total:
        return 0
    if suitable:
        return -1000
    return 1000 - (1000 + free_pages * 1000 // requested) // total
