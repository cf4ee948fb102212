"""Checkpoint/restart of a multithreaded program: a pthread pool (four workers, a mutex, condition
variables, a barrier) checkpointed at every syscall survives power cuts anywhere, in user code,
in syscalls and inside checkpoints: each restart resumes every thread (registers, TLS, futex
waits re-entered) and the run ends as the uninterrupted one. Threads that share a working
directory and umask (CLONE_FS) share them again after a restart."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.campaigns.programs import campaign, program_campaign
from tests.conftest import put_file

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def pool_image(base_image, tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("pool")
    exe = d / "pthreadpool"
    subprocess.run(["gcc", "-static", "-O1", "-pthread", "-o", str(exe), str(ROOT / "tests/programs/pthreadpool.c")],
                   check=True)
    image = d / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, exe, "/bin/pthreadpool")
    return image


def test_a_thread_pool_resumes_after_cuts(pool_image, tmp_path):
    p, doc = campaign(tmp_path / "c", pool_image, "--points", "24")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert doc["reference"]["stdout"] == "tasks 256 total 129393583\n"
    assert doc["summary"]["failed"] == 0 and len(doc["points"]) == 24
    assert all(q["outcome"] == "identical" for q in doc["points"])


def test_threads_share_their_working_directory_after_a_restart(base_image, tmp_path):
    """tests/programs/threadcwd.c: a thread changes the working directory and umask three times,
    the main thread creates a file under them each time. Cut anywhere and restarted, a copy of
    the fs context per thread would leave the main thread where it was: the output differs."""
    doc = program_campaign(base_image, tmp_path, "threadcwd", "/tmp/d")
    assert doc["reference"]["stdout"].splitlines()[1] == "round 1: cwd / umask 022 file mode 644"


def test_queued_signals_survive_a_restart(base_image, tmp_path):
    """tests/programs/sigqueued.c: four real-time signals with values and a standard one wait
    blocked across syscalls, then sigtimedwait takes them. Cut anywhere and restarted, every
    queued instance comes back with its code, sender and value."""
    doc = program_campaign(base_image, tmp_path, "sigqueued")
    assert doc["reference"]["stdout"].splitlines()[4:] == [
        "SIGUSR1 code 0 value 0 mine 1", *[f"RTMIN+2 code -1 value {100 + i} mine 1" for i in range(4)]]


@pytest.mark.slow
def test_a_thread_pool_campaign_with_checkpoint_events(pool_image, tmp_path):
    p, doc = campaign(tmp_path / "c", pool_image, "--points", "150", "--every-event-of-checkpoint", "2",
                      "--event-stride", "8")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert len(doc["points"]) >= 200 and doc["summary"]["failed"] == 0
    assert doc["summary"]["by_phase"]["checkpoint"]["tried"] > 50  # cuts inside checkpoints of four threads


@pytest.mark.slow
def test_pigz_with_two_threads_campaign(tmp_path):
    """pigz -p 2 behind a pipe, checkpointed at every syscall: 200 instruction cuts and every
    event of two checkpoints (thinned), every restart resumes identical."""
    from images.build import default_image

    script = ("head -c 262144 /data/corpus.txt | pigz -n -p 2 -b 32 > /tmp/c.gz; "
              "pigz -n -p 2 -b 32 -c /data/corpus.txt | md5sum")
    d = tmp_path / "c"
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--image", str(default_image(recipe="hybrid")),
           "--set", "cpus=2", "--level", "persist", "--checkpoint", "tcp=0", "--jobs", "2", "--points", "200",
           "--every-event-of-checkpoint", "2", "--event-stride", "8", "--", "/bin/sh", "-c", script]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    doc = json.loads((d / "crashtest.json").read_text())
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert len(doc["points"]) >= 200 and doc["summary"]["failed"] == 0
    assert len(doc["reference"]["checkpoints"]) > 100
