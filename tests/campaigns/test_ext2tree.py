"""The campaign's ext2 tree reader (emu/crashtest/ext2tree.py) against the tree debugfs extracts
and against the host directory mke2fs was given: images from mke2fs -d (every block-map depth,
holes, fast and slow symlinks, a multi-block directory, special bits) and an image our guest
kernel wrote; corrupt images give an EmuError, never another exception."""
from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from emu.crashtest.checks import diff_trees, host_tree
from emu.crashtest.ext2tree import ext2_tree
from images.build import extract
from vmm.errors import EmuError

ENV = {**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000", "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}


def debugfs_tree(image: Path, where: Path) -> dict:
    return host_tree(extract(image, "/", where / "x"))


def without_special_bits(tree: dict) -> dict:
    """debugfs's rdump drops setuid, setgid and sticky bits (and skips special files)."""
    return {p: {**e, "mode": e["mode"] & 0o777} for p, e in tree.items()}


def stage(root: Path) -> Path:
    rng = random.Random(7)
    root.mkdir()
    (root / "empty").write_bytes(b"")
    (root / "small").write_bytes(b"hello\n")
    (root / "direct").write_bytes(rng.randbytes(11 * 1024 + 17))
    (root / "indirect").write_bytes(rng.randbytes(200 * 1024 + 3))       # 1 KiB blocks: single indirect
    (root / "double").write_bytes(rng.randbytes(3 * 1024 * 1024 + 5))    # ... double indirect
    with open(root / "triple", "wb") as f:                               # ... triple (sparse: 70 MiB)
        f.write(b"head")
        f.seek(70 << 20)
        f.write(b"tail")
    with open(root / "holes", "wb") as f:
        for i in range(6):
            f.seek(i * 50_000)
            f.write(rng.randbytes(1000))
    d = root / "a" / "b" / "c"
    d.mkdir(parents=True)
    for i in range(120):  # several directory blocks
        (root / "a" / f"entry-with-a-longish-name-{i:03d}").write_bytes(bytes([i]) * i)
    os.symlink("small", root / "fast-link")
    os.symlink("x" * 100 + "/target", root / "a" / "slow-link")
    (d / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(d / "suid", 0o4755)
    sticky = root / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    os.chmod(root / "small", 0o600)
    os.mkfifo(root / "a" / "fifo")
    return root


@pytest.mark.parametrize("bs", [1024, 4096])
def test_tree_of_a_mke2fs_image_equals_its_source_and_debugfs(tmp_path: Path, bs: int) -> None:
    src = stage(tmp_path / "src")
    image = tmp_path / "fs.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", str(bs), "-O", "^dir_index", "-d", str(src),
                    str(image), "32M"], check=True, env=ENV, capture_output=True)
    # an extended-attribute block on a fast symlink: i_blocks counts it, the target stays inline
    (tmp_path / "val").write_text("v" * 400)
    subprocess.run(["debugfs", "-w", "-R", f"ea_set -f {tmp_path / 'val'} /fast-link user.big", str(image)],
                   check=True, env=ENV, capture_output=True)
    got = ext2_tree(image)
    want = host_tree(src)
    want["/lost+found"] = {"mode": 0o700, "size": 0, "type": "dir"}
    assert diff_trees(want, got) == []
    assert got["/triple"]["size"] == (70 << 20) + 4 and got["/a/slow-link"]["size"] == 107
    assert got.pop("/a/fifo") == {"mode": 0o644, "size": 0, "type": "other", "rdev": 0}  # rdump skips it
    dbg = debugfs_tree(image, tmp_path)
    assert dbg["/tmp"]["mode"] == 0o777 and dbg["/a/b/c/suid"]["mode"] == 0o755
    assert diff_trees(dbg, without_special_bits(got)) == []


def test_tree_of_an_image_the_guest_wrote_equals_debugfs(emu, tmp_path: Path) -> None:
    script = ("mkdir -p /w/d1/d2 && cd /w && cat /data/corpus.txt > big && echo hi > small && "
              "ln -s small fast && ln -s " + "y" * 90 + " slow && for i in $(seq 1 80); do echo $i > d1/f$i; done && "
              "rm d1/f7 d1/f40 && mv d1/f9 d1/d2/moved && cp big d1/d2/big2 && rm big && sync")
    r = emu(["/bin/sh", "-c", script])
    assert r.result.exit_code == 0, r.stderr
    got = ext2_tree(r.image)
    dbg = debugfs_tree(r.image, tmp_path)
    assert got["/tmp"]["mode"] == 0o1777
    assert diff_trees(dbg, without_special_bits(got)) == []
    assert "/w/d1/d2/moved" in got and "/w/d1/f7" not in got and got["/w/d1/d2/big2"] == got["/data/corpus.txt"] | {"mode": 0o644}


def test_corrupt_images_are_an_error_never_a_crash(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(30):
        (src / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 4}" / f"f{i}").write_bytes(bytes([i]) * (i * 997))
        os.symlink(f"f{i}", src / f"d{i % 4}" / f"l{i}")
    image = tmp_path / "fs.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "1024", "-N", "128", "-d", str(src), str(image), "2M"],
                   check=True, env=ENV, capture_output=True)
    data = image.read_bytes()
    rng = random.Random(3)
    bad = 0
    for _ in range(300):
        img = bytearray(data)
        for _ in range(20):  # superblock, descriptors, bitmaps, inode table, directories, data
            img[rng.randrange(1024, len(img))] = rng.randrange(256)
        image.write_bytes(img)
        try:
            ext2_tree(image)
        except EmuError as e:
            assert str(image) in str(e)
            bad += 1
    image.write_bytes(data[:2048])
    with pytest.raises(EmuError, match="bytes, the superblock says"):
        ext2_tree(image)
    image.write_bytes(bytes(4096))
    with pytest.raises(EmuError, match="not an ext2 file system"):
        ext2_tree(image)
    assert bad > 0  # some of the damage is seen (the rest fell on unused inodes and free blocks)


def test_a_directory_cycle_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    image = tmp_path / "fs.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "1024", "-d", str(src), str(image), "4M"],
                   check=True, env=ENV, capture_output=True)
    # make /d/loop a second name of the root directory (debugfs's link command)
    subprocess.run(["debugfs", "-w", "-R", "link / /d/loop", str(image)], check=True, env=ENV, capture_output=True)
    with pytest.raises(EmuError, match="reached twice"):
        ext2_tree(image)
