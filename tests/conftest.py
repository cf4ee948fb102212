"""Shared fixtures: the default image, its data set, runs of emu on fresh copies of the image, and
native runs of the same host binaries on the same files for byte-for-byte comparison."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests with fixed examples, so that a landing never depends on luck;
# locally they explore new examples every run.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Every checkpoint in the tests (and in the emu processes they start) also describes the process
# group afresh and checks the description it reused (guestkernel/checkpoint/state.py).
os.environ.setdefault("EMU_CKPT_VERIFY", "1")

from vmm.machine import Machine, MachineConfig, RunResult
from vmm.errors import INTERNAL_ERROR_LOG
from hw.console import Console
from images.build import default_image, staged_dataset

TESTS = Path(__file__).parent

# Every internal error of emu, in this process or any it starts (CLI runs, campaign workers,
# restarts), is written here (vmm/errors.note_internal_error); a test during which one happened
# fails, whatever it asserted itself.
INTERNAL_LOG = Path(tempfile.mkdtemp(prefix="emu-internal-errors-")) / "log"
os.environ[INTERNAL_ERROR_LOG] = str(INTERNAL_LOG)


def internal_log_size() -> int:
    return INTERNAL_LOG.stat().st_size if INTERNAL_LOG.exists() else 0


def internal_errors_failure(offset: int) -> str | None:
    """Why a test fails when emu noted internal errors after `offset` of the log, or None."""
    try:
        with open(INTERNAL_LOG) as f:
            f.seek(offset)
            new = f.read()
    except FileNotFoundError:
        return None
    return f"emu had internal errors during this test (a bug, whatever the test asserted):\n{new}" if new else None


@pytest.fixture(autouse=True)
def no_internal_errors(request):
    before = internal_log_size()
    yield
    why = internal_errors_failure(before)
    if why and not request.node.get_closest_marker("internal_error_expected"):
        pytest.fail(why)


@dataclass
class EmuRun:
    result: RunResult
    stdout: bytes
    stderr: bytes
    image: Path


@pytest.fixture(scope="session")
def base_image() -> Path:
    return default_image()


@pytest.fixture(scope="session")
def dataset() -> Path:
    return staged_dataset()


def run_emu(image: Path, argv: list[str], config: MachineConfig | None = None) -> EmuRun:
    console = Console(out_fd=None, err_fd=None, capture=True)
    result = Machine(image, config, console=console).run(argv)
    return EmuRun(result, bytes(console.captured[1]), bytes(console.captured[2]), image)


def machine_on_copy(base_image: Path, where: Path, config: MachineConfig) -> tuple[Machine, Console, Path]:
    """A machine on a fresh copy of the image in the new directory `where`, its console
    captured; returns it, the console and the image."""
    where.mkdir(parents=True)
    image = where / "disk.img"
    shutil.copyfile(base_image, image)
    console = Console(out_fd=None, err_fd=None, capture=True)
    return Machine(image, config, console=console), console, image


def e2fsck_clean(image: Path) -> None:
    r = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert r.returncode == 0, f"e2fsck -fn {image} reports problems:\n{r.stdout}\n{r.stderr}"


@pytest.fixture
def emu(base_image: Path, tmp_path: Path):
    """emu(argv) runs argv on a fresh copy of the default image; every image used is checked with
    `e2fsck -fn` when the test ends."""
    images: list[Path] = []

    def run(argv: list[str], image: Path | None = None, config: MachineConfig | None = None) -> EmuRun:
        if image is None:
            image = tmp_path / f"disk{len(images)}.img"
            shutil.copyfile(base_image, image)
        if image not in images:
            images.append(image)
        return run_emu(image, argv, config)

    def fresh_image() -> Path:
        image = tmp_path / f"disk{len(images)}.img"
        shutil.copyfile(base_image, image)
        images.append(image)
        return image

    run.fresh_image = fresh_image  # type: ignore[attr-defined]
    yield run
    for image in images:
        e2fsck_clean(image)


def debugfs_ls(image: Path, guest_dir: str) -> list[tuple[str, int]]:
    """(name, mode) of a directory's entries in on-disk order, without . and .."""
    out = subprocess.run(["debugfs", "-R", f"ls -p {guest_dir}", str(image)], capture_output=True, text=True, check=True).stdout
    ents = []
    for line in out.splitlines():
        parts = line.split("/")
        if len(parts) >= 7 and parts[5] not in (".", ".."):
            ents.append((parts[5], int(parts[2], 8)))
    return ents


@pytest.fixture(scope="session")
def native_root(base_image: Path, dataset: Path) -> Path:
    """A host directory holding `data/` laid out so that readdir returns entries in the image's
    on-disk order (tmpfs lists newest first, so entries are created in reverse): recursive tools
    then walk the tree in the same order natively and in the guest."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="emu-native-", dir=base))

    def mirror(guest_dir: str, host_src: Path, host_dst: Path) -> None:
        host_dst.mkdir()
        for name, mode in reversed(debugfs_ls(base_image, guest_dir)):
            if (mode & 0o170000) == 0o040000:
                mirror(f"{guest_dir}/{name}", host_src / name, host_dst / name)
            else:
                shutil.copy2(host_src / name, host_dst / name)
        shutil.copystat(host_src, host_dst)

    mirror("/data", dataset, root / "data")
    (root / "tmp").mkdir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run_native(argv: list[str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/bin:/usr/bin", "LANG": "C", "LC_ALL": "C", "HOME": "/root", "TERM": "dumb"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, env=env, input=stdin)


@pytest.fixture(scope="session")
def guest_programs(tmp_path_factory) -> Path:
    """Test programs from tests/programs/*.c, built static with the host's gcc."""
    out = tmp_path_factory.mktemp("guestbin")
    for src in sorted((TESTS / "programs").glob("*.c")):
        exe = out / src.stem
        subprocess.run(["gcc", "-static", "-O1", "-o", str(exe), str(src)], check=True)
    return out


def put_file(image: Path, host_file: Path, guest_path: str, mode: int = 0o100755) -> None:
    """Write a host file into an image (debugfs), with the given mode."""
    cmds = f"write {host_file} {guest_path}\nsif {guest_path} mode 0{mode:o}\n"
    subprocess.run(["debugfs", "-w", "-f", "-", str(image)], input=cmds, capture_output=True, text=True, check=True)
