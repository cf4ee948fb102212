"""Power failure: what is lost and what survives.

At the cut every volatile thing is gone: DRAM, the cache and its pending flushes, non-temporal
stores not yet fenced, and every kernel structure (the page cache's dirty pages included). What
survives is the SCM media files and the storage image as they stood. The cut can come after an
exact number of instructions or at the K-th persistence event, which may be inside kernel work:
Python code on the event path raises PowerFailure, which unwinds the kernel wherever it is.
"""
from __future__ import annotations

from typing import Any


class PowerFailure(BaseException):
    """The power is cut. A BaseException, so no `except Exception` in kernel code swallows it."""


def lost_state(machine: Any, kernel: Any) -> dict[str, Any]:
    """The report of a power failure: where it happened and what was lost."""
    report: dict[str, Any] = {
        "instructions": machine.cpu.icount,
        "virtual_ns": machine.clock.uptime_ns(),
        "model_level": machine.config.model_level,
        "persistence_domain": machine.config.persistence_domain,
    }
    if machine.cache is not None:
        from dataclasses import asdict

        lost = machine.cache.power_fail(eadr=machine.config.persistence_domain == "eadr")
        report.update(asdict(lost))
        report["events"] = int(machine.cache.stats.events)
        report["fail_at_event"] = lost.failed_at_event
    pc = getattr(kernel, "pagecache", None)
    if pc is not None:
        report["dirty_page_cache_pages"] = len(pc.dirty)
        report["dirty_page_cache_inodes"] = sorted({ino for ino in pc.dirty.values() if ino})
    report["processes"] = sorted(p.pid for p in getattr(kernel, "procs", {}).values() if p.state != "zombie")
    return report
