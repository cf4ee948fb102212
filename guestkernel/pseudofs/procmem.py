"""/proc's system-wide files, in Linux's formats: memory (meminfo, vmstat, buddyinfo, zoneinfo,
pagetypeinfo, slabinfo) and the machine (uptime, loadavg, stat, cpuinfo, version).

Numbers come from the allocators' own counters (guestkernel/frames.py, buddy.py, pagecache.py,
slab.py), never from a separate tally, so what a guest reads agrees with what the host sees.
Formats follow fs/proc/meminfo.c, mm/vmstat.c, fs/proc/stat.c, loadavg.c, uptime.c; fields of
features emu does not have (swap, huge pages, NUMA, zswap) are printed as Linux prints them on
a machine without them: zero.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from guestkernel.buddy import MAX_ORDER
from guestkernel.gfp import Gfp
from guestkernel.process import BLOCKED, RUNNABLE, ZOMBIE
from guestkernel.pseudofs.procpid import cpu_ns, ticks

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel

KB = 4  # kB per page


def _kb(label: str, kb: int) -> str:
    return f"{label + ':':<16}{kb:>8} kB\n"


def memory_counts(k: "Kernel") -> dict[str, int]:
    """The page counts several files share, in pages."""
    f = k.frames
    caches = k.caches()
    slab = k.slab.totals()
    mapped = sum(1 for pc in caches for pfn in pc.pages.values() if f.refs[pfn] > 1)
    return {
        "total": f.total_frames, "free": f.free_frames, "file": sum(len(pc.pages) for pc in caches),
        "dirty": sum(len(pc.dirty) for pc in caches),
        "mapped": mapped, "anon": f.by_kind[Gfp.USER], "shmem": _shmem_pages(k),
        "sreclaimable": slab["reclaimable_pages"], "sunreclaim": slab["unreclaimable_pages"],
        "pagetables": sum(len(mm.aspace.table_frames) for mm in _mms(k)),
        "committed": sum(v.end - v.start for mm in _mms(k) for v in mm.vmas if v.prot & 2 and not v.shared) // 4096,
        "low_wmark": sum(z.wmark_low for z in f.zones),
        # storage lent as memory (guestkernel/swap.py): what Linux would show as swap
        "swap_total": k.swap.totals()[0], "swap_free": k.swap.totals()[1],
    }


def _shmem_pages(k: "Kernel") -> int:
    reg = getattr(k, "shm", None)  # made at the first shmget or shared anonymous mmap
    return reg.shmem_pages() if reg is not None else 0


def _mms(k: "Kernel") -> list:
    return list({id(p.mm): p.mm for p in k.procs.values() if p.mm is not None and p.state != ZOMBIE}.values())


def mem_available(c: dict[str, int]) -> int:
    """si_mem_available(): free pages above the reserves, plus the page cache and reclaimable
    slab a reclaim could free, each less half of itself or the low watermark."""
    avail = c["free"] - c["low_wmark"]
    avail += c["file"] - min(c["file"] // 2, c["low_wmark"])
    avail += c["sreclaimable"] - min(c["sreclaimable"] // 2, c["low_wmark"])
    return max(0, avail)


def meminfo(k: "Kernel") -> bytes:
    """As Linux: shared memory objects' pages (Shmem) are in Cached and on the anonymous lists,
    not in AnonPages."""
    c = memory_counts(k)
    slab = c["sreclaimable"] + c["sunreclaim"]
    rows = [
        ("MemTotal", c["total"]), ("MemFree", c["free"]), ("MemAvailable", mem_available(c)), ("Buffers", 0),
        ("Cached", c["file"] + c["shmem"]), ("SwapCached", 0), ("Active", 0), ("Inactive", c["anon"] + c["file"]),
        ("Active(anon)", 0), ("Inactive(anon)", c["anon"]), ("Active(file)", 0), ("Inactive(file)", c["file"]),
        ("Unevictable", 0), ("Mlocked", 0), ("SwapTotal", c["swap_total"]), ("SwapFree", c["swap_free"]), ("Zswap", 0), ("Zswapped", 0),
        ("Dirty", c["dirty"]), ("Writeback", 0), ("AnonPages", c["anon"] - c["shmem"]), ("Mapped", c["mapped"]),
        ("Shmem", c["shmem"]), ("KReclaimable", c["sreclaimable"]), ("Slab", slab),
        ("SReclaimable", c["sreclaimable"]), ("SUnreclaim", c["sunreclaim"]), ("KernelStack", 0),
        ("PageTables", c["pagetables"]), ("NFS_Unstable", 0), ("Bounce", 0), ("WritebackTmp", 0),
        ("CommitLimit", c["total"] // 2 + c["swap_total"]), ("Committed_AS", c["committed"]),
    ]
    out = "".join(_kb(label, n * KB) for label, n in rows)
    out += _kb("VmallocTotal", 34359738367) + _kb("VmallocUsed", 0) + _kb("VmallocChunk", 0) + _kb("Percpu", 0)
    out += "HardwareCorrupted:     0 kB\n"
    out += "".join(_kb(label, 0) for label in ("AnonHugePages", "ShmemHugePages", "ShmemPmdMapped",
                                                "FileHugePages", "FilePmdMapped"))
    out += "".join(f"{label + ':':<19}{0:>5}\n" for label in ("HugePages_Total", "HugePages_Free",
                                                               "HugePages_Rsvd", "HugePages_Surp"))
    out += _kb("Hugepagesize", 2048) + _kb("Hugetlb", 0)
    out += _kb("DirectMap4k", c["total"] * KB) + _kb("DirectMap2M", 0) + _kb("DirectMap1G", 0)
    return out.encode()


# /proc/vmstat's event counters, in Linux's order (those emu counts; the rest print 0).
VM_EVENTS = (
    "pgpgin", "pgpgout", "pswpin", "pswpout", "pgalloc_dma", "pgalloc_dma32", "pgalloc_normal", "pgalloc_movable",
    "allocstall_dma", "allocstall_dma32", "allocstall_normal", "allocstall_movable", "pgfree", "pgactivate",
    "pgdeactivate", "pglazyfree", "pgfault", "pgmajfault", "pgrefill", "pgreuse", "pgsteal_kswapd",
    "pgsteal_direct", "pgscan_kswapd", "pgscan_direct", "pgscan_direct_throttle", "pgscan_anon", "pgscan_file",
    "pgsteal_anon", "pgsteal_file", "pginodesteal", "slabs_scanned", "kswapd_inodesteal",
    "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly", "pageoutrun", "pgrotated",
    "drop_pagecache", "drop_slab", "oom_kill", "pgmigrate_success", "pgmigrate_fail", "compact_migrate_scanned",
    "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail", "compact_success",
    "compact_daemon_wake", "compact_daemon_migrate_scanned", "compact_daemon_free_scanned",
    "unevictable_pgs_culled", "unevictable_pgs_scanned", "unevictable_pgs_rescued",
    "balloon_inflate", "balloon_deflate", "balloon_migrate",
)


def _zone_stats(free: int, anon: int, file: int, dirty: int) -> list[tuple[str, int]]:
    """Linux's zone stat items (enum zone_stat_item), system-wide or for one zone."""
    return [("nr_free_pages", free), ("nr_zone_inactive_anon", anon), ("nr_zone_active_anon", 0),
            ("nr_zone_inactive_file", file), ("nr_zone_active_file", 0), ("nr_zone_unevictable", 0),
            ("nr_zone_write_pending", dirty), ("nr_mlock", 0), ("nr_bounce", 0), ("nr_zspages", 0),
            ("nr_free_cma", 0)]


