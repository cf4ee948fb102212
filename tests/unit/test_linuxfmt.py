"""The strict /proc parsers of tests/linuxfmt.py: they accept this host's real files (the host runs Linux),
reject corrupted variants with a FormatError naming the line, and the fragmentation formulas match
hand-computed values."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.linuxfmt import (
    FormatError, format_buddyinfo_line, format_extfrag_line, format_index, format_unusable_line, extfrag_index,
    parse_buddyinfo, parse_extfrag_index, parse_loadavg, parse_maps, parse_maps_line, parse_meminfo,
    parse_pagetypeinfo, parse_pid_stat, parse_pid_statm, parse_pid_status, parse_slabinfo, parse_stat,
    parse_unusable_index, parse_uptime, parse_vmstat, parse_zoneinfo, unusable_index,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads the host's /proc")

LINE = r"line \d+"  # every FormatError names its line


def host(path: str) -> str:
    """A host file's text; skip only when the file cannot be read here."""
    try:
        return Path(path).read_text()
    except (FileNotFoundError, PermissionError) as exc:
        pytest.skip(f"{path} is not readable here: {exc}")


def replace_line(text: str, index: int, new: str | None) -> str:
    """The text with line `index` replaced (or removed when new is None)."""
    lines = text.split("\n")
    if new is None:
        del lines[index]
    else:
        lines[index] = new
    return "\n".join(lines)


def first_line_index(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(text.split("\n")) if line.startswith(prefix))


def line_of(text: str, index: int) -> str:
    return text.split("\n")[index]


# --- the host's real files --------------------------------------------------------------------------------

def test_host_meminfo():
    info = parse_meminfo(host("/proc/meminfo"))
    assert 0 < info["MemFree"] <= info["MemTotal"]
    assert {"MemAvailable", "Buffers", "Cached"} <= info.keys()
    if "HugePages_Total" in info:   # a plain count, no kB
        assert isinstance(info["HugePages_Total"], int)


def test_host_vmstat():
    stats = parse_vmstat(host("/proc/vmstat"))
    assert stats["nr_free_pages"] > 0
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())


def test_host_buddyinfo():
    zones = parse_buddyinfo(host("/proc/buddyinfo"))
    assert zones and len({len(z.free) for z in zones}) == 1
    assert any(z.zone == "Normal" or z.zone == "DMA32" for z in zones)


def test_host_pagetypeinfo():
    info = parse_pagetypeinfo(host("/proc/pagetypeinfo"))
    assert info.pages_per_block == 1 << info.pageblock_order
    assert "Movable" in info.types and "Unmovable" in info.types
    for (node, zone), counts in info.blocks.items():
        assert set(counts) == set(info.types)
        for t in info.types:
            assert len(info.free[(node, zone, t)]) == info.orders


def test_host_zoneinfo():
    zones = parse_zoneinfo(host("/proc/zoneinfo"))
    populated = [z for z in zones if z.populated]
    assert populated
    assert populated[0].per_node_stats and "nr_inactive_anon" in populated[0].per_node_stats
    for z in populated:
        assert z.pagesets and z.start_pfn is not None and "nr_free_pages" in z.stats
    for z in zones:
        if not z.populated:  # e.g. Movable / Device: only the pages block and protection
            assert not z.stats and not z.pagesets and z.start_pfn is None
        assert len(z.protection) == len([y for y in zones if y.node == z.node])


def test_host_slabinfo():
    slabs = parse_slabinfo(host("/proc/slabinfo"))
    assert slabs
    assert all(s.active_objs <= s.num_objs for s in slabs)


def test_host_stat():
    st = parse_stat(host("/proc/stat"))
    assert st.cpus and len(st.cpu) == 10
    assert len(st.cpus) <= os.cpu_count()
    assert st.btime > 0 and st.processes > 0 and st.procs_running >= 1
    assert st.softirq_total == sum(st.softirq)


def test_host_loadavg_and_uptime():
    la = parse_loadavg(host("/proc/loadavg"))
    assert la.running >= 1 and la.threads >= la.running and la.last_pid > 0
    up = parse_uptime(host("/proc/uptime"))
    assert up.uptime > 0 and up.idle >= 0


