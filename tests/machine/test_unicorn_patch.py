"""The patched libunicorn (hw/native/ucpatch.py) counts instructions in the translated code (and
flushes single TLB pages, fills without a PC sync); the stock wheel with emu's block hook is the
fallback. Both must give the same counts, cuts and
statistics: each run here is a separate process (the library is chosen before unicorn loads)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hw.native import ucpatch
from tests.conftest import put_file
from vmm.machine import HOST_FIELDS

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
    # checkpoints at every syscall: the pages made clean lose their TLB entries one by one
    # (tlb.patch) instead of the whole TLB; every later store must still set D (same pages copied)
    ("ckpt", ["--level", "persist", "--checkpoint", "tcp=0", "--power-fail-at-event", "40000", "--",
              "/bin/tar", "cf", "/tmp/t.tar", "-C", "/data", "tree"]),
])
@needs_build
def test_counts_cuts_and_statistics_are_the_same_as_the_block_hooks(tmp_path, name, args):
    stock = emu_run(tmp_path, "stock", name, args)
    patched = emu_run(tmp_path, "patched", name, args)
    assert {k: v for k, v in stock[0].items() if k not in HOST_FIELDS} == {k: v for k, v in patched[0].items() if k not in HOST_FIELDS}
    assert stock[1] == patched[1]
    assert stock[2] == patched[2]


def full_run(tmp: Path, base_image: Path, image: Path, name: str, **cut: int) -> tuple:
    """Level full in this process: what the cache model saw, the power report and pmem0's media."""
    from hw.console import Console
    from vmm.config import default_machine, derive
    from vmm.machine import Machine
    from vmm.media import DeviceMedia

    state = tmp / name
    state.mkdir()
    shutil.copyfile(image, state / "disk.img")
    console = Console(None, None, capture=True)
    m = Machine(state / "disk.img", derive(default_machine(), model_level="full"), console=console, media_dir=state,
                **cut)
    r = m.run(["/bin/pmem_fill"])
    cache = (m.cache.counters(), {ch: m.cache.channel(ch) for ch in m.cache.channels()})
    media = hashlib.sha256(bytes(DeviceMedia(m.media_dir, "pmem0", m.config).read())).hexdigest()
    return (r.exit_code, r.instructions, r.power_failed, r.power_report, bytes(console.captured[1]), cache, media)


@needs_build
def test_the_direct_memory_callback_sees_what_the_hook_list_sees(base_image, guest_programs, tmp_path, monkeypatch):
    """Level full through the patched library's direct callback (memcb.patch) and through Unicorn's
    hook list (EMU_UNICORN=memhook), in one process: the same statistics, and the same power cuts
    at persistence events that happen inside guest stores (dirty SCM lines evicted)."""
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "pmem_fill", "/bin/pmem_fill")
    runs = {}
    for mode in ("memhook", "patched"):
        monkeypatch.setenv("EMU_UNICORN", mode)
        runs[mode] = full_run(tmp_path, base_image, image, mode)
    assert runs["memhook"] == runs["patched"]
    code, _, failed, _, out, (counters, _), _ = runs["patched"]
    assert (code, failed, out) == (0, False, b"filled\n") and counters["dirty_evictions"] > 1000
    for k in (1, 777, counters["dirty_evictions"] // 2):
        cut = {}
        for mode in ("memhook", "patched"):
            monkeypatch.setenv("EMU_UNICORN", mode)
            cut[mode] = full_run(tmp_path, base_image, image, f"{mode}-{k}", power_fail_at_event=k)
        assert cut["memhook"] == cut["patched"]
        assert cut["patched"][2] and cut["patched"][3]["fail_at_event"] == k


def test_select_keeps_an_explicit_library_and_the_stock_wheel(monkeypatch):
    monkeypatch.setenv("LIBUNICORN_PATH", "/somewhere")
    assert ucpatch.select() == "/somewhere"
    monkeypatch.setenv("EMU_UNICORN", "stock")
    assert ucpatch.select() is None
