"""The SonicShot paper (../shared/seeds/001_*): VM snapshots made small and fast by the guest's
knowledge of its memory (sync, drop the page cache and slab caches, leave free pages out; the
balloon gives them back after the restore), against Xen (every page: `full`), VirtualBox (pages
ever touched: `touched`) and VMware (differences since the last snapshot: `incremental`).

Each point is one machine: guest RAM of the given size (one DRAM pool, no other device), a guest
that writes and reads back a file (the page cache then holds half of RAM, at most 1 GiB: a guest
that has been reading files), then starts `holdmem` (the paper's user process: mallocs and
touches N MiB, then sleeps). While it sleeps the host takes, in this order: the incremental
snapshot (its chain's base was taken after boot), full, touched, then sonic (last: it changes
the guest, dropping its caches). Each is restored into a fresh machine. Times are wall time of the
host doing the work (emu is the hypervisor here), the host's dirty pages synced before each:
save = from the request to the snapshot on disk (with sonic: the guest's sync and drops and the balloon, then giving the pages back); restore
= until the guest could run again with all of its RAM (machine built, chain read and checked,
balloon deflated; the better of two restores). The copy of the storage image that each snapshot keeps is timed apart
(`disk_s`), as the paper's snapshots do not include the disk.

Experiment 1 (the paper's Fig. 3): RAM 256 MiB ... 8 GiB (quick: up to 1 GiB), 200 MiB of user
memory. Experiment 2 (Fig. 4): RAM 8 GiB (quick: 1 GiB), user memory from none to 90 % of RAM.
"""
from __future__ import annotations

import gc
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from hw.console import Console
from vmm.config import machine_from_toml
from vmm.machine import Machine
from vmm.snapshot import open_snapshot, restore, take

MiB = 1 << 20
GiB = 1 << 30
MODES = ("full", "touched", "incremental", "sonic")
# The order they are taken in: the incremental one first (dirtied since its base: any snapshot
# in between would start a new interval), sonic last (it drops the guest's caches).
ORDER = ("incremental", "full", "touched", "sonic")
RAM_FULL = (256 * MiB, 512 * MiB, GiB, 2 * GiB, 4 * GiB, 8 * GiB)
RAM_QUICK = (256 * MiB, 512 * MiB, GiB)
USER_MIB = 200
SHARES = (0.0, 0.25, 0.5, 0.75, 0.9)  # experiment 2: user memory as a share of RAM
PAPER = {"save_change_pct": -94.2, "restore_change_pct": -95.3, "size_change_pct": -96.9,
         "xen_save_restore_s_at_8g": 242, "user_mib": 200,
         "note": "Xen 3.4.1, Linux 2.6.18 guest; best case; the gain vanishes when applications use nearly all RAM"}


def machine_for(ram: int) -> Any:
    return machine_from_toml(f'name = "sonicshot-{ram >> 20}m"\n[[pool]]\nname = "dram0"\nkind = "dram"\n'
                             f'base = "0x0"\nsize = {ram}\nchannel = 0\n', "sonicshot")


def grown_image(base: Path, dest: Path, size: int) -> Path:
    """A copy of the image with room for the fill file (resize2fs, sparse on the host)."""
    shutil.copyfile(base, dest)
    env = {"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"}
    subprocess.run(["e2fsck", "-fy", str(dest)], capture_output=True, env=env)
    subprocess.run(["resize2fs", str(dest), f"{size // 1024}K"], capture_output=True, env=env, check=True)
    return dest


def guest_argv(fill_mib: int, user_mib: int) -> list[str]:
    return ["/bin/sh", "-c", f"head -c {fill_mib}M /dev/zero > /fill; cat /fill > /dev/null; "
            f"echo filled; holdmem {user_mib}"]


def run_until_output(m: Machine, out: Console, marker: bytes, step: int = 5_000_000) -> None:
    while marker not in out.captured[1]:
        if m.resume_run(until=m.cpu.icount + step) is not None:
            raise RuntimeError(f"the guest ended before printing {marker!r}: {bytes(out.captured[1])!r}")


