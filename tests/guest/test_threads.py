"""Multithreaded real programs: xz with four worker threads on a machine that shows four CPUs
compresses the corpus byte for byte as natively, and two runs retire the same instructions (the
threads interleave deterministically on the one host thread)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from images.build import default_image, read_file
from tests.conftest import run_emu
from vmm.config import apply_overrides, default_machine

XZ = ["-T4", "-1", "--block-size=256KiB", "-c"]


@pytest.fixture(scope="module")
def hybrid_image():
    return default_image(recipe="hybrid")  # the base image plus xz, bzip2 and stress


def test_xz_with_four_threads_matches_native_and_is_deterministic(hybrid_image, tmp_path):
    corpus = read_file(hybrid_image, "/data/corpus.txt")
    (tmp_path / "corpus.txt").write_bytes(corpus)
    native = subprocess.run(["xz", *XZ, str(tmp_path / "corpus.txt")], capture_output=True, check=True).stdout
    cfg = apply_overrides(default_machine(), ["cpus=4"])
    counts = []
    for i in range(2):
        image = tmp_path / f"disk{i}.img"
        shutil.copyfile(hybrid_image, image)
        run = run_emu(image, ["/bin/xz", *XZ, "/data/corpus.txt"], cfg)
        assert run.result.exit_code == 0, run.stderr
        assert run.stdout == native
        assert run.result.syscalls.get("clone", 0) >= 4  # the worker threads
        counts.append(run.result.instructions)
    assert counts[0] == counts[1]
