"""What a run reports: the summary, every statistic of the machine's models (declared once with
unit and description, see hw/stats.py), a pcm-memory-style channel table, a wear histogram, the
per-epoch time series, and reading them back from a finished run's directory."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vmm.errors import EmuError
from hw.stats import pcm_memory_table

def host_path(path: Path) -> Path:
    """Where the statistics that depend on the host's speed go: stats.json -> stats.host.json."""
    return path.with_name(path.stem + ".host" + path.suffix)


def write_stats(stats: dict[str, Any], path: Path) -> None:
    """`path` gets everything deterministic (two runs of the same cut: the same bytes);
    `host_path(path)` the "host" section (TLB fills, translated blocks, host time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v for k, v in stats.items() if k != "host"}, indent=2) + "\n")
    host_path(path).write_text(json.dumps({"host": stats.get("host", {})}, indent=2) + "\n")


def load_stats(where: Path) -> dict[str, Any]:
    path = where / "stats.json" if where.is_dir() else where
    if not path.is_file():
        raise EmuError(f"no statistics at {where} (expected a run directory with stats.json)")
    try:
        stats = json.loads(path.read_text())
        host = host_path(path)
        if host.is_file():
            stats["host"] = json.loads(host.read_text()).get("host", {})
        return stats
    except (json.JSONDecodeError, AttributeError) as e:
        raise EmuError(f"{path}: not a statistics file ({e})") from None


def values_of(stats: dict[str, Any]) -> dict[str, Any]:
    """Every value, the host section's included."""
    return {k: v["value"] for part in ("stats", "host") for k, v in stats.get(part, {}).items()}


def console() -> Any:
    """stderr, and wide enough that tables do not wrap when it is a file or a pipe."""
    import sys

    from rich.console import Console

    return Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def print_stats(stats: dict[str, Any]) -> None:
    from rich.table import Table

    con = console()
    vals = values_of(stats)
    con.print(f"machine {stats.get('machine')}, model level [bold]{stats.get('model_level')}[/]")
    if stats.get("model_level") == "fast":
        con.print("model level fast: no cache model, so no channel counters (use --level persist or full)")
    else:
        con.print(pcm_memory_table(vals, [(r["name"], r["kind"], r["base"], r["size"], r["channel"]) for r in stats["ranges"]]))
        t = Table(title="cache and persistence")
        t.add_column("statistic")
        t.add_column("value", justify="right")
        t.add_column("description")
        for name, v in stats["stats"].items():
            if name.startswith("cache."):
                t.add_row(name, f"{v['value']:,}", f"{v['description']} ({v['unit']})")
        con.print(t)
        for rname, hist in stats.get("wear", {}).items():
            w = Table(title=f"wear of {rname}: pages by writes")
            w.add_column("writes per page")
            w.add_column("pages", justify="right")
            for bucket, n in hist:
                w.add_row(str(bucket), f"{n:,}")
            con.print(w)
    groups = {"placement.": "page placement (hypervisor)", "energy.": "memory energy (a model: vmm/energy.py)"}
    host = "host (depends on the host's speed, not deterministic)"
    for prefix, title in [*groups.items(), ("", "machine"), ("", host)]:
        part = stats.get("host", {}) if title == host else stats["stats"]
        rows = [(name, v) for name, v in part.items()
                if name.startswith(prefix) and (prefix or not name.startswith(("cache.", "channel", "wear.", *groups)))]
        if not rows:
            continue
        t = Table(title=title)
        t.add_column("statistic")
        t.add_column("value", justify="right")
        t.add_column("description")
        for name, v in rows:
            t.add_row(name, f"{v['value']:,}", f"{v['description']} ({v['unit']})")
        con.print(t)


def print_summary(r: Any) -> None:
    from rich.table import Table

    con = console()
    t = Table(title="run summary", show_header=False)
    t.add_row("exit status", "power failed" if r.power_failed else str(r.exit_code))
    t.add_row("model level", r.model_level)
    t.add_row("instructions", f"{r.instructions:,}")
    t.add_row("virtual time", f"{r.virtual_ns / 1e6:,.3f} ms (kernel {r.kernel_ns / 1e6:,.3f} ms)")
    t.add_row("wall time", f"{r.wall_s:.3f} s")
    t.add_row("guest MIPS", f"{r.mips:,.1f}")
    t.add_row("page faults", f"{r.page_faults:,}")
    t.add_row("syscalls", f"{sum(r.syscalls.values()):,}")
    ck = getattr(r, "checkpoint", None)
    if ck:
        n = max(ck["checkpoints"], 1)
        t.add_row("checkpoints", f"{ck['checkpoints']:,} (forced {ck['forced']:,}, clean {ck['clean']:,}, "
                  f"tcp {ck['tcp']:,}; skipped {ck['skipped']:,})")
        t.add_row("checkpoint copies", f"{ck['pages_copied'] / n:,.1f} pages + {ck['blocks_logged'] / n:,.1f} blocks "
                  f"per checkpoint, {ck['bytes_copied'] / 1e6:,.2f} MB in all")
        t.add_row("checkpoint time", f"{ck['ns'] / 1e6:,.3f} ms virtual; {r.checkpoint_wall_s:.3f} s of the wall time "
                  f"({r.checkpoint_wall_s / n * 1e6:,.0f} us a checkpoint)")
        if ck["restarts"] > getattr(r, "rejuvenations", 0):  # (each handover is a restart too)
            t.add_row("restart", f"from an image{'; an older one (the newest was bad)' if ck['fallbacks'] else ''}"
                      + (f"; {ck['replayed_outcomes']} replayed outcome(s)" if ck["replayed_outcomes"] else ""))
    if getattr(r, "rejuvenations", 0):
        t.add_row("rejuvenations", f"{r.rejuvenations:,} (the group handed to a new kernel instance)")
    con.print(t)
    s = Table(title="syscalls by name")
    s.add_column("syscall")
    s.add_column("count", justify="right")
    for name, n in sorted(r.syscalls.items(), key=lambda kv: (-kv[1], kv[0])):
        s.add_row(name, f"{n:,}")
    con.print(s)
    for line in r.log:
        con.print(f"[yellow]log:[/] {line}")
