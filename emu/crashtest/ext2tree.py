"""The file tree of an ext2 image read straight from the image file, for the checks of a crash
point (every point reads one tree: extracting it with debugfs and walking the copy took ~0.12 s
of a point's ~0.3 s).

Written apart from the guest kernel's ext2 driver on purpose: it is the oracle that checks what
that driver left on disk, so it shares none of its code. It reads only what the tree needs
(superblock, group descriptors, inodes, block maps, directory records) and gives the shape of
`checks.host_tree`; tests/campaigns/test_ext2tree.py holds it equal to the debugfs extraction.
Anything it cannot follow (a bad magic, a block pointer outside the file system, a directory
record that overruns its block, a directory cycle) is a TreeError (an EmuError) naming the inode.
"""
from __future__ import annotations

import hashlib
import mmap
import stat as S
import struct
from pathlib import Path
from typing import Any

from vmm.errors import EmuError

ROOT_INO = 2
N_DIRECT = 12
INCOMPAT_FILETYPE = 0x0002
INCOMPAT_UNSUPPORTED = ~0x0002  # filetype only (meta_bg moves the descriptors, 64bit widens them)
RO_LARGE_FILE = 0x0002
EXTENTS_FL = 0x00080000
_INODE = struct.Struct("<HHI16xHHII4x15IIII")  # mode uid size . gid links blocks flags . block[15] gen file_acl size_high
_DIRENT = struct.Struct("<IHBB")


class TreeError(EmuError):
    """An image whose tree cannot be read; `why` says what, without the image's path."""

    def __init__(self, image: Path, why: str) -> None:
        super().__init__(f"cannot read the file tree of {image}: {why}")
        self.why = why


class _Corrupt(Exception):
    pass