def test_self_stat_status_statm():
    st = parse_pid_stat(host("/proc/self/stat"))
    status = parse_pid_status(host("/proc/self/status"))
    statm = parse_pid_statm(host("/proc/self/statm"))
    # /proc/self is the reading process: this one.
    assert st.pid == os.getpid() and st.ppid == os.getppid() and st.state == "R"
    assert len(st.fields) + 3 >= 44
    assert status["Pid"] == str(os.getpid()) and status["State"] == "R (running)"
    assert status["Name"] == st.comm
    assert int(status["VmRSS"].split()[0]) > 0 and status["VmRSS"].endswith(" kB")
    assert len(statm) == 7 and statm[0] > 0


def test_self_maps():
    text = host("/proc/self/maps")
    entries = parse_maps(text)
    assert entries
    assert any(e.path == "[stack]" for e in entries)
    for line, e in zip(text.splitlines(), entries):
        assert parse_maps_line(line) == e


def test_every_process_on_the_host():
    """stat, status, statm and maps of every process (kernel threads included) parse."""
    checked = 0
    for d in glob.glob("/proc/[0-9]*"):
        for name, parse in (("stat", parse_pid_stat), ("status", parse_pid_status), ("statm", parse_pid_statm),
                            ("maps", parse_maps)):
            try:
                text = Path(d, name).read_text()
            except (OSError, UnicodeDecodeError):
                continue  # gone meanwhile, or not ours to read
            if not text and name != "maps":
                continue  # exited between open and read
            parse(text)
            checked += 1
    assert checked > 4


