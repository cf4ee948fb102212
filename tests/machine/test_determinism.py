"""Same image, command and configuration: same instruction count, output and image bytes."""
from __future__ import annotations

import shutil

from tests.conftest import run_emu


def test_two_runs_are_identical(base_image, tmp_path):
    argv = ["/bin/sh", "-c", "gzip -9 -c /data/corpus.txt > /tmp/c.gz; date; ls -l /tmp; tar czf /tmp/t.tgz -C /data tree; cat /tmp/c.gz | wc -c"]
    runs = []
    for i in range(2):
        image = tmp_path / f"run{i}.img"
        shutil.copyfile(base_image, image)
        runs.append(run_emu(image, argv))
    a, b = runs
    assert a.result.exit_code == b.result.exit_code == 0
    assert a.result.instructions == b.result.instructions
    assert a.result.virtual_ns == b.result.virtual_ns
    assert a.result.syscalls == b.result.syscalls
    assert a.stdout == b.stdout and a.stderr == b.stderr
    assert a.image.read_bytes() == b.image.read_bytes()


def test_guest_time_comes_from_the_virtual_clock(emu):
    run = emu(["/bin/date", "-u", "+%Y-%m-%d %H:%M"])
    assert run.stdout == b"2023-11-14 22:13\n"  # the boot epoch, plus a few virtual milliseconds


def test_seed_changes_randomness(base_image, tmp_path):
    from vmm.machine import MachineConfig

    outs = []
    for seed in (1, 1, 2):
        image = tmp_path / f"s{len(outs)}.img"
        shutil.copyfile(base_image, image)
        outs.append(run_emu(image, ["/bin/sh", "-c", "od -An -tx1 -N8 /dev/urandom 2>/dev/null || head -c 8 /dev/urandom | md5sum"], MachineConfig(seed=seed)).stdout)
    assert outs[0] == outs[1] != outs[2]


def test_rdtsc_reads_the_virtual_clock(base_image, guest_programs, tmp_path):
    from tests.conftest import put_file

    outs = []
    for i in range(2):
        image = tmp_path / f"tsc{i}.img"
        shutil.copyfile(base_image, image)
        put_file(image, guest_programs / "probe", "/bin/probe")
        run = run_emu(image, ["/bin/probe", "rdtsc"])
        outs.append((run.stdout, run.result.instructions))
    assert outs[0] == outs[1]
    vals = dict(line.split("=") for line in outs[0][0].decode().splitlines())
    tsc1, tsc2 = int(vals["tsc1"]), int(vals["tsc2"])
    # 2 GHz, one instruction per cycle: the loop of ~1000 iterations lies between the two reads
    assert 0 < tsc1 < tsc2 < 2 * 10**9
    assert 4000 < tsc2 - tsc1 < 100000
    assert vals["aux"] == "0"
