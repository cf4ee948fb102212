"""Long suites (`./scripts/test.sh -m slow`): the full-size runs behind the quick tests."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.slow


def test_gzip_corpus_stats_at_level_full_agree(tmp_path):
    """`emu run --stats` after gzip -9 of the whole corpus on the default machine: per-channel
    reads and writes add up to the cache model's misses and write-backs."""
    js = tmp_path / "stats.json"
    p = subprocess.run([sys.executable, "-m", "emu.cli", "run", "--level", "full", "--stats", "--stats-json", str(js),
                        "--", "/bin/sh", "-c", "gzip -9 -c /data/corpus.txt | wc -c"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "Ch0 (dram)" in p.stderr and "PMM Write (MB)" in p.stderr
    v = {k: x["value"] for k, x in json.loads(js.read_text())["stats"].items()}
    chans = [c for c in range(16) if f"channel{c}.read_bytes.user" in v]
    reads = sum(v[f"channel{c}.read_bytes.{w}"] for c in chans for w in ("user", "kernel"))
    writes = sum(v[f"channel{c}.write_bytes.{w}"] for c in chans for w in ("user", "kernel"))
    assert reads == 64 * v["cache.misses"] > 0
    assert writes == 64 * v["cache.writebacks"]  # no non-temporal stores in gzip


def test_many_random_syscall_sequences(base_image, guest_programs, tmp_path_factory):
    from hypothesis import HealthCheck, given, settings

    from tests import test_fuzz

    inner = test_fuzz.test_random_syscall_arguments.hypothesis.inner_test
    run = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))(
        given(calls=test_fuzz.st.lists(test_fuzz.record, min_size=1, max_size=60))(
            lambda calls: inner(base_image, guest_programs, tmp_path_factory, calls)))
    run()


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
    p = subprocess.run(cmd, cwd=Path(__file__).parent.parent, capture_output=True, text=True, check=False)
    doc = json.loads((d / "crashtest.json").read_text())
    s = doc["summary"]
    assert s["failed"] == 0, p.stderr[-4000:]
    assert s["tried"] >= 200 and p.returncode == 0
    assert s["by_phase"]["checkpoint"]["tried"] > 0 and s["by_phase"]["write-back"]["tried"] > 0


def test_crash_campaign_gzip_1mib_without_checkpoints_loses_work(tmp_path):
    from emu.workloads import workload

    d = tmp_path / "c"
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--level", "persist", "--jobs", "2",
           "--checkpoint", "off", "--points", "20", "--", *workload("gzip-1m")]
    p = subprocess.run(cmd, cwd=Path(__file__).parent.parent, capture_output=True, text=True, check=False)
    doc = json.loads((d / "crashtest.json").read_text())
    assert p.returncode == 1 and doc["summary"]["failed"] >= 1
