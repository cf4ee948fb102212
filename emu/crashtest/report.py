"""What a campaign reports: the points counted by phase and outcome (`summarize`, also in the
JSON) and the rich tables printed at the end (`report_table`)."""
from __future__ import annotations

from typing import Any

from emu.crashtest.runner import PHASES

OUTCOMES = ("identical", "refused", "mismatch")


def summarize(points: list[dict[str, Any]]) -> dict[str, Any]:
    def row() -> dict[str, int]:
        return {"tried": 0, "passed": 0, "failed": 0, **{o: 0 for o in OUTCOMES}}

    by: dict[str, dict[str, int]] = {ph: row() for ph in PHASES}
    for p in points:
        r = by.setdefault(p["phase"], row())
        r["tried"] += 1
        r["passed" if p["passed"] else "failed"] += 1
        r[p.get("outcome", "mismatch")] += 1
    passed = sum(p["passed"] for p in points)
    outcomes = {o: sum(p.get("outcome") == o for p in points) for o in OUTCOMES}
    return {"tried": len(points), "passed": passed, "failed": len(points) - passed, "outcomes": outcomes, "by_phase": by}


def report_table(summary: dict[str, Any], points: list[dict[str, Any]]) -> list[Any]:
    from rich.table import Table

    t = Table(title="crash campaign", title_justify="left")
    for col, just in (("phase", "left"), ("tried", "right"), ("passed", "right"), ("failed", "right"),
                      ("resumed identical", "right"), ("refused", "right"), ("mismatch", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for ph, row in summary["by_phase"].items():
        t.add_row(ph, str(row["tried"]), str(row["passed"]), f"[red]{row['failed']}[/]" if row["failed"] else "0",
                  str(row["identical"]), str(row["refused"]), f"[red]{row['mismatch']}[/]" if row["mismatch"] else "0")
    t.add_section()
    o = summary["outcomes"]
    t.add_row("[bold]all", f"[bold]{summary['tried']}", f"[bold]{summary['passed']}",
              f"[bold red]{summary['failed']}" if summary["failed"] else "[bold]0",
              f"[bold]{o['identical']}", f"[bold]{o['refused']}",
              f"[bold red]{o['mismatch']}" if o["mismatch"] else "[bold]0")
    out: list[Any] = [t]
    failed = [p for p in points if not p["passed"]]
    if failed:
        f = Table(title="failed points (first reason)", title_justify="left")
        for col in ("#", "cut", "phase", "reason"):
            f.add_column(col)
        shown = failed[:20]
        for p in shown:
            cut = p["cut"]
            f.add_row(str(p["index"]), f"{'insn' if cut['kind'] == 'instruction' else 'event'} {cut['at']:,}",
                      p["phase"], p["reason"] or "")
        if len(failed) > len(shown):
            f.caption = f"... and {len(failed) - len(shown)} more (see the JSON)"
        out.append(f)
    return out
