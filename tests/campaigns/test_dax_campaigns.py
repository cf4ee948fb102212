"""Crash campaigns on storage mapped as memory (storage.mode = memory, DAX): power cuts at
instructions and at the kernel's own persistence events (its log, commit and in-place flushes)
never leave the file system inconsistent; with the ordering switched off (the debug switch
kernel.dax_ordering = false) they do, so the check can fail. A machine without checkpoints cannot
resume, so these campaigns check the file system only (`--check fsck`): each completed syscall's
changes are on storage, the tree is whatever prefix the cut left. A small cache (64 KiB) makes
the cache evict lines during the run, so cuts also land between evictions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emu.workloads import DIR_SCRIPT, WORKLOADS

ROOT = Path(__file__).parents[2]


def campaign(d: Path, argv: list[str], *opts: str) -> tuple[subprocess.CompletedProcess, dict]:
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--level", "persist", "--check", "fsck",
           "--set", "storage.mode=memory", "--set", "cache.size=64K", "--keep", "failed", "--jobs", "2",
           *opts, "--", *argv]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return p, json.loads((d / "crashtest.json").read_text())


def test_dax_cuts_leave_a_consistent_file_system(tmp_path):
    p, doc = campaign(tmp_path / "c", ["/bin/sh", "-c", DIR_SCRIPT], "--points", "8", "--event-points", "40",
                      "--events-of-writeback")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    ref = doc["reference"]
    assert ref["exit_code"] == 0 and ref["control"] is None and doc["check"] == "fsck"
    events = [q for q in doc["points"] if q["cut"]["kind"] == "event"]
    assert len(events) >= 40 and all(q["power_failed"] for q in doc["points"])
    assert {q["phase"] for q in events} >= {"syscall"}  # inside the kernel's commits
    assert doc["summary"]["failed"] == 0


def test_dax_cuts_without_the_ordering_corrupt_it(tmp_path):
    p, doc = campaign(tmp_path / "c", ["/bin/sh", "-c", DIR_SCRIPT], "--points", "4", "--event-points", "20",
                      "--set", "kernel.dax_ordering=false")
    assert p.returncode == 1
    bad = [q for q in doc["points"] if not q["passed"]]
    assert len(bad) >= 5, f"only {len(bad)} of {len(doc['points'])} unordered cuts left it inconsistent"
    assert all(q["reason"].startswith("e2fsck") for q in bad)


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["dirs", "tar-cf"])
def test_dax_campaigns_of_200_points(tmp_path, workload):
    p, doc = campaign(tmp_path / "c", WORKLOADS[workload], "--points", "50", "--event-points", "200",
                      "--events-of-writeback")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert len(doc["points"]) >= 250 and doc["summary"]["failed"] == 0