def measure(base_image: Path, ram: int, user_mib: int, tmp: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """One machine: the four snapshots of the sleeping guest, each restored."""
    fill_mib = min(ram // 2, GiB) >> 20
    work = Path(tempfile.mkdtemp(prefix="point-", dir=tmp))
    try:
        image = grown_image(base_image, work / "disk.img", (fill_mib + 192) * MiB)
        out = Console(None, None, capture=True)
        m = Machine(image, machine_for(ram), console=out)
        assert m.boot(guest_argv(fill_mib, user_mib)) is None
        assert m.resume_run(until=2_000_000) is None
        base = work / "base"
        take(m, base, "incremental")  # the chain's base, after boot (VMware's first snapshot)
        run_until_output(m, out, b"filled")
        run_until_output(m, out, b"ready")
        row: dict[str, Any] = {"ram_bytes": ram, "user_mib": user_mib, "fill_mib": fill_mib}
        for mode in ORDER:
            snap = work / mode
            os.sync()  # the host's earlier writes flushed first: they would slow this one's down
            meta = take(m, snap, mode, parent=base if mode == "incremental" else None)
            size = meta["files"]["memory.bin"]["bytes"] + meta["files"]["state.bin"]["bytes"]
            chain_read = sum(s.meta["files"]["memory.bin"]["bytes"] for s in open_snapshot(snap).chain)
            timing: dict[str, float] = {}
            for attempt in range(2):  # the better of two restores: this host's disk is shared and noisy
                dest = work / f"restored-{mode}-{attempt}"
                dest.mkdir()
                os.sync()
                t0 = time.perf_counter()
                m2, t = restore(open_snapshot(snap), dest / "disk.img", console=Console(None, None, capture=True))
                wall = time.perf_counter() - t0
                if not timing or t["restore_s"] < timing["restore_s"]:
                    timing = t
                if attempt == 0:
                    del m2
                    gc.collect()  # a machine is a cycle (kernel <-> machine): free its RAM now
                    shutil.rmtree(dest, ignore_errors=True)
            assert m2.balloon.actual_pages == 0 and m2.kernel.frames.total_frames == m.kernel.frames.total_frames
            ended = m2.resume_run(until=m2.cpu.icount + 100_000)  # it runs again
            if ended is not None:
                raise RuntimeError(f"the guest restored from the {mode} snapshot ended (status {ended.exit_code}): "
                                   f"{m2.kernel.log[-3:]}")
            del m2
            gc.collect()
            row[mode] = {"save_s": round(meta["timing"]["save_s"], 4), "restore_s": round(timing["restore_s"], 4),
                         "bytes": size, "pages_saved": meta["pages_saved"], "chain_bytes_read": chain_read,
                         "disk_s": round(meta["timing"]["disk_s"] + timing["disk_s"], 4), "restore_wall_s": round(wall, 4),
                         "saved_by_kind": meta["saved_by_kind"], "guest": meta["guest"]}
            shutil.rmtree(snap, ignore_errors=True)
            shutil.rmtree(dest, ignore_errors=True)
        del m  # its RAM goes with the collection below
        s, f = row["sonic"], row["full"]
        row["sonic_vs_full_pct"] = {k: round(100 * (s[k] / f[k] - 1), 1) if f[k] else 0.0
                                    for k in ("save_s", "restore_s", "bytes")}
        row["sonic_vs_touched_bytes_pct"] = round(100 * (s["bytes"] / row["touched"]["bytes"] - 1), 1)
        say(f"  RAM {ram >> 20:>5} MiB, user {user_mib:>5} MiB: " + "; ".join(
            f"{mode} {row[mode]['bytes'] / MiB:.0f} MiB {row[mode]['save_s']:.2f}+{row[mode]['restore_s']:.2f} s"
            for mode in MODES))
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)
        gc.collect()


def run(quick: bool, out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    from images.build import default_image

    image = default_image(recipe="snapshot")
    rams = RAM_QUICK if quick else RAM_FULL
    fixed = rams[-1]
    tmp = Path(tempfile.mkdtemp(prefix="emu-sonicshot-", dir=out))
    try:
        say(f"SonicShot: snapshots of a guest holding {USER_MIB} MiB of user memory after filling its page cache; "
            f"modes {', '.join(MODES)}; host wall time ({'quick' if quick else 'full'} run)")
        say("experiment 1: RAM varied")
        exp1 = [measure(image, ram, USER_MIB, tmp, say) for ram in rams]
        say(f"experiment 2: RAM {fixed >> 20} MiB, user memory varied")
        exp2 = [measure(image, fixed, int(share * (fixed >> 20)), tmp, say) for share in SHARES]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = summary(exp1, exp2, say)
    figures(exp1, exp2, out)
    return {"experiment": "sonicshot", "quick": quick, "paper": PAPER, "summary": table,
            "exp1": {str(r["ram_bytes"] >> 20) + "MiB": r for r in exp1},
            "exp2": {str(r["user_mib"]) + "MiB": r for r in exp2},
            "method": __doc__.split("\n\n")[1].replace("\n", " ")}


def summary(exp1: list[dict[str, Any]], exp2: list[dict[str, Any]], say: Callable[[str], None]) -> dict[str, Any]:
    from rich.console import Console as RichConsole
    from rich.table import Table

    t = Table(title=f"Experiment 1: {USER_MIB} MiB of user memory; host wall time (s) and snapshot size (MiB)")
    t.add_column("RAM")
    for mode in MODES:
        t.add_column(f"{mode} save+restore", justify="right")
        t.add_column(f"{mode} MiB", justify="right")
    t.add_column("sonic vs full: save / restore / size", justify="right")
    for r in exp1:
        c = r["sonic_vs_full_pct"]
        t.add_row(f"{r['ram_bytes'] >> 20} MiB", *[x for mode in MODES for x in
                  (f"{r[mode]['save_s']:.2f}+{r[mode]['restore_s']:.2f}", f"{r[mode]['bytes'] / MiB:.0f}")],
                  f"{c['save_s']:+.1f} / {c['restore_s']:+.1f} / {c['bytes']:+.1f} %")
    t.add_row("paper (8 GB)", "242 s (Xen)", "8192", "", "", "", "", "", "",
              f"{PAPER['save_change_pct']} / {PAPER['restore_change_pct']} / {PAPER['size_change_pct']} %")
    t2 = Table(title=f"Experiment 2: RAM {exp2[0]['ram_bytes'] >> 20} MiB, user memory varied")
    t2.add_column("user MiB")
    for mode in MODES:
        t2.add_column(f"{mode} MiB", justify="right")
    t2.add_column("sonic vs full size", justify="right")
    for r in exp2:
        t2.add_row(str(r["user_mib"]), *(f"{r[mode]['bytes'] / MiB:.0f}" for mode in MODES),
                   f"{r['sonic_vs_full_pct']['bytes']:+.1f} %")
    rc = RichConsole(width=200)
    with rc.capture() as cap:
        rc.print(t)
        rc.print(t2)
    say(cap.get().rstrip())
    at1g = next((r for r in exp1 if r["ram_bytes"] == GiB), None)
    checks: dict[str, bool] = {}
    if at1g is not None:
        f, s, tch = at1g["full"], at1g["sonic"], at1g["touched"]
        sr = lambda r: r["save_s"] + r["restore_s"]  # noqa: E731
        checks["1 GiB: sonic size >= 75 % below full"] = s["bytes"] <= 0.25 * f["bytes"]
        checks["1 GiB: sonic size >= 50 % below touched"] = s["bytes"] <= 0.5 * tch["bytes"]
        checks["1 GiB: sonic save+restore >= 70 % below full"] = sr(s) <= 0.3 * sr(f)
    at8g = next((r for r in exp1 if r["ram_bytes"] == 8 * GiB), None)
    if at8g is not None:
        c = at8g["sonic_vs_full_pct"]
        checks["8 GiB: save, restore, size at or below the paper's -94.2 / -95.3 / -96.9 %"] = (
            c["save_s"] <= -94.2 and c["restore_s"] <= -95.3 and c["bytes"] <= -96.9)
    last = exp2[-1]
    checks["nearly all RAM used: the gain shrinks (sonic within 30 % of full's size)"] = (
        last["sonic"]["bytes"] >= 0.7 * last["full"]["bytes"])
    for what, ok in checks.items():
        say(f"  {'holds' if ok else 'DOES NOT HOLD'}: {what}")
    return {"checks": checks,
            "sonic_vs_full_pct": {str(r["ram_bytes"] >> 20) + "MiB": r["sonic_vs_full_pct"] for r in exp1}}


def figures(exp1: list[dict[str, Any]], exp2: list[dict[str, Any]], out: Path) -> None:
    _figure(exp1, [r["ram_bytes"] / GiB for r in exp1], "guest RAM (GiB)", True,
            f"Fig. 3: {USER_MIB} MiB of user memory, RAM varied", out / "fig3_ram.png")
    _figure(exp2, [r["user_mib"] for r in exp2], "user memory (MiB)", False,
            f"Fig. 4: RAM {exp2[0]['ram_bytes'] >> 20} MiB, user memory varied", out / "fig4_user_memory.png")


def _figure(rows: list[dict[str, Any]], xs: list[float], xlabel: str, log2: bool, title: str, path: Path) -> None:
    """Save + restore time and snapshot size of each mode against xs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mode in MODES:
        axes[0].plot(xs, [r[mode]["save_s"] + r[mode]["restore_s"] for r in rows], marker="o", label=mode)
        axes[1].plot(xs, [r[mode]["bytes"] / MiB for r in rows], marker="o", label=mode)
    for ax, what in zip(axes, ("save + restore (s, host wall time)", "snapshot size (MiB)")):
        if log2:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(what)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
