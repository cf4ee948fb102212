"""The VFS the kernel holds: attributes of any node, opening a node into an open file, listing an
open directory, and the lifetime of ext2 inodes (open counts; release() once the last name and
the last open file are gone)."""
from __future__ import annotations

import random
import stat as S
from typing import TYPE_CHECKING, Callable

from guestkernel.errors import EACCES, EISDIR, ENOENT, ENOTDIR, ENXIO, EPERM, ETXTBSY, SyscallError
from guestkernel.vfs.pseudo import PseudoDirFile, PseudoFS, PseudoNode
from guestkernel.vfs.devices import (BLOCK_MAJORS, DEV_DIR, DEVICES, FD_ALIASES, LOOP_MAJOR, PMEM_MAJOR, VIRTBLK_MAJOR,
                                     DevDirFile, DevFile, DevNode, PmemFile, PmemRegion)
from guestkernel.vfs.file import (DT_BLK, DT_CHR, DT_DIR, DT_LNK, O_ACCMODE, O_DIRECTORY, O_RDONLY, O_TRUNC,
                                  InodeFile, OpenFile, Stat)
from guestkernel.vfs.lookup import Node, PathLookup
from guestkernel.vfs.disks import DiskDriver, DiskFile
from guestkernel.vfs.loop import LoopControlFile, LoopDriver, LoopFile
from guestkernel.mounts import INO_MASK

if TYPE_CHECKING:
    from hw.blockdev import BlockDevice
    from hw.clock import Clock
    from guestkernel.frames import Frames
    from guestkernel.mounts import MountTable


class CountingRandom(random.Random):
    """The guest's random generator, counting every call that can change its state: a
    checkpoint stores the state again only when `draws` moved (checkpointer._rng_state)."""

    draws = 0

    def seed(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def, override]
        self.draws += 1
        super().seed(*args, **kwargs)

    def setstate(self, state) -> None:  # type: ignore[no-untyped-def]
        self.draws += 1
        super().setstate(state)

    def random(self) -> float:
        self.draws += 1
        return super().random()

    def getrandbits(self, k: int) -> int:
        self.draws += 1
        return super().getrandbits(k)

    def randbytes(self, n: int) -> bytes:
        self.draws += 1
        return super().randbytes(n)


