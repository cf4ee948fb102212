"""Timers that send signals, against Linux: alarm's return values, a periodic ITIMER_REAL,
getitimer, a fork's child without the parent's timer (tests/programs/itimer.c, same output in
the guest and natively); signal masks around waits (tests/programs/sigmask.c: sigsuspend, ppoll
and pselect restore the original mask, a masked signal does not interrupt a sleep); Debian's
stress, whose workers end by their own alarm; and a shell woken by SIGCHLD while it waits for
background jobs."""
from __future__ import annotations

import shutil
import subprocess

from tests.conftest import put_file, run_emu, run_native


def same_as_linux(name, base_image, guest_programs, tmp_path) -> bytes:
    """Run tests/programs/NAME.c in the guest and natively: both exit 0 with the same output."""
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / name, f"/bin/{name}")
    guest = run_emu(image, [f"/bin/{name}"])
    native = run_native([str(guest_programs / name)], tmp_path)
    assert guest.result.exit_code == native.returncode == 0
    assert guest.stdout == native.stdout
    return guest.stdout


def test_alarm_and_itimer_match_linux(base_image, guest_programs, tmp_path):
    out = same_as_linux("itimer", base_image, guest_programs, tmp_path)
    assert b"periodic: 3 alarms" in out


def test_masks_around_waits_match_linux(base_image, guest_programs, tmp_path):
    """sigsuspend left its temporary mask in place after it returned, ppoll and pselect ignored
    theirs, and kill woke a process blocked in a sleep even for a signal it had masked."""
    out = same_as_linux("sigmask", base_image, guest_programs, tmp_path)
    assert b"after sigsuspend: USR1 blocked, USR2 blocked" in out
    assert b"nanosleep with USR1 masked = 0" in out


def test_stress_workers_end_at_their_timeout(tmp_path):
    """stress's workers set PR_SET_PDEATHSIG and end by their own alarm(timeout)."""
    from images.build import default_image

    image = tmp_path / "disk.img"
    shutil.copyfile(default_image(recipe="hybrid"), image)
    r = run_emu(image, ["/bin/stress", "--vm", "1", "--vm-bytes", "1M", "--vm-keep", "--timeout", "1s"])
    native = subprocess.run(["stress", "--vm", "1", "--vm-bytes", "1M", "--vm-keep", "--timeout", "1s"],
                            capture_output=True)
    assert r.result.exit_code == native.returncode == 0
    assert r.stdout.splitlines()[-1] == b"stress: info: [1] successful run completed in 1s"
    assert native.stdout.splitlines()[-1].endswith(b"successful run completed in 1s")


def test_a_shell_waits_for_its_background_jobs(base_image, tmp_path):
    """dash waits in sigsuspend with a SIGCHLD handler: the child's exit must wake it (emu
    panicked with every process blocked)."""
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    script = "sleep 1 & echo started; wait; echo waited $?; (exit 3) & wait $!; echo $?"
    guest = run_emu(image, ["/bin/sh", "-c", script])
    native = run_native(["/bin/sh", "-c", script], tmp_path)
    assert guest.result.exit_code == 0
    assert guest.stdout == native.stdout == b"started\nwaited 0\n3\n"
