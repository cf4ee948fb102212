"""The mount table on its own (guestkernel/mounts.py), over two ext2 images made by mke2fs and
read through the host-side block cache: node numbers carry the mount, calls go to the right file
system, and Linux's errors for cross-device links, read-only mounts and busy mount points."""
from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from guestkernel.blockcache import FileBlockCache
from guestkernel.ext2 import Ext2, FsError
from guestkernel.mounts import INO_MASK, MID_SHIFT, MS_RDONLY, Mount, MountTable


def _fs(tmp_path: Path, name: str, size: str) -> Ext2:
    img = tmp_path / name
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "1024", str(img), size], check=True, capture_output=True,
                   env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin", "E2FSPROGS_FAKE_TIME": "1700000000"})
    return Ext2(FileBlockCache(img), now=lambda: 1700000000)


@pytest.fixture
def table(tmp_path):  # type: ignore[no-untyped-def]
    root, other = _fs(tmp_path, "root.img", "512k"), _fs(tmp_path, "other.img", "256k")
    t = MountTable(Mount(0, root, None, b"/dev/root", b"/", 0x801))  # type: ignore[arg-type]
    point = t.mkdir(root.root_ino, b"mnt", 0o40755, 0, 0)
    m = Mount(t.new_id(), other, None, b"/dev/loop0", b"/mnt", 0x700, point=point)  # type: ignore[arg-type]
    t.add(m)
    return t, m, point


def test_nodes_carry_their_mount(table):  # type: ignore[no-untyped-def]
    t, m, point = table
    assert point <= INO_MASK and t.of(point).mid == 0  # the root's nodes are plain inode numbers
    assert t.covered[point] == m.root == (m.mid << MID_SHIFT) | 2 and t.is_mount_root(m.root)
    f = t.create(m.root, b"f", 0o100644, 0, 0)
    assert f >> MID_SHIFT == m.mid and t.lookup(m.root, b"f") == f
    assert t.write(f, 0, b"hello") == 5 and t.read(f, 0, 10) == b"hello"
    assert t.stat(f).size == 5 and t.stat(f).ino == f & INO_MASK
    with pytest.raises(FsError):
        t.lookup(t.root_ino, b"f")  # the file is on the mounted file system only
    assert t.statfs(m.root)["f_blocks"] < t.statfs(t.root_ino)["f_blocks"]  # each mount its own
    assert t.rename(m.root, b"f", m.root, b"g") == 0 and t.lookup(m.root, b"g") == f


def test_linuxs_errors(table):  # type: ignore[no-untyped-def]
    t, m, point = table
    f = t.create(m.root, b"f", 0o100644, 0, 0)
    with pytest.raises(FsError) as e:
        t.link(t.root_ino, b"hard", f)
    assert e.value.errno == errno.EXDEV
    with pytest.raises(FsError) as e:
        t.rename(m.root, b"f", t.root_ino, b"f")
    assert e.value.errno == errno.EXDEV
    for call in (lambda: t.rmdir(t.root_ino, b"mnt"), lambda: t.rename(t.root_ino, b"mnt", t.root_ino, b"x")):
        with pytest.raises(FsError) as e:
            call()
        assert e.value.errno == errno.EBUSY
    m.flags |= MS_RDONLY
    for call in (lambda: t.write(f, 0, b"x"), lambda: t.create(m.root, b"n", 0o100644, 0, 0),
                 lambda: t.unlink(m.root, b"f"), lambda: t.chmod(f, 0o600), lambda: t.truncate(f, 0)):
        with pytest.raises(FsError) as e:
            call()
        assert e.value.errno == errno.EROFS
    t.touch_atime(f)  # a read on a read-only mount changes nothing and does not fail
    assert t.create(t.root_ino, b"still-rw", 0o100644, 0, 0) <= INO_MASK  # the root stays writable
    t.remove(m)
    assert point not in t.covered and t.in_order() == [t.mounts[0]]
