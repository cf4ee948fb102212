"""Pseudo file systems: trees the kernel computes rather than stores, laid over the image at /sys
and /proc as Linux mounts sysfs and procfs there (the trees themselves: guestkernel/pseudofs/).

A pseudo file system (`PseudoFS`) answers two questions: what the entry at a path is (`entry`:
a directory, a file with a reader and maybe a writer, or a symbolic link) and what a directory
holds (`names`). Everything else, the same for both, is here: the node type the VFS holds
(`PseudoNode`: which file system and the path inside it), lookup, stat, open files and
directory listings. A file's contents are produced when it is read from offset 0, as Linux's
seq_file regenerates them, so a reader that rewinds (vmstat, top) sees fresh numbers.
"""
from __future__ import annotations

import stat as S
import zlib
from dataclasses import dataclass
from typing import Callable

from guestkernel.errors import EACCES, EINVAL, EISDIR, ENOENT, ENOTDIR, SyscallError
from guestkernel.vfs.file import DT_DIR, DT_LNK, DT_REG, O_ACCMODE, O_RDONLY, OpenFile, Stat, counted_dir_seek

DIR, FILE, LINK = "dir", "file", "link"


@dataclass(frozen=True)
class PseudoNode:
    """A node of a pseudo file system: its mount point below / ("sys", "proc") and its path
    below that ("" is the mount point itself)."""

    fs: str
    path: str

    @property
    def guest_path(self) -> bytes:
        return ("/" + self.fs + ("/" + self.path if self.path else "")).encode()

    @property
    def is_root(self) -> bool:
        return not self.path

    def parent(self) -> "PseudoNode":
        return PseudoNode(self.fs, self.path.rpartition("/")[0])

    def child(self, name: str) -> "PseudoNode":
        return PseudoNode(self.fs, f"{self.path}/{name}" if self.path else name)


@dataclass
class Entry:
    """What is at a path: its kind, permission bits and how to read, write or follow it."""

    kind: str
    mode: int = 0o444
    read: Callable[[], bytes] | None = None
    write: Callable[[bytes], None] | None = None
    target: Callable[[], bytes] | None = None
    uid: int = 0
    gid: int = 0


