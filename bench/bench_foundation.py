"""Foundation benchmark: native vs emu vs qiling vs QEMU user mode on the same binaries and inputs.

    .venv/bin/python bench/bench_foundation.py [--quick] [--out bench/results/foundation.json]

For each workload the three runners are measured N times (interleaved, rotating order) and
the median wall time is reported:

  native  the host's binary (the one the image recipe copied) on staged_dataset() files,
          via subprocess with stdout to a pipe; /data/... is mapped to the staged directory.
  emu     bench/emu_runner.py in a child process: Machine construction + boot + run, stdout
          captured (the image copy is not timed).
  qiling  bench/qiling_runner.py under bench/.venv-qiling (created on demand): Qiling(...)
          construction + ql.run(), rootfs = the same image extracted to a host directory.
  qemu    `qemu-x86_64 -L ROOTFS ROOTFS/bin/PROG ARGS` (Debian's qemu-user, installed on demand
          with apt-get when run as root; skipped with a message where it cannot be): the guest
          binary from the same rootfs, /data paths found under the rootfs by QEMU's -L prefix.

Correctness: sha256 of emu's, qiling's and QEMU's stdout vs native's (native output has the staged
directory path rewritten to /data).  "sorted" means equal only after sorting lines
(directory-walk order differs between host fs and ext2).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from images.build import cache_dir, default_image, extract, staged_dataset  # noqa: E402

QL_VENV = BENCH / ".venv-qiling"
QL_PY = QL_VENV / "bin" / "python"

WORKLOADS = [
    ("gzip -9 corpus", ["/bin/gzip", "-9", "-c", "/data/corpus.txt"]),
    ("grep -r -c tree", ["/bin/grep", "-r", "-c", "persistent", "/data/tree"]),
    ("grep -c -i corpus", ["/bin/grep", "-c", "-i", "memory", "/data/corpus.txt"]),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup

def ensure_qiling_venv() -> str | None:
    """Create bench/.venv-qiling with qiling if missing; return an error string or None."""
    if QL_PY.exists():
        r = subprocess.run([str(QL_PY), "-c", "import qiling"], capture_output=True)
        if r.returncode == 0:
            return None
    log("creating bench/.venv-qiling and installing qiling (pins its own unicorn)")
    try:
        subprocess.run(["python3", "-m", "venv", str(QL_VENV)], check=True)
        r = subprocess.run([str(QL_PY), "-m", "pip", "install", "-q", "qiling"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return "pip install qiling failed: " + r.stderr.strip().splitlines()[-1:][0]
    except (OSError, subprocess.CalledProcessError) as e:
        return f"cannot create qiling venv: {e}"
    return None


def ensure_qemu() -> tuple[str | None, str | None]:
    """qemu-x86_64 (Debian's qemu-user), installed with apt-get if missing and we are root:
    (its path, None) or (None, why not)."""
    path = shutil.which("qemu-x86_64")
    if path:
        return path, None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "qemu-x86_64 not found (install the Debian package qemu-user)"
    log("installing qemu-user (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "qemu-user"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            return None, f"{' '.join(cmd[:2])} failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    path = shutil.which("qemu-x86_64")
    return (path, None) if path else (None, "qemu-user installed but no qemu-x86_64 on PATH")


def qemu_version(qemu: str | None) -> str | None:
    if not qemu:
        return None
    r = subprocess.run([qemu, "--version"], capture_output=True, text=True)
    return (r.stdout.splitlines() or [None])[0]


def qiling_versions() -> dict:
    code = ("import json, qiling, unicorn; print(json.dumps({'qiling': "
            "getattr(qiling, '__version__', '?'), 'unicorn': unicorn.__version__}))")
    try:
        r = subprocess.run([str(QL_PY), "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(r.stdout)
    except Exception as e:  # noqa: BLE001
        return {"error": str(e)}


def rootfs_for(image: Path) -> Path:
    """The image extracted to <emu cache>/rootfs/<image stem> (cached; image names are content
    keys).  Kept outside the work tree so it never ends up in a commit."""
    dest = cache_dir().parent / "rootfs" / image.stem
    if not (dest / "bin").is_dir():
        log(f"extracting {image.name} to {dest}")
        if dest.exists():
            shutil.rmtree(dest)
        extract(image, "/", dest)
    return dest


def host_binary(guest_prog: str) -> str:
    name = guest_prog.rsplit("/", 1)[1]
    path = shutil.which(name)
    if not path:
        raise SystemExit(f"host has no {name}")
    return os.path.realpath(path)


# --------------------------------------------------------------------------- runners

def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _sorted_sha(b: bytes) -> str:
    return _sha(b"\n".join(sorted(b.splitlines())))


def run_native(argv: list[str], data_dir: Path, timeout: float) -> dict:
    host_argv = [host_binary(argv[0])] + [a.replace("/data", str(data_dir), 1)
                                          if a.startswith("/data") else a for a in argv[1:]]
    t0 = time.perf_counter()
    p = subprocess.run(host_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    wall = time.perf_counter() - t0
    out = p.stdout.replace(str(data_dir).encode(), b"/data")
    return {"wall_s": wall, "exit_code": p.returncode, "stdout_bytes": len(out),
            "stdout_sha256": _sha(out), "stdout_sorted_sha256": _sorted_sha(out),
            "stderr_tail": p.stderr[-300:].decode(errors="replace"), "argv": host_argv}


def _run_json(cmd: list[str], timeout: float) -> dict:
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s"}
    lines = p.stdout.decode(errors="replace").strip().splitlines()
    try:
        d = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = p.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return {"error": f"runner exit {p.returncode}: " + " | ".join(tail)}
    hexout = d.pop("stdout", None)
    if hexout is not None:
        d["stdout_sorted_sha256"] = _sorted_sha(bytes.fromhex(hexout))
    if "error" not in d and d.get("exit_code") not in (0, None) and not d.get("stdout_bytes"):
        d["error"] = f"exit {d.get('exit_code')}: {d.get('stderr_tail', '').strip()[-200:]}"
    return d


def run_emu(argv: list[str], image: Path, timeout: float, level: str | None = None) -> dict:
    """level: model level (fast/persist/full); None = default_machine()'s own."""
    lv = ["--level", level] if level else []
    return _run_json([sys.executable, str(BENCH / "emu_runner.py"), str(image), *lv, "--", *argv],
                     timeout)


def run_qiling(argv: list[str], rootfs: Path, timeout: float) -> dict:
    return _run_json([str(QL_PY), str(BENCH / "qiling_runner.py"), str(rootfs), "--", *argv],
                     timeout)


def run_qemu(qemu: str, argv: list[str], rootfs: Path, timeout: float) -> dict:
    cmd = [qemu, "-L", str(rootfs), str(rootfs) + argv[0], *argv[1:]]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s"}
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1) and not p.stdout:  # grep -c exits 1 when nothing matched
        return {"error": f"exit {p.returncode}: {p.stderr[-200:].decode(errors='replace').strip()}"}
    return {"wall_s": wall, "exit_code": p.returncode, "stdout_bytes": len(p.stdout),
            "stdout_sha256": _sha(p.stdout), "stdout_sorted_sha256": _sorted_sha(p.stdout), "argv": cmd}