def _node_stats(k: "Kernel", c: dict[str, int]) -> list[tuple[str, int]]:
    """Linux's node stat items (enum node_stat_item) that emu has."""
    return [("nr_inactive_anon", c["anon"]), ("nr_active_anon", 0), ("nr_inactive_file", c["file"]),
            ("nr_active_file", 0), ("nr_unevictable", 0), ("nr_slab_reclaimable", c["sreclaimable"]),
            ("nr_slab_unreclaimable", c["sunreclaim"]), ("nr_isolated_anon", 0), ("nr_isolated_file", 0),
            ("nr_anon_pages", c["anon"]), ("nr_mapped", c["mapped"]), ("nr_file_pages", c["file"]),
            ("nr_dirty", c["dirty"]), ("nr_writeback", 0), ("nr_writeback_temp", 0), ("nr_shmem", c["shmem"]),
            ("nr_dirtied", k.pagecache.stats.writebacks), ("nr_written", k.pagecache.stats.writebacks),
            ("nr_kernel_stack", 0), ("nr_page_table_pages", c["pagetables"])]


def vmstat(k: "Kernel") -> bytes:
    c = memory_counts(k)
    ev = dict(k.frames.events)
    ev["pgfault"] = k.page_faults
    ev["pgpgin"] = k.pagecache.stats.misses * k.pagecache.block_size // 1024
    ev["pgpgout"] = k.pagecache.stats.writebacks * k.pagecache.block_size // 1024
    counts = _zone_stats(c["free"], c["anon"], c["file"], c["dirty"]) + _node_stats(k, c)
    out = [f"{name} {n}\n" for name, n in counts]
    out += [f"{name} {ev.get(name, 0)}\n" for name in VM_EVENTS]
    return "".join(out).encode()


