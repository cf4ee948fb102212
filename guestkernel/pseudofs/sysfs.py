"""/sys: a small read-only sysfs, laid over the image like /dev.

It describes the one CPU the machine has, in Linux's formats (cpu lists such as "0\n"), so that
programs that size themselves from sysfs (stress-ng, glibc's get_nprocs_conf) find it:

    /sys/devices/system/cpu/{online,possible,present,offline,kernel_max}
    /sys/devices/system/cpu/cpu0/topology/{core_id,physical_package_id,die_id,...}

Files are 0444 and report size 4096, as sysfs does; opening one for writing is EACCES, and
nothing can be created, removed or renamed here (EPERM, as for kernfs directories without those
operations). Directories list their entries in table order.
"""
from __future__ import annotations

import stat as S
from dataclasses import dataclass

from guestkernel.errors import EACCES, EINVAL, EISDIR, ENOENT, ENOTDIR, SyscallError
from guestkernel.vfs.file import DT_DIR, DT_REG, O_ACCMODE, O_RDONLY, OpenFile, Stat, counted_dir_seek

SYSFS_DEV = 0x15          # st_dev of the sysfs mount
SYSFS_FILE_SIZE = 4096    # what sysfs reports for every attribute file
INO_BASE = 1000           # inode numbers: INO_BASE + position in TREE

_CPU0_TOPOLOGY = {name: b"0\n" for name in (
    "core_id", "physical_package_id", "die_id", "cluster_id", "core_cpus_list", "core_siblings_list",
    "thread_siblings_list", "die_cpus_list", "package_cpus_list", "cluster_cpus_list")}

# path below /sys -> file contents, or None for a directory. One CPU: cpu0, online.
TREE: dict[str, bytes | None] = {
    "": None,
    "devices": None,
    "devices/system": None,
    "devices/system/cpu": None,
    "devices/system/cpu/online": b"0\n",
    "devices/system/cpu/possible": b"0\n",
    "devices/system/cpu/present": b"0\n",
    "devices/system/cpu/offline": b"\n",
    "devices/system/cpu/kernel_max": b"8191\n",
    "devices/system/cpu/cpu0": None,
    "devices/system/cpu/cpu0/topology": None,
    **{f"devices/system/cpu/cpu0/topology/{n}": v for n, v in _CPU0_TOPOLOGY.items()},
}
_INO = {path: INO_BASE + i for i, path in enumerate(TREE)}


@dataclass(frozen=True)
class SysNode:
    """A node of /sys, named by its path below /sys ("" is /sys itself)."""

    path: str

    @property
    def is_dir(self) -> bool:
        return TREE[self.path] is None

    @property
    def guest_path(self) -> bytes:
        return b"/sys" + (b"/" + self.path.encode() if self.path else b"")

    def parent(self) -> "SysNode":
        return SysNode(self.path.rpartition("/")[0])


ROOT = SysNode("")


def lookup(node: SysNode, name: bytes) -> SysNode:
    """The entry `name` of directory `node` (`..` of /sys itself is the caller's business)."""
    if not node.is_dir:
        raise SyscallError(ENOTDIR)
    if name == b".":
        return node
    if name == b"..":
        return node.parent()
    path = (node.path + "/" if node.path else "") + name.decode(errors="replace")
    if path not in TREE:
        raise SyscallError(ENOENT)
    return SysNode(path)


def stat(node: SysNode) -> Stat:
    if node.is_dir:
        nlink = 2 + sum(1 for c in children(node) if c.is_dir)
        return Stat(ino=_INO[node.path], mode=S.S_IFDIR | 0o755, nlink=nlink, dev=SYSFS_DEV)
    return Stat(ino=_INO[node.path], mode=S.S_IFREG | 0o444, size=SYSFS_FILE_SIZE, dev=SYSFS_DEV)


def children(node: SysNode) -> list[SysNode]:
    prefix = node.path + "/" if node.path else ""
    return [SysNode(p) for p in TREE if p.startswith(prefix) and p and "/" not in p[len(prefix):]
            and p != node.path]


def open_node(node: SysNode, flags: int) -> OpenFile:
    if node.is_dir:
        if (flags & O_ACCMODE) != O_RDONLY:
            raise SyscallError(EISDIR)
        return SysDirFile(node, flags)
    if (flags & O_ACCMODE) != O_RDONLY:
        raise SyscallError(EACCES)  # no store operation behind any attribute
    return SysFile(node, flags)


class SysFile(OpenFile):
    """An open attribute file: its contents are fixed, reads and seeks as on a regular file."""

    kind = "sysfs"

    def __init__(self, node: SysNode, flags: int) -> None:
        super().__init__(flags)
        self.node = node

    def pread(self, n: int, offset: int) -> bytes:
        data = TREE[self.node.path] or b""
        return data[offset : offset + n]

    def read(self, n: int) -> bytes:
        data = self.pread(n, self.offset)
        self.offset += len(data)
        return data

    def read_at(self, offset: int, n: int) -> bytes:
        return self.pread(n, offset)

    def seek(self, offset: int, whence: int) -> int:
        base = {0: 0, 1: self.offset, 2: SYSFS_FILE_SIZE}.get(whence)
        if base is None or base + offset < 0:
            raise SyscallError(EINVAL)
        self.offset = base + offset
        return self.offset

    def stat(self) -> Stat:
        return stat(self.node)


class SysDirFile(OpenFile):
    """An open /sys directory (getdents64, fstat, fchdir, *at calls relative to it)."""

    kind = "sysdir"

    def __init__(self, node: SysNode, flags: int) -> None:
        super().__init__(flags)
        self.node = node

    def stat(self) -> Stat:
        return stat(self.node)

    def seek(self, offset: int, whence: int) -> int:
        return counted_dir_seek(self, offset, whence)


def readdir(f: SysDirFile, root_ino: int) -> list[tuple[bytes, int, int]]:
    node = f.node
    parent_ino = root_ino if node == ROOT else _INO[node.parent().path]
    ents = [(b".", _INO[node.path], DT_DIR), (b"..", parent_ino, DT_DIR)]
    for c in children(node):
        ents.append((c.path.rpartition("/")[2].encode(), _INO[c.path], DT_DIR if c.is_dir else DT_REG))
    return ents
