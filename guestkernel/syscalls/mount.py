"""mount(2) and umount2(2): ext2 file systems on loop devices and the machine's extra disks
(/dev/vdb onwards: vfs/disks.py), into the mount table
(guestkernel/mounts.py), with Linux's checks and errors.

A mount allocates what the split-zone paper's NAS kernel allocated per file system: besides its
superblock, group descriptors and inode cache (slab objects), `mount_buffers` physically
contiguous buffers of 2**mount_buffer_order pages (64 KiB by default, the paper's size), as
Gfp.BUFFER. When no such block is free the allocator retries with reclaim and compaction at
rising priority (Reclaim.alloc_costly), each try charged to the virtual clock; when the last try
fails the mount fails with ENOMEM (the paper's mount that "never completes").
"""
from __future__ import annotations

import stat as S
from typing import TYPE_CHECKING

from guestkernel.errors import EAGAIN, EBUSY, EINVAL, ENODEV, ENOMEM, ENOTBLK, ENOTDIR, ENXIO, EROFS, SyscallError
from guestkernel.ext2 import Ext2, FsError, probe_block_size
from guestkernel.gfp import Gfp
from guestkernel.mounts import MID_SHIFT, MS_RDONLY, Mount
from guestkernel.pagecache import PageCache
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import path_arg
from guestkernel.vfs import DevNode
from guestkernel.vfs.devices import LOOP_MAJOR, VIRTBLK_MAJOR
from guestkernel.vfs.disks import Disk
from guestkernel.vfs.loop import LoopDevice

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS, MS_REMOUNT = 2, 4, 8, 16, 32
MS_MANDLOCK, MS_DIRSYNC, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE = 64, 128, 1024, 2048, 4096, 8192
MS_REC, MS_SILENT, MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 16384, 32768, 1 << 17, 1 << 18, 1 << 19, 1 << 20
MS_RELATIME, MS_STRICTATIME, MS_LAZYTIME = 1 << 21, 1 << 24, 1 << 25
MS_MGC_VAL, MS_MGC_MSK = 0xC0ED0000, 0xFFFF0000
PROPAGATION = MS_UNBINDABLE | MS_PRIVATE | MS_SLAVE | MS_SHARED
MNT_FORCE, MNT_DETACH, MNT_EXPIRE, UMOUNT_NOFOLLOW = 1, 2, 4, 8
FILESYSTEMS = (b"ext2",)


@syscall("mount")
def sys_mount(k, p, source, target, fstype, flags, data, *_):  # type: ignore[no-untyped-def]
    flags &= 0xFFFFFFFF
    if flags & MS_MGC_MSK == MS_MGC_VAL:  # the old magic in the high half (do_mount)
        flags &= ~MS_MGC_MSK
    tpath = path_arg(k, p, target)
    if flags & PROPAGATION:
        k.vfs.resolve(tpath, p.cwd)
        return 0  # one mount namespace, no peers: there is nothing to propagate
    if flags & (MS_BIND | MS_MOVE):
        k.log.append("mount: bind and move mounts are not supported")
        raise SyscallError(EINVAL)
    if flags & MS_REMOUNT:
        m = k.fs.of(mount_root(k, p, tpath))
        if not flags & MS_RDONLY and getattr(m.device, "read_only", False):
            raise SyscallError(EROFS)
        m.flags = (m.flags & ~MS_RDONLY) | (flags & MS_RDONLY)
        return 0
    kind = p.mm.read_cstr(fstype, 256) if fstype else b""
    if kind not in FILESYSTEMS:
        raise SyscallError(ENODEV)
    do_mount(k, p, path_arg(k, p, source), tpath, flags)
    return 0


def mount_root(k: "Kernel", p: "Process", path: bytes) -> int:
    node = k.vfs.resolve(path, p.cwd)
    if not isinstance(node, int) or not k.fs.is_mount_root(node):
        raise SyscallError(EINVAL)
    return node


