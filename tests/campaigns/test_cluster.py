"""Campaigns on a Dask cluster: a real scheduler and two workers, each its own process on
localhost (Dask's own CLI), run the points of `emu crashtest --cluster` with the results of a
local campaign; a worker killed mid-campaign loses no point; bad clusters are refused in one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.campaigns.test_crashtest import SCRIPT, same_points

ROOT = Path(__file__).parents[2]
DASK = str(Path(sys.executable).with_name("dask"))
CAMPAIGN = ["--level", "persist", "--points", "10", "--seed", "7", "--events-of-writeback"]


def crashtest(d: Path, *opts: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), *CAMPAIGN, *opts, "--", "/bin/sh", "-c", SCRIPT]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, None


def finish(p: subprocess.Popen, d: Path) -> tuple[int, str, dict | None]:
    _, err = p.communicate(timeout=1200)
    out = d / "crashtest.json"
    return p.returncode, err, json.loads(out.read_text()) if out.exists() else None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):  # type: ignore[no-untyped-def]
    from distributed import Client

    tmp = tmp_path_factory.mktemp("cluster")
    env = dict(os.environ, EMU_CLUSTER_CACHE=str(tmp / "cache"))
    sched_file = tmp / "scheduler.json"
    procs = [subprocess.Popen([DASK, "scheduler", "--scheduler-file", str(sched_file), "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard"], cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(600):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        workers = {}
        for name in ("w0", "w1"):
            w = subprocess.Popen([DASK, "worker", address, "--name", name, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                  "--local-directory", str(tmp / name)], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(w)
            workers[name] = w
        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=120)
        yield address, workers
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def local(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("local") / "c"
    code, err, doc = finish(crashtest(d, "--jobs", "2")[0], d)
    assert doc is not None, err
    return doc


def test_a_campaign_on_the_cluster_gives_the_local_results(cluster, local, tmp_path):  # type: ignore[no-untyped-def]
    address, _ = cluster
    d = tmp_path / "c"
    code, err, doc = finish(crashtest(d, "--cluster", address)[0], d)
    assert doc is not None, err
    assert code == 1 and doc["cluster"] == address  # the campaign without checkpoints finds losses, as locally
    s = doc["summary"]
    assert s["workers"] == 2 and s["batches"] > 2 and s["retried_batches"] == 0
    same_points(local, doc)


def test_a_worker_killed_mid_campaign_loses_no_point(cluster, local, tmp_path):  # type: ignore[no-untyped-def]
    from distributed import Client

    address, workers = cluster
    d = tmp_path / "c"
    p, _ = crashtest(d, "--cluster", address)
    killed = False
    with Client(address, timeout="30s") as c:
        deadline = time.time() + 600
        while not killed and time.time() < deadline and p.poll() is None:
            names = {a: w["name"] for a, w in c.scheduler_info()["workers"].items()}
            busy = [names.get(a) for a, keys in c.processing().items() if any("emu-batch" in str(k) for k in keys)]
            if "w0" in busy:
                time.sleep(1.0)  # well inside its batch
                os.kill(workers["w0"].pid, signal.SIGKILL)
                killed = True
            time.sleep(0.05)
    code, err, doc = finish(p, d)
    assert killed and doc is not None, err
    s = doc["summary"]
    assert s["retried_batches"] >= 1 and s["retried_points"] >= 1, s
    assert s["tried"] == len(local["points"])
    same_points(local, doc)


def test_an_unreachable_cluster_is_refused_in_one_line(tmp_path):  # type: ignore[no-untyped-def]
    d = tmp_path / "c"
    code, err, doc = finish(crashtest(d, "--cluster", "tcp://127.0.0.1:9")[0], d)
    assert code == 2 and doc is None and not (d / "reference").exists()
    assert err.strip().startswith("emu: error: cannot reach the cluster at tcp://127.0.0.1:9") and err.count("\n") == 1


def test_batches_split_each_kind_in_run_order_and_keep_every_point() -> None:
    from emu.crashtest.cluster import batches, bundle_sha

    jobs = [(i + 1, "instruction", at) for i, at in enumerate([50, 10, 40, 20, 30])] + \
           [(6 + i, "event", e) for i, e in enumerate([7, 3, 5])]
    parts = batches(jobs, 2)
    assert sorted(j for b in parts for j in b) == sorted(jobs)
    assert [[j[2] for j in b] for b in parts] == [[10, 20, 3], [30, 40, 50, 5, 7]]
    assert batches(jobs[:1], 4) == [[jobs[0]]]
    a = {"start.img": b"x", "machine.json": b"{}"}
    assert bundle_sha(a) == bundle_sha(dict(reversed(list(a.items())))) != bundle_sha({**a, "start.img": b"y"})