def buddyinfo(k: "Kernel") -> bytes:
    return "".join(z.buddyinfo() + "\n" for z in k.frames.zones).encode()


def zoneinfo(k: "Kernel") -> bytes:
    """mm/vmstat.c zoneinfo_show_print (the per-cpu pageset lines as Linux 6.7+ prints them)."""
    out = []
    zones = k.frames.zones
    for i, z in enumerate(zones):
        out.append(f"Node 0, zone {z.name:>8}\n")
        if i == 0:
            out.append("  per-node stats\n")
            out += [f"      {name:<12} {n}\n" for name, n in _node_stats(k, memory_counts(k))]
        out.append(f"  pages free     {z.free_frames}\n        boost    0\n")
        out.append(f"        min      {z.wmark_min}\n        low      {z.wmark_low}\n        high     {z.wmark_high}\n")
        out.append(f"        spanned  {z.nframes}\n        present  {z.nframes}\n        managed  {z.nframes}\n")
        out.append("        cma      0\n")
        out.append("        protection: (" + ", ".join("0" for _ in zones) + ")\n")
        used = z.used_by_kind
        out += [f"      {name:<12} {n}\n" for name, n in _zone_stats(z.free_frames, used[Gfp.USER], used[Gfp.PAGECACHE], 0)]
        out.append("  pagesets\n    cpu: 0\n              count:    0\n              high:     0\n"
                   "              batch:    1\n              high_min: 0\n              high_max: 0\n")
        out.append(f"  vm stats threshold: 0\n  node_unreclaimable:  0\n  start_pfn:           {z.base_pfn}\n")
    return "".join(out).encode()


def uptime(k: "Kernel") -> bytes:
    up = k.clock.uptime_ns()
    busy = sum(cpu_ns(k, p) for p in k.procs.values())
    idle = max(0, up - busy)
    return f"{up // 10**9}.{up // 10**7 % 100:02d} {idle // 10**9}.{idle // 10**7 % 100:02d}\n".encode()


def loadavg(k: "Kernel") -> bytes:
    running = sum(1 for p in k.procs.values() if p.state == RUNNABLE)
    total = sum(1 for p in k.procs.values() if p.state != ZOMBIE)
    # No load average is kept (the exponential decay needs a 5 s tick history): zero, with the
    # runnable/total counts and the last pid, which are exact.
    return f"0.00 0.00 0.00 {running}/{total} {k.next_pid - 1}\n".encode()


def stat(k: "Kernel") -> bytes:
    up = k.clock.uptime_ns()
    user = ticks(k.clock.user_ns())
    system = ticks(k.clock.kernel_ns)
    idle = max(0, ticks(up) - user - system)
    cpu = f"{user} 0 {system} {idle} 0 0 0 0 0 0"
    # Everything runs on one host thread: cpu0 carries the work, the others are idle throughout.
    others = "".join(f"cpu{i} 0 0 0 {ticks(up)} 0 0 0 0 0 0\n" for i in range(1, k.config.cpus))
    total = f"{user} 0 {system} {idle + (k.config.cpus - 1) * ticks(up)} 0 0 0 0 0 0"
    boot = k.clock.boot_epoch_ns // 10**9
    running = sum(1 for p in k.procs.values() if p.state == RUNNABLE)
    blocked = sum(1 for p in k.procs.values() if p.state == BLOCKED)
    return (f"cpu  {total}\ncpu0 {cpu}\n{others}intr 0\nctxt {k.context_switches}\nbtime {boot}\n"
            f"processes {k.next_pid - 1}\nprocs_running {running}\nprocs_blocked {blocked}\n"
            "softirq 0 0 0 0 0 0 0 0 0 0 0\n").encode()


def cpuinfo(k: "Kernel") -> bytes:
    """One block per CPU the machine describes (KernelConfig.cpus: one package, a core each)."""
    return b"".join(_cpuinfo_block(k, i, k.config.cpus) for i in range(k.config.cpus))