def do_mount(k: "Kernel", p: "Process", source: bytes, target: bytes, flags: int) -> Mount:
    point = k.vfs.resolve(target, p.cwd)
    if not isinstance(point, int):
        raise SyscallError(EINVAL)  # /dev, /proc, /sys are the kernel's own
    if not S.S_ISDIR(k.fs.stat(point).mode):
        raise SyscallError(ENOTDIR)
    node = k.vfs.resolve(source, p.cwd)
    dev: "LoopDevice | Disk"
    if isinstance(node, DevNode) and node.major == VIRTBLK_MAJOR:  # one of the machine's disks
        dev = k.vfs.disks.disks[node.minor]
        blocks: object = dev.blockdev
    elif isinstance(node, DevNode) and node.major == LOOP_MAJOR:
        loop = k.vfs.loops.devices.get(node.minor)
        if loop is None or loop.file is None:
            raise SyscallError(ENXIO)
        dev = blocks = loop
    else:
        raise SyscallError(ENOTBLK)
    if any(m.device is dev for m in k.fs.mounts.values()):
        raise SyscallError(EBUSY)
    buffers = alloc_buffers(k)
    try:
        cache = PageCache(blocks, k.frames, probe_block_size(dev.read_at))  # type: ignore[arg-type]
        if isinstance(dev, Disk):  # a disk's requests take its time, as the root disk's
            cache.time_io(k.clock)
        fs = Ext2(cache, now=k.clock.now_s, log=k.log.append)
    except (FsError, ValueError, OSError) as e:
        free_buffers(k, buffers)
        k.log.append(f"EXT2-fs ({node.name}): error: can't mount: {getattr(e, 'msg', None) or e}")
        raise SyscallError(EINVAL) from None
    mid = k.fs.new_id()
    fs.use_objects(k.slab.alloc, k.slab.free)
    fs.is_open = lambda ino, base=mid << MID_SHIFT: k.vfs.in_use(base | ino)
    k.slab.register_shrinker(fs.shrink_caches)
    ro = bool(flags & MS_RDONLY) or dev.read_only
    m = Mount(mid, fs, cache, b"/dev/" + node.name.encode(), k.vfs.node_path(point), dev.rdev,
              flags=MS_RDONLY if ro else 0, point=point, device=dev, buffers=buffers)
    k.fs.add(m)
    dev.holders += 1
    return m


def alloc_buffers(k: "Kernel") -> list[tuple[int, int]]:
    """The mount's contiguous buffers (KernelConfig.mount_buffers of mount_buffer_order)."""
    order, n = k.config.mount_buffer_order, k.config.mount_buffers
    got: list[tuple[int, int]] = []
    for _ in range(n):
        pfn = k.reclaim.alloc_costly(order, Gfp.BUFFER)
        if pfn is None:
            free_buffers(k, got)
            k.log.append(f"mount: page allocation failure: order:{order}, mode:GFP_KERNEL|__GFP_RETRY_MAYFAIL")
            raise SyscallError(ENOMEM)
        got.append((pfn, order))
    return got


def free_buffers(k: "Kernel", buffers: list[tuple[int, int]]) -> None:
    for pfn, order in buffers:
        k.frames.free_block(pfn, order)


@syscall("umount2")
def sys_umount2(k, p, target, flags, *_):  # type: ignore[no-untyped-def]
    flags &= 0xFFFFFFFF
    if flags & ~(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW) or (flags & MNT_EXPIRE and flags & (MNT_FORCE | MNT_DETACH)):
        raise SyscallError(EINVAL)
    node = k.vfs.resolve(path_arg(k, p, target), p.cwd, follow=not flags & UMOUNT_NOFOLLOW)
    if node == k.fs.root_ino:
        raise SyscallError(EBUSY)  # the root file system stays until the machine stops
    if not isinstance(node, int) or not k.fs.is_mount_root(node):
        raise SyscallError(EINVAL)
    if flags & MNT_EXPIRE:
        raise SyscallError(EAGAIN)  # the first MNT_EXPIRE only marks the mount
    do_umount(k, k.fs.of(node))
    return 0


def busy(k: "Kernel", m: Mount) -> bool:
    """Is anything still using the mount: an open file (a loop device's backing file too), a
    mapping, a working directory, or a mount on it?"""
    mid = m.mid
    if any(n >> MID_SHIFT == mid and c > 0 for n, c in k.vfs.open_count.items() if isinstance(n, int)):
        return True
    for q in k.procs.values():
        if isinstance(q.cwd, int) and q.cwd >> MID_SHIFT == mid:
            return True
        if q.mm is not None and any(isinstance(getattr(v.backing, "ino", None), int) and v.backing.ino >> MID_SHIFT == mid
                                    for v in q.mm.vmas):
            return True
    if any(o.point is not None and o.point >> MID_SHIFT == mid for o in k.fs.mounts.values()):
        return True
    return False


def do_umount(k: "Kernel", m: Mount) -> None:
    if busy(k, m):
        raise SyscallError(EBUSY)
    m.fs.put_super()  # the mount's dirty blocks go to the loop device: the backing file's cache
    m.cache.drop_clean()
    k.slab.unregister_shrinker(m.fs.shrink_caches)
    free_buffers(k, m.buffers)
    k.fs.remove(m)
    if isinstance(m.device, LoopDevice):
        k.vfs.loops.unheld(k, m.device)
    else:
        k.vfs.disks.unheld(m.device)
