"""Multithreaded real programs: xz and pigz with four worker threads on a machine that shows four
CPUs compress the corpus byte for byte as natively, and two runs retire the same instructions
(the threads interleave deterministically on the one host thread)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from images.build import default_image, read_file
from tests.conftest import run_emu
from vmm.config import apply_overrides, default_machine

XZ = ["-T4", "-1", "--block-size=256KiB", "-c"]
PIGZ = ["-n", "-p", "4", "-c"]  # -n: no name or time in the header (the host's file has others)


@pytest.fixture(scope="module")
def hybrid_image():
    return default_image(recipe="hybrid")  # the base image plus xz, bzip2 and stress


@pytest.mark.parametrize("tool,opts", [("xz", XZ), ("pigz", PIGZ)])
def test_compressor_with_four_threads_matches_native_and_is_deterministic(hybrid_image, tmp_path, tool, opts):
    corpus = read_file(hybrid_image, "/data/corpus.txt")
    (tmp_path / "corpus.txt").write_bytes(corpus)
    native = subprocess.run([tool, *opts, str(tmp_path / "corpus.txt")], capture_output=True, check=True).stdout
    cfg = apply_overrides(default_machine(), ["cpus=4"])
    counts = []
    for i in range(2):
        image = tmp_path / f"disk{i}.img"
        shutil.copyfile(hybrid_image, image)
        run = run_emu(image, [f"/bin/{tool}", *opts, "/data/corpus.txt"], cfg)
        assert run.result.exit_code == 0, run.stderr
        assert run.stdout == native
        assert run.result.syscalls.get("clone3", 0) >= 4  # the worker threads (glibc calls clone3 first)
        counts.append(run.result.instructions)
    assert counts[0] == counts[1]


def test_a_pthread_pool_is_deterministic(base_image, guest_programs, tmp_path):
    """Four workers, a mutex, condition variables and a barrier (tests/programs/pthreadpool.c,
    compared with a native run in test_stress_tools.py): two runs interleave the threads the
    same way, to the instruction."""
    from tests.conftest import put_file

    counts = set()
    for i in range(2):
        image = tmp_path / f"d{i}.img"
        shutil.copyfile(base_image, image)
        put_file(image, guest_programs / "pthreadpool", "/bin/pthreadpool")
        run = run_emu(image, ["/bin/pthreadpool", "/tmp/pool.out", "128"], apply_overrides(default_machine(), ["cpus=4"]))
        assert run.result.exit_code == 0 and run.stdout.startswith(b"tasks 128 total ")
        counts.add((run.result.instructions, run.stdout, read_file(image, "/tmp/pool.out")))
    assert len(counts) == 1
