"""Real stress tools in the guest (the stress image: stress-ng and fio from the host, installed by
scripts/setup.sh): each stressor runs to its bounded op count with exit status 0 and no failure
lines, fio's verified jobs find no mismatch, and the image is e2fsck-clean afterwards (the `emu`
fixture checks every image it used). Plus the semantics the tools rely on (locks, shared memory,
threads with futexes, timerfd and select), compared with the native run of the same static
program."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from images.build import default_image
from tests.conftest import put_file

pytestmark = pytest.mark.skipif(not (shutil.which("stress-ng") and shutil.which("fio")),
                                reason="stress-ng and fio are not installed (scripts/setup.sh installs them)")


@pytest.fixture(scope="session")
def stress_image() -> Path:
    return default_image(recipe="stress")


@pytest.fixture
def stress_copy(stress_image: Path, tmp_path: Path):
    """A fresh copy of the stress image for each call (the emu fixture checks it with e2fsck)."""
    n = iter(range(100))

    def copy() -> Path:
        image = tmp_path / f"stress{next(n)}.img"
        shutil.copyfile(stress_image, image)
        return image

    return copy


def run_stress_ng(emu, image: Path, stressors: dict[str, int], options: dict[str, str] | None = None):
    """One worker of each stressor, bounded to its op count; `options` are per-stressor settings
    (e.g. {"fallocate-bytes": "1m"}), given right after their stressor (stress-ng 0.15 reads
    them there: at the end of the line the default 1 GiB file was used)."""
    args = []
    for name, ops in stressors.items():
        args += [f"--{name}", "1", f"--{name}-ops", str(ops)]
        for opt, value in (options or {}).items():
            if opt.startswith(name + "-"):
                args += [f"--{opt}", value]
    cmd = "cd /tmp && stress-ng " + " ".join(args) + " --metrics-brief"
    run = emu(["/bin/sh", "-c", cmd], image)
    out = run.stdout.decode() + run.stderr.decode()
    assert run.result.exit_code == 0, out
    assert re.search(r"stress-ng: info: +\[\d+\] successful run completed", out), out
    bad = [ln for ln in out.splitlines() if re.match(r"stress-ng: (fail|error|warn)", ln)]
    assert bad == [], out
    for name, ops in stressors.items():
        m = re.search(rf"stress-ng: metrc: +\[\d+\] {name} +(\d+) ", out)
        assert m is not None and int(m.group(1)) == ops, (name, out)
    return out


def test_fs_stressors(emu, stress_copy):
    run_stress_ng(emu, stress_copy(), {"rename": 50, "dir": 20, "dentry": 20, "hdd": 20, "fallocate": 10,
                                       "seek": 20, "lockf": 50, "flock": 50}, {"fallocate-bytes": "1m"})


def test_link_stressors(emu, stress_copy):
    # One bogo op of these is a pass over 8192 links in one directory (~15 s of CPU for both).
    run_stress_ng(emu, stress_copy(), {"link": 1, "symlink": 1})


FIO_VERIFY = ["--ioengine=sync", "--verify=crc32c", "--do_verify=1", "--bs=4k"]


@pytest.mark.parametrize("rw", ["randwrite", pytest.param("write", marks=pytest.mark.slow)])
def test_fio_verify(emu, stress_copy, rw):
    # About 20 s of CPU each: fio calibrates its clock with ~550,000 clock_gettime calls (the
    # guest has no vDSO), whatever the job's size.
    run = emu(["/bin/fio", f"--name={rw}", "--filename=/tmp/f", "--size=1m", f"--rw={rw}", *FIO_VERIFY],
              stress_copy())
    out, err = run.stdout.decode(), run.stderr.decode()
    assert run.result.exit_code == 0, out + err
    assert re.search(rf"{rw}: \(groupid=0, jobs=1\): err= 0:", out), out
    # 256 blocks written, then 256 read back and verified
    assert "issued rwts: total=256,256,0,0 short=0,0,0,0 dropped=0,0,0,0" in out, out
    assert err == ""
    assert [ln for ln in out.splitlines() if "fio:" in ln or "verify" in ln or "error" in ln.lower()] == [], out


@pytest.fixture(scope="module")
def static_program(tmp_path_factory):
    out = tmp_path_factory.mktemp("stressprogs")

    def build(name: str) -> Path:
        exe = out / name
        if not exe.exists():
            subprocess.run(["gcc", "-static", "-O1", "-pthread", "-o", str(exe),
                            str(Path(__file__).parents[1] / "programs" / f"{name}.c")], check=True)
        return exe

    return build


@pytest.mark.parametrize("program", ["locks", "shm", "threads", "futexops", "eventpoll", "sigfd", "inet",
                                     "altstack", "pthreadpool", "threadcwd", "siginfo", "groupsig", "eventfds",
                                     "fdwatch", "sleeps", "bigwrites"])
def test_semantics_match_native(emu, stress_copy, static_program, tmp_path, program):
    exe = static_program(program)
    native = subprocess.run([str(exe), str(tmp_path / "native.dat")], capture_output=True, check=True, timeout=60)
    image = stress_copy()
    put_file(image, exe, f"/bin/{program}")
    run = emu([f"/bin/{program}", "/tmp/emu.dat"], image)
    assert run.result.exit_code == 0
    assert run.stdout.decode() == native.stdout.decode()


def test_sysfs_cpu(emu, stress_copy):
    run = emu(["/bin/sh", "-c", "cat /sys/devices/system/cpu/online /sys/devices/system/cpu/possible "
               "/sys/devices/system/cpu/present; ls /sys/devices/system/cpu; "
               "echo 1 > /sys/devices/system/cpu/online || echo refused; mkdir /sys/x || echo refused"], stress_copy())
    assert run.stdout.decode() == "0\n0\n0\ncpu0\nkernel_max\noffline\nonline\npossible\npresent\nrefused\nrefused\n"
    assert run.stderr.decode() == ("/bin/sh: 1: cannot create /sys/devices/system/cpu/online: Permission denied\n"
                                   "mkdir: cannot create directory '/sys/x': Operation not permitted\n")


FALLOCATE_EXT2 = """\
mode 0: -1 EOPNOTSUPP
keep size: -1 EOPNOTSUPP
punch hole: -1 EOPNOTSUPP
punch without keep size: -1 EOPNOTSUPP
collapse with keep size: -1 EINVAL
unknown mode bit: -1 EOPNOTSUPP
zero length: -1 EINVAL
negative offset: -1 EINVAL
read-only fd: -1 EBADF
pipe: -1 ESPIPE
/dev/null: -1 ENODEV
bad fd: -1 EBADF
posix_fallocate: 0 size=100000
"""


def test_fallocate_is_linux_ext2s(emu, stress_copy, static_program):
    """Linux 6.1's fs/ext2 driver (what uname says the guest runs): vfs_fallocate's checks, then
    EOPNOTSUPP. Not compared with a native run: hosts mount ext2 with the ext4 driver, which
    punches holes, and newer kernels order the mode checks differently."""
    image = stress_copy()
    put_file(image, static_program("fallocate"), "/bin/fallocate")
    run = emu(["/bin/fallocate", "/tmp/f"], image)
    assert run.result.exit_code == 0
    assert run.stdout.decode() == FALLOCATE_EXT2


def test_unix_sockets_match_native(emu, stress_copy, static_program, tmp_path):
    """AF_UNIX: socketpair, bind/listen/connect/accept on a path, SCM_RIGHTS, epoll, abstract
    names, shutdown and the errors, as on Linux."""
    exe = static_program("unixsock")
    (tmp_path / "n").mkdir()
    native = subprocess.run([str(exe), str(tmp_path / "n")], capture_output=True, check=True, timeout=60)
    image = stress_copy()
    put_file(image, exe, "/bin/unixsock")
    run = emu(["/bin/unixsock", "/tmp"], image)
    assert run.result.exit_code == 0, run.stderr
    assert run.stdout.decode() == native.stdout.decode()
