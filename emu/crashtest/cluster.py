"""Campaigns on a Dask cluster: `emu crashtest --cluster ADDRESS`.

Why Dask (distributed) and not Ray: it is pure Python with no daemon of its own to install, its
scheduler and workers are plain processes started by its own CLI (`dask scheduler`, `dask worker
ADDRESS`), and it already does what a campaign needs from an engine: it ships data to workers
once (`scatter`), reruns the tasks of a worker that died on the others (up to
`distributed.scheduler.allowed-failures`) and streams results as they finish (`as_completed`).
Ray would bring a larger runtime (its own object store and raylet) for no gain here.

How a campaign runs there:
- The reference runs here, as for a local campaign; the points are split into batches (a slice
  of the instruction points and a slice of the event points, each in run order).
- The campaign's bundle (start image, resolved machine, reference, its tree and stdout, the
  options) is sent to the workers once, content-addressed: every task carries its sha256 and
  the scattered bundle; a worker unpacks it into ~/.cache/emu/cluster/SHA once and reuses it.
- A task is one batch: in a fresh directory beside the unpacked bundle, a child process
  (`python -m emu.crashtest batch`) runs the fork server on the batch's points (the forking run
  stops after its last point) and returns their records. A child, not the worker itself, forks:
  forking a threaded Dask worker is asking for trouble, and the child dies with the worker
  (PR_SET_PDEATHSIG).
- Records stream back into the same progress bar, summary and JSON as a local campaign. A task
  whose worker died is rerun elsewhere by the scheduler; the summary counts those batches and
  their points (`retried_batches`, `retried_points`).
- Before any point: the cluster must answer (else a one-line error), and every worker must run
  the same emu code (a fingerprint of its sources) and have e2fsck.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emu.crashtest.runner import Campaign
from vmm.errors import EmuError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("emu", "vmm", "hw", "guestkernel", "images")
Job = tuple[int, str, int]


def code_fingerprint() -> str:
    """sha256 over emu's sources (what a worker must share with the client)."""
    h = hashlib.sha256()
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*")):
            if p.suffix in (".py", ".c", ".h") and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def worker_facts() -> dict[str, Any]:
    """What the client checks on every worker before a campaign."""
    return {"code": code_fingerprint(), "e2fsck": shutil.which("e2fsck") or shutil.which("e2fsck", path="/usr/sbin:/sbin"),
            "python": sys.version.split()[0], "host": os.uname().nodename}


# ----------------------------------------------------------------------------------------------
# The bundle: a campaign as data


def restart_how(c: Campaign) -> str:
    spec = getattr(c.restart, "spec", "")
    return spec or {"cold-boot": "cold", "machine": "machine"}[c.restart.name]


def make_bundle(c: Campaign) -> dict[str, Any]:
    return {"start.img": c.start_image.read_bytes(), "machine.json": c.machine_file.read_bytes(),
            "campaign.json": json.dumps({
                "argv": c.argv, "kernel": c.kernel, "restart": restart_how(c), "keep": c.keep,
                "media_faults": c.media_faults, "seed": c.seed, "check": c.check,
                "point_timeout_s": c.point_timeout_s, "reference": c.reference, "ref_tree": c.ref_tree,
                "ref_stdout": base64.b64encode(c.ref_stdout).decode()}).encode()}


def bundle_sha(bundle: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for name in sorted(bundle):
        h.update(name.encode() + b"\0" + hashlib.sha256(bundle[name]).digest())
    return h.hexdigest()


def load_campaign(d: Path) -> Campaign:
    """A campaign directory laid out by `unpack` (or a batch directory beside it)."""
    from emu.crashtest.restart import choose_restart
    from vmm.config import load_machine

    doc = json.loads((d / "campaign.json").read_text())
    cfg = load_machine(d / "machine.json")
    c = Campaign(d, doc["argv"], doc["kernel"], choose_restart(doc["kernel"], doc["restart"], cfg), keep=doc["keep"],
                 media_faults=doc["media_faults"], seed=doc["seed"], point_timeout_s=doc["point_timeout_s"],
                 check=doc["check"])
    c.reference, c.ref_tree = doc["reference"], doc["ref_tree"]
    c.ref_stdout = base64.b64decode(doc["ref_stdout"])
    return c


def cache_root() -> Path:
    return Path(os.environ.get("EMU_CLUSTER_CACHE", Path.home() / ".cache" / "emu" / "cluster"))


def unpack(bundle: dict[str, Any], sha: str) -> Path:
    """The bundle's files under the worker's cache, written once (atomically)."""
    d = cache_root() / sha
    if not (d / "campaign.json").exists():
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}.", dir=d.parent))
        for name, data in bundle.items():
            (tmp / name).write_bytes(data)
        try:
            os.rename(tmp, d)
        except OSError:  # another worker of this host unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    return d


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_batch(bundle: dict[str, Any], sha: str, batch: list[Job], jobs: int, home: str) -> list[dict[str, Any]]:
    """A Dask task: the batch's points by the fork server, in a child process. Their reproducing
    commands name the client's campaign directory `home` (its start.img and machine.json)."""
    base = unpack(bundle, sha)
    work = Path(tempfile.mkdtemp(prefix="batch-", dir=base))
    for name in ("start.img", "machine.json", "campaign.json"):
        os.link(base / name, work / name)
    (work / "batch.json").write_text(json.dumps(batch))
    p = subprocess.run([sys.executable, "-m", "emu.crashtest", "batch", str(work), str(jobs)], cwd=ROOT,
                       capture_output=True, text=True, check=False, preexec_fn=_die_with_parent)
    out = work / "points.json"
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"batch on {os.uname().nodename} failed (exit {p.returncode}): {p.stderr[-2000:]}")
    points = json.loads(out.read_text())
    for pt in points:
        pt["reproduce"] = [cmd.replace(str(work.resolve()), home) for cmd in pt["reproduce"]]
    if not any(pt.get("state_dir") for pt in points):
        shutil.rmtree(work, ignore_errors=True)  # kept state directories stay with their batch
    return points