def match(native: dict, other: dict) -> str:
    if "error" in other or "stdout_sha256" not in other:
        return "n/a"
    if other["stdout_sha256"] == native["stdout_sha256"]:
        return "yes"
    if other.get("stdout_sorted_sha256") == native["stdout_sorted_sha256"]:
        return "sorted"
    return "NO"


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 MiB corpus, 1 repetition")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--out", default=str(BENCH / "results" / "foundation.json"))
    ap.add_argument("--timeout", type=float, default=None,
                    help="per-run timeout in seconds (default 600, --quick 300)")
    ap.add_argument("--only", action="append", help="run only workloads containing this text")
    ap.add_argument("--no-qiling", action="store_true")
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    timeout = args.timeout or (300.0 if args.quick else 600.0)
    corpus_bytes = (2 << 20) if args.quick else (4 << 20)
    params = {"corpus_bytes": corpus_bytes}

    log(f"image (corpus_bytes={corpus_bytes})")
    image = Path(default_image(params=params))
    data_dir = Path(staged_dataset(params))
    ql_err = None if args.no_qiling else ensure_qiling_venv()
    qemu, qemu_err = (None, "disabled (--no-qemu)") if args.no_qemu else ensure_qemu()
    rootfs = rootfs_for(image) if (ql_err is None and not args.no_qiling) or qemu else None
    qv = qiling_versions() if rootfs and ql_err is None and not args.no_qiling else {}
    if qemu_err:
        log(f"QEMU user mode skipped: {qemu_err}")

    workloads = [w for w in WORKLOADS if not args.only or any(o in w[0] for o in args.only)]
    runners = ["native", "emu", "qiling", "qemu"]
    samples: dict[str, dict[str, list[dict]]] = {w[0]: {r: [] for r in runners} for w in workloads}
    dead: set[tuple[str, str]] = set()   # (workload, runner) that failed: do not retry

    for rep in range(reps):
        for wi, (name, argv) in enumerate(workloads):
            k = (rep + wi) % len(runners)
            order = runners[k:] + runners[:k]
            for r in order:
                if (name, r) in dead:
                    continue
                if r == "native":
                    res = run_native(argv, data_dir, timeout)
                elif r == "emu":
                    res = run_emu(argv, image, timeout)
                elif r == "qiling":
                    res = ({"error": ql_err or "disabled (--no-qiling)"} if rootfs is None or ql_err or args.no_qiling
                           else run_qiling(argv, rootfs, timeout))
                else:
                    res = {"error": qemu_err} if qemu is None or rootfs is None else run_qemu(qemu, argv, rootfs, timeout)
                samples[name][r].append(res)
                if "error" in res:
                    dead.add((name, r))
                log(f"rep {rep + 1}/{reps} {name:18s} {r:6s} "
                    + (f"ERROR {res['error'][:100]}" if "error" in res
                       else f"{res['wall_s']:.3f}s"))

    rows = []
    for name, argv in workloads:
        s = samples[name]
        row: dict = {"workload": name, "argv": argv}
        for r in runners:
            ok = [x for x in s[r] if "error" not in x]
            row[r] = {
                "median_s": statistics.median(x["wall_s"] for x in ok) if ok else None,
                "samples_s": [x["wall_s"] for x in ok],
                "error": next((x["error"] for x in s[r] if "error" in x), None),
                "last": s[r][-1] if s[r] else None,
            }
        nat, emu, ql, qm = (row[r]["median_s"] for r in runners)
        emu_last = row["emu"]["last"] or {}
        insns = emu_last.get("instructions") if emu is not None else None
        row["emu_over_native"] = emu / nat if emu and nat else None
        row["emu_over_qiling"] = emu / ql if emu and ql else None
        row["emu_over_qemu"] = emu / qm if emu and qm else None
        row["guest_instructions"] = insns
        row["emu_mips"] = insns / emu / 1e6 if insns and emu else None
        nlast = row["native"]["last"]
        row["emu_output_match"] = match(nlast, emu_last) if nlast else "n/a"
        row["qiling_output_match"] = (match(nlast, row["qiling"]["last"])
                                      if nlast and row["qiling"]["last"] else "n/a")
        row["qemu_output_match"] = match(nlast, row["qemu"]["last"]) if nlast and row["qemu"]["last"] else "n/a"
        rows.append(row)

    result = {
        "benchmark": "foundation",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick, "reps": reps, "timeout_s": timeout, "corpus_bytes": corpus_bytes,
        "image": str(image), "rootfs": str(rootfs) if rootfs else None, "data_dir": str(data_dir),
        "host": {"platform": platform.platform(), "machine": platform.machine(),
                 "processor": platform.processor(), "cpus": os.cpu_count(),
                 "python": platform.python_version()},
        "versions": {"emu_unicorn": _emu_unicorn_version(), "qiling": qv.get("qiling"),
                     "qiling_unicorn": qv.get("unicorn"), "qiling_setup_error": ql_err,
                     "qemu": qemu_version(qemu), "qemu_setup_error": qemu_err},
        "target": "emu wall <= 1.2 x qiling wall",
        "workloads": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"results: {out}")
    return 0


