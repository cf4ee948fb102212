"""Bad input gets a clear answer: one-line CLI errors for user mistakes, Linux errnos and signals
for the guest, and the guest never reaches the host."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import put_file

ROOT = Path(__file__).parents[2]


def emu_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emu.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def assert_one_line_error(r: subprocess.CompletedProcess) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("emu:")


def test_missing_image(tmp_path):
    r = emu_cli("run", "--image", str(tmp_path / "nope.img"), "--", "/bin/true")
    assert_one_line_error(r)
    assert "does not exist" in r.stderr


def test_corrupt_image(tmp_path):
    bad = tmp_path / "bad.img"
    bad.write_bytes(os.urandom(1 << 20))
    r = emu_cli("run", "--image", str(bad), "--", "/bin/true")
    assert_one_line_error(r)
    assert "ext2" in r.stderr


def test_truncated_image(tmp_path, base_image):
    bad = tmp_path / "short.img"
    bad.write_bytes(base_image.read_bytes()[:1500])
    r = emu_cli("run", "--image", str(bad), "--", "/bin/true")
    assert_one_line_error(r)


@pytest.mark.parametrize("args", [["run"], ["run", "--set", "cache.size=12k", "--", "/bin/true"], ["run", "--machine", "/nonexistent.toml", "--", "/bin/true"], ["frobnicate"], ["run", "--kernel", "nosuch:Kernel", "--", "/bin/true"]])
def test_bad_cli_arguments(args):
    r = emu_cli(*args)
    assert_one_line_error(r)


def test_missing_program_exits_127(emu):
    run = emu(["/bin/no-such-program"])
    assert run.result.exit_code == 127
    assert b"not found" in run.stderr
    run = emu(["no-such-program"])
    assert run.result.exit_code == 127


def test_missing_program_from_the_shell(emu):
    run = emu(["/bin/sh", "-c", "no-such-program; echo $?"])
    assert run.stdout == b"127\n"


def test_malformed_elf_is_enoexec(emu, guest_programs, tmp_path):
    image = emu.fresh_image()
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\x3e\x00" + os.urandom(200))
    put_file(image, bad, "/bin/bad")
    put_file(image, guest_programs / "probe", "/bin/probe")
    run = emu(["/bin/probe", "exec", "/bin/bad"], image=image)
    assert run.stdout == f"execve={-errno.ENOEXEC}\n".encode()
    run = emu(["/bin/bad"], image=image)
    assert run.result.exit_code == 126
    assert b"Exec format error" in run.stderr


def test_wild_pointers_get_efault(emu, guest_programs):
    image = emu.fresh_image()
    put_file(image, guest_programs / "probe", "/bin/probe")
    run = emu(["/bin/probe", "efault"], image=image)
    lines = dict(line.split("=") for line in run.stdout.decode().splitlines())
    for key in ("read_wild", "write_wild", "open_wild", "stat_wild", "pipe_wild", "getcwd_wild", "kernel_addr"):
        assert lines[key] == str(-errno.EFAULT), key


def test_guest_cannot_escape_its_root(emu, guest_programs):
    image = emu.fresh_image()
    put_file(image, guest_programs / "probe", "/bin/probe")
    run = emu(["/bin/probe", "escape"], image=image)
    out = dict(line.split("=", 1) for line in run.stdout.decode().splitlines())
    # /../../etc/hostname is the image's own /etc/hostname
    guest_hostname = subprocess.run(["debugfs", "-R", "cat /etc/hostname", str(image)], capture_output=True).stdout.decode()
    assert out["dotdot_open"] == "0"
    assert out["dotdot_content"] == guest_hostname.rstrip("\n")
    assert out["open_symlink"] == str(-errno.ENOENT)       # no /root/.bashrc in the image
    assert out["open_rel_symlink"] == str(-errno.ENOENT)   # no /usr/bin/python3 in the image
    assert out["cwd"] == "/"
    assert out["open_loop"] == str(-errno.ELOOP)


def test_unknown_syscalls_are_enosys_and_reported_once(emu, guest_programs):
    image = emu.fresh_image()
    put_file(image, guest_programs / "probe", "/bin/probe")
    run = emu(["/bin/probe", "enosys"], image=image)
    assert run.stdout == f"unknown={-errno.ENOSYS}\nrseq={-errno.ENOSYS}\n".encode()
    assert len([line for line in run.result.log if "syscall_400" in line]) == 1


def test_segfault_kills_with_the_linux_wait_status(emu, guest_programs):
    image = emu.fresh_image()
    put_file(image, guest_programs / "probe", "/bin/probe")
    run = emu(["/bin/sh", "-c", "/bin/probe segv; echo $?; /bin/probe sigpipe; echo $?"], image=image)
    assert run.stdout == b"139\n141\n"  # 128 + SIGSEGV, 128 + SIGPIPE, as dash reports them
    run = emu(["/bin/probe", "spawn", "/bin/no-such"], image=image)
    assert run.stdout == f"status={(100 + errno.ENOENT) << 8}\n".encode()


@pytest.mark.parametrize("spec,says", [("tests.custom_kernel:FailingKernel", "failed to start: RuntimeError: no memory map"),
                                       ("tests.custom_kernel:NotAKernel", "does not implement the kernel interface")])
def test_a_broken_kernel_plugin_is_a_one_line_error(spec, says):
    r = emu_cli("run", "--kernel", spec, "--", "/bin/true")
    assert_one_line_error(r)
    assert says in r.stderr and "internal error" not in r.stderr


def test_kernel_is_pluggable_from_the_cli():
    r = emu_cli("run", "--kernel", "tests.custom_kernel:RenamedKernel", "--", "/bin/uname", "-n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "custom-kernel\n"
    r = emu_cli("run", "--", "/bin/uname", "-n")
    assert r.stdout == "emu\n"


def test_blocking_pipe_write_writes_everything(emu, guest_programs):
    """A 300 KB write to a pipe (capacity 64 KiB) blocks until the reader took it all."""
    image = emu.fresh_image()
    put_file(image, guest_programs / "pipewrite", "/bin/pipewrite")
    run = emu(["/bin/pipewrite"], image=image)
    assert sorted(run.stdout.decode().splitlines()) == ["child read 300000", "parent wrote 300000"]


@pytest.mark.internal_error_expected
def test_an_internal_error_is_one_line_and_fails_the_test_it_happens_in(capsys):
    """A bug in emu (here a ZeroDivisionError in a command) is one line and exit status 70, and it
    is noted where tests/conftest.py looks after every test: a test during which that happens
    fails (this one is marked to allow it), also when the bug is in a campaign's worker."""
    from emu.guard import guarded, note_if_bug
    from guestkernel.interface import KernelPanic
    from tests.conftest import internal_errors_failure, internal_log_size
    from vmm.errors import EXIT_INTERNAL, EmuError

    before = internal_log_size()
    assert guarded(lambda: 1 // 0) == EXIT_INTERNAL
    assert capsys.readouterr().err.startswith("emu: internal error: ZeroDivisionError: integer division or modulo by zero")
    note_if_bug("campaign point", EmuError("a user's mistake"))
    note_if_bug("campaign point", KernelPanic("every process is blocked"))
    why = internal_errors_failure(before)
    assert why is not None and why.count("\n") == 2 and "ZeroDivisionError" in why
    note_if_bug("crashtest point 3: restart", KeyError("dir"))
    assert internal_errors_failure(before).endswith("crashtest point 3: restart: KeyError: 'dir'\n")


def test_a_full_host_disk_is_an_error_not_a_bug(capsys):  # type: ignore[no-untyped-def]
    import errno

    from emu.guard import guarded
    from tests.conftest import internal_errors_failure, internal_log_size
    from vmm.errors import EXIT_ERROR

    def full() -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/snap/memory.bin")

    before = internal_log_size()
    assert guarded(full) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err == "emu: error: the host file system is full writing /snap/memory.bin: No space left on device\n"
    assert internal_errors_failure(before) is None
