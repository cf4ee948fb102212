"""Files as the guest sees them: path lookup, open file descriptions, pipes and devices.

Paths resolve inside the guest's root file system only: `..` at the root stays at the root and
absolute symlink targets restart at the guest root, so nothing of the host is reachable. `/dev` is
a small device directory provided by the kernel (null, zero, full, random, urandom, tty, console,
stdin/stdout/stderr), laid over the image; `/sys` and `/proc` likewise are the kernel's pseudo
file systems (guestkernel/pseudofs/).

    lookup.py     path resolution (PathLookup, mixed into VFS), MAX_SYMLINKS, Node
    core.py       VFS: attributes of nodes, opening them, directory listings, open counts
    file.py       OpenFile, InodeFile, the open(2) flags, Stat
    pipe.py       Pipe, PipeEnd
    devices.py    /dev: its nodes, their open files, the console files
    loop.py       loop devices: /dev/loop-control, /dev/loopN, their ioctls, /sys/block/loopN
    waitqueue.py  WaitQueue
"""
from __future__ import annotations

from guestkernel.vfs.waitqueue import WaitQueue
from guestkernel.vfs.file import (DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, DT_UNKNOWN, O_ACCMODE,
                                  O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_LARGEFILE, O_NOCTTY, O_NOFOLLOW,
                                  O_NONBLOCK, O_PATH, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, POLLERR, POLLHUP, POLLIN,
                                  POLLNVAL, POLLOUT, POLLPRI, POLLRDNORM, POLLWRNORM, SEEK_DATA, SEEK_HOLE,
                                  InodeFile, OpenFile, Stat, counted_dir_seek)
from guestkernel.vfs.pipe import PIPE_CAPACITY, Pipe, PipeEnd
from guestkernel.vfs.devices import (DEV_DIR, DEVICES, FD_ALIASES, PMEM_MAJOR, ConsoleFile, DevDirFile, DevFile,
                                     DevNode, PmemFile, PmemRegion, alias_fd)
from guestkernel.vfs.lookup import MAX_SYMLINKS, Node, PathLookup
from guestkernel.vfs.core import VFS

__all__ = [
    "WaitQueue", "DT_BLK", "DT_CHR", "DT_DIR", "DT_FIFO", "DT_LNK", "DT_REG", "DT_SOCK", "DT_UNKNOWN", "O_ACCMODE",
    "O_APPEND", "O_CLOEXEC", "O_CREAT", "O_DIRECTORY", "O_EXCL", "O_LARGEFILE", "O_NOCTTY", "O_NOFOLLOW",
    "O_NONBLOCK", "O_PATH", "O_RDONLY", "O_RDWR", "O_TRUNC", "O_WRONLY", "POLLERR", "POLLHUP", "POLLIN", "POLLNVAL",
    "POLLOUT", "POLLPRI", "POLLRDNORM", "POLLWRNORM", "SEEK_DATA", "SEEK_HOLE", "InodeFile",
    "OpenFile", "Stat", "counted_dir_seek", "PIPE_CAPACITY", "Pipe", "PipeEnd", "DEV_DIR", "DEVICES",
    "FD_ALIASES", "PMEM_MAJOR", "ConsoleFile", "DevDirFile", "DevFile", "DevNode", "PmemFile", "PmemRegion",
    "alias_fd", "MAX_SYMLINKS", "Node", "PathLookup", "VFS",
]
