"""NAS image (the split-zone paper): the base image plus util-linux's losetup, mount and umount,
e2fsprogs' mke2fs and e2fsck (Debian packages mount and e2fsprogs), the failover and random-write
programs (images/programs/), and VOLUMES small ext2 volume images in /vol (v000.img ...), made
on the host by mke2fs with a fixed UUID and time, for the 128 failover mounts."""

import functools
import tempfile
from dataclasses import replace
from pathlib import Path

from images import build
from images.recipes.base import RECIPE as BASE

VOLUMES = 128
VOLUME_KIB = 128
SPARE_FILES = 80_000  # room for the random-write script's small files (a 4 KiB block each)


@functools.lru_cache(maxsize=1)
def volume_image() -> bytes:
    """One empty ext2 volume of VOLUME_KIB KiB (1 KiB blocks, 16 inodes), the same bytes on
    every host with the same mke2fs."""
    with tempfile.TemporaryDirectory() as td:
        img = Path(td) / "v.img"
        build.make_ext2(img, VOLUME_KIB * 1024, "nas-volume", inodes=16)
        return img.read_bytes()


RECIPE = replace(
    BASE,
    name="nas",
    binaries={**BASE.binaries, "losetup": "/sbin/losetup", "mount": "/bin/mount", "umount": "/bin/umount",
              "mke2fs": ("/sbin/mke2fs", "/sbin/mkfs.ext2"), "e2fsck": "/sbin/e2fsck", "df": "/bin/df"},
    files={**BASE.files, "/sbin/init": "#!/bin/sh\nPATH=/bin:/sbin\nexport PATH\nlosetup --version\nmount --version\n",
           "/etc/profile": "PATH=/bin:/sbin\nexport PATH\n",
           **{f"/vol/v{i:03d}.img": volume_image() for i in range(VOLUMES)}},
    dirs={**BASE.dirs, "/vol": 0o755, "/mnt": 0o755, "/run": 0o755, "/run/mount": 0o755},
    programs={**BASE.programs, "/bin/failover": "failover.c", "/bin/randwrite": "randwrite.c"},
    params={},
    spare_inodes=SPARE_FILES + 1024,
    spare_bytes=SPARE_FILES * 4096 + (64 << 20),
)
