"""Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, guestkernel/shm.py): one object behind
the mapping and every VMA derived from it, so that pages first touched after a fork are shared
too, across mprotect splits, munmap of a part and mremap growing in place or moving
(tests/programs/shanon.c, the same output in the guest and natively), and counted in
/proc/meminfo's Shmem."""
from __future__ import annotations

import shutil

from tests.conftest import put_file, run_emu, run_native


def test_pages_first_touched_after_fork_are_shared_as_on_linux(base_image, guest_programs, tmp_path):
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "shanon", "/bin/shanon")
    guest = run_emu(image, ["/bin/shanon"])
    native = run_native([str(guest_programs / "shanon")], tmp_path)
    assert guest.result.exit_code == native.returncode == 0
    assert guest.stdout == native.stdout
    out = guest.stdout.decode()
    assert "child status 0\n" in out and "past the end: SIGBUS\n" in out
    for line in ("2 [page 2: grandchild, left of the split] 27", "8 [page 8: child, through the mapping mremap moved] 105",
                 "14 [page 14: child, before the tail was unmapped] 183"):
        assert line in out


def test_shmem_counts_the_objects_pages(base_image, guest_programs, tmp_path):
    """Every page of the object is counted once, however many processes map it (the parent read
    all 16: a read fault of a shared page allocates it, as shmem does), in the parent's RssShmem
    too, and freed with the last mapping: a second run starts from the same Shmem. The mapping
    in /proc/PID/maps."""
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "shanon", "/bin/shanon")
    guest = run_emu(image, ["/bin/sh", "-c", "/bin/shanon meminfo | tail -2; grep Shmem: /proc/meminfo; "
                                             "/bin/shanon meminfo | tail -1; grep Shmem: /proc/meminfo"])
    lines = guest.stdout.decode().splitlines()
    # (as Linux shows it: the object's inode on device 00:01, named as a deleted /dev/zero)
    assert lines[0] == "rw-s 00000000 00:01 1" + " " * 26 + "/dev/zero (deleted)"
    assert lines[1] == lines[3] == "RssShmem 64 kB, Shmem grew by 64 kB"
    assert lines[2] == lines[4]
