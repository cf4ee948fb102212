"""Software rejuvenation (issue 13, must-hold 5): a checkpointed process group handed to a newly
constructed kernel instance, in the same emu process (Machine.rejuvenate, `emu run
--rejuvenate-at N`) or across emu processes (`--rejuvenate-stop` + `emu restart --fresh-kernel
DIR`), finishes with exactly the output, file tree and clean e2fsck of an uninterrupted run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emu import crashtest as ct
from emu.workloads import workload
from guestkernel.kernel import Kernel
from hw.console import Console
from vmm.config import apply_overrides, default_machine
from vmm.machine import Machine, kernel_config

ROOT = Path(__file__).parents[2]
EMU = [sys.executable, "-m", "emu.cli"]
# tar czf of the data tree (the tar-czf workload), then the archive's contents checked in the guest
TAR = workload("tar-czf")
ARGV = ["/bin/sh", "-c", " ".join(TAR) + " && gzip -dc " + TAR[2] + " | md5sum && ls -l " + TAR[2]]
MARKER = "rejuvenation: MarkedKernel instance resumed the group"


class MarkedKernel(Kernel):
    """The default kernel, as another class: it says in the kernel log that it took over."""

    name = "marked"

    def restart_from_state(self, machine, argv, envp=None, start_over=False):  # type: ignore[no-untyped-def]
        how = super().restart_from_state(machine, argv, envp, start_over)
        self.log.append(f"{MARKER} ({how})")
        return how


class DeferringKernel(Kernel):
    """Never takes the handover's image at the pause: the checkpointer takes it at the next syscall
    entry (the path for a process inside a syscall or a vfork in progress)."""

    def checkpoint_now(self) -> bool:
        if not self.handover_ready:
            self.checkpointer.force_next = True  # type: ignore[union-attr]
        return self.handover_ready


def _config(level: str = "persist"):  # type: ignore[no-untyped-def]
    return apply_overrides(default_machine(), [f"model_level={level}", "checkpoint.enabled=true", "checkpoint.tcp=0"])


def _machine(d: Path, base_image: Path, kernel: object = None) -> Machine:
    d.mkdir(parents=True)
    shutil.copyfile(base_image, d / "disk.img")
    return Machine(d / "disk.img", _config(), kernel=kernel, console=Console(None, None, capture=True), media_dir=d)


def _out(m: Machine) -> tuple[bytes, bytes]:
    return bytes(m.console.captured[1]), bytes(m.console.captured[2])


@pytest.fixture(scope="module")
def reference(base_image: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("ref") / "s"
    m = _machine(d, base_image)
    r = m.run(ARGV)
    assert r.exit_code == 0 and r.rejuvenations == 0
    out, err = _out(m)
    assert out.count(b"\n") == 2 and err == b""
    return r, out, d


def _same_as_reference(reference, d: Path, out: bytes, err: bytes = b"") -> None:  # type: ignore[no-untyped-def]
    _r, ref_out, ref_dir = reference
    assert out == ref_out and err == b""
    assert ct.diff_trees(ct.image_tree(ref_dir / "disk.img"), ct.image_tree(d / "disk.img")) == []
    assert ct.fsck(d / "disk.img") is None


def test_tar_czf_handed_to_new_kernels_at_three_points_is_the_uninterrupted_run(reference, base_image: Path,
                                                                              tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref = reference[0]
    points = [ref.instructions * f // 100 for f in (20, 55, 85)]
    m = _machine(tmp_path / "s", base_image)
    assert m.boot(ARGV) is None
    kernels = [m.kernel]
    for n in points:
        assert m.resume_run(until=n) is None
        assert m.rejuvenate() is None
        assert m.restart_how == "resumed" and m.handovers[-1]["instructions"] <= n
        assert m.kernel is not kernels[-1] and type(m.kernel) is Kernel
        kernels.append(m.kernel)
    r = m.resume_run()
    assert r is not None and r.exit_code == 0 and r.rejuvenations == 3
    assert [h["image"] for h in m.handovers] == sorted(h["image"] for h in m.handovers)
    assert m.stats()["stats"]["kernel.rejuvenations"]["value"] == 3
    # Each handover re-executes the parked syscalls of the processes off the CPU: a few more instructions.
    assert 0 <= r.instructions - ref.instructions < 100
    assert sum(r.syscalls.values()) >= sum(ref.syscalls.values())
    _same_as_reference(reference, tmp_path / "s", *_out(m))


def test_an_image_taken_at_the_next_syscall_entry_hands_over_as_well(reference, base_image: Path,
                                                                    tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    n = reference[0].instructions // 2
    m = _machine(tmp_path / "s", base_image, kernel=DeferringKernel(kernel_config(_config())))
    assert m.boot(ARGV) is None
    assert m.resume_run(until=n) is None
    assert m.rejuvenate(f"{__name__}:MarkedKernel") is None
    assert type(m.kernel) is MarkedKernel and m.handovers[-1]["instructions"] > n
    assert any(line.startswith(MARKER) for line in m.kernel.log)
    r = m.resume_run()
    assert r is not None and r.exit_code == 0 and r.rejuvenations == 1
    _same_as_reference(reference, tmp_path / "s", *_out(m))


def _emu(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([*EMU, *args], capture_output=True, cwd=ROOT, env=env, timeout=300, check=False)


def test_emu_run_rejuvenate_at_with_a_new_kernel_class(reference, base_image: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref = reference[0]
    state = tmp_path / "s"
    at = [str(ref.instructions * f // 100) for f in (30, 70)]
    p = _emu("run", "--image", str(base_image), "--state", str(state), "--level", "persist", "--checkpoint", "tcp=0",
             "--rejuvenate-at", at[0], "--rejuvenate-at", at[1], "--fresh-kernel", f"{__name__}:MarkedKernel",
             "--log", str(tmp_path / "log"), "--summary-json", str(tmp_path / "sum.json"), "--", *ARGV)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stderr.count(f"under a new {__name__}:MarkedKernel instance".encode()) == 2
    log = (tmp_path / "log").read_text().splitlines()
    assert sum(line.startswith(MARKER) for line in log) == 2  # both new instances were the new class
    assert json.loads((tmp_path / "sum.json").read_text())["rejuvenations"] == 2
    assert json.loads((state / "stats.json").read_text())["stats"]["kernel.rejuvenations"]["value"] == 2
    _same_as_reference(reference, state, p.stdout)


def test_rejuvenate_stop_then_restart_with_a_fresh_kernel(reference, base_image: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "s"
    n = str(reference[0].instructions * 6 // 10)
    stop = _emu("run", "--image", str(base_image), "--state", str(state), "--level", "persist", "--checkpoint", "tcp=0",
                "--rejuvenate-at", n, "--rejuvenate-stop", "--", *ARGV)
    assert stop.returncode == 0, stop.stderr[-2000:]
    assert b"run stopped" in stop.stderr and f"emu restart --fresh-kernel {state}".encode() in stop.stderr
    rs = _emu("restart", "--fresh-kernel", f"{__name__}:MarkedKernel", "--log", str(tmp_path / "log"), str(state))
    assert rs.returncode == 0, rs.stderr[-2000:]
    assert b"restart: resumed from checkpoint image" in rs.stderr
    assert f"under a fresh {__name__}:MarkedKernel instance".encode() in rs.stderr
    assert any(line.startswith(MARKER) for line in (tmp_path / "log").read_text().splitlines())
    _same_as_reference(reference, state, stop.stdout + rs.stdout)


def test_rejuvenate_stop_then_restart_fresh_kernel_of_the_default_class(reference, base_image: Path,
                                                                        tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "s"
    stop = _emu("run", "--image", str(base_image), "--state", str(state), "--checkpoint", "tcp=0",
                "--rejuvenate-at", str(reference[0].instructions // 3), "--rejuvenate-stop", "--", *ARGV)
    assert stop.returncode == 0, stop.stderr[-2000:]
    rs = _emu("restart", "--fresh-kernel", str(state))  # the option without a class, then DIR
    assert rs.returncode == 0, rs.stderr[-2000:]
    assert b"under a fresh guestkernel.kernel:Kernel instance" in rs.stderr
    _same_as_reference(reference, state, stop.stdout + rs.stdout)


@pytest.mark.parametrize("args, message", [
    (["run", "--rejuvenate-at", "1000", "--", "/bin/true"], b"--rejuvenate-at needs checkpointing"),
    (["run", "--checkpoint", "off", "--rejuvenate-at", "1000", "--", "/bin/true"], b"--rejuvenate-at needs checkpointing"),
    (["run", "--checkpoint", "tcp=0", "--rejuvenate-at", "1000", "--fresh-kernel", "nosuchmodule:K", "--", "/bin/true"],
     b"cannot load kernel 'nosuchmodule:K'"),
    (["run", "--checkpoint", "tcp=0", "--rejuvenate-at", "1000", "--fresh-kernel", "guestkernel.kernel", "--", "/bin/true"],
     b"--fresh-kernel wants MODULE:CLASS"),
    (["run", "--checkpoint", "tcp=0", "--rejuvenate-at", "1000", "--fresh-kernel", "guestkernel.kernel:NoSuch", "--",
      "/bin/true"], b"cannot load kernel"),
    (["run", "--checkpoint", "tcp=0", "--fresh-kernel", "guestkernel.kernel:Kernel", "--", "/bin/true"],
     b"go with --rejuvenate-at"),
    (["run", "--checkpoint", "tcp=0", "--rejuvenate-at", "1000", "--rejuvenate-stop", "--", "/bin/true"],
     b"--rejuvenate-stop needs --state DIR"),
    (["restart", "--fresh-kernel", "nosuchmodule:K", "/nonexistent"], b"cannot load kernel"),
    (["restart", "--fresh-kernel"], b"emu restart needs the state directory"),
])
def test_mistakes_are_one_line_and_a_non_zero_exit(args: list[str], message: bytes) -> None:
    p = _emu(*args)
    assert p.returncode == 1 and p.stderr.count(b"\n") == 1, p.stderr
    assert message in p.stderr and b"Traceback" not in p.stderr


def test_help_describes_the_options() -> None:
    run = _emu("run", "--help").stdout
    assert b"--rejuvenate-at" in run and b"--fresh-kernel" in run and b"--rejuvenate-stop" in run
    restart = _emu("restart", "--help").stdout
    assert b"--fresh-kernel" in restart
