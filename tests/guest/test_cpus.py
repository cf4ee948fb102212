"""`cpus = N`: the guest sees N CPUs (sysconf, the affinity mask nproc counts, sysfs lists,
/proc/cpuinfo and /proc/stat), all run on one host thread; affinity masks are Linux's."""
from __future__ import annotations

import pytest

from tests.conftest import put_file
from vmm.config import ConfigError, apply_overrides, default_machine

FOUR = b"""onln 4 conf 4
affinity 4
/sys/devices/system/cpu/online: 0-3
/sys/devices/system/cpu/possible: 0-3
cpuinfo processors 4
set to cpu1: 0
now 1, cpu1 1
"""
ONE = b"""onln 1 conf 1
affinity 1
/sys/devices/system/cpu/online: 0
/sys/devices/system/cpu/possible: 0
cpuinfo processors 1
set to cpu1: -1
now 1, cpu1 0
"""


@pytest.mark.parametrize("cpus,expected", [(4, FOUR), (1, ONE)])
def test_the_guest_sees_the_machines_cpus(emu, guest_programs, cpus, expected):
    image = emu.fresh_image()
    put_file(image, guest_programs / "cpus", "/bin/cpus")
    run = emu(["/bin/cpus"], image, apply_overrides(default_machine(), [f"cpus={cpus}"]))
    assert run.result.exit_code == 0, run.stderr
    assert run.stdout == expected
    stat = emu(["/bin/sh", "-c", "grep -c '^cpu[0-9]' /proc/stat; ls /sys/devices/system/cpu | grep -c '^cpu[0-9]'"],
               image, apply_overrides(default_machine(), [f"cpus={cpus}"]))
    assert stat.stdout == b"%d\n%d\n" % (cpus, cpus)


def test_cpus_must_be_sensible():
    with pytest.raises(ConfigError, match="cpus"):
        apply_overrides(default_machine(), ["cpus=0"])