class PseudoFS:
    """One pseudo file system; subclasses say what is where."""

    mount = ""          # the directory below / it is mounted on
    dev = 0             # its st_dev
    file_size = 0       # what stat reports as a file's size (procfs 0, sysfs 4096)

    def entry(self, path: str) -> Entry | None:
        raise NotImplementedError

    def names(self, path: str) -> list[str]:
        """A directory's entries, in listing order."""
        raise NotImplementedError

    @property
    def root(self) -> PseudoNode:
        return PseudoNode(self.mount, "")

    def ino(self, path: str) -> int:
        # Stable across runs (determinism) and distinct in practice; the root is 1, as Linux's.
        return 1 if not path else 2 + zlib.crc32(path.encode())

    def get(self, node: PseudoNode) -> Entry:
        e = self.entry(node.path)
        if e is None:
            raise SyscallError(ENOENT)  # e.g. /proc/PID of a process that has gone
        return e

    def lookup(self, node: PseudoNode, name: bytes) -> PseudoNode:
        """`name` in directory `node` (`..` of the root is the VFS's business)."""
        if self.get(node).kind != DIR:
            raise SyscallError(ENOTDIR)
        if name == b".":
            return node
        if name == b"..":
            return node.parent()
        child = node.child(name.decode(errors="surrogateescape"))
        if "/" in child.path[len(node.path):].lstrip("/") or self.entry(child.path) is None:
            raise SyscallError(ENOENT)
        return child

    def stat(self, node: PseudoNode) -> Stat:
        e = self.get(node)
        ino = self.ino(node.path)
        if e.kind == DIR:
            nlink = 2 + sum(1 for n in self.names(node.path) if (c := self.entry(node.child(n).path)) and c.kind == DIR)
            return Stat(ino=ino, mode=S.S_IFDIR | e.mode, nlink=nlink, uid=e.uid, gid=e.gid, dev=self.dev)
        if e.kind == LINK:
            return Stat(ino=ino, mode=S.S_IFLNK | 0o777, uid=e.uid, gid=e.gid, dev=self.dev)
        return Stat(ino=ino, mode=S.S_IFREG | e.mode, size=self.file_size, uid=e.uid, gid=e.gid, dev=self.dev)

    def readlink(self, node: PseudoNode) -> bytes:
        e = self.get(node)
        if e.kind != LINK or e.target is None:
            raise SyscallError(EINVAL)
        return e.target()

    def open(self, node: PseudoNode, flags: int) -> OpenFile:
        e = self.get(node)
        if e.kind == DIR:
            if (flags & O_ACCMODE) != O_RDONLY:
                raise SyscallError(EISDIR)
            return PseudoDirFile(self, node, flags)
        f = PseudoFile(self, node, e, flags)
        # Permission bits are the whole check (Linux's sysctl and kernfs files ignore root's
        # override): no reader or no r bit is EACCES for reading, likewise for writing.
        if f.readable and (e.read is None or not e.mode & 0o444):
            raise SyscallError(EACCES)
        if f.writable and (e.write is None or not e.mode & 0o222):
            raise SyscallError(EACCES)
        return f

    def readdir(self, node: PseudoNode, parent_ino: int) -> list[tuple[bytes, int, int]]:
        ents = [(b".", self.ino(node.path), DT_DIR), (b"..", parent_ino, DT_DIR)]
        for n in self.names(node.path):
            c = node.child(n)
            e = self.entry(c.path)
            if e is not None:
                dt = {DIR: DT_DIR, LINK: DT_LNK}.get(e.kind, DT_REG)
                ents.append((n.encode(errors="surrogateescape"), self.ino(c.path), dt))
        return ents


class PseudoFile(OpenFile):
    """An open pseudo file: contents made at a read from offset 0 and kept for the reads that
    follow; a write hands the bytes to the entry's writer."""

    kind = "pseudo"

    def __init__(self, fs: PseudoFS, node: PseudoNode, entry: Entry, flags: int) -> None:
        super().__init__(flags)
        self.fs = fs
        self.node = node
        self.entry = entry
        self.data: bytes | None = None

    def pread(self, n: int, offset: int) -> bytes:
        if self.data is None or offset == 0:
            assert self.entry.read is not None
            self.data = self.entry.read()
        return self.data[offset : offset + n]

    def read(self, n: int) -> bytes:
        data = self.pread(n, self.offset)
        self.offset += len(data)
        return data

    def write(self, data: bytes) -> int:
        assert self.entry.write is not None
        self.entry.write(data)
        self.offset += len(data)
        return len(data)

    def pwrite(self, data: bytes, offset: int) -> int:
        assert self.entry.write is not None
        self.entry.write(data)
        return len(data)

    def seek(self, offset: int, whence: int) -> int:
        end = self.fs.file_size
        base = {0: 0, 1: self.offset, 2: end}.get(whence)
        if base is None or base + offset < 0 or (whence == 2 and not end):
            raise SyscallError(EINVAL)  # seq_lseek has no SEEK_END
        self.offset = base + offset
        return self.offset

    def stat(self) -> Stat:
        return self.fs.stat(self.node)


class PseudoDirFile(OpenFile):
    """An open pseudo directory (getdents64, fstat, fchdir, *at calls relative to it)."""

    kind = "pseudodir"

    def __init__(self, fs: PseudoFS, node: PseudoNode, flags: int) -> None:
        super().__init__(flags)
        self.fs = fs
        self.node = node

    def stat(self) -> Stat:
        return self.fs.stat(self.node)

    def seek(self, offset: int, whence: int) -> int:
        return counted_dir_seek(self, offset, whence)
