"""The third paper (../shared/seeds/002_*): storage virtualised as memory. The file behind the
virtual disk is mapped into guest-physical memory; the guest's file system reaches it with loads
and stores: no block driver, no guest page cache, one copy of file data, a shorter path, programs
executed in place. The paper gives no numbers (its evaluation is future work); this is that
evaluation, on our machine.

Each workload (grep -r and tar cf of the source tree, tar xf of it, gzip -9 of the 2 MiB corpus,
the dash directory script) runs on a fresh copy of the default image three times: block mode (a
block device, the guest's page cache; storage.block_io 10 us per 4 KiB request: an SSD), block
mode with the image in the host's page cache (1 us per request: a virtio round trip to a cached
file; memory mode assumes the same, its pages are the host's cached file) and memory mode (the
image mapped as a persistent window on its own channel, ext2 with DAX and its redo log), at
level persist (the quick run) and full. The path's comparison is memory vs block-cached. Reported: virtual time and the kernel's share of it (the cost
model of hw/clock.py: block requests, copies, flushes and fences), kernel time per KiB of file
I/O, host wall time, page-cache pages and block requests, guest RAM at its peak, bytes read and
written by file syscalls and by DAX, and memory traffic per channel (the storage window's channel
apart). Then the exec of gzip (`gzip -V`) with and without execute-in-place: text pages copied,
pages read into the page cache or mapped from the window, virtual time of the run. Outputs are
compared between the modes (the same bytes, the same instruction count). Then storage lent as
memory (a program holding more than RAM, with and without a lent file) and where checkpoint
images live (the SCM range or a file on the storage window: emu/reproduce/ckpt_placement.py).
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

from emu.reproduce import ckpt_placement
from emu.workloads import workload
from hw.console import Console
from vmm.config import default_machine, machine_config
from vmm.machine import Machine

READERS = ("grep -r", "gzip -9")  # mostly reading files; the others write as much as they read
WORKLOADS = {"grep -r": "grep", "tar cf": "tar-cf", "tar xf": "tar-xf", "gzip -9": "gzip", "dash script": "dirs"}
# block: the default disk (10 us per 4 KiB request: the guest reads an SSD); block-cached: the
# image in the host's page cache, as memory mode assumes (1 us per request: a virtio round trip
# to a cached file); memory: the image mapped as memory (DAX)
MODES = {"block": ["storage.mode=block"], "block-cached": ["storage.mode=block", "storage.block_io=1us"],
         "memory": ["storage.mode=memory"]}
PAPER = {"numbers": None, "claims": ["no block driver and no guest page cache", "one copy of file data",
                                     "a shorter execution and data path", "execute in place (XIP)"],
         "note": "KVM/QEMU design paper; its evaluation is named future work"}


def storage_channel() -> int:
    return 1 + max(p.channel for p in default_machine().pools)  # the first channel no pool uses


def run_once(image: Path, argv: list[str], mode: str, level: str, tmp: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="run-", dir=tmp))
    try:
        disk = work / "disk.img"
        shutil.copyfile(image, disk)
        console = Console(out_fd=None, err_fd=None, capture=True)
        m = Machine(disk, machine_config(None, [*MODES[mode], f"model_level={level}"]), console=console,
                    media_dir=work, host_durable=False)
        r = m.run(argv)
        if r.exit_code != 0:
            raise RuntimeError(f"{argv} exited {r.exit_code}: {bytes(console.captured[2])[-300:]!r}")
        st = {k: v["value"] for k, v in m.stats()["stats"].items()}
        chans: dict[str, int] = {}
        for k, v in st.items():
            if k.startswith("channel") and "_bytes." in k:
                ch = k.split(".")[0]
                chans[ch] = chans.get(ch, 0) + v
        io = st["io.file_read_bytes"] + st["io.file_write_bytes"]
        return {"virtual_ns": r.virtual_ns, "kernel_ns": r.kernel_ns, "instructions": r.instructions,
                "wall_s": r.wall_s, "stdout": bytes(console.captured[1]), "file_io_bytes": io,
                "kernel_ns_per_kib": r.kernel_ns * 1024 / io if io else None,
                "page_cache_pages": st["pagecache.misses"], "block_requests": st["storage.reads"] + st["storage.writes"],
                "block_bytes": st["storage.read_bytes"] + st["storage.write_bytes"],
                "dax_bytes": st["dax.data_bytes_read"] + st["dax.data_bytes_written"],
                "dax_commits": st["dax.commits"], "dax_blocks_logged": st["dax.blocks_logged"],
                "frames_peak": st["mm.frames_peak"], "text_pages_copied": st["mm.text_pages_copied"],
                "window_pages_mapped": st["dax.pages_mapped"], "channel_bytes": chans}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(image: Path, label: str, argv: list[str], level: str, repeats: int, tmp: Path,
            say: Callable[[str], None]) -> dict[str, Any]:
    row: dict[str, Any] = {"workload": label, "argv": argv, "level": level, "modes": {}}
    for mode in MODES:
        runs = [run_once(image, argv, mode, level, tmp) for _ in range(repeats)]
        r = dict(runs[0])
        r["wall_s"] = statistics.median(x["wall_s"] for x in runs)
        r["deterministic"] = len({(x["virtual_ns"], x["kernel_ns"], x["instructions"]) for x in runs}) == 1
        row["modes"][mode] = r
    b, m = row["modes"]["block-cached"], row["modes"]["memory"]
    row["same_output"] = len({x["stdout"] for x in row["modes"].values()}) == 1
    row["same_instructions"] = len({x["instructions"] for x in row["modes"].values()}) == 1
    row["kernel_ratio"] = m["kernel_ns"] / b["kernel_ns"]  # memory / block-cached
    row["virtual_ratio"] = m["virtual_ns"] / b["virtual_ns"]
    row["wall_ratio"] = m["wall_s"] / b["wall_s"]
    for mode in MODES:
        row["modes"][mode].pop("stdout")
    say(f"  {label} ({level}): kernel time memory/block-cached x{row['kernel_ratio']:.3f}, virtual x{row['virtual_ratio']:.3f}, "
        f"wall x{row['wall_ratio']:.2f}; page-cache pages {b['page_cache_pages']} -> {m['page_cache_pages']}")
    return row


LEND_RAM = ["pool.dram0.size=32MiB", "pool.dram1.size=16MiB"]  # 48 MiB of guest RAM
LEND_SCRIPT = ("head -c 24M /dev/zero > /swapfile && chmod 600 /swapfile && mkswap /swapfile > /dev/null && "
               "{on}lendhog 56 /swapfile; echo status=$?")


def lend(image: Path, tmp: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Storage lent as memory: a program holding 56 MiB on a machine of 48 MiB of RAM, with and
    without a 24 MiB file of the DAX root lent to the kernel (mkswap, swapon)."""
    rows: dict[str, Any] = {}
    for name, on in (("RAM only", ""), ("file lent", "swapon /swapfile && ")):
        work = Path(tempfile.mkdtemp(prefix="lend-", dir=tmp))
        try:
            disk = work / "disk.img"
            shutil.copyfile(image, disk)
            console = Console(out_fd=None, err_fd=None, capture=True)
            m = Machine(disk, machine_config(None, ["storage.mode=memory", "model_level=persist", *LEND_RAM]),
                        console=console, media_dir=work, host_durable=False)
            r = m.run(["/bin/sh", "-c", LEND_SCRIPT.format(on=on)])
            out = bytes(console.captured[1]).decode()
            st = {k: v["value"] for k, v in m.stats()["stats"].items()}
            win = f"channel{storage_channel()}"
            rows[name] = {
                "status": int(out.rsplit("status=", 1)[1].split()[0]), "pattern_ok": "pattern ok" in out,
                "swapoff_while_held": "swapoff while held: Cannot allocate memory" in out,
                "swapoff_after_half": "swapoff after half: ok" in out,
                "pages_taken": st["mm.lent_pages_taken"], "pages_moved": st["mm.lent_pages_moved"],
                "oom_kills": sum(1 for line in r.log if line.startswith("Out of memory: Killed process")),
                "storage_channel_write_bytes": sum(v for k, v in st.items() if k.startswith(f"{win}.write_bytes.")),
                "virtual_ns": r.virtual_ns, "kernel_ns": r.kernel_ns}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        x = rows[name]
        say(f"  {name}: exit status {x['status']}, {x['oom_kills']} OOM kill(s), {x['pages_taken']} pages lent, "
            f"{x['pages_moved']} moved back by swapoff, storage channel writes {x['storage_channel_write_bytes'] / 1e6:.1f} MB")
    extra = rows["file lent"]["storage_channel_write_bytes"] - rows["RAM only"]["storage_channel_write_bytes"]
    rows["file lent"]["storage_channel_extra_bytes"] = extra
    say(f"  the pages that lived on storage: {extra / 1e6:.1f} MB more written on the storage channel "
        f"({rows['file lent']['pages_taken'] * 4096 / 1e6:.1f} MB of pages lent)")
    return rows


