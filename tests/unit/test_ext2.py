"""Tests for guestkernel.ext2 against real e2fsprogs (mke2fs / e2fsck / debugfs).

The central check: after operations and sync(), `e2fsck -fn` is clean and debugfs
sees the same contents the driver (and an in-memory model) does.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat as S
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestkernel.blockcache import FileBlockCache
from guestkernel.ext2 import EXT2_INDEX_FL, Ext2, FsError, probe_block_size

pytestmark = pytest.mark.skipif(shutil.which("mke2fs") is None and not Path("/usr/sbin/mke2fs").exists(),
                                reason="e2fsprogs not installed")

ENV = {**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000", "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
BLOCK_SIZES = [1024, 2048, 4096]


# ---------------------------------------------------------------- helpers

def mkimg(path: Path, bs: int = 1024, size: str = "4M", staging: Path | None = None,
          extra: tuple[str, ...] = ()) -> Path:
    cmd = ["mke2fs", "-q", "-F", "-t", "ext2", "-b", str(bs), *extra]
    if staging is not None:
        cmd += ["-d", str(staging)]
    subprocess.run(cmd + [str(path), size], check=True, env=ENV, capture_output=True)
    return path


class Clock:
    def __init__(self, t: int = 1700000100) -> None:
        self.t = t

    def __call__(self) -> int:
        self.t += 1
        return self.t


def mount(img: Path, **kw: object) -> tuple[FileBlockCache, Ext2]:
    cache = FileBlockCache(img, **kw)  # type: ignore[arg-type]
    return cache, Ext2(cache, Clock())


def fsck(img: Path) -> str:
    r = subprocess.run(["e2fsck", "-fn", str(img)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, f"e2fsck rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def debugfs(img: Path, req: str) -> bytes:
    r = subprocess.run(["debugfs", "-R", req, str(img)], env=ENV, capture_output=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def dbg_ls(img: Path, path: str) -> dict[bytes, tuple[int, int]]:
    """name -> (ino, mode) from `debugfs ls -p`."""
    out: dict[bytes, tuple[int, int]] = {}
    for line in debugfs(img, f"ls -p {path}").splitlines():
        parts = line.split(b"/")
        if len(parts) >= 7 and int(parts[1]):  # inode 0: an unused record at a block start
            out[b"/".join(parts[5:-2])] = (int(parts[1]), int(parts[2], 8))
    return out


def dbg_stat(img: Path, path: str) -> str:
    return debugfs(img, f"stat {path}").decode()


def rdump_tree(img: Path, dest: Path) -> dict[str, bytes | str | None]:
    """Dump the whole image with debugfs; {relpath: bytes | 'link:target' | None (dir)}."""
    dest.mkdir()
    debugfs(img, f"rdump / {dest}")
    return host_tree(dest)


def no_fifos(tree: dict[str, bytes | str | None]) -> dict[str, bytes | str | None]:
    return {k: v for k, v in tree.items() if v != "fifo"}  # rdump skips fifos


def host_tree(root: Path) -> dict[str, bytes | str | None]:
    out: dict[str, bytes | str | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if rel == "lost+found":
                continue
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = None
            elif p.is_fifo():
                out[rel] = "fifo"
            else:
                out[rel] = p.read_bytes()
    return out


def fs_tree(fs: Ext2, ino: int = 2, prefix: str = "") -> dict[str, bytes | str | None]:
    """The same shape as host_tree, read through the driver."""
    out: dict[str, bytes | str | None] = {}
    for name, child, dt in fs.readdir(ino):
        if name in (b".", b"..") or (ino == 2 and name == b"lost+found"):
            continue
        rel = prefix + name.decode()
        st_ = fs.stat(child)
        if S.S_ISDIR(st_.mode):
            assert dt == 4
            out[rel] = None
            out.update(fs_tree(fs, child, rel + "/"))
        elif S.S_ISLNK(st_.mode):
            assert dt == 10
            out[rel] = "link:" + fs.readlink(child).decode()
        elif S.S_ISFIFO(st_.mode):
            out[rel] = "fifo"
        else:
            assert dt == 8
            out[rel] = fs.read(child, 0, st_.size + 10)
    return out


def resolve(fs: Ext2, path: str) -> int:
    ino = 2
    for part in path.strip("/").split("/"):
        if part:
            ino = fs.lookup(ino, part.encode())
    return ino


def make_staging(root: Path, bs: int) -> None:
    rng = random.Random(bs)
    root.mkdir()
    (root / "empty").write_bytes(b"")
    (root / "one").write_bytes(b"x")
    for name, n in [("bsm1", bs - 1), ("bs", bs), ("direct_edge", 12 * bs), ("ind", 12 * bs + 1),
                    ("dind", (12 + bs // 4) * bs + 5), ("mid", 123457)]:
        (root / name).write_bytes(rng.randbytes(n))
    with open(root / "sparse", "wb") as f:
        f.seek(700_000)
        f.write(b"tail")
    d = root / "d1" / "d2" / "d3"
    d.mkdir(parents=True)
    for i in range(40):
        (root / "d1" / f"f{i:03d}").write_bytes(rng.randbytes(rng.randrange(0, 3000)))
    (d / "deep").write_bytes(b"deep file\n")
    os.symlink("one", root / "fastlink")
    os.symlink("/" + "x" * 200, root / "slowlink")
    os.symlink("d1/d2", root / "dirlink")
    os.mkfifo(root / "fifo")


# ---------------------------------------------------------------- reading

@pytest.mark.parametrize("bs", BLOCK_SIZES)
@pytest.mark.parametrize("isize", [128, 256])
def test_read_populated_tree(tmp_path: Path, bs: int, isize: int) -> None:
    stg = tmp_path / "stg"
    make_staging(stg, bs)
    img = mkimg(tmp_path / "img", bs, "8M", stg, ("-I", str(isize)))
    cache, fs = mount(img)
    assert fs.block_size == bs and fs.inode_size == isize
    assert fs_tree(fs) == host_tree(stg)
    # partial reads and reads past EOF
    mid = resolve(fs, "mid")
    data = (stg / "mid").read_bytes()
    for off, n in [(0, 1), (bs - 3, 7), (5000, 100000), (123450, 100), (123457, 5), (999999, 1)]:
        assert fs.read(mid, off, n) == data[off:off + n]
    st_ = fs.stat(mid)
    assert st_.size == len(data) and S.S_ISREG(st_.mode) and st_.nlink == 1 and st_.blksize == bs
    sp = resolve(fs, "sparse")
    assert fs.bmap(sp, 0) == 0 and fs.bmap(sp, 700_000 // bs) != 0
    assert fs.stat(sp).blocks < 20
    assert fs.stat(2).nlink == 4  # ., .., lost+found/.., d1/..
    with pytest.raises(FsError) as ei:
        fs.lookup(2, b"nope")
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(FsError) as ei:
        fs.lookup(mid, b"x")
    assert ei.value.errno == errno.ENOTDIR
    cache.close()


def test_read_2mb(tmp_path: Path) -> None:  # its speed: bench/bench_micro.py
    stg = tmp_path / "stg"
    stg.mkdir()
    payload = random.Random(1).randbytes(2 * 1024 * 1024)
    (stg / "big").write_bytes(payload)
    img = mkimg(tmp_path / "img", 1024, "8M", stg)
    cache, fs = mount(img)
    ino = fs.lookup(2, b"big")
    assert fs.read(ino, 0, len(payload)) == payload


# ---------------------------------------------------------------- writing

@pytest.mark.parametrize("bs", BLOCK_SIZES)
def test_write_across_indirect_thresholds(tmp_path: Path, bs: int) -> None:
    img = mkimg(tmp_path / "img", bs, "16M")
    cache, fs = mount(img)
    a = bs // 4
    rng = random.Random(7)
    ino = fs.create(2, b"f", 0o644, 1000, 1000)
    # sequential write crossing direct -> single -> double indirect
    n = (12 + a + 3) * bs + 17
    payload = rng.randbytes(n)
    pos = 0
    while pos < n:  # odd-sized chunks so writes straddle block boundaries
        k = min(rng.randrange(1, 3 * bs), n - pos)
        assert fs.write(ino, pos, payload[pos:pos + k]) == k
        pos += k
    assert fs.read(ino, 0, n + 100) == payload
    data_blocks = -(-n // bs)
    assert fs.stat(ino).blocks == (data_blocks + 1 + 2) * (bs // 512)  # + IND + DIND + one IND under it
    # sparse writes in the triple-indirect range and at every boundary
    sp = fs.create(2, b"sparse", 0o600, 0, 0)
    chunks: dict[int, bytes] = {}  # offset -> 10 bytes (the file reaches ~4 GiB at 4 KiB blocks)
    for fb in [0, 11, 12, 12 + a - 1, 12 + a, 12 + a + a * a - 1, 12 + a + a * a, 12 + a + a * a + a + 3]:
        off = fb * bs + (fb % 5)
        chunks[off] = rng.randbytes(10)
        fs.write(sp, off, chunks[off])

    def expect(off: int, n: int) -> bytes:
        out = bytearray(n)
        for o, c in chunks.items():
            for i, byte in enumerate(c):
                if off <= o + i < off + n:
                    out[o + i - off] = byte
        return bytes(out[:max(0, min(n, size - off))])

    size = max(chunks) + 10
    assert fs.stat(sp).size == size
    for fb in [0, 11, 12, 12 + a, 12 + a + a * a]:
        off = fb * bs
        assert fs.read(sp, off, 40) == expect(off, 40)
        assert fs.bmap(sp, fb) != 0
    assert fs.bmap(sp, 13) == 0
    fs.sync()
    fsck(img)
    assert debugfs(img, "cat /f") == payload
    cache.close()
    # the triple-indirect file is big: compare a few regions through a fresh mount
    cache, fs = mount(img)
    sp = fs.lookup(2, b"sparse")
    last = (12 + a + a * a + a + 3) * bs
    assert fs.read(sp, last, 100) == expect(last, 100)
    assert fs.read(sp, 5 * bs, 7) == bytes(7)


def test_write_contiguous_allocation(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img", 4096, "16M")
    cache, fs = mount(img)
    ino = fs.create(2, b"f", 0o644, 0, 0)
    fs.write(ino, 0, bytes(40 * 4096))
    phys = [fs.bmap(ino, i) for i in range(40)]
    assert phys[:12] == list(range(phys[0], phys[0] + 12))
    assert phys[12:] == list(range(phys[12], phys[12] + 28))
    assert phys[12] == phys[11] + 2  # the indirect block sits between
    fs.sync()
    out = fsck(img)
    assert "non-contiguous" not in out or "0.0% non-contiguous" in out


@pytest.mark.parametrize("bs", [1024, 4096])
def test_truncate_down_and_up(tmp_path: Path, bs: int) -> None:
    img = mkimg(tmp_path / "img", bs, "8M")
    cache, fs = mount(img)
    free0 = fs.statfs()["f_bfree"]
    rng = random.Random(3)
    payload = rng.randbytes(300_000)
    ino = fs.create(2, b"t", 0o644, 0, 0)
    fs.write(ino, 0, payload)
    fs.truncate(ino, 5000)
    assert fs.read(ino, 0, 10**6) == payload[:5000]
    assert fs.stat(ino).blocks == -(-5000 // bs) * (bs // 512)
    fs.truncate(ino, 400_000)  # grow: hole, and the old tail must read as zeros
    expect = payload[:5000] + bytes(395_000)
    assert fs.read(ino, 0, 10**6) == expect
    assert fs.stat(ino).blocks == -(-5000 // bs) * (bs // 512)
    fs.write(ino, 399_999, b"Z")
    expect = expect[:399_999] + b"Z"
    fs.truncate(ino, 4999)
    fs.write(ino, 6000, b"after")  # bytes 4999..6000 must be zero, not old data
    expect = payload[:4999] + bytes(1001) + b"after"
    assert fs.read(ino, 0, 10**6) == expect
    fs.sync()
    fsck(img)
    assert debugfs(img, "cat /t") == expect
    fs.truncate(ino, 0)
    assert fs.stat(ino).blocks == 0 and fs.read(ino, 0, 10) == b""
    fs.release(fs.unlink(2, b"t"))
    assert fs.statfs()["f_bfree"] == free0
    fs.sync()
    fsck(img)


# ---------------------------------------------------------------- directories

@pytest.mark.parametrize("bs", [1024, 4096])
def test_many_files_in_one_dir(tmp_path: Path, bs: int) -> None:
    img = mkimg(tmp_path / "img", bs, "8M")
    cache, fs = mount(img)
    d = fs.mkdir(2, b"many", 0o755, 0, 0)
    names = [f"file-{i:04d}-{'x' * (i % 37)}".encode() for i in range(600)]
    inos = {}
    for i, n in enumerate(names):
        inos[n] = fs.create(d, n, 0o644, 0, 0)
        if i % 50 == 0:
            fs.write(inos[n], 0, n)
    assert fs.stat(d).size > 4 * bs
    for n in names[::3]:
        fs.release(fs.unlink(d, n))
    with pytest.raises(FsError) as ei:
        fs.create(d, names[1], 0o644, 0, 0)
    assert ei.value.errno == errno.EEXIST
    for n in names[::3]:  # re-fill the freed slots
        inos[n] = fs.create(d, n + b".new", 0o644, 0, 0)
    live = {n for i, n in enumerate(names) if i % 3} | {n + b".new" for n in names[::3]}
    listing = fs.readdir(d)
    assert [e[0] for e in listing[:2]] == [b".", b".."]
    assert {e[0] for e in listing[2:]} == live
    assert all(dt == 8 for _, _, dt in listing[2:])
    fs.sync()
    fsck(img)
    seen = dbg_ls(img, "/many")
    assert set(seen) - {b".", b".."} == live
    assert debugfs(img, f"cat /many/{names[50].decode()}") == names[50]


def test_mkdir_rmdir_nested(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img")
    cache, fs = mount(img)
    s0 = fs.statfs()
    a = fs.mkdir(2, b"a", 0o755, 0, 0)
    b = fs.mkdir(a, b"b", 0o700, 5, 6)
    c = fs.mkdir(b, b"c", 0o755, 0, 0)
    fs.create(c, b"file", 0o644, 0, 0)
    assert fs.stat(a).nlink == 3 and fs.stat(b).nlink == 3 and fs.stat(c).nlink == 2
    assert fs.lookup(c, b"..") == b and fs.lookup(b, b".") == b
    st_ = fs.stat(b)
    assert S.S_ISDIR(st_.mode) and S.S_IMODE(st_.mode) == 0o700 and (st_.uid, st_.gid) == (5, 6)
    for bad, err in [((a, b"b"), errno.ENOTEMPTY), ((c, b"file"), errno.ENOTDIR),
                     ((a, b"zz"), errno.ENOENT), ((a, b"."), errno.EINVAL)]:
        with pytest.raises(FsError) as ei:
            fs.rmdir(*bad)
        assert ei.value.errno == err
    with pytest.raises(FsError) as ei:
        fs.unlink(a, b"b")
    assert ei.value.errno == errno.EISDIR
    with pytest.raises(FsError) as ei:
        fs.mkdir(a, b"b", 0o755, 0, 0)
    assert ei.value.errno == errno.EEXIST
    fs.sync()
    fsck(img)
    fs.release(fs.unlink(c, b"file"))
    fs.rmdir(b, b"c")
    assert fs.stat(b).nlink == 2
    fs.rmdir(a, b"b")
    fs.rmdir(2, b"a")
    fs.sync()
    fsck(img)
    s1 = fs.statfs()
    assert (s1["f_bfree"], s1["f_ffree"]) == (s0["f_bfree"], s0["f_ffree"])


def test_rename(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img")
    cache, fs = mount(img)
    d1 = fs.mkdir(2, b"d1", 0o755, 0, 0)
    d2 = fs.mkdir(2, b"d2", 0o755, 0, 0)
    f = fs.create(d1, b"f", 0o644, 0, 0)
    fs.write(f, 0, b"hello")
    g = fs.create(d2, b"g", 0o644, 0, 0)
    fs.write(g, 0, b"victim")
    # file across parents, replacing an existing file (freed once the kernel releases it)
    assert fs.rename(d1, b"f", d2, b"g") == g
    assert fs.stat(g).nlink == 0
    fs.release(g)
    assert fs.lookup(d2, b"g") == f
    with pytest.raises(FsError):
        fs.lookup(d1, b"f")
    with pytest.raises(FsError):
        fs.stat(g)
    # dir across parents
    sub = fs.mkdir(d1, b"sub", 0o755, 0, 0)
    fs.create(sub, b"inside", 0o644, 0, 0)
    fs.rename(d1, b"sub", d2, b"moved")
    assert fs.lookup(sub, b"..") == d2
    assert fs.stat(d1).nlink == 2 and fs.stat(d2).nlink == 3
    # dir over empty dir, and the error cases
    empty = fs.mkdir(d1, b"empty", 0o755, 0, 0)
    for args, err in [((d2, b"moved", d2, b"g"), errno.ENOTDIR),
                      ((d2, b"g", d1, b"empty"), errno.EISDIR),
                      ((d1, b"empty", 2, b"d2"), errno.ENOTEMPTY),
                      ((d1, b"nothere", d2, b"x"), errno.ENOENT)]:
        with pytest.raises(FsError) as ei:
            fs.rename(*args)
        assert ei.value.errno == err
    assert fs.rename(d2, b"moved", d1, b"empty") == 0  # a replaced directory is freed at once
    assert fs.lookup(d1, b"empty") == sub and fs.lookup(sub, b"..") == d1
    with pytest.raises(FsError):
        fs.stat(empty)
    assert fs.stat(d1).nlink == 3 and fs.stat(d2).nlink == 2
    # same-dir rename and rename onto another link of the same inode
    fs.rename(d2, b"g", d2, b"g2")
    fs.link(d2, b"g3", f)
    assert fs.rename(d2, b"g2", d2, b"g3") == 0
    assert fs.stat(f).nlink == 2
    fs.sync()
    fsck(img)
    assert debugfs(img, "cat /d2/g3") == b"hello"
    assert set(dbg_ls(img, "/d1/empty")) == {b".", b"..", b"inside"}


def test_exchange_swaps_names_with_dotdot_and_link_counts(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img")
    cache, fs = mount(img)
    d1 = fs.mkdir(2, b"d1", 0o755, 0, 0)
    d2 = fs.mkdir(2, b"d2", 0o755, 0, 0)
    f = fs.create(d1, b"f", 0o644, 0, 0)
    sub = fs.mkdir(d2, b"sub", 0o755, 0, 0)
    fs.exchange(d1, b"f", d2, b"sub")  # a file and a directory across parents
    assert (fs.lookup(d1, b"f"), fs.lookup(d2, b"sub")) == (sub, f)
    assert fs.lookup(sub, b"..") == d1
    assert (fs.stat(d1).nlink, fs.stat(d2).nlink) == (3, 2)
    other = fs.mkdir(d2, b"other", 0o755, 0, 0)
    fs.exchange(d1, b"f", d2, b"other")  # two directories: '..' swapped, counts unchanged
    assert (fs.lookup(sub, b".."), fs.lookup(other, b"..")) == (d2, d1)
    assert (fs.stat(d1).nlink, fs.stat(d2).nlink) == (3, 3)
    with pytest.raises(FsError) as ei:
        fs.exchange(2, b"d2", d2, b"sub")  # d2 into its own subtree
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(FsError) as ei:
        fs.exchange(d1, b"f", d2, b"nothere")
    assert ei.value.errno == errno.ENOENT
    fs.sync()
    fsck(img)
    d2_ents = dbg_ls(img, "/d2")
    assert (dbg_ls(img, "/d1")[b"f"][0], d2_ents[b"other"][0], d2_ents[b"sub"][0]) == (other, sub, f)


def test_rename_target_lives_until_released(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img")
    cache, fs = mount(img)
    a = fs.create(2, b"a", 0o644, 0, 0)
    b = fs.create(2, b"b", 0o644, 0, 0)
    fs.write(b, 0, b"still open")
    assert fs.rename(2, b"a", 2, b"b") == b
    assert fs.stat(b).nlink == 0 and fs.read(b, 0, 100) == b"still open"
    fs.release(b)
    fs.sync()
    fsck(img)
    assert fs.lookup(2, b"b") == a


def test_link_and_unlink(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img")
    cache, fs = mount(img)
    d = fs.mkdir(2, b"d", 0o755, 0, 0)
    f = fs.create(2, b"f", 0o644, 0, 0)
    fs.write(f, 0, b"data" * 1000)
    fs.link(d, b"hard", f)
    assert fs.stat(f).nlink == 2
    with pytest.raises(FsError) as ei:
        fs.link(2, b"dlink", d)
    assert ei.value.errno == errno.EPERM
    assert fs.unlink(2, b"f") == f
    fs.release(f)  # still linked: no-op
    assert fs.read(fs.lookup(d, b"hard"), 0, 8) == b"datadata"
    # unlinked but not released: data still readable (open file semantics)
    assert fs.unlink(d, b"hard") == f
    assert fs.stat(f).nlink == 0 and fs.read(f, 0, 4) == b"data"
    fs.release(f)
    fs.sync()
    fsck(img)


@pytest.mark.parametrize("bs", [1024, 4096])
def test_symlinks(tmp_path: Path, bs: int) -> None:
    img = mkimg(tmp_path / "img", bs)
    cache, fs = mount(img)
    targets = {b"fast": b"a/b/c", b"edge59": b"t" * 59, b"edge60": b"u" * 60, b"slow": b"/very/" * 100}
    inos = {n: fs.symlink(2, n, t, 0, 0) for n, t in targets.items()}
    for n, t in targets.items():
        assert fs.readlink(inos[n]) == t
        assert S.S_ISLNK(fs.stat(inos[n]).mode)
    assert fs.stat(inos[b"fast"]).blocks == 0 and fs.stat(inos[b"edge60"]).blocks == bs // 512
    with pytest.raises(FsError) as ei:
        fs.symlink(2, b"long", b"x" * bs, 0, 0)
    assert ei.value.errno == errno.ENAMETOOLONG
    fs.sync()
    fsck(img)
    assert "Fast link dest" in dbg_stat(img, "/edge59")
    tree = rdump_tree(img, tmp_path / "dump")
    assert tree == fs_tree(fs)
    fs.release(fs.unlink(2, b"slow"))
    fs.release(fs.unlink(2, b"fast"))
    fs.sync()
    fsck(img)


def test_attributes(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img", 1024, "4M", None, ("-I", "256"))
    cache, fs = mount(img)
    f = fs.create(2, b"f", 0o4755, 1, 2)
    fs.chmod(f, S.S_IFDIR | 0o640)  # type bits are ignored
    fs.chown(f, 70000, 80000)  # needs the high uid/gid halves
    fs.utimes(f, 1234567, None)
    fs.utimes(f, None, 7654321)
    st_ = fs.stat(f)
    assert st_.mode == S.S_IFREG | 0o640
    assert (st_.uid, st_.gid, st_.atime, st_.mtime) == (70000, 80000, 1234567, 7654321)
    assert st_.ctime > 1700000100
    fs.chown(f, -1, 5)
    assert (fs.stat(f).uid, fs.stat(f).gid) == (70000, 5)
    fs.sync()
    fsck(img)
    out = dbg_stat(img, "/f")
    assert "Mode:  0640" in out and "User: 70000" in out and "Group:     5" in out
    assert "mtime: 0x0074cbb1" in out


def test_mknod(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img")
    cache, fs = mount(img)
    dev_small = os.makedev(4, 64)
    dev_big = os.makedev(259, 70000)
    c = fs.mknod(2, b"tty", S.S_IFCHR | 0o620, dev_small, 0, 5)
    b = fs.mknod(2, b"nvme", S.S_IFBLK | 0o660, dev_big, 0, 6)
    p = fs.mknod(2, b"pipe", S.S_IFIFO | 0o644, 0, 0, 0)
    s = fs.mknod(2, b"sock", S.S_IFSOCK | 0o755, 0, 0, 0)
    assert fs.stat(c).rdev == dev_small and fs.stat(b).rdev == dev_big
    assert S.S_ISFIFO(fs.stat(p).mode) and S.S_ISSOCK(fs.stat(s).mode)
    types = {n: dt for n, _, dt in fs.readdir(2)}
    assert (types[b"tty"], types[b"nvme"], types[b"pipe"], types[b"sock"]) == (2, 6, 1, 12)
    fs.sync()
    fsck(img)
    out = dbg_stat(img, "/nvme")
    assert "Device major/minor number: 259:70000" in out
    for n in (b"tty", b"nvme", b"pipe", b"sock"):
        fs.release(fs.unlink(2, n))
    fs.sync()
    fsck(img)


# ---------------------------------------------------------------- space limits

def test_enospc_blocks(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img", 1024, "300K")
    cache, fs = mount(img)
    f = fs.create(2, b"fill", 0o644, 0, 0)
    chunk = bytes(range(256)) * 16
    pos = 0
    with pytest.raises(FsError) as ei:
        while True:
            n = fs.write(f, pos, chunk)
            pos += n
            assert pos < 10**7
    assert ei.value.errno == errno.ENOSPC
    assert fs.statfs()["f_bfree"] <= 3  # maybe not enough for the next indirect + data block
    assert fs.stat(f).size == pos
    # directory growth and mkdir fail cleanly too
    with pytest.raises(FsError) as ei:
        for i in range(2000):
            fs.create(2, f"name-{i:05d}-{'p' * 50}".encode(), 0o644, 0, 0)
    assert ei.value.errno == errno.ENOSPC and "blocks" in str(ei.value)
    with pytest.raises(FsError) as ei:
        fs.mkdir(2, b"nodir", 0o755, 0, 0)
    assert ei.value.errno == errno.ENOSPC
    with pytest.raises(FsError) as ei:
        fs.symlink(2, b"slowlink", b"s" * 100, 0, 0)
    assert ei.value.errno == errno.ENOSPC
    fs.sync()
    fsck(img)
    assert debugfs(img, "cat /fill") == (chunk * (pos // len(chunk) + 1))[:pos]
    # free space and keep going
    fs.truncate(f, 1000)
    fs.release(fs.unlink(2, ("name-00000-" + "p" * 50).encode()))
    fs.mkdir(2, b"nowdir", 0o755, 0, 0)
    fs.symlink(2, b"slowlink", b"s" * 100, 0, 0)
    fs.sync()
    fsck(img)


def test_enospc_inodes(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img", 1024, "1M", None, ("-N", "64"))
    cache, fs = mount(img)
    made = []
    with pytest.raises(FsError) as ei:
        for i in range(1000):
            made.append(fs.create(2, b"f%d" % i, 0o644, 0, 0))
    assert ei.value.errno == errno.ENOSPC
    assert fs.statfs()["f_ffree"] == 0
    assert min(made) >= fs.first_ino
    fs.release(fs.unlink(2, b"f3"))
    assert fs.create(2, b"again", 0o644, 0, 0) == made[3]
    fs.sync()
    fsck(img)


def test_efbig_and_large_file(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img", 4096, "8M", None, ("-O", "^large_file"))
    cache, fs = mount(img)
    f = fs.create(2, b"huge", 0o644, 0, 0)
    fs.write(f, 3 * 2**30, b"beyond 2 GiB")
    assert fs.stat(f).size == 3 * 2**30 + 12
    assert fs.read(f, 3 * 2**30 - 2, 6) == b"\0\0beyo"
    with pytest.raises(FsError) as ei:
        fs.write(f, fs.max_file_size, b"x")
    assert ei.value.errno == errno.EFBIG
    fs.sync()
    fsck(img)
    assert "large_file" in subprocess.run(["dumpe2fs", "-h", str(img)], env=ENV, capture_output=True,
                                          text=True).stdout
    cache2, fs2 = mount(tmp_path / "img")
    assert fs2.stat(fs2.lookup(2, b"huge")).size == 3 * 2**30 + 12


def test_many_groups(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img", 1024, "8M", None, ("-g", "1024", "-N", "512"))
    cache, fs = mount(img)
    assert fs.ngroups == 8
    payload = random.Random(4).randbytes(3 * 1024 * 1024)  # spans several groups
    f = fs.create(2, b"big", 0o644, 0, 0)
    assert fs.write(f, 0, payload) == len(payload)
    dirs = [fs.mkdir(2, b"d%d" % i, 0o755, 0, 0) for i in range(16)]
    groups = {(d - 1) // fs.ipg for d in dirs}
    assert len(groups) > 4  # directories are spread over the groups
    near = 0
    for i, d in enumerate(dirs):
        g = fs.create(d, b"f", 0o644, 0, 0)
        fs.write(g, 0, b"%d" % i * 3000)
        grp = (g - 1) // fs.ipg
        near += grp == (d - 1) // fs.ipg  # files go to their directory's group if it has room
        assert (fs.bmap(g, 0) - 1) // 1024 == grp  # and their blocks to the inode's group
    assert near >= 8
    fs.sync()
    fsck(img)
    assert debugfs(img, "cat /big") == payload
    fs.truncate(f, 1000)
    for i in range(0, 16, 2):
        fs.release(fs.unlink(dirs[i], b"f"))
        fs.rmdir(2, b"d%d" % i)
    fs.sync()
    fsck(img)


def test_statfs_matches_dumpe2fs(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img", 1024, "8M")
    cache, fs = mount(img)
    f = fs.create(2, b"f", 0o644, 0, 0)
    fs.write(f, 0, bytes(100_000))
    fs.sync()
    out = subprocess.run(["dumpe2fs", "-h", str(img)], env=ENV, capture_output=True, text=True).stdout
    vals = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    sf = fs.statfs()
    assert sf["f_bfree"] == int(vals["Free blocks"])
    assert sf["f_ffree"] == int(vals["Free inodes"])
    assert sf["f_files"] == int(vals["Inode count"])
    assert 0 < sf["f_blocks"] < int(vals["Block count"])
    assert sf["f_namelen"] == 255 and sf["f_bsize"] == 1024


# ---------------------------------------------------------------- special images

def test_htree_directory(tmp_path: Path) -> None:
    stg = tmp_path / "stg"
    (stg / "big").mkdir(parents=True)
    for i in range(400):
        (stg / "big" / f"entry{i:04d}").write_bytes(b"%d" % i)
    img = mkimg(tmp_path / "img", 1024, "8M", stg)
    r = subprocess.run(["e2fsck", "-fyD", str(img)], env=ENV, capture_output=True)
    assert r.returncode in (0, 1), r.stdout
    fsck(img)
    assert "Flags: 0x1000" in dbg_stat(img, "/big")
    cache, fs = mount(img)
    d = fs.lookup(2, b"big")
    assert fs._iget(d).flags & EXT2_INDEX_FL
    assert fs_tree(fs) == host_tree(stg)
    for i in range(0, 400, 7):
        fs.release(fs.unlink(d, f"entry{i:04d}".encode()))
    for i in range(50):
        fs.create(d, f"new{i}".encode(), 0o644, 0, 0)
    assert not fs._iget(d).flags & EXT2_INDEX_FL
    fs.sync()
    fsck(img)
    names = set(dbg_ls(img, "/big"))
    assert b"entry0000" not in names and b"entry0001" in names and b"new49" in names


def test_strict_cache_discipline(tmp_path: Path) -> None:
    """With a cache that evicts and poisons every block but the last one fetched, any view
    held across another get() would read garbage or lose writes."""
    stg = tmp_path / "stg"
    make_staging(stg, 1024)
    img = mkimg(tmp_path / "img", 1024, "8M", stg)
    cache, fs = mount(img, max_blocks=1)
    assert fs_tree(fs) == host_tree(stg)
    run_workload(fs, random.Random(11))
    expect = fs_tree(fs)
    fs.sync()
    fsck(img)
    assert rdump_tree(img, tmp_path / "dump") == no_fifos(expect)


def run_workload(fs: Ext2, rng: random.Random) -> None:
    d = fs.mkdir(2, b"work", 0o755, 0, 0)
    sub = fs.mkdir(d, b"sub", 0o755, 0, 0)
    for i in range(60):
        f = fs.create(d, b"w%d" % i, 0o644, 0, 0)
        fs.write(f, rng.randrange(0, 300_000), rng.randbytes(rng.randrange(1, 5000)))
    for i in range(0, 60, 4):
        fs.truncate(fs.lookup(d, b"w%d" % i), rng.randrange(0, 20_000))
    for i in range(1, 60, 5):
        fs.release(fs.unlink(d, b"w%d" % i))
    fs.rename(d, b"w2", sub, b"moved")
    fs.rename(d, b"sub", 2, b"sub2")
    fs.symlink(sub, b"sl", b"../" * 30, 0, 0)
    fs.link(2, b"hl", fs.lookup(d, b"w3"))


@pytest.mark.parametrize("bs", [2048, 65536])
def test_other_block_sizes(tmp_path: Path, bs: int) -> None:
    stg = tmp_path / "stg"
    make_staging(stg, 1024)
    try:
        img = mkimg(tmp_path / "img", bs, "32M", stg)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"mke2fs refused block size {bs}: {e.stderr!r}")
    cache, fs = mount(img)
    assert fs_tree(fs) == host_tree(stg)
    run_workload(fs, random.Random(bs))
    expect = fs_tree(fs)
    fs.sync()
    fsck(img)
    assert rdump_tree(img, tmp_path / "dump") == no_fifos(expect)


# ---------------------------------------------------------------- bad images

def test_bad_images(tmp_path: Path) -> None:
    rnd = tmp_path / "random"
    rnd.write_bytes(random.Random(5).randbytes(1 << 20))
    with pytest.raises(FsError) as ei:
        FileBlockCache(rnd)
    assert ei.value.errno == errno.EINVAL and "magic" in str(ei.value)

    img = mkimg(tmp_path / "img")
    good = img.read_bytes()

    def variant(name: str, patch: dict[int, bytes]) -> Path:
        data = bytearray(good)
        for off, b in patch.items():
            data[off:off + len(b)] = b
        p = tmp_path / name
        p.write_bytes(bytes(data))
        return p

    zero = variant("zero", {1024: bytes(1024)})
    big_bs = variant("bigbs", {1024 + 24: struct.pack("<I", 7)})
    incompat = variant("incompat", {1024 + 96: struct.pack("<I", 0x2 | 0x40)})
    for p, needle in [(zero, "magic"), (big_bs, "block size"), (incompat, "extents")]:
        with pytest.raises(FsError) as ei:
            probe_block_size(lambda off, n, p=p: p.read_bytes()[off:off + n])
        assert ei.value.errno == errno.EINVAL and needle in str(ei.value), str(ei.value)
        with pytest.raises(FsError):
            Ext2(FileBlockCache(p, 1024), Clock())
    with pytest.raises(FsError):
        probe_block_size(lambda off, n: b"")
    ext4 = tmp_path / "ext4"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(ext4), "8M"], check=True, env=ENV, capture_output=True)
    with pytest.raises(FsError) as ei:
        FileBlockCache(ext4)
    assert "unsupported" in str(ei.value)


def test_xattr_blocks_are_kept_and_refcounted(tmp_path: Path) -> None:
    stg = tmp_path / "stg"
    stg.mkdir()
    for n in ("f1", "f2", "f3"):
        (stg / n).write_bytes(n.encode() * 700)
    try:
        for n in ("f1", "f2"):
            os.setxattr(stg / n, "user.shared", b"v" * 100)
        os.setxattr(stg / "f3", "user.own", b"w" * 100)
    except OSError:
        pytest.skip("host file system has no user xattrs")
    img = mkimg(tmp_path / "img", 1024, "2M", stg)
    # mke2fs gives every file its own EA block: make f1 and f2 share one (refcount 2)
    cache, fs = mount(img)
    acl, acl2 = fs._iget(fs.lookup(2, b"f1")).file_acl, fs._iget(fs.lookup(2, b"f2")).file_acl
    cache.close()
    subprocess.run(["debugfs", "-w", "-R", f"sif /f2 file_acl {acl}", str(img)], check=True, capture_output=True)
    subprocess.run(["debugfs", "-w", "-R", f"freeb {acl2}", str(img)], check=True, capture_output=True)
    with open(img, "r+b") as fh:
        fh.seek(acl * 1024 + 4)
        fh.write(struct.pack("<I", 2))
    subprocess.run(["e2fsck", "-fy", str(img)], env=ENV, capture_output=True)  # fix counts after freeb
    fsck(img)
    cache, fs = mount(img)
    f1, f2, f3 = (fs.lookup(2, n) for n in (b"f1", b"f2", b"f3"))
    assert acl and acl == fs._iget(f2).file_acl
    free0 = fs.statfs()["f_bfree"]
    fs.write(f1, 5000, b"grow")  # EA block stays counted in i_blocks
    fs.truncate(f3, 0)
    assert fs.stat(f3).blocks == 2
    fs.release(fs.unlink(2, b"f1"))  # shared block: refcount 2 -> 1, not freed
    fs.release(fs.unlink(2, b"f3"))  # own block: freed
    # 1400-byte files: -1 (grow f1) +2 (truncate f3) +3 (f1 data) +0 (shared EA) +1 (f3's EA)
    assert fs.statfs()["f_bfree"] == free0 + 5
    fs.sync()
    fsck(img)
    assert "user.shared" in debugfs(img, "ea_list /f2").decode()


def test_rename_into_own_subtree_is_refused(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "img")
    cache, fs = mount(img)
    a = fs.mkdir(2, b"a", 0o755, 0, 0)
    b = fs.mkdir(a, b"b", 0o755, 0, 0)
    c = fs.mkdir(b, b"c", 0o755, 0, 0)
    for dst in (a, b, c):
        with pytest.raises(FsError) as ei:
            fs.rename(2, b"a", dst, b"x")
        assert ei.value.errno == errno.EINVAL
    fs.rename(b, b"c", 2, b"c")  # moving up is fine
    fs.sync()
    fsck(img)


def test_corrupted_metadata_raises_only_fserror(tmp_path: Path) -> None:
    """Random damage to inode tables / directories must surface as FsError, never crash."""
    stg = tmp_path / "stg"
    make_staging(stg, 1024)
    good = mkimg(tmp_path / "img", 1024, "8M", stg)
    cache, fs = mount(good)
    interesting = sorted({fs._iloc(i)[0] for i in range(1, 200)} |
                         {fs.bmap(resolve(fs, p), 0) for p in ("", "d1", "d1/d2", "dind")} |
                         {fs._ptrs_of(fs._iget(resolve(fs, "dind")).block[13])[0]})
    cache.close()
    base = good.read_bytes()
    rng = random.Random(99)
    for trial in range(150):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 40)):
            blk = rng.choice(interesting)
            off = blk * 1024 + rng.randrange(1024)
            data[off] = rng.randrange(256)
        img = tmp_path / "bad"
        img.write_bytes(bytes(data))
        try:
            cache, fs = mount(img)
            fs_tree_limited(fs)
            f = fs.create(2, b"newfile", 0o644, 0, 0)
            fs.write(f, 0, b"x" * 5000)
            fs.release(fs.unlink(2, b"newfile"))
        except FsError:
            pass


def fs_tree_limited(fs: Ext2) -> None:
    todo, seen = [2], set()
    while todo and len(seen) < 500:
        ino = todo.pop()
        if ino in seen:
            continue
        seen.add(ino)
        for name, child, _dt in fs.readdir(ino):
            if name in (b".", b".."):
                continue
            try:
                st_ = fs.stat(child)
                if S.S_ISDIR(st_.mode):
                    todo.append(child)
                elif S.S_ISLNK(st_.mode):
                    fs.readlink(child)
                elif S.S_ISREG(st_.mode):
                    fs.read(child, 0, 1 << 20)
            except FsError:
                pass


# ---------------------------------------------------------------- random operations vs a model

NAMES = ["a", "b", "c", "d", "e"]
KINDS = ["create", "write", "write", "truncate", "unlink", "mkdir", "mkdir", "rmdir", "rename",
         "rename", "link", "symlink", "remount"]

op_strategy = st.tuples(st.sampled_from(KINDS), st.integers(0, 1000), st.integers(0, 1000),
                        st.integers(0, 300_000), st.binary(min_size=1, max_size=3000))


class Model:
    """Paths -> ('dir', id) | ('file', id) | ('link', target, id); file id -> bytearray.

    Equal tuples mean the same inode."""

    def __init__(self) -> None:
        self.ents: dict[str, tuple] = {"": ("dir", 0)}
        self.data: dict[int, bytearray] = {}
        self.next_id = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def paths(self, kind: str | None = None) -> list[str]:
        return sorted(p for p, e in self.ents.items() if p and (kind is None or e[0] == kind))

    def dirs(self) -> list[str]:
        return [""] + self.paths("dir")

    def children(self, d: str) -> list[str]:
        pre = d + "/" if d else ""
        return [p for p in self.ents if p.startswith(pre) and p != d and "/" not in p[len(pre):]]

    def tree(self) -> dict[str, bytes | str | None]:
        out: dict[str, bytes | str | None] = {}
        for p, e in self.ents.items():
            if p:
                out[p] = None if e[0] == "dir" else bytes(self.data[e[1]]) if e[0] == "file" else "link:" + e[1]
        return out


def j(d: str, n: str) -> str:
    return f"{d}/{n}" if d else n


def split(p: str) -> tuple[str, str]:
    d, _, n = p.rpartition("/")
    return d, n


def apply_op(fs: Ext2, m: Model, op: tuple) -> None:
    """Apply one operation to driver and model; errors the model predicts must match."""
    kind, i1, i2, i3, data = op
    dirs, files, every = m.dirs(), m.paths("file"), m.paths()

    def expect_err(err: int, fn, *args) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(FsError) as ei:
            fn(*args)
        assert ei.value.errno == err, (op, ei.value)

    def write(p: str, off: int) -> None:
        buf = m.data[m.ents[p][1]]
        assert fs.write(resolve(fs, p), off, data) == len(data)
        if len(buf) < off + len(data):
            buf.extend(bytes(off + len(data) - len(buf)))
        buf[off:off + len(data)] = data

    if kind == "create":
        d = dirs[i1 % len(dirs)]
        p = j(d, NAMES[i2 % len(NAMES)])
        if p in m.ents:
            expect_err(errno.EEXIST, fs.create, resolve(fs, d), split(p)[1].encode(), 0o644, 0, 0)
            return
        fs.create(resolve(fs, d), split(p)[1].encode(), 0o644, 0, 0)
        m.ents[p] = ("file", m.new_id())
        m.data[m.ents[p][1]] = bytearray()
        write(p, i3)
    elif kind == "write" and files:
        write(files[i1 % len(files)], i3 if i2 % 2 else len(m.data[m.ents[files[i1 % len(files)]][1]]))
    elif kind == "truncate" and files:
        p = files[i1 % len(files)]
        size = i3 % 290_000 if i2 % 3 else i3 % 3000
        fs.truncate(resolve(fs, p), size)
        buf = m.data[m.ents[p][1]]
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))
    elif kind == "unlink" and every:
        p = every[i1 % len(every)]
        d, n = split(p)
        if m.ents[p][0] == "dir":
            expect_err(errno.EISDIR, fs.unlink, resolve(fs, d), n.encode())
            return
        fs.release(fs.unlink(resolve(fs, d), n.encode()))
        del m.ents[p]
        if not (i2 % 4):
            expect_err(errno.ENOENT, fs.unlink, resolve(fs, d), n.encode())
    elif kind == "mkdir":
        d = dirs[i1 % len(dirs)]
        p = j(d, NAMES[i2 % len(NAMES)])
        if p in m.ents:
            expect_err(errno.EEXIST, fs.mkdir, resolve(fs, d), split(p)[1].encode(), 0o755, 0, 0)
            return
        fs.mkdir(resolve(fs, d), split(p)[1].encode(), 0o755, 0, 0)
        m.ents[p] = ("dir", m.new_id())
    elif kind == "rmdir" and every:
        p = every[i1 % len(every)]
        d, n = split(p)
        if m.ents[p][0] != "dir":
            expect_err(errno.ENOTDIR, fs.rmdir, resolve(fs, d), n.encode())
        elif m.children(p):
            expect_err(errno.ENOTEMPTY, fs.rmdir, resolve(fs, d), n.encode())
        else:
            fs.rmdir(resolve(fs, d), n.encode())
            del m.ents[p]
    elif kind == "rename" and every:
        sp = every[i1 % len(every)]
        dd = dirs[i2 % len(dirs)]
        dp = j(dd, NAMES[i3 % len(NAMES)])
        se, de = m.ents[sp], m.ents.get(dp)
        if se[0] == "dir" and (dp == sp or dp.startswith(sp + "/")):
            return  # EINVAL is the kernel's check
        args = (resolve(fs, split(sp)[0]), split(sp)[1].encode(), resolve(fs, dd), split(dp)[1].encode())
        if de is not None:
            if de == se:  # the same inode (hard links): a no-op
                fs.rename(*args)
                return
            err = (errno.ENOTDIR if se[0] == "dir" and de[0] != "dir" else
                   errno.EISDIR if se[0] != "dir" and de[0] == "dir" else
                   errno.ENOTEMPTY if de[0] == "dir" and m.children(dp) else 0)
            if err:
                expect_err(err, fs.rename, *args)
                return
        victim = fs.rename(*args)
        if victim:
            fs.release(victim)
        moved = {p: e for p, e in m.ents.items() if p == sp or p.startswith(sp + "/")}
        for p in moved:
            del m.ents[p]
        for p, e in moved.items():
            m.ents[dp + p[len(sp):]] = e
    elif kind == "link" and files:
        sp = files[i1 % len(files)]
        dd = dirs[i2 % len(dirs)]
        dp = j(dd, NAMES[i3 % len(NAMES)])
        if dp in m.ents:
            expect_err(errno.EEXIST, fs.link, resolve(fs, dd), split(dp)[1].encode(), resolve(fs, sp))
            return
        fs.link(resolve(fs, dd), split(dp)[1].encode(), resolve(fs, sp))
        m.ents[dp] = m.ents[sp]
    elif kind == "symlink":
        d = dirs[i1 % len(dirs)]
        p = j(d, NAMES[i2 % len(NAMES)])
        target = "t" * (1 + i3 % 120)
        if p in m.ents:
            expect_err(errno.EEXIST, fs.symlink, resolve(fs, d), split(p)[1].encode(), target.encode(), 0, 0)
            return
        fs.symlink(resolve(fs, d), split(p)[1].encode(), target.encode(), 0, 0)
        m.ents[p] = ("link", target, m.new_id())


IMAGE_VARIANTS = [(), ("-I", "256"), ("-O", "^filetype"), ("-r", "0"), ("-g", "1024", "-N", "256")]


@settings(max_examples=int(os.environ.get("EXT2_HYPOTHESIS_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_strategy, min_size=3, max_size=60), bs=st.sampled_from([1024, 4096]),
       variant=st.sampled_from(IMAGE_VARIANTS), strict=st.booleans())
def test_random_operations(ops: list[tuple], bs: int, variant: tuple[str, ...], strict: bool) -> None:
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        img = mkimg(tmp / "img", bs, "8M", None, variant)
        max_blocks = 1 if strict else None
        cache, fs = mount(img, max_blocks=max_blocks)
        m = Model()
        for op in ops:
            if op[0] == "remount":
                fs.sync()
                cache.close()
                fsck(img)
                cache, fs = mount(img, max_blocks=max_blocks)
            else:
                apply_op(fs, m, op)
        assert fs_tree(fs) == m.tree()
        fs.sync()
        cache.close()
        fsck(img)
        assert rdump_tree(img, tmp / "dump") == m.tree()
        cache, fs = mount(img)  # a fresh mount reads the same
        assert fs_tree(fs) == m.tree()
        cache.close()