def _emu_unicorn_version() -> str | None:
    try:
        import unicorn
        return unicorn.__version__
    except Exception:  # noqa: BLE001
        return None


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def f(x, fmt="{:.3f}"):
        return "-" if x is None else fmt.format(x)

    t = Table(title=f"emu foundation benchmark (corpus {result['corpus_bytes'] >> 20} MiB, "
                    f"median of {result['reps']})")
    for c in ("workload", "native s", "emu s", "qiling s", "QEMU s", "emu/native", "emu/qiling", "emu/QEMU",
              "guest instructions", "emu MIPS", "output match (emu / qiling / QEMU)"):
        t.add_column(c, justify="left" if c == "workload" else "right")
    notes = []
    for r in result["workloads"]:
        for k in ("native", "emu", "qiling", "qemu"):
            if r[k]["error"]:
                notes.append(f"{r['workload']} / {k}: {r[k]['error'][:160]}")
        t.add_row(r["workload"], f(r["native"]["median_s"]),
                  f(r["emu"]["median_s"]) if r["emu"]["median_s"] is not None else "ERR",
                  f(r["qiling"]["median_s"]) if r["qiling"]["median_s"] is not None else "ERR",
                  f(r["qemu"]["median_s"]) if r["qemu"]["median_s"] is not None else "ERR",
                  f(r["emu_over_native"], "{:.1f}x"), f(r["emu_over_qiling"], "{:.2f}x"), f(r["emu_over_qemu"], "{:.2f}x"),
                  f(r["guest_instructions"], "{:,}"), f(r["emu_mips"], "{:.1f}"),
                  f"{r['emu_output_match']} / {r['qiling_output_match']} / {r['qemu_output_match']}")
    c = Console(width=max(150, shutil.get_terminal_size((150, 24)).columns))
    c.print(t)
    v = result["versions"]
    c.print(f"unicorn (emu) {v['emu_unicorn']}, qiling {v['qiling']} "
            f"(unicorn {v['qiling_unicorn']}), {v['qemu'] or 'no QEMU'}; target: {result['target']}")
    for n in notes:
        c.print(f"[yellow]note[/]: {n}")


if __name__ == "__main__":
    sys.exit(main())
