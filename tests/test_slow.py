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