def batch_main(argv: list[str]) -> int:
    """`python -m emu.crashtest batch DIR JOBS`: the fork server on DIR/batch.json's points."""
    from emu.crashtest.forkserver import ForkServer

    d, jobs = Path(argv[0]), int(argv[1])
    c = load_campaign(d)
    batch = [tuple(j) for j in json.loads((d / "batch.json").read_text())]
    points = ForkServer(c, batch, jobs).run()  # type: ignore[arg-type]
    (d / "points.json").write_text(json.dumps(points))
    return 0


# ----------------------------------------------------------------------------------------------
# The client


def connect(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise EmuError("--cluster needs Dask: pip install -e '.[cluster]'") from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise EmuError(f"cannot reach the cluster at {address}: {e}") from None


def check_workers(client: Any) -> int:
    """The workers' count; EmuError if none, or one runs other code or lacks e2fsck."""
    facts = client.run(worker_facts)
    if not facts:
        raise EmuError(f"the cluster at {client.scheduler.address} has no workers")
    mine = code_fingerprint()
    for addr, f in sorted(facts.items()):
        if f["code"] != mine:
            raise EmuError(f"worker {addr} ({f['host']}) runs another version of emu (code {f['code'][:12]}, here {mine[:12]})")
        if not f["e2fsck"]:
            raise EmuError(f"worker {addr} ({f['host']}) has no e2fsck (install e2fsprogs there)")
    return len(facts)


def batches(jobs: list[Job], n: int) -> list[list[Job]]:
    """n batches: slice i of the instruction points and slice i of the event points (each in run
    order), so that a batch's forking run stops early when its points do."""
    ins = sorted((j for j in jobs if j[1] == "instruction"), key=lambda j: j[2])
    evs = sorted((j for j in jobs if j[1] == "event"), key=lambda j: j[2])
    out = [ins[i * len(ins) // n:(i + 1) * len(ins) // n] + evs[i * len(evs) // n:(i + 1) * len(evs) // n] for i in range(n)]
    return [b for b in out if b]


def run_on_cluster(c: Campaign, jobs: list[Job], client: Any, per_task: int,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every point on the cluster (connected and checked); returns the records (by index) and
    the retry counts. Closes the client."""
    from distributed import as_completed

    try:
        workers = len(client.scheduler_info()["workers"])
        bundle = make_bundle(c)
        sha = bundle_sha(bundle)
        shipped = client.scatter(bundle, broadcast=True, hash=False)
        parts = batches(jobs, max(1, min(len(jobs), 4 * workers)))
        home = str(c.dir.resolve())
        futures = [client.submit(run_batch, shipped, sha, b, per_task, home, key=f"emu-batch-{sha[:12]}-{i}", pure=False)
                   for i, b in enumerate(parts)]
        size = {f.key: len(b) for f, b in zip(futures, parts)}
        results: list[dict[str, Any]] = []
        for fut in as_completed(futures):
            try:
                pts = fut.result()
            except Exception as e:  # noqa: BLE001  (a batch that failed on every worker it tried)
                raise EmuError(f"a batch of {size[fut.key]} points failed on the cluster: {e}") from None
            for p in pts:
                results.append(p)
                if progress:
                    progress(p)
        keys = list(size)
        suspicious = client.run_on_scheduler(_suspicious, keys=keys)
        retried = [k for k in keys if suspicious.get(k, 0) > 0]
        return sorted(results, key=lambda p: p["index"]), {
            "workers": workers, "batches": len(parts), "retried_batches": len(retried),
            "retried_points": sum(size[k] for k in retried)}
    finally:
        client.close()


def _suspicious(dask_scheduler: Any, keys: list[str]) -> dict[str, int]:
    """On the scheduler: how many times each task was on a worker that died."""
    return {k: dask_scheduler.tasks[k].suspicious for k in keys if k in dask_scheduler.tasks}
