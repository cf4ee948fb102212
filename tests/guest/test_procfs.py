"""/proc and the kernel's memory management as a guest sees them: procps's own tools, Linux's
formats (parsed with parsers written from Linux's sources, tests/linuxfmt.py), drop_caches, and
the OOM killer after reclaim."""
from __future__ import annotations

import re
import shutil

import pytest

from guestkernel.gfp import Gfp
from guestkernel.pseudofs import procmem
from tests import linuxfmt
from tests.conftest import e2fsck_clean, put_file, run_emu
from vmm.config import apply_overrides, load_machine

FREE_DROP = ("free -k; cat /data/corpus.txt > /dev/null; free -k; sync; echo 3 > /proc/sys/vm/drop_caches; "
             "free -k; grep -E '^drop_(pagecache|slab) ' /proc/vmstat; ps -e; vmstat")


def _buff_cache(free_out: bytes) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(rb"^Mem:(?:\s+\d+){4}\s+(\d+)", free_out, re.M)]


def test_free_shows_the_page_cache_grow_and_drop(emu, dataset):
    """must-hold 1: buff/cache grows by the file read and falls after drop_caches; ps and vmstat
    work; two runs print the same bytes."""
    a = emu(["/bin/sh", "-c", FREE_DROP])
    assert a.result.exit_code == 0, a.stderr
    before, after_read, after_drop = _buff_cache(a.stdout)
    corpus_kb = (dataset / "corpus.txt").stat().st_size // 1024
    assert after_read - before >= corpus_kb
    assert after_drop < before
    assert b"drop_pagecache 1\ndrop_slab 1\n" in a.stdout
    ps = re.findall(rb"^\s+(\d+) \?\s+00:00:\d\d (\S+)$", a.stdout, re.M)
    assert [name for _pid, name in ps] == [b"sh", b"ps"] and ps[0][0] == b"1"
    assert re.search(rb"^procs -+memory-+ ---swap-- -----io---- -system-- -+cpu-+\n.*\n(\s*\d+){17}\n", a.stdout, re.M)
    assert any(line == "sh (1): drop_caches: 3" for line in a.result.log)
    b = emu(["/bin/sh", "-c", FREE_DROP])
    assert b.stdout == a.stdout and b.result.instructions == a.result.instructions


def test_proc_files_parse_as_linux_and_agree_with_the_allocator(emu):
    """must-hold 2: the memory files parse with Linux's formats; buddyinfo, pagetypeinfo and
    zoneinfo read in one go agree with each other, and the allocator's own counters add up."""
    files = ["buddyinfo", "pagetypeinfo", "zoneinfo", "slabinfo", "meminfo", "vmstat", "stat", "loadavg",
             "uptime", "self/stat", "self/status", "self/statm", "self/maps"]
    script = "; ".join(f"echo '=== {f}'; cat /proc/{f}" for f in files)
    script += ("; echo '=== extfrag'; cat /proc/buddyinfo /sys/kernel/debug/extfrag/unusable_index "
               "/sys/kernel/debug/extfrag/extfrag_index")
    r = emu(["/bin/sh", "-c", f"cat /data/corpus.txt > /dev/null; {script}"])
    assert r.result.exit_code == 0, r.stderr
    parts = dict(re.findall(r"=== (\S+)\n(.*?)(?=\n=== |\Z)", r.stdout.decode(), re.S))
    text = {name: body.rstrip("\n") + "\n" for name, body in parts.items()}
    buddy = linuxfmt.parse_buddyinfo(text["buddyinfo"])
    ptype = linuxfmt.parse_pagetypeinfo(text["pagetypeinfo"])
    zones = linuxfmt.parse_zoneinfo(text["zoneinfo"])
    slabs = linuxfmt.parse_slabinfo(text["slabinfo"])
    mem = linuxfmt.parse_meminfo(text["meminfo"])
    vm = linuxfmt.parse_vmstat(text["vmstat"])
    linuxfmt.parse_stat(text["stat"])
    linuxfmt.parse_loadavg(text["loadavg"])
    linuxfmt.parse_uptime(text["uptime"])
    st = linuxfmt.parse_pid_stat(text["self/stat"])
    assert st.comm == "cat" and linuxfmt.parse_pid_status(text["self/status"])["Name"] == "cat"
    linuxfmt.parse_pid_statm(text["self/statm"])
    maps = linuxfmt.parse_maps(text["self/maps"])
    assert any(e.path == "/bin/cat" and "x" in e.perms for e in maps)
    by_zone = {z.zone: z for z in buddy}
    for z in zones:
        free = sum(n << order for order, n in enumerate(by_zone[z.name].free))
        assert free == z.free, z.name
        per_type = [ptype.free[(0, z.name, t)] for t in ptype.types]
        assert [sum(col) for col in zip(*per_type)] == by_zone[z.name].free
    assert mem["MemFree"] == 4 * sum(z.free for z in zones) == 4 * vm["nr_free_pages"]
    assert mem["Slab"] == mem["SReclaimable"] + mem["SUnreclaim"]
    slab_pages = sum(s.num_slabs * s.pagesperslab for s in slabs)
    assert 4 * slab_pages <= mem["Slab"]  # (+ kmalloc_large blocks, none here)
    assert {"ext2_inode_cache", "dentry", "filp", "vm_area_struct", "pipe_buffer", "kmalloc-64"} <= {s.name for s in slabs}
    # The fragmentation indices (read by one cat with the buddyinfo they derive from) follow
    # Linux's formulas.
    lines = text["extfrag"].splitlines(keepends=True)
    n = len(buddy)
    snap = linuxfmt.parse_buddyinfo("".join(lines[:n]))
    unusable = linuxfmt.parse_unusable_index("".join(lines[n:2 * n]))
    extfrag = linuxfmt.parse_extfrag_index("".join(lines[2 * n:]))
    for b, u, e in zip(snap, unusable, extfrag):
        assert u.index == [linuxfmt.unusable_index(b.free, o) for o in range(len(b.free))]
        assert e.index == [linuxfmt.extfrag_index(b.free, o) for o in range(len(b.free))]


