"""The long crash campaigns (`./scripts/test.sh -m slow tests/campaigns`): the full-size runs
behind the quick campaign tests."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


# The first paper's claim, checked by cutting the power: 200 instruction cut points spread over
# each run plus every persistence event of one checkpoint (its commit and its write-back) and of
# the last one, with checkpointing at every syscall; restart, compare output, tree and e2fsck.
@pytest.mark.parametrize("name", ["grep", "gzip", "tar-cf", "tar-xf", "tar-czf", "dirs"])
def test_crash_campaign_with_checkpoints_loses_nothing(name, tmp_path):
    from emu.workloads import workload

    d = tmp_path / "c"
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--level", "persist", "--jobs", "2",
           "--checkpoint", "tcp=0", "--points", "200", "--every-event-of-checkpoint", "1", "--events-of-writeback",
           "--keep", "failed", "--", *workload(name)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    doc = json.loads((d / "crashtest.json").read_text())
    s = doc["summary"]
    assert s["failed"] == 0, p.stderr[-4000:]
    assert s["tried"] >= 200 and p.returncode == 0
    assert s["by_phase"]["checkpoint"]["tried"] > 0
    # grep writes nothing: relatime's atime update lands in the second the image's files were
    # stamped (the virtual clock starts there), which leaves the inode as it was, as Linux does
    # within one second. Every other workload writes files, so its checkpoints write blocks back.
    assert (s["by_phase"]["write-back"]["tried"] > 0) == (name != "grep")


def test_crash_campaign_gzip_1mib_without_checkpoints_loses_work(tmp_path):
    from emu.workloads import workload

    d = tmp_path / "c"
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--level", "persist", "--jobs", "2",
           "--checkpoint", "off", "--points", "20", "--", *workload("gzip-1m")]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    doc = json.loads((d / "crashtest.json").read_text())
    assert p.returncode == 1 and doc["summary"]["failed"] >= 1
