"""Crash campaigns over test programs (tests/programs/*.c): `emu crashtest` at level persist with
a checkpoint at every syscall, run in a child process; shared by the campaign tests."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import put_file

ROOT = Path(__file__).parents[2]


def campaign(d: Path, image: Path, *opts: str, argv: list[str] | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """A crash campaign at level persist, a checkpoint at every syscall (argv: the pool's run)."""
    argv = argv or ["/bin/pthreadpool", "/tmp/pool.out", "256"]
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--image", str(image), "--level", "persist",
           "--checkpoint", "tcp=0", "--jobs", "2", *opts, "--", *argv]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return p, json.loads((d / "crashtest.json").read_text())


def program_campaign(base_image: Path, tmp_path: Path, name: str, *args: str, points: int = 16) -> dict:
    """Build tests/programs/NAME.c, put it in a copy of the image and run a crash campaign over
    it at every syscall's checkpoint; every cut must resume identical. Returns the campaign."""
    exe = tmp_path / name
    subprocess.run(["gcc", "-static", "-O1", "-pthread", "-o", str(exe), str(ROOT / f"tests/programs/{name}.c")],
                   check=True)
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, exe, f"/bin/{name}")
    p, doc = campaign(tmp_path / "c", image, "--points", str(points), argv=[f"/bin/{name}", *args])
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert doc["summary"]["failed"] == 0 and len(doc["points"]) == points
    assert all(q["outcome"] == "identical" for q in doc["points"])
    return doc