def test_allocator_totals_agree_with_buddyinfo(base_image, tmp_path):
    """buddyinfo pages + allocated pages = zone size, for every zone, on the host side."""
    from hw.console import Console
    from vmm.machine import Machine

    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    m = Machine(image, console=Console(None, None, capture=True))
    m.run(["/bin/sh", "-c", "tar czf /tmp/x.tgz -C /data tree; sleep 1 & cat /data/corpus.txt > /dev/null"])
    k = m.kernel
    buddy = linuxfmt.parse_buddyinfo(procmem.buddyinfo(k).decode())
    for z, line in zip(k.frames.zones, buddy):
        free = sum(n << order for order, n in enumerate(line.free))
        assert free == z.free_frames
        assert free + sum(z.used_by_kind) == z.nframes
    assert sum(k.frames.by_kind) == k.frames.allocated
    assert k.frames.by_kind[Gfp.PAGECACHE] == len(k.pagecache.pages)


def test_oom_kills_the_hog_after_reclaiming_the_page_cache(base_image, guest_programs, tmp_path):
    """must-hold 3: a program that wants more than RAM while files are read: the page cache is
    reclaimed first, then the OOM killer ends the program with SIGKILL (137 in the shell); the
    machine goes on and the image stays clean."""
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "memhog", "/bin/memhog")
    cfg = apply_overrides(load_machine(None), ["pool.dram0.size=64MiB", "pool.dram1.size=32MiB"])
    script = ("cat /data/corpus.txt /data/corpus.txt > /dev/null; tar cf /tmp/t.tar -C /data tree; "
              "grep -E '^(pgsteal_(kswapd|direct)|oom_kill) ' /proc/vmstat; memhog 256 > /tmp/hog.out; echo status=$?; "
              "tail -1 /tmp/hog.out; grep -E '^(pgsteal_(kswapd|direct)|oom_kill) ' /proc/vmstat; "
              "rm /tmp/t.tar; echo still running")
    r = run_emu(image, ["/bin/sh", "-c", script], cfg)
    assert r.result.exit_code == 0, r.stderr
    out = r.stdout.decode()
    assert "status=137" in out and "still running" in out
    before, after = re.findall(r"pgsteal_kswapd (\d+)\npgsteal_direct (\d+)\noom_kill (\d+)", out)
    assert before[2] == "0" and after[2] == "1"
    assert int(after[0]) + int(after[1]) > int(before[0]) + int(before[1])  # the cache went first
    hogged = int(re.search(r"^(\d+) MiB$", out, re.M).group(1))
    assert 48 <= hogged < 96
    assert any(line.startswith("Out of memory: Killed process") and "(memhog)" in line for line in r.result.log)
    e2fsck_clean(image)


@pytest.mark.parametrize("shared", ["", " shared"])
def test_compaction_makes_high_order_blocks_under_mobility(base_image, guest_programs, tmp_path, shared):
    """A process fragments memory (every other page of 20 MiB unmapped), then pipes ask for
    order-4 blocks: without compaction (zones = single, as the kernels of the split-zone paper)
    they run out early; with Linux's grouping by mobility, compaction migrates the movable pages
    and serves about twice as many, and the migrated pages keep their contents. ` shared`: pages
    of a shared anonymous mapping between them move too (the object repointed: a child's writes
    after the moves reach the parent); pinned, they left a tenth as many blocks."""
    made = {}
    for zones in ("single", "mobility"):
        image = tmp_path / f"{zones}.img"
        shutil.copyfile(base_image, image)
        put_file(image, guest_programs / "fragpipe", "/bin/fragpipe")
        cfg = apply_overrides(load_machine(None), ["pool.dram0.size=24MiB", "pool.dram1.size=8MiB",
                                                   f"kernel.memory.zones={zones}"])
        r = run_emu(image, ["/bin/sh", "-c", f"fragpipe 20{shared}; grep -E '^(pgmigrate_success|compact_success) ' "
                                             "/proc/vmstat"], cfg)
        assert r.result.exit_code == 0, r.stderr
        out = r.stdout.decode()
        m = re.search(r"pipes (\d+) \(Cannot allocate memory\), pages changed 0\n", out)
        assert m, out
        made[zones] = (int(m.group(1)), {k: int(v) for k, v in re.findall(r"^(\w+) (\d+)$", out[m.end():], re.M)})
        e2fsck_clean(image)
    assert made["single"][1] == {"pgmigrate_success": 0, "compact_success": 0}
    assert made["mobility"][1]["pgmigrate_success"] > 0 and made["mobility"][1]["compact_success"] > 0
    assert made["mobility"][0] >= 1.5 * made["single"][0]
