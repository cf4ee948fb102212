"""The patched libunicorn (hw/native/ucpatch.py) counts instructions in the translated code; the
stock wheel with emu's block hook is the fallback. Both must give the same counts, cuts and
statistics: each run here is a separate process (the library is chosen before unicorn loads)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hw.native import ucpatch

ROOT = Path(__file__).resolve().parents[2]
BUILT = (ucpatch.build_dir() / ucpatch.LIBRARY).is_file()
needs_build = pytest.mark.skipif(not BUILT, reason="the patched libunicorn is not built (scripts/setup.sh)")


def emu_run(tmp: Path, mode: str, name: str, args: list[str]) -> tuple[dict, dict, bytes]:
    env = dict(os.environ, EMU_UNICORN=mode, PYTHONPATH=str(ROOT))  # this tree's emu, wherever it runs
    env.pop("LIBUNICORN_PATH", None)
    summary, stats = tmp / f"{name}-{mode}.summary.json", tmp / f"{name}-{mode}.stats.json"
    code = "import sys; from emu.cli import main; sys.exit(main())"
    p = subprocess.run([sys.executable, "-c", code, "run", "--state", str(tmp / f"{name}-{mode}.state"), "--summary-json",
                        str(summary), "--stats-json", str(stats), *args], cwd=tmp, env=env, capture_output=True, timeout=600)
    assert p.returncode in (0, 75), p.stderr.decode(errors="replace")[-3000:]  # 75: the power cut
    return json.loads(summary.read_text()), json.loads(stats.read_text()), p.stdout


def which(mode: str) -> tuple[str, bool]:
    env = dict(os.environ, EMU_UNICORN=mode, PYTHONPATH=str(ROOT))  # this tree's emu, wherever it runs
    env.pop("LIBUNICORN_PATH", None)
    code = "import hw.cpu, unicorn.unicorn_py3.unicorn as u; print(u.uclib._name)"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip(), str(ucpatch.build_dir()) in p.stdout


@needs_build
def test_the_patched_library_loads_unless_stock_is_asked():
    assert which("patched")[1]
    assert not which("stock")[1]


@pytest.mark.parametrize("name,args", [
    # two processes: scheduler deadlines cut blocks all along
    ("tar-czf", ["--", "/bin/tar", "czf", "/tmp/t.tgz", "-C", "/data", "tree"]),
    # an exact cut inside a block, reached by single steps
    ("cut", ["--power-fail-at", "12345679", "--", "/bin/gzip", "-9", "-c", "/data/corpus.txt"]),
    # the cache model's power cut at a persistence event (exit tests after accesses kept)
    ("persist-event", ["--level", "persist", "--power-fail-at-event", "100", "--", "/bin/pmemlog", "append", "2000"]),
    ("full", ["--level", "full", "--", "/bin/grep", "-c", "-i", "memory", "/data/corpus.txt"]),
])
@needs_build
def test_counts_cuts_and_statistics_are_the_same_as_the_block_hooks(tmp_path, name, args):
    stock = emu_run(tmp_path, "stock", name, args)
    patched = emu_run(tmp_path, "patched", name, args)
    host = ("wall_s", "mips")
    assert {k: v for k, v in stock[0].items() if k not in host} == {k: v for k, v in patched[0].items() if k not in host}
    assert stock[1] == patched[1]
    assert stock[2] == patched[2]


def test_select_keeps_an_explicit_library_and_the_stock_wheel(monkeypatch):
    monkeypatch.setenv("LIBUNICORN_PATH", "/somewhere")
    assert ucpatch.select() == "/somewhere"
    monkeypatch.setenv("EMU_UNICORN", "stock")
    assert ucpatch.select() is None