class _Image:
    def __init__(self, data: Any) -> None:
        self.data = data
        sb = bytes(data[1024:2048])
        if len(sb) < 1024 or struct.unpack_from("<H", sb, 56)[0] != 0xEF53:
            raise _Corrupt("not an ext2 file system (no superblock magic)")
        (self.inodes_count, self.blocks_count, _r, _fb, _fi, first_data, log_bs, _lf,
         self.blocks_per_group, _fpg, self.inodes_per_group) = struct.unpack_from("<11I", sb, 0)
        rev = struct.unpack_from("<I", sb, 76)[0]
        self.inode_size = struct.unpack_from("<H", sb, 88)[0] if rev >= 1 else 128
        incompat, self.ro_compat = struct.unpack_from("<I4xI", sb, 96)
        if incompat & INCOMPAT_UNSUPPORTED:
            raise _Corrupt(f"incompatible features 0x{incompat:x}: not ext2")
        if log_bs > 6 or not self.inodes_per_group or not self.blocks_per_group or self.inode_size < 128:
            raise _Corrupt("the superblock's geometry is corrupt")
        self.bs = 1024 << log_bs
        self.filetype = bool(incompat & INCOMPAT_FILETYPE)
        if len(data) < self.blocks_count * self.bs:
            raise _Corrupt(f"{len(data)} bytes, the superblock says {self.blocks_count * self.bs}")
        ngroups = -(-(self.blocks_count - first_data) // self.blocks_per_group)
        gdt = (first_data + 1) * self.bs
        self.itables = [struct.unpack_from("<I", data, gdt + 32 * g + 8)[0] for g in range(ngroups)]

    def inode(self, ino: int) -> tuple[int, ...]:
        if not 1 <= ino <= self.inodes_count:
            raise _Corrupt(f"inode {ino} out of range")
        g, i = divmod(ino - 1, self.inodes_per_group)
        if g >= len(self.itables):
            raise _Corrupt(f"inode {ino} in no group")
        return _INODE.unpack_from(self.data, self.itables[g] * self.bs + i * self.inode_size)

    def _block(self, ino: int, b: int) -> memoryview:
        if b >= self.blocks_count:
            raise _Corrupt(f"inode {ino} points at block {b}, past the end ({self.blocks_count})")
        return memoryview(self.data)[b * self.bs:(b + 1) * self.bs]

    def block_map(self, ino: int, ptrs: tuple[int, ...], nblocks: int) -> list[int]:
        """The file's first `nblocks` logical blocks as physical block numbers (0: a hole)."""
        out = list(ptrs[:N_DIRECT])
        per = self.bs // 4
        for level, top in enumerate(ptrs[N_DIRECT:15], start=1):
            if len(out) >= nblocks:
                break
            span = per ** level
            if not top:
                out.extend([0] * min(span, nblocks - len(out)))
                continue
            self._indirect(ino, top, level, nblocks, out)
        return out[:nblocks]

    def _indirect(self, ino: int, b: int, level: int, nblocks: int, out: list[int]) -> None:
        per = self.bs // 4
        entries = self._block(ino, b).cast("I")
        if level == 1:
            out.extend(entries[:nblocks - len(out)])
            return
        for p in entries:
            if len(out) >= nblocks:
                return
            if p:
                self._indirect(ino, p, level - 1, nblocks, out)
            else:
                out.extend([0] * min(per ** (level - 1), nblocks - len(out)))

    def content(self, ino: int, ptrs: tuple[int, ...], size: int) -> list[memoryview | int]:
        """The file's bytes as runs of physical blocks (memoryviews) and holes (byte counts)."""
        n = -(-size // self.bs)
        per = self.bs // 4
        if n > N_DIRECT + per + per ** 2 + per ** 3:
            raise _Corrupt(f"inode {ino} is {size} bytes, more than its block map can address")
        blocks = self.block_map(ino, ptrs, n)
        runs: list[memoryview | int] = []
        i = 0
        while i < n:
            j = i + 1
            if blocks[i] == 0:
                while j < n and blocks[j] == 0:
                    j += 1
            else:
                while j < n and blocks[j] == blocks[j - 1] + 1:
                    j += 1
            length = min((j - i) * self.bs, size - i * self.bs)
            if blocks[i] == 0:
                runs.append(length)
            else:
                if blocks[j - 1] >= self.blocks_count:
                    raise _Corrupt(f"inode {ino} points past the end of the file system")
                runs.append(memoryview(self.data)[blocks[i] * self.bs:blocks[i] * self.bs + length])
            i = j
        return runs


_ZEROS = bytes(1 << 16)


def _sha256(runs: list[memoryview | int]) -> str:
    h = hashlib.sha256()
    for r in runs:
        if isinstance(r, int):
            while r:
                n = min(r, len(_ZEROS))
                h.update(_ZEROS[:n])
                r -= n
        else:
            h.update(r)
    return h.hexdigest()


def ext2_tree(image: Path) -> dict[str, dict[str, Any]]:
    """Every path of the image (as '/a/b') with the fields of `checks.host_tree`: type,
    permission bits, size, a file's sha256, a symlink's target, another node's device number."""
    image = Path(image)
    try:
        with open(image, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise TreeError(image, str(e)) from None
    try:
        return _walk(_Image(data))
    except (_Corrupt, struct.error, IndexError, ValueError) as e:  # (the rest: a record outside the image)
        raise TreeError(image, str(e)) from None
    finally:
        try:
            data.close()
        except BufferError:  # views still held by an error's traceback: closed when they go
            pass


def _walk(fs: _Image) -> dict[str, dict[str, Any]]:
    tree: dict[str, dict[str, Any]] = {}
    seen = {ROOT_INO}
    todo = [("", ROOT_INO)]
    while todo:
        prefix, dino = todo.pop()
        mode, _uid, size, _gid, _links, _blocks, flags, *ptrs, _gen, _acl, _high = fs.inode(dino)
        if flags & EXTENTS_FL:
            raise _Corrupt(f"directory inode {dino} uses extents: not ext2")
        entries = []
        for run in fs.content(dino, tuple(ptrs), size):
            if isinstance(run, int):
                raise _Corrupt(f"directory inode {dino} has a hole")
            entries.extend(_records(fs, dino, run))
        for name, ino in sorted(entries):
            path = f"{prefix}/{name}"
            mode, _uid, size, _gid, _links, blocks, flags, *ptrs, _gen, acl, high = fs.inode(ino)
            e: dict[str, Any] = {"mode": S.S_IMODE(mode), "size": 0}
            fmt = S.S_IFMT(mode)
            if fmt == S.S_IFDIR:
                e["type"] = "dir"
                if ino in seen:
                    raise _Corrupt(f"directory inode {ino} is reached twice ({path})")
                seen.add(ino)
                todo.append((path, ino))
            elif fmt == S.S_IFREG:
                if fs.ro_compat & RO_LARGE_FILE:
                    size |= high << 32
                if flags & EXTENTS_FL:
                    raise _Corrupt(f"inode {ino} uses extents: not ext2")
                e.update(type="file", size=size, sha256=_sha256(fs.content(ino, tuple(ptrs), size)))
            elif fmt == S.S_IFLNK:
                if blocks == (fs.bs >> 9 if acl else 0):  # fast (Linux's test): the target is in the pointers
                    raw = struct.pack("<15I", *ptrs)[:size]
                else:
                    raw = b"".join(bytes(r) for r in fs.content(ino, tuple(ptrs), size))  # (a hole: zeros)
                e.update(type="symlink", target=raw.decode("utf-8", "surrogateescape"), size=size)
            else:
                e.update(type="other", rdev=_rdev(ptrs))
            tree[path] = e
    return dict(sorted(tree.items()))


def _records(fs: _Image, dino: int, block: memoryview) -> list[tuple[str, int]]:
    """The (name, inode) records of one directory block, without '.' and '..'."""
    out = []
    off, end = 0, len(block)
    while off < end:
        if end - off < 8:
            raise _Corrupt(f"directory inode {dino}: a record overruns its block")
        ino, rec_len, name_len, _ft = _DIRENT.unpack_from(block, off)
        if not fs.filetype:
            name_len |= _ft << 8
        if rec_len < 8 or rec_len % 4 or off + rec_len > end or 8 + name_len > rec_len:
            raise _Corrupt(f"directory inode {dino}: a corrupt record at byte {off}")
        if ino:
            name = bytes(block[off + 8:off + 8 + name_len]).decode("utf-8", "surrogateescape")
            if name not in (".", ".."):
                out.append((name, ino))
        off += rec_len
    return out


def _rdev(ptrs: list[int]) -> int:
    """A device node's number as the host's st_rdev (Linux's old or new ext2 encoding)."""
    if ptrs[0]:
        old = ptrs[0]
        return (((old >> 8) & 0xFF) << 8) | (old & 0xFF)
    new = ptrs[1]
    major, minor = (new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00)
    return ((major & 0xFFF) << 8) | (minor & 0xFF) | ((minor & ~0xFF) << 12)