def run(quick: bool, out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    from images.build import default_image

    image = default_image()
    levels = ("persist",) if quick else ("persist", "full")
    repeats = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="emu-sam-", dir=out))
    try:
        say(f"Storage as memory: block mode vs memory mode (DAX), levels {', '.join(levels)} "
            f"({'quick' if quick else 'full'} run)")
        rows = [measure(image, label, workload(name), level, repeats, tmp, say)
                for level in levels for label, name in WORKLOADS.items()]
        say("exec of gzip (gzip -V): execute in place vs the page cache")
        xip = measure(image, "exec gzip -V", ["/bin/gzip", "-V"], "persist", repeats, tmp, say)
        say("storage lent as memory (swapon on storage as memory): 56 MiB held on 48 MiB of RAM")
        lent = lend(image, tmp, say)
        names = ["tar-cf"] if quick else ["grep", "tar-cf", "gzip"]
        say(f"checkpoint images: the SCM range vs a file on storage as memory ({', '.join(names)}, tcp = 0)")
        where = ckpt_placement.compare(image, {n: workload(n) for n in names}, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    checks = summary(rows, xip, say)
    ckpt_placement.print_table(where, say)
    checks.update(lend_and_images_checks(lent, where, say))
    figures(rows, out / "storage_as_memory.png")
    ckpt_placement.plot(where, out / "checkpoint_images.png")
    for w in where["workloads"].values():
        w.pop("runs")
    return {"experiment": "storage-as-memory", "quick": quick, "paper": PAPER, "checks": checks,
            "storage_channel": storage_channel(), "workloads": rows, "xip": xip, "lent": lent,
            "checkpoint_images": where,
            "method": " ".join(p.replace("\n", " ") for p in __doc__.split("\n\n")[1:2])}


def summary(rows: list[dict[str, Any]], xip: dict[str, Any], say: Callable[[str], None]) -> dict[str, bool]:
    from rich.console import Console as RichConsole
    from rich.table import Table

    ch = f"channel{storage_channel()}"
    t = Table(title="Block mode vs storage as memory (virtual times; wall time is the host's)")
    for c in ("workload", "level", "mode", "virtual ms", "kernel ms", "kernel ns/KiB", "wall s", "page-cache pages",
              "block requests", "peak RAM MiB", "DAX bytes", "storage ch. MB", "other ch. MB"):
        t.add_column(c, justify="left" if c in ("workload", "level", "mode") else "right")
    for r in rows:
        for mode in MODES:
            x = r["modes"][mode]
            win = x["channel_bytes"].get(ch, 0)
            other = sum(v for k, v in x["channel_bytes"].items() if k != ch)
            first = mode == "block"
            t.add_row(r["workload"] if first else "", r["level"] if first else "", mode,
                      f"{x['virtual_ns'] / 1e6:.2f}", f"{x['kernel_ns'] / 1e6:.2f}",
                      f"{x['kernel_ns_per_kib']:.0f}" if x["kernel_ns_per_kib"] else "-", f"{x['wall_s']:.2f}",
                      f"{x['page_cache_pages']:,}", f"{x['block_requests']:,}", f"{x['frames_peak'] * 4096 / 2**20:.1f}",
                      f"{x['dax_bytes']:,}", f"{win / 1e6:.2f}", f"{other / 1e6:.2f}")
    x2 = Table(title="exec of gzip: execute in place")
    for c in ("mode", "text pages copied", "page-cache pages", "window pages mapped", "virtual us", "kernel us"):
        x2.add_column(c, justify="left" if c == "mode" else "right")
    for mode in MODES:
        x = xip["modes"][mode]
        x2.add_row(mode, str(x["text_pages_copied"]), str(x["page_cache_pages"]), str(x["window_pages_mapped"]),
                   f"{x['virtual_ns'] / 1e3:.0f}", f"{x['kernel_ns'] / 1e3:.0f}")
    rc = RichConsole(width=220)
    with rc.capture() as cap:
        rc.print(t)
        rc.print(x2)
        rc.print("The paper gives no numbers: its claims, checked here, are the design's (no guest page cache, "
                 "one copy of file data, a shorter path, XIP).")
    say(cap.get().rstrip())
    mem = [r["modes"]["memory"] for r in rows]
    checks = {
        "memory mode: no page-cache page and no block request in any run": all(
            m["page_cache_pages"] == 0 and m["block_requests"] == 0 for m in mem),
        "same output and instruction count in both modes": all(r["same_output"] and r["same_instructions"] for r in rows),
        "deterministic virtual times (repeated runs)": all(r["modes"][m]["deterministic"] for r in rows for m in MODES),
        "a shorter read path: less kernel time in memory mode than in block mode from the host's cache "
        f"({', '.join(READERS)}, exec)": all(r["kernel_ratio"] < 1 for r in rows if r["workload"] in READERS)
            and xip["kernel_ratio"] < 1,
        "one copy of file data: less peak guest RAM in memory mode for every workload": all(
            r["modes"]["memory"]["frames_peak"] < r["modes"]["block-cached"]["frames_peak"] for r in rows),
        "XIP: exec copies no text page and reads nothing into the page cache": (
            xip["modes"]["memory"]["text_pages_copied"] == 0 and xip["modes"]["memory"]["page_cache_pages"] == 0
            and xip["modes"]["memory"]["window_pages_mapped"] > 0),
    }
    for what, ok in checks.items():
        say(f"  {'holds' if ok else 'DOES NOT HOLD'}: {what}")
    for r in rows:
        if r["workload"] not in READERS:
            say(f"  writing, {r['workload']} ({r['level']}): memory mode's kernel time is x{r['kernel_ratio']:.2f} "
                "block-cached's: every operation's metadata is logged and flushed before the syscall returns, "
                "where the page cache writes back later and without ordering")
    return checks


def lend_and_images_checks(lent: dict[str, Any], where: dict[str, Any], say: Callable[[str], None]) -> dict[str, bool]:
    plain, lent_on = lent["RAM only"], lent["file lent"]
    runs = [(n, d, r) for n, w in where["workloads"].items() for d, r in w.items() if d != "runs"]
    checks = {
        "storage lent as memory: the program RAM cannot hold is OOM-killed without it and completes with it, "
        "its data intact": plain["status"] == 137 and plain["oom_kills"] == 1 and lent_on["status"] == 0
            and lent_on["pattern_ok"] and lent_on["pages_taken"] > 0,
        "swapoff refuses (ENOMEM) while RAM cannot take the pages, then moves them back": (
            lent_on["swapoff_while_held"] and lent_on["swapoff_after_half"] and lent_on["pages_moved"] > 0),
        "checkpoints into a file resume identically after a cut, their private pages mapped back, not copied": all(
            r["restart"]["identical"] for _n, _d, r in runs) and all(
            r["restart"]["pages_copied"] == 0 and r["restart"]["pages_mapped"] > 0 for _n, d, r in runs
            if d.startswith("memory/file")),
        "with the private pages living in the file, a checkpoint copies less than into the SCM range and flushes "
        "pages in place": all(
            w["memory/file"]["bytes_copied"] < w["memory/scm"]["bytes_copied"] and w["memory/file"]["pages_in_place"] > 0
            for w in where["workloads"].values()),
    }
    for what, ok in checks.items():
        say(f"  {'holds' if ok else 'DOES NOT HOLD'}: {what}")
    for n, w in where["workloads"].items():
        scm, fr, f = w["memory/scm"], w["memory/file-ram"], w["memory/file"]
        say(f"  {n}: per checkpoint, KiB copied: SCM range {scm['bytes_copied'] / 1024:.1f}, file with the pages in RAM "
            f"{fr['bytes_copied'] / 1024:.1f}, file with the pages living in it {f['bytes_copied'] / 1024:.1f} "
            f"(+ {f['pages_in_place']:.2f} pages flushed in place); virtual us {scm['virtual_us']:.2f} / "
            f"{fr['virtual_us']:.2f} / {f['virtual_us']:.2f}")
    return checks


def figures(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({r["level"] for r in rows}, key=["persist", "full"].index)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key, title in ((axes[0], "kernel_ns", "kernel time (virtual, ms)"),
                           (axes[1], "frames_peak", "peak guest RAM (MiB)")):
        sel = [r for r in rows if r["level"] == levels[0]]
        xs = range(len(sel))
        scale = 1e6 if key == "kernel_ns" else 2**20 / 4096
        w = 0.8 / len(MODES)
        for j, mode in enumerate(MODES):
            ax.bar([x + (j - (len(MODES) - 1) / 2) * w for x in xs], [r["modes"][mode][key] / scale for r in sel], w,
                   label=mode)
        ax.set_xticks(list(xs), [r["workload"] for r in sel], fontsize=8)
        ax.set_title(f"{title}, level {levels[0]}")
        ax.legend(fontsize=8)
    fig.suptitle("Storage as memory (DAX) vs a block device with the guest's page cache")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