def test_comm_with_spaces_and_parentheses():
    """comm may hold ' ' and ')'; the parser ends it at the last ')'."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; open('/proc/self/comm', 'w').write('a) (b c)'); print('ok', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ok\n"
        st = parse_pid_stat(host(f"/proc/{child.pid}/stat"))
        assert st.comm == "a) (b c)" and st.pid == child.pid and st.ppid == os.getpid()
        assert parse_pid_status(host(f"/proc/{child.pid}/status"))["Name"] == "a) (b c)"
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_host_memory_files_describe_the_same_zones():
    """buddyinfo and pagetypeinfo list the populated zones of zoneinfo, with the same number of orders."""
    text = host("/proc/buddyinfo")
    buddy = parse_buddyinfo(text)
    pti = parse_pagetypeinfo(host("/proc/pagetypeinfo"))
    zones = parse_zoneinfo(host("/proc/zoneinfo"))
    populated = [(z.node, z.name) for z in zones if z.populated]
    assert [(b.node, b.zone) for b in buddy] == populated == list(pti.blocks)
    assert {len(b.free) for b in buddy} == {pti.orders}


# --- corrupted variants are rejected ------------------------------------------------------------------

def test_meminfo_rejects():
    text = host("/proc/meminfo")
    with pytest.raises(FormatError, match=LINE):
        parse_meminfo(replace_line(text, 1, None))                                   # MemFree removed
    with pytest.raises(FormatError, match="line 1"):
        parse_meminfo(text.replace("MemTotal:", "MemTotal:x", 1))                    # not 'Name: value'
    with pytest.raises(FormatError, match="line 1"):
        parse_meminfo(replace_line(text, 0, line_of(text, 0).replace(" kB", "a kB")))  # a letter in a number
    with pytest.raises(FormatError, match="line 1"):
        parse_meminfo(replace_line(text, 0, f"MemTotal: {parse_meminfo(text)['MemTotal']} kB"))  # not right-aligned
    with pytest.raises(FormatError, match="line 2"):
        parse_meminfo("MemTotal:            100 kB\nMemFree:             200 kB\nMemAvailable:        100 kB\n"
                      "Buffers:               0 kB\nCached:                0 kB\n")          # MemFree > MemTotal
    with pytest.raises(FormatError, match=f"line {text.count(chr(10))}"):
        parse_meminfo(text[:-1])                                                      # no final newline


def test_vmstat_rejects():
    text = host("/proc/vmstat")
    with pytest.raises(FormatError, match="line 1"):
        parse_vmstat(replace_line(text, 0, line_of(text, 0) + "x"))
    with pytest.raises(FormatError, match="line 2"):
        parse_vmstat(replace_line(text, 1, line_of(text, 1).replace(" ", "  ")))
    with pytest.raises(FormatError, match="line 3"):
        parse_vmstat(replace_line(text, 2, line_of(text, 2).upper()))
    with pytest.raises(FormatError, match="line 1"):
        parse_vmstat(replace_line(text, 0, None))                                  # nr_free_pages missing


def test_buddyinfo_rejects():
    text = host("/proc/buddyinfo")
    last = text.count("\n") - 1
    line = line_of(text, last)
    with pytest.raises(FormatError, match=LINE):
        parse_buddyinfo(replace_line(text, last, line[:line.rstrip().rfind(" ") + 1]))  # an order removed
    with pytest.raises(FormatError, match=LINE):
        parse_buddyinfo(replace_line(text, last, line.rstrip()[:-1] + "x "))            # a letter
    with pytest.raises(FormatError, match=LINE):
        parse_buddyinfo(replace_line(text, last, line.replace("zone ", "zone", 1)))    # %8s padding broken
    with pytest.raises(FormatError, match="line 1"):
        parse_buddyinfo("Node 0, zone   Weird      1      2 \n")                         # no such zone


def test_pagetypeinfo_rejects():
    text = host("/proc/pagetypeinfo")
    with pytest.raises(FormatError, match="line 1"):
        parse_pagetypeinfo(text.replace("Page block order:", "Page block size:", 1))
    with pytest.raises(FormatError, match="line 2"):
        parse_pagetypeinfo(text.replace("Pages per block:  ", "Pages per block: ", 1))
    i = first_line_index(text, "Node ")
    line = line_of(text, i)
    with pytest.raises(FormatError, match=LINE):
        parse_pagetypeinfo(replace_line(text, i, line[:line.rstrip().rfind(" ") + 1]))  # an order removed
    with pytest.raises(FormatError, match=LINE):
        parse_pagetypeinfo(replace_line(text, i, line.replace("type ", "type X", 1)))    # unknown type
    with pytest.raises(FormatError, match=LINE):
        parse_pagetypeinfo(replace_line(text, i, None))                                    # a type's row missing
    j = first_line_index(text, "Number of blocks type")
    with pytest.raises(FormatError, match=LINE):
        parse_pagetypeinfo(replace_line(text, j, line_of(text, j).replace("Movable", "Mobile", 1)))
    with pytest.raises(FormatError, match=LINE):
        parse_pagetypeinfo(replace_line(text, j + 1, line_of(text, j + 1).rstrip() + "7 "))  # a digit too many


def test_zoneinfo_rejects():
    text = host("/proc/zoneinfo")
    i = first_line_index(text, "        spanned")
    with pytest.raises(FormatError, match=LINE):
        parse_zoneinfo(replace_line(text, i, None))                                   # a field removed
    with pytest.raises(FormatError, match=LINE):
        parse_zoneinfo(replace_line(text, i, line_of(text, i) + "k"))                 # a letter in a number
    with pytest.raises(FormatError, match=LINE):
        parse_zoneinfo(replace_line(text, 0, line_of(text, 0).replace("zone ", "zone  ", 1)))  # header spacing
    p = first_line_index(text, "        protection:")
    with pytest.raises(FormatError, match=LINE):
        parse_zoneinfo(replace_line(text, p, line_of(text, p).replace(", ", ",", 1)))
    s = first_line_index(text, "      nr_")
    with pytest.raises(FormatError, match=LINE):
        parse_zoneinfo(replace_line(text, s, line_of(text, s) + "x"))
    with pytest.raises(FormatError):
        # free pages beyond: managed > present is impossible
        parse_zoneinfo("Node 0, zone  Movable\n  pages free     0\n        boost    0\n        min      0\n"
                       "        low      0\n        high     0\n        spanned  0\n        present  0\n"
                       "        managed  5\n        protection: (0)\n")


def test_zoneinfo_empty_zone_parses():
    text = ("Node 0, zone  Movable\n  pages free     0\n        boost    0\n        min      32\n"
            "        low      32\n        high     32\n        promo    32\n        spanned  0\n"
            "        present  0\n        managed  0\n        cma      0\n        protection: (0)\n")
    (z,) = parse_zoneinfo(text)
    assert (z.node, z.name, z.free, z.present, z.protection, z.pagesets) == (0, "Movable", 0, 0, (0,), [])
    with pytest.raises(FormatError, match="line 13"):   # an empty zone prints nothing after protection
        parse_zoneinfo(text + "  pagesets\n")


def test_slabinfo_rejects():
    text = host("/proc/slabinfo")
    with pytest.raises(FormatError, match="line 1"):
        parse_slabinfo(text.replace("version: 2.1", "version: 2.0", 1))
    with pytest.raises(FormatError, match="line 2"):
        parse_slabinfo(text.replace("<num_objs>", "<objs>", 1))
    line = line_of(text, 2)
    with pytest.raises(FormatError, match="line 3"):
        parse_slabinfo(replace_line(text, 2, line.replace(" : tunables", " 1 : tunables", 1)))  # a field added
    with pytest.raises(FormatError, match="line 3"):
        parse_slabinfo(replace_line(text, 2, line.replace(" : slabdata", "x : slabdata", 1)))
    head = "\n".join(text.split("\n")[:2]) + "\n"
    with pytest.raises(FormatError, match="line 3"):   # active_objs > num_objs
        parse_slabinfo(head + "kmalloc-64             9      8     64   64    1 : tunables    0    0    0"
                              " : slabdata      1      1      0\n")
    ok = "kmalloc-64             8      8     64   64    1 : tunables    0    0    0 : slabdata      1      1      0\n"
    assert parse_slabinfo(head + ok)[0].num_objs == 8


def test_pid_stat_rejects():
    text = host("/proc/self/stat")
    toks = text.split(" ")
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_stat(" ".join(toks[:40]) + "\n")                                  # too few fields
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_stat(text.replace(") R ", ") Q ", 1))                             # no such state
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_stat(" ".join(toks[:10] + ["12a"] + toks[11:]))                   # a letter
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_stat(" ".join(toks[:10] + ["-" + toks[10]] + toks[11:]))          # minflt is unsigned
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_stat(text.replace(" ", "  ", 3))                                  # double space
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_stat(text.replace(")", "", 1).replace("(", "", 1))                # no parentheses
    # Negative values where Linux prints %ld (tty_pgrp -1, RT priority).
    assert parse_pid_stat(text).tpgid == int(toks[7])


def test_pid_status_rejects():
    text = host("/proc/self/status")
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_status(replace_line(text, 0, None) + line_of(text, 0) + "\n")   # Name not first
    i = first_line_index(text, "Pid:")
    with pytest.raises(FormatError, match=f"line {i + 1}"):
        parse_pid_status(replace_line(text, i, line_of(text, i) + "a"))
    with pytest.raises(FormatError, match=f"line {i + 1}"):
        parse_pid_status(replace_line(text, i, line_of(text, i).replace("\t", " ")))
    v = first_line_index(text, "VmRSS:")
    with pytest.raises(FormatError, match=f"line {v + 1}"):
        parse_pid_status(replace_line(text, v, line_of(text, v).replace("\t ", "\t", 1)))  # %8lu broken
    u = first_line_index(text, "Uid:")
    with pytest.raises(FormatError, match=f"line {u + 1}"):
        parse_pid_status(replace_line(text, u, line_of(text, u).rsplit("\t", 1)[0]))       # 3 ids
    with pytest.raises(FormatError, match="Pid"):
        parse_pid_status(replace_line(text, i, None))                                      # required key gone


def test_pid_statm_rejects():
    text = host("/proc/self/statm")
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_statm(text.split(" ", 1)[1])                                    # 6 fields
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_statm("1 2 3 4 0 5 x\n")
    with pytest.raises(FormatError, match="line 1"):
        parse_pid_statm("1 2 3 4 1 5 0\n")                                         # lib is always 0
    assert parse_pid_statm("10 2 3 4 0 5 0\n") == (10, 2, 3, 4, 0, 5, 0)


def test_stat_rejects():
    text = host("/proc/stat")
    with pytest.raises(FormatError, match="line 1"):
        parse_stat(text.replace("cpu  ", "cpu ", 1))
    with pytest.raises(FormatError, match="line 1"):
        parse_stat(replace_line(text, 0, line_of(text, 0).rsplit(" ", 1)[0]))   # 9 cpu times
    with pytest.raises(FormatError, match="line 2"):
        parse_stat(replace_line(text, 1, line_of(text, 1) + "z"))
    last = text.count("\n") - 1
    with pytest.raises(FormatError, match=f"line {last + 1}"):
        parse_stat(replace_line(text, last, line_of(text, last).rsplit(" ", 1)[0]))  # a softirq count gone
    c = first_line_index(text, "ctxt")
    with pytest.raises(FormatError, match=LINE):
        parse_stat(replace_line(text, c, None))


def test_loadavg_and_uptime_reject():
    with pytest.raises(FormatError, match="line 1"):
        parse_loadavg("0.9 0.36 0.39 4/86 3166\n")
    with pytest.raises(FormatError, match="line 1"):
        parse_loadavg("0.91 0.36 0.39 4/86\n")
    with pytest.raises(FormatError, match="line 1"):
        parse_loadavg("0.91 0.36 0.39 4/86 31a6\n")
    la = parse_loadavg("0.91 10.36 0.05 4/86 3166\n")
    assert (la.load_centi, la.running, la.threads, la.last_pid) == ((91, 1036, 5), 4, 86, 3166)
    with pytest.raises(FormatError, match="line 1"):
        parse_uptime("56292.9 68052.91\n")
    with pytest.raises(FormatError, match="line 1"):
        parse_uptime("56292.97\n")
    with pytest.raises(FormatError, match="line 1"):
        parse_uptime("56292.97 68052.91")                                         # no newline
    assert parse_uptime("56292.97 68052.91\n").uptime_centi == 5629297


def test_maps_line_format():
    pad = " " * (73 - len("55e8c693e000-55e8c6940000 r--p 00000000 fe:00 260386 "))
    e = parse_maps_line("55e8c693e000-55e8c6940000 r--p 00000000 fe:00 260386 " + pad + "/usr/bin/head\n")
    assert (e.start, e.end, e.perms, e.offset, e.dev_major, e.dev_minor, e.inode, e.path) == (
        0x55e8c693e000, 0x55e8c6940000, "r--p", 0, 0xfe, 0, 260386, "/usr/bin/head")
    assert parse_maps_line("7f14106b2000-7f14106b5000 rw-p 00000000 00:00 0 ").path is None
    # A prefix longer than 72 columns is followed by exactly one space.
    long = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 12345678901234567890 "
    assert parse_maps_line(long + " [vsyscall]").path == "[vsyscall]"
    with pytest.raises(FormatError, match="line 1"):
        parse_maps_line("55E8C693E000-55e8c6940000 r--p 00000000 fe:00 260386 " + pad + "/x")  # upper case
    with pytest.raises(FormatError, match="line 1"):
        parse_maps_line("55e8c693e000-55e8c6940000 rwxq 00000000 fe:00 260386 " + pad + "/x")  # bad perms
    with pytest.raises(FormatError, match="line 1"):
        parse_maps_line("55e8c693e000-55e8c6940000 r--p 00000000 fe:00 260386 /usr/bin/head")  # not padded
    with pytest.raises(FormatError, match="line 1"):
        parse_maps_line("55e8c693e000-55e8c6940000 r--p 0000000 fe:00 260386 ")                # 7-digit offset
    with pytest.raises(FormatError, match="line 1"):
        parse_maps_line("7f14106b2000-7f14106b5000 rw-p 00000000 00:00 0")                     # trailing space lost
    with pytest.raises(FormatError, match="line 2"):
        parse_maps("7f14106b2000-7f14106b5000 rw-p 00000000 00:00 0 \n"
                   "7f14106b4000-7f14106b6000 rw-p 00000000 00:00 0 \n")                         # overlap


# --- debugfs extfrag files and the formulas -----------------------------------------------------------------

def test_unusable_index_formula_by_hand():
    # free blocks per order 0..3: [3, 1, 0, 1] -> free_pages = 3*1 + 1*2 + 0*4 + 1*8 = 13.
    free = [3, 1, 0, 1]
    # order 0: every block suits: suitable = 3+2+0+8 = 13 -> (13 - 13<<0) * 1000 / 13 = 0
    assert unusable_index(free, 0) == 0
    # order 1: suitable = 1<<0 + 0<<1 + 1<<2 = 5 -> (13 - 5*2) * 1000 / 13 = 3000 / 13 = 230 (truncated)
    assert unusable_index(free, 1) == 230
    # order 2: suitable = 0 + 1<<1 = 2 -> (13 - 2*4) * 1000 / 13 = 5000 / 13 = 384
    assert unusable_index(free, 2) == 384
    # order 3: suitable = 1 -> (13 - 8) * 1000 / 13 = 384
    assert unusable_index(free, 3) == 384
    # nothing free: all of it counts as unusable -> 1000
    assert unusable_index([0, 0, 0], 1) == 1000
    # [4, 1, 0, 0]: free_pages = 6; order 1: suitable = 1 -> (6 - 2) * 1000 / 6 = 666; order 2: none -> 1000
    assert [unusable_index([4, 1, 0, 0], o) for o in range(4)] == [0, 666, 1000, 1000]


def test_extfrag_index_formula_by_hand():
    # [3, 1, 0, 1]: a block of every order up to 3 exists (the order-3 block), so every request succeeds: -1000.
    assert [extfrag_index([3, 1, 0, 1], o) for o in range(4)] == [-1000] * 4
    # [4, 1, 0, 0]: free_pages = 4 + 2 = 6, free_blocks_total = 5.
    # order 0 and 1: a suitable block exists -> -1000
    # order 2: requested 4: 1000 - (1000 + 6*1000/4) / 5 = 1000 - 2500/5 = 1000 - 500 = 500
    # order 3: requested 8: 1000 - (1000 + 6000/8) / 5 = 1000 - 1750/5 = 1000 - 350 = 650
    assert [extfrag_index([4, 1, 0, 0], o) for o in range(4)] == [-1000, -1000, 500, 650]
    # nothing free: 0
    assert extfrag_index([0, 0, 0], 2) == 0
    # [1, 0]: one free page, order 1 requested 2: 1000 - (1000 + 1000/2) / 1 = 1000 - 1500 = -500,
    # which Linux prints with "%2d.%03d" of (-500/1000, -500%1000) = " 0.-500".
    assert extfrag_index([1, 0], 1) == -500
    assert format_index(-500, 2) == " 0.-500" and format_index(-1000, 2) == "-1.000"
    assert format_index(650, 2) == " 0.650" and format_index(1000, 0) == "1.000"


def test_index_files_from_the_kernel_formats():
    # Hand-written with "Node %d, zone %8s " and "%2d.%03d " / "%d.%03d " for the [4, 1, 0, 0] zone above.
    extfrag = "Node 0, zone   Normal -1.000 -1.000  0.500  0.650 \n"
    unusable = "Node 0, zone   Normal 0.000 0.666 1.000 1.000 \n"
    assert parse_extfrag_index(extfrag)[0].index == [-1000, -1000, 500, 650]
    assert parse_unusable_index(unusable)[0].index == [0, 666, 1000, 1000]
    assert format_extfrag_line(0, "Normal", [-1000, -1000, 500, 650]) + "\n" == extfrag
    assert format_unusable_line(0, "Normal", [0, 666, 1000, 1000]) + "\n" == unusable
    assert parse_extfrag_index("Node 0, zone   Normal  0.-500 \n")[0].index == [-500]
    for bad in ("Node 0, zone   Normal -1.000 -1.000 0.500  0.650 \n",     # %2d padding lost
                "Node 0, zone   Normal -1.000 -1.000  0.5  0.650 \n",      # %03d
                "Node 0, zone   Normal -1.000 -1.000  0.5x0  0.650 \n",    # a letter
                "Node 0, zone   Normal -1.000 -1.000  0.500 \nNode 0, zone  Movable -1.000 \n",  # orders disagree
                "Node 0, zone   Normal  2.000 \n"):                        # beyond the formula's range
        with pytest.raises(FormatError, match=LINE):
            parse_extfrag_index(bad)
    for bad in ("Node 0, zone   Normal  0.000 0.666 \n", "Node 0, zone   Normal -1.000 \n", "Node 0, zone Normal 0.000 \n"):
        with pytest.raises(FormatError, match="line 1"):
            parse_unusable_index(bad)


def test_index_files_over_the_host_buddyinfo():
    """The host's debugfs is not mounted here (mounting it is not allowed), so the index files are rendered
    from the host's buddyinfo with the kernel's formats and formulas, and parsed back; if debugfs is mounted
    its real files are parsed too."""
    text = host("/proc/buddyinfo")  # one read: the live host's counts change between two
    buddy = parse_buddyinfo(text)
    ext = [(b.node, b.zone, [extfrag_index(b.free, o) for o in range(len(b.free))]) for b in buddy]
    unu = [(b.node, b.zone, [unusable_index(b.free, o) for o in range(len(b.free))]) for b in buddy]
    ext_text = "".join(format_extfrag_line(*z) + "\n" for z in ext)
    unu_text = "".join(format_unusable_line(*z) + "\n" for z in unu)
    assert [(z.node, z.zone, z.index) for z in parse_extfrag_index(ext_text)] == ext
    assert [(z.node, z.zone, z.index) for z in parse_unusable_index(unu_text)] == unu
    assert "".join(format_buddyinfo_line(b.node, b.zone, b.free) + "\n" for b in buddy) == text
    for name, parse in (("extfrag_index", parse_extfrag_index), ("unusable_index", parse_unusable_index)):
        path = Path("/sys/kernel/debug/extfrag", name)
        if path.exists():
            assert parse(path.read_text())


def test_pagetypeinfo_two_nodes_overflow_and_mixed_blocks():
    """Two nodes (each prints its own header block), a free list capped at 100000 (">100000"), and the
    CONFIG_PAGE_OWNER mixed-blocks table, rendered with mm/vmstat.c's formats."""
    types = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")

    def node(nid: int, zone: str, movable_order0: str) -> str:
        out = "Page block order: 9\nPages per block:  512\n\n"
        out += f"{'Free pages count per migrate type at order':<43} " + "".join(f"{o:>6} " for o in range(3)) + "\n"
        for t in types:
            first = movable_order0 if t == "Movable" else f"{0:>6}"
            out += f"Node {nid:>4}, zone {zone:>8}, type {t:>12} " + first + " " + f"{1:>6} {2:>6} \n"
        for title in ("Number of blocks type ", "Number of mixed blocks "):
            out += f"\n{title:<23}" + "".join(f"{t:>12} " for t in types) + "\n"
            out += f"Node {nid}, zone {zone:>8} " + "".join(f"{c:>12} " for c in (3, 4, 0, 0, 0)) + "\n"
        return out

    text = node(0, "Normal", ">100000") + node(1, "Normal", f"{7:>6}")
    info = parse_pagetypeinfo(text)
    assert info.types == types and info.orders == 3
    assert info.free[(0, "Normal", "Movable")] == [100000, 1, 2] and info.overflow == {(0, "Normal", "Movable", 0)}
    assert info.free[(1, "Normal", "Movable")] == [7, 1, 2]
    assert info.blocks == info.mixed == {(0, "Normal"): dict(zip(types, (3, 4, 0, 0, 0))),
                                         (1, "Normal"): dict(zip(types, (3, 4, 0, 0, 0)))}
    with pytest.raises(FormatError, match=LINE):   # '>' marks only the cap
        parse_pagetypeinfo(node(0, "Normal", ">    99"))
    with pytest.raises(FormatError, match=LINE):   # a count at the cap is printed with '>'
        parse_pagetypeinfo(node(0, "Normal", "100000"))
    with pytest.raises(FormatError, match=LINE):   # nodes ascend
        parse_pagetypeinfo(node(1, "Normal", f"{7:>6}") + node(0, "Normal", f"{7:>6}"))
