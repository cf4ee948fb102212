"""Loop devices and mounts as a guest uses them, with util-linux's own losetup, mount and umount
and e2fsprogs' mke2fs from the `nas` image: the volume made in the guest is checked from the
host with e2fsck; Linux's errors for busy, cross-device and bad mounts; the 128 failover mounts
on an unfragmented machine with every zone policy (the split-zone issue's must-hold 1)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from images.build import default_image
from tests.conftest import e2fsck_clean, run_emu
from vmm.config import machine_config

MACHINE = Path(__file__).resolve().parents[2] / "machines" / "nas.toml"


@pytest.fixture(scope="module")
def nas_image() -> Path:
    return default_image(recipe="nas")


def _run(nas_image: Path, tmp_path: Path, script: str, policy: str = "single"):
    image = tmp_path / "disk.img"
    shutil.copyfile(nas_image, image)
    r = run_emu(image, ["/bin/sh", "-c", script], machine_config(MACHINE, [f"kernel.memory.zones={policy}"]))
    e2fsck_clean(image)
    return r


def test_losetup_mke2fs_mount_write_umount_mount_again(nas_image, tmp_path):
    """must-hold 1: the files written through the mount are there after umount and a new mount,
    and the volume, taken out of the guest image, is e2fsck-clean with the file in it."""
    script = ("cd /vol && L=$(losetup -f --show v005.img) && echo $L && mke2fs -q $L && mkdir -p /mnt/a && "
              "mount -t ext2 $L /mnt/a && mkdir /mnt/a/d && echo persistent > /mnt/a/d/f && "
              "seq 1 5000 > /mnt/a/big && grep /mnt/a /proc/self/mounts && df /mnt/a | tail -1 && "
              "umount /mnt/a && ls /mnt/a && mount $L /mnt/a && cat /mnt/a/d/f && wc -l < /mnt/a/big && "
              "losetup -a && umount /mnt/a && losetup -d $L && losetup -a && echo done")
    r = _run(nas_image, tmp_path, script)
    assert r.result.exit_code == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("/dev/loop0\n")
    assert "/dev/loop0 /mnt/a ext2 rw,relatime 0 0\n" in out
    assert re.search(r"^/dev/loop0 +\d+ +\d+ +\d+ +\d+% /mnt/a$", out, re.M)
    assert "persistent\n5000\n" in out
    assert "/dev/loop0: [2049]:" in out and "(/vol/v005.img)" in out
    assert out.endswith("done\n")
    vol = tmp_path / "v005.img"
    subprocess.run(["debugfs", "-R", f"dump /vol/v005.img {vol}", str(tmp_path / "disk.img")], check=True,
                   capture_output=True)
    e2fsck_clean(vol)
    cat = subprocess.run(["debugfs", "-R", "cat /d/f", str(vol)], capture_output=True, check=True)
    assert cat.stdout == b"persistent\n"


def test_mount_errors_are_linuxs(nas_image, tmp_path):
    script = (
        "cd /vol; losetup /dev/loop1 v001.img; mount /dev/loop1 /mnt; "
        "cd /mnt; umount /mnt 2>&1 | tail -1; cd /; "                          # EBUSY: cwd inside
        "mv /mnt/lost+found /lost 2>&1 | sed 's/.*: //'; "                      # EXDEV (mv copies)
        "ln /mnt/lost+found/x /y 2>&1 | sed 's/.*: //'; "
        "mount /dev/loop1 /tmp 2>&1 | sed 's/.*: //'; "                         # already mounted
        "mount /dev/loop2 /tmp 2>&1 | tail -1 | sed 's/.*: //'; "               # unbound device
        "mount /vol/v002.img /tmp -t ext2 -o nosuid 2>&1 | head -1 | sed 's/.*: //'; "
        "stat -c '%d %i' / /mnt; stat -f -c '%b' /mnt; "
        "rmdir /mnt 2>&1 | sed 's/.*: //'; umount /mnt && losetup -d /dev/loop1 && echo ok")
    r = _run(nas_image, tmp_path, script)
    out = r.stdout.decode()
    assert "target is busy" in out
    assert re.search(r"^2049 2\n1793 2\n\d+\n", out, re.M), out  # st_dev 8:1, then 7:1; the mounted root
    assert out.endswith("ok\n"), out


@pytest.mark.parametrize("policy", ["single", "split", "mobility"])
def test_128_failover_mounts_on_an_unfragmented_machine(nas_image, tmp_path, policy):
    """must-hold 1: 128 loop mounts succeed with every zone policy; then all unmount and every
    loop device is free again; the numbers of mounts and loop devices seen in /proc and /sys."""
    script = ("failover /vol 128 /mnt | tail -1; grep -c ' ext2 ' /proc/self/mounts; "
              "ls /sys/block | wc -l; failover -u 128 /mnt; grep -c ' ext2 ' /proc/self/mounts; losetup -a | wc -l")
    r = _run(nas_image, tmp_path, script, policy)
    assert r.result.exit_code == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert re.fullmatch(r"mounted 128 total_ns \d+", lines[0]), lines
    assert lines[1:] == ["129", "128", "1", "0"]


def test_injection_pattern_fragments_single_but_not_split(nas_image, tmp_path):
    """must-hold 2 (environment 1 of `emu reproduce fragmentation`): after the paper's injection
    pattern the share of free memory in blocks >= 64 KiB falls below 5 % with the baseline's one
    zone and stays above 30 % with split zones; the metadata pages stay where the policy put them."""
    from emu.reproduce.fragmentation import env1

    rows = {p: env1(nas_image, p, tmp_path, lambda line: None) for p in ("single", "split")}
    assert rows["single"]["share_ge_64k"] < 0.05
    assert rows["split"]["share_ge_64k"] > 0.30
    assert rows["single"]["metadata_pages"] > 1000 and rows["single"]["data_pages_freed"] >= 6 * rows["single"]["metadata_pages"]


MOUNTED_WORK = ("cd /vol && losetup /dev/loop0 v003.img && mount /dev/loop0 /mnt && seq 1 100000 > /tmp/c && "
                "seq 1 3000 > /mnt/s && umount /mnt && losetup -d /dev/loop0 && gzip -c /tmp/c > /tmp/c.gz && echo ok")


def test_checkpoints_are_refused_while_a_loop_device_is_mounted(nas_image, tmp_path):
    """must-hold 5: the checkpointer clearly refuses (one log line) while a loop device is bound or
    mounted, and checkpoints again once it is gone; a crash campaign with checkpointing over a
    program that mounts, writes and unmounts passes at every point."""
    from emu.cli import main as cli_main

    image = tmp_path / "disk.img"
    shutil.copyfile(nas_image, image)
    cfg = machine_config(MACHINE, ["checkpoint.enabled=true", "checkpoint.tcp=1000000", "model_level=persist"])
    r = run_emu(image, ["/bin/sh", "-c", MOUNTED_WORK], cfg)
    assert r.result.exit_code == 0 and r.stdout == b"ok\n", r.stderr
    assert "checkpoint skipped: a mounted loop device or a bound loop device" in r.result.log
    assert r.result.checkpoint["checkpoints"] > 10
    shutil.copyfile(nas_image, image)
    code = cli_main(["crashtest", "--dir", str(tmp_path / "c"), "--points", "10", "--jobs", "2", "--checkpoint", "tcp=1ms",
                     "--level", "persist", "--image", str(image), "--machine", str(MACHINE), "--",
                     "/bin/sh", "-c", MOUNTED_WORK])
    assert code == 0


LOOPCALLS = """add big: -1 Invalid argument
add 300: -1 Invalid argument
add 9: 9 
add 9 again: -1 File exists
cfg badptr: -1 Bad address
setfd badfd: -1 Bad file descriptor
setfd dir: -1 Invalid argument
status unbound: -1 No such device or address
clr unbound: -1 No such device or address
getsize badptr: -1 Bad address
mount bad type ptr: -1 Bad address
mount nonext2: -1 No such device
mount file: -1 Block device required
mount unbound: -1 No such device or address
umount notmnt: -1 Invalid argument
umount root: -1 Device or resource busy
umount badflags: -1 Invalid argument
setfd ro: 0 
mount ro dev rw: 0 
write ro: -1 Read-only file system
umount: 0 
clr: 0 
remove bound: -1 Device or resource busy
remove neg: -1 Invalid argument
remove absent: -1 No such device
remove open: -1 Device or resource busy
remove 9: 0 
remove 9 again: -1 No such device
open removed: -1 No such file or directory
sysfs removed: -1 No such file or directory
add back 9: 9 
sysfs back: 0 
remove 3: 0 
free: 0 
free after close: 0 
clr 1: 0 
free makes lowest: 0 
"""


def test_bad_loop_and_mount_calls_get_linuxs_errors(nas_image, tmp_path, guest_programs):
    """Bad pointers, descriptors, types and flags: EFAULT, EBADF, ENODEV, ENOTBLK, ENXIO, EINVAL,
    EBUSY as Linux returns them (256 loop minors here, EINVAL above); a loop device bound to a
    file opened read-only mounts read-only (EROFS on a write), as Linux's write-protected mount;
    LOOP_CTL_REMOVE deletes only an unbound device no one has open (EBUSY, ENODEV, EINVAL), its
    /dev and /sys entries go, and LOOP_CTL_GET_FREE then makes the lowest free number."""
    from tests.conftest import put_file

    image = tmp_path / "disk.img"
    shutil.copyfile(nas_image, image)
    put_file(image, guest_programs / "loopcalls", "/bin/loopcalls")
    r = run_emu(image, ["/bin/loopcalls"], machine_config(MACHINE))
    assert r.result.exit_code == 0, r.stderr
    assert r.stdout.decode() == LOOPCALLS
    e2fsck_clean(image)


def test_extra_disks_are_block_devices_to_format_mount_and_check(nas_image, tmp_path):
    """The machine's extra disks ([[disk]], --disk): /dev/vdb holds an ext2 the host made, /dev/vdc
    is blank and formatted in the guest by mke2fs; both are mounted, written, unmounted and
    mounted again; the host finds both e2fsck-clean with the files in them. A disk attached
    read-only mounts read-only and refuses raw writes with EPERM."""
    import dataclasses

    from images.build import make_ext2
    from vmm.config import with_disk

    made, blank, ro = tmp_path / "made.img", tmp_path / "blank.img", tmp_path / "ro.img"
    for img in (made, ro):
        make_ext2(img, 4 << 20, img.name)
    blank.write_bytes(bytes(4 << 20))
    cfg = machine_config(MACHINE)
    for spec in (str(made), str(blank), f"{ro}:ro"):
        cfg = with_disk(cfg, spec)
    assert [d.read_only for d in cfg.disks] == [False, False, True] and dataclasses.is_dataclass(cfg.disks[0])
    script = ("exec 2>&1; stat -c '%F %t:%T %n' /dev/vdb /dev/vdc /dev/vdd; cat /sys/block/vdc/size /sys/block/vdd/ro; "
              "mkdir -p /mnt/b /mnt/c /mnt/d && mke2fs -q /dev/vdc && mount /dev/vdb /mnt/b && mount /dev/vdc /mnt/c && "
              "echo on-b > /mnt/b/f && seq 1 3000 > /mnt/c/s && grep -c vd /proc/mounts && umount /mnt/b && umount /mnt/c && "
              "mount /dev/vdb /mnt/b && mount /dev/vdc /mnt/c && cat /mnt/b/f && wc -l < /mnt/c/s && umount /mnt/b /mnt/c && "
              "mount /dev/vdd /mnt/d; grep vdd /proc/mounts; touch /mnt/d/x; umount /mnt/d; "
              "head -c 512 /dev/zero > /dev/vdd; echo raw=$?; echo done")
    image = tmp_path / "disk.img"
    shutil.copyfile(nas_image, image)
    r = run_emu(image, ["/bin/sh", "-c", script], cfg)
    out = r.stdout.decode()
    assert r.result.exit_code == 0, r.stderr
    assert out.startswith("block special file fe:10 /dev/vdb\nblock special file fe:20 /dev/vdc\n"
                          "block special file fe:30 /dev/vdd\n8192\n1\n"), out
    assert "\n2\n" in out and "on-b\n3000\n" in out
    assert "/dev/vdd /mnt/d ext2 ro," in out and "Read-only file system" in out
    assert "Operation not permitted" in out and "raw=1" in out and out.endswith("done\n")
    for img, path, want in ((made, "/f", b"on-b\n"), (blank, "/s", "".join(f"{i}\n" for i in range(1, 3001)).encode())):
        e2fsck_clean(img)
        from images.build import read_file
        assert read_file(img, path) == want
    e2fsck_clean(image)


def test_a_missing_disk_image_is_a_one_line_error(tmp_path):
    r = subprocess.run([str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "emu"), "run", "--disk",
                        str(tmp_path / "nope.img"), "--", "/bin/true"], capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "nope.img does not exist" in r.stderr, r.stderr


def test_an_extra_disk_is_timed_by_its_own_model(nas_image, tmp_path):
    """storage.disk applies to the extra disks too, each its own arm and platter: mke2fs's direct
    writes and the mounted file system's reads and write-back are requests to /dev/vdb's model
    (on hdd they take longer; what the guest sees is the same)."""
    from hw.console import Console
    from vmm.config import with_disk
    from vmm.machine import Machine

    script = ("mkdir -p /mnt/b && mke2fs -q /dev/vdb && mount /dev/vdb /mnt/b && seq 1 3000 > /mnt/b/s && "
              "umount /mnt/b && echo 3 > /proc/sys/vm/drop_caches && mount /dev/vdb /mnt/b && wc -l < /mnt/b/s && "
              "umount /mnt/b")
    runs = {}
    for disk in ("flat", "hdd"):
        (tmp_path / disk).mkdir()
        vdb, image = tmp_path / disk / "vdb.img", tmp_path / disk / "disk.img"
        vdb.write_bytes(bytes(4 << 20))
        shutil.copyfile(nas_image, image)
        console = Console(out_fd=None, err_fd=None, capture=True)
        m = Machine(image, with_disk(machine_config(MACHINE, [f"storage.disk={disk}"]), str(vdb)), console=console)
        r = m.run(["/bin/sh", "-c", script])
        assert r.exit_code == 0, bytes(console.captured[2])
        runs[disk] = (r, bytes(console.captured[1]), m.disks[0][0].timing.stats, m.disks[0][0].stats)
        e2fsck_clean(vdb)
    (flat, out_flat, t_flat, dev_flat), (hdd, out_hdd, t_hdd, dev_hdd) = runs["flat"], runs["hdd"]
    assert out_flat == out_hdd == b"3000\n"
    # (not the same number of requests: the periodic write-back runs at other virtual times)
    assert t_flat.requests > 100 and t_hdd.requests > 100 and dev_flat.writes > 0 and dev_hdd.writes > 0
    assert t_flat.busy_ns == t_flat.transfer_ns and t_flat.busy_ns % 10_000 == 0 and t_flat.seeks == 0
    assert t_hdd.busy_ns == t_hdd.seek_ns + t_hdd.rotation_ns + t_hdd.transfer_ns + t_hdd.overhead_ns
    assert t_hdd.seeks > 0 and t_hdd.buffer_hits > 0
    assert t_hdd.busy_ns > 10 * t_flat.busy_ns and hdd.virtual_ns > flat.virtual_ns