def _cpuinfo_block(k: "Kernel", i: int, n: int) -> bytes:
    mhz = k.clock.cpu_hz / 1e6
    rows = [("processor", f"{i}"), ("vendor_id", "GenuineIntel"), ("cpu family", "6"), ("model", "85"),
            ("model name", "Intel Xeon Processor (Skylake, emu)"), ("stepping", "4"), ("microcode", "0x1"),
            ("cpu MHz", f"{mhz:.3f}"), ("cache size", "8192 KB"), ("physical id", "0"), ("siblings", f"{n}"),
            ("core id", f"{i}"), ("cpu cores", f"{n}"), ("apicid", f"{i}"), ("initial apicid", f"{i}"), ("fpu", "yes"),
            ("fpu_exception", "yes"), ("cpuid level", "13"), ("wp", "yes"),
            ("flags", "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
                      "sse sse2 syscall nx lm constant_tsc rep_good nopl pni ssse3 cx16 sse4_1 sse4_2 popcnt "
                      "aes xsave hypervisor lahf_lm clflushopt clwb"),
            ("bogomips", f"{2 * mhz:.2f}"), ("clflush size", "64"), ("cache_alignment", "64"),
            ("address sizes", "46 bits physical, 48 bits virtual"), ("power management", "")]
    return ("".join(f"{key}\t: {val}\n" if val else f"{key}:\n" for key, val in rows) + "\n").encode()


def version(k: "Kernel") -> bytes:
    u = k.uname
    return b"Linux version " + u["release"] + b" (emu) (gcc) " + u["version"] + b"\n"




MIGRATE_TYPES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
PAGEBLOCK_ORDER = 9


def pagetypeinfo(k: "Kernel") -> bytes:
    """mm/vmstat.c pagetypeinfo_show: free blocks per zone, migrate type and order, then
    pageblocks per type. Without grouping by mobility (zones = single or split), every block is
    Unmovable, as Linux shows it with page_group_by_mobility_disabled."""
    zones = k.frames.zones
    out = [f"Page block order: {PAGEBLOCK_ORDER}\nPages per block:  {1 << PAGEBLOCK_ORDER}\n\n"]
    out.append(f"{'Free pages count per migrate type at order':<43} " + "".join(f"{o:6d} " for o in range(MAX_ORDER)) + "\n")
    for z in zones:
        free = z.free_by_type()
        for t, name in enumerate(MIGRATE_TYPES):
            out.append(f"Node {0:4d}, zone {z.name:>8}, type {name:>12} " + "".join(f"{n:6d} " for n in free[t]) + "\n")
    out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{name:>12} " for name in MIGRATE_TYPES) + "\n")
    for z in zones:
        out.append(f"Node 0, zone {z.name:>8} " + "".join(f"{n:12d} " for n in z.blocks_by_type()) + "\n")
    return "".join(out).encode()


def slabinfo(k: "Kernel") -> bytes:
    return k.slab.slabinfo().encode()


# /sys/kernel/debug/extfrag (debugfs, mm/vmstat.c): how fragmented each zone's free memory is,
# per order, in thousandths, printed "%d.%03d" with C's truncating division.

def _contig(free: list[int], order: int) -> tuple[int, int, int]:
    """fill_contig_page_info: free pages, free blocks, blocks large enough for 1 << order."""
    pages = sum(n << o for o, n in enumerate(free))
    blocks = sum(free)
    suitable = sum(n << (o - order) for o, n in enumerate(free) if o >= order)
    return pages, blocks, suitable


def unusable_index(free: list[int], order: int) -> int:
    """unusable_free_index: the share of free memory in blocks too small for the order."""
    pages, _blocks, suitable = _contig(free, order)
    return 1000 if not pages else (pages - (suitable << order)) * 1000 // pages


def extfrag_index(free: list[int], order: int) -> int:
    """__fragmentation_index: -1000 if the order can be served; towards 1000 when a failure would be
    for fragmentation, towards 0 when for lack of memory."""
    pages, blocks, suitable = _contig(free, order)
    if not blocks:
        return 0
    if suitable:
        return -1000
    return 1000 - (1000 + pages * 1000 // (1 << order)) // blocks


def _thousandths(v: int, width: int) -> str:
    q = abs(v) // 1000 * (1 if v >= 0 else -1)  # C division truncates towards zero
    return f"{q:{width}d}.{v - q * 1000:03d}"


def unusable_index_file(k: "Kernel") -> bytes:
    return "".join(f"Node 0, zone {z.name:>8} " + "".join(
        _thousandths(unusable_index([len(fl) for fl in z.free_lists], o), 0) + " " for o in range(MAX_ORDER)) + "\n"
        for z in k.frames.zones).encode()


def extfrag_index_file(k: "Kernel") -> bytes:
    return "".join(f"Node 0, zone {z.name:>8} " + "".join(
        _thousandths(extfrag_index([len(fl) for fl in z.free_lists], o), 2) + " " for o in range(MAX_ORDER)) + "\n"
        for z in k.frames.zones).encode()