class VFS(PathLookup):
    """The guest's file system: the mounted ext2 file systems (`fs`: the mount table, which sends
    each call to the mount a node is on) with /dev, /sys and /proc laid over them."""

    def __init__(self, fs: "MountTable", console: object, now: Callable[[], int], seed: int,
                 frames: "Frames | None" = None, pmem: list[PmemRegion] | None = None,
                 pseudo: list[PseudoFS] | None = None, disks: "list[tuple[BlockDevice, bool]] | None" = None,
                 clock: "Clock | None" = None) -> None:
        """`disks`: the machine's extra disks (block device, read-only?), /dev/vdb onwards;
        `clock`: charged the time of their requests, as each disk's timing model says (none:
        untimed)."""
        self.fs = fs
        # The pseudo file systems by mount point below / (the kernel's /sys and /proc).
        self.pseudo: dict[str, PseudoFS] = {p.mount: p for p in pseudo or []}
        self.frames = frames
        self.devices = dict(DEVICES)
        self.pmem = {r.name: r for r in pmem or []}
        for i, r in enumerate(pmem or []):
            self.devices[r.name] = DevNode(r.name, PMEM_MAJOR, i)
        self.loops = LoopDriver(self)  # /dev/loop-control, /dev/loop0-7
        self.disks = DiskDriver(self, disks or [], clock)  # /dev/vdb, /dev/vdc, ...
        self.console = console
        self.now = now
        self.rng = CountingRandom(seed)
        self.open_count: dict[int, int] = {}
        # Is an inode mapped by some process (the kernel knows the address spaces)?
        self.mapped: Callable[[int], bool] = lambda ino: False
        self.on_file_write: Callable[[int], None] = lambda ino: None
        # Files the kernel itself uses (the checkpoint image file, like an active swap file):
        # writes and truncations fail with ETXTBSY, unlink and rename with EPERM (Linux's
        # may_delete refuses IS_SWAPFILE inodes so).
        self.kernel_files: set[int] = set()
        # After a file's data changed (written, or truncated to a size): mappings follow it.
        self.on_data_change: Callable[[int, int | None], None] = lambda ino, size: None
        # Reads of a file's data or attributes (the checkpoint rules' "access time").
        self.on_file_read: Callable[[int], None] = lambda ino: None

    def check_writable(self, ino: int) -> None:
        """Before a file's data is written or truncated."""
        if ino in self.kernel_files:
            raise SyscallError(ETXTBSY)
        self.on_file_write(ino)

    def check_removable(self, node: Node) -> None:
        """Before a name of `node` is removed or replaced."""
        if node in self.kernel_files:
            raise SyscallError(EPERM)

    def random_bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    # --- attributes -----------------------------------------------------------------------------
    def stat_node(self, node: Node) -> Stat:
        if node == DEV_DIR:
            return Stat(ino=1, mode=S.S_IFDIR | 0o755, nlink=2, dev=0x5, atime=0, mtime=0, ctime=0)
        if isinstance(node, DevNode):
            kind = S.S_IFBLK | 0o660 if node.major in BLOCK_MAJORS else S.S_IFCHR | 0o666
            if node.name == "loop-control":
                kind = S.S_IFCHR | 0o600
            return Stat(ino=100 + node.minor + 16 * node.major, mode=kind, rdev=node.rdev, dev=0x5)
        if isinstance(node, str):
            return Stat(ino=3, mode=S.S_IFLNK | 0o777, dev=0x5)
        if isinstance(node, PseudoNode):
            return self.pseudo[node.fs].stat(node)
        st = self.fs.stat(node)
        self.on_file_read(node)
        m = self.fs.of(node)
        return Stat(ino=st.ino, mode=st.mode, nlink=st.nlink, uid=st.uid, gid=st.gid, size=st.size,
                    atime=st.atime, mtime=st.mtime, ctime=st.ctime, blocks=st.blocks, rdev=st.rdev,
                    blksize=m.fs.block_size, dev=m.rdev)

    def relatime(self, ino: int, st: object) -> None:
        """Linux's default atime rule: update when atime is not newer than mtime/ctime, or is a
        day old."""
        atime = st.atime  # type: ignore[attr-defined]
        if atime <= st.mtime or atime <= st.ctime or self.now() - atime >= 24 * 3600:  # type: ignore[attr-defined]
            self.fs.touch_atime(ino)

    # --- opening --------------------------------------------------------------------------------
    def open_node(self, node: Node, flags: int, path: bytes) -> OpenFile:
        if node == DEV_DIR:
            return DevDirFile(self, flags)
        if isinstance(node, DevNode):
            if node.major == PMEM_MAJOR:
                return PmemFile(self, node, self.pmem[node.name], flags)
            if node.major == LOOP_MAJOR:
                dev = self.loops.devices.get(node.minor)
                if dev is None:  # removed (LOOP_CTL_REMOVE) since the lookup
                    raise SyscallError(ENXIO)
                return LoopFile(self, dev, flags)
            if node.name == "loop-control":
                return LoopControlFile(self, node, flags)
            if node.major == VIRTBLK_MAJOR:
                return DiskFile(self, self.disks.disks[node.minor], flags)
            return DevFile(self, node, flags)
        if isinstance(node, str):
            raise SyscallError(ENOENT)  # fd aliases are handled by the caller
        if isinstance(node, PseudoNode):
            return self.pseudo[node.fs].open(node, flags)
        st = self.fs.stat(node)
        if S.S_ISDIR(st.mode) and ((flags & O_ACCMODE) != O_RDONLY or flags & O_TRUNC):
            raise SyscallError(EISDIR)  # O_TRUNC asks for write access
        if flags & O_DIRECTORY and not S.S_ISDIR(st.mode):
            raise SyscallError(ENOTDIR)
        if S.S_ISFIFO(st.mode) or S.S_ISSOCK(st.mode):
            raise SyscallError(EACCES)
        f = InodeFile(self, node, flags, path)
        if flags & O_TRUNC and S.S_ISREG(st.mode):  # even O_RDONLY or empty (mtime), as Linux
            self.check_writable(node)
            self.fs.truncate(node, 0)
            self.on_data_change(node, 0)
        return f

    def close_inode(self, ino: int) -> None:
        n = self.open_count.get(ino, 0) - 1
        if n <= 0:
            self.open_count.pop(ino, None)
            try:
                self.maybe_release(ino)
            except SyscallError:  # corrupt metadata (logged by the driver): the inode stays, as
                pass              # Linux's eviction cannot fail either
        else:
            self.open_count[ino] = n

    def in_use(self, ino: int) -> bool:
        """Open, or mapped by a process: an unlinked inode lives on until neither holds."""
        return self.open_count.get(ino, 0) > 0 or self.mapped(ino)

    def maybe_release(self, ino: int) -> None:
        if self.open_count.get(ino, 0) == 0 and self.fs.stat(ino).nlink == 0 and not self.mapped(ino):
            self.fs.release(ino)

    def readdir(self, f: OpenFile, pos: int) -> tuple[list[tuple[int, bytes, int, int]], int]:
        """The entries of an open directory from position `pos` on, each as (position, name, ino,
        d_type), and the position after the last one. ext2 positions are byte offsets into the
        directory (as Linux's ext2_readdir); /dev and /sys count entries (as dcache_readdir)."""
        if isinstance(f, DevDirFile):
            ents = [(b".", 1, DT_DIR), (b"..", self.fs.root_ino, DT_DIR)]
            ents += [(n.encode(), self.stat_node(d).ino, DT_BLK if d.major in BLOCK_MAJORS else DT_CHR)
                     for n, d in self.devices.items()]
            ents += [(n.encode(), 3, DT_LNK) for n in FD_ALIASES]
            return _counted(ents, pos)
        if isinstance(f, PseudoDirFile):
            parent = self.fs.root_ino if f.node.is_root else f.fs.ino(f.node.parent().path)
            return _counted(f.fs.readdir(f.node, parent), pos)
        assert isinstance(f, InodeFile)
        size = self.fs.stat(f.ino).size
        if pos >= size:
            return [], pos  # at or past the end the position stays (Linux's ext4 driver, which
                            # mounts ext2 on Debian's kernels and is the reference we test against)
        ents = self.fs.dir_stream(f.ino, pos)
        end = size
        if f.ino == self.fs.root_ino:  # the mount points /dev, /sys, /proc, when the image lacks them
            for name, ino in ((b"dev", 1), *((m.encode(), 1) for m in self.pseudo)):
                if not any(n == name for _, n, _, _ in self.fs.dir_stream(f.ino)):
                    ents.append((end, name, ino, DT_DIR))
                    end += 1
        return ents, end


    def node_path(self, node: Node) -> bytes:
        """The absolute path of a directory node (getcwd, /proc/PID/cwd): walk '..' up to the
        root, finding each directory's name in its parent."""
        if node == DEV_DIR:
            return b"/dev"
        if isinstance(node, PseudoNode):
            return node.guest_path
        parts = []
        fs = self.fs
        cur = node
        for _ in range(256):
            if cur == fs.root_ino:
                break
            if fs.is_mount_root(cur):  # a mounted root is named by the directory it covers
                cur = fs.of(cur).point
                continue
            parent = fs.lookup(cur, b"..")
            name = next((n for n, ino, _ in fs.readdir(parent) if ino == cur & INO_MASK and n not in (b".", b"..")),
                        None)
            if name is None:
                raise SyscallError(ENOENT)
            parts.append(name)
            cur = parent
        return b"/" + b"/".join(reversed(parts))


def _counted(ents: list[tuple[bytes, int, int]], pos: int) -> tuple[list[tuple[int, bytes, int, int]], int]:
    return [(i, n, ino, dt) for i, (n, ino, dt) in enumerate(ents) if i >= pos], max(pos, len(ents))

