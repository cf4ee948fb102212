"""System V IPC syscalls: shared memory (shmget, shmat, shmdt, shmctl) over guestkernel/shm.py.
Semaphores and message queues are not provided (ENOSYS, as a kernel built without them)."""
from __future__ import annotations

import struct

from guestkernel.errors import EINVAL, SyscallError
from guestkernel.mm import PAGE, PROT_EXEC, PROT_READ, PROT_WRITE, TASK_SIZE, page_up
from guestkernel.shm import SHM_DEST, SHM_LOCKED, SHMALL, SHMMAX, SHMMIN, SHMMNI, Segment, ShmBacking, ShmRegistry
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import s32

SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC = 0o10000, 0o20000, 0o40000, 0o100000
IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO = 0, 1, 2, 3
SHM_LOCK, SHM_UNLOCK, SHM_STAT, SHM_INFO, SHM_STAT_ANY = 11, 12, 13, 14, 15
IPC_64 = 0x100
SHMLBA = PAGE


def registry(k) -> ShmRegistry:  # type: ignore[no-untyped-def]
    """The machine's shared memory objects (System V segments, shared anonymous mappings'),
    made on first use."""
    reg = getattr(k, "shm", None)
    if reg is None:
        reg = k.shm = ShmRegistry(k.frames, lambda: [q.mm for q in k.procs.values() if q.mm is not None],
                                  k.clock.now_s)
    return reg


@syscall("shmget")
def sys_shmget(k, p, key, size, flags, *_):  # type: ignore[no-untyped-def]
    return registry(k).get(s32(key), size, s32(flags), p.pid)


@syscall("shmat")
def sys_shmat(k, p, shmid, addr, flags, *_):  # type: ignore[no-untyped-def]
    reg = registry(k)
    seg = reg.lookup(s32(shmid))
    flags = s32(flags)
    if addr:
        if addr % SHMLBA:
            if not flags & SHM_RND:
                raise SyscallError(EINVAL)
            addr -= addr % SHMLBA
            if addr == 0:
                raise SyscallError(EINVAL)  # rounded down to page 0: refused, as Linux does
    elif flags & SHM_REMAP:
        raise SyscallError(EINVAL)
    prot = PROT_READ | (0 if flags & SHM_RDONLY else PROT_WRITE) | (PROT_EXEC if flags & SHM_EXEC else 0)
    length = page_up(seg.size)
    mm = p.mm
    if addr:
        if addr + length > TASK_SIZE:
            raise SyscallError(EINVAL)
        if mm.overlapping(addr, addr + length) and not flags & SHM_REMAP:
            raise SyscallError(EINVAL)
        start = addr
    else:
        start = mm.get_unmapped_area(length)
    mm.map(start, length, prot, shared=True, backing=ShmBacking(reg, seg), name="SYSV%08x" % (seg.key & 0xFFFFFFFF))
    seg.atime, seg.lpid = k.clock.now_s(), p.pid
    return start


@syscall("shmdt")
def sys_shmdt(k, p, addr, *_):  # type: ignore[no-untyped-def]
    """Detach the attach that starts at addr: every VMA of that segment within its size from
    there (mprotect may have split it)."""
    if addr % PAGE:
        raise SyscallError(EINVAL)
    mm = p.mm
    v = mm.find(addr)
    if (v is None or v.start != addr or not isinstance(v.backing, ShmBacking) or v.backing.anonymous
            or v.offset != 0):
        raise SyscallError(EINVAL)
    seg = v.backing.obj
    end = addr + page_up(seg.size)
    for w in mm.overlapping(addr, end):
        if isinstance(w.backing, ShmBacking) and w.backing.obj is seg and w.offset == w.start - addr:
            mm.unmap(w.start, w.end - w.start)
    seg.dtime, seg.lpid = k.clock.now_s(), p.pid
    return 0


def pack_perm(seg: Segment) -> bytes:
    """struct ipc64_perm: key, uid, gid, cuid, cgid, mode, seq, 2 unused longs."""
    mode = seg.mode | (SHM_DEST if seg.removed else 0) | (SHM_LOCKED if seg.locked else 0)
    return struct.pack("<iIIIIIH6xQQ", seg.key, seg.uid, seg.gid, 0, 0, mode, seg.seq, 0, 0)


def pack_shmid_ds(reg: ShmRegistry, seg: Segment) -> bytes:
    """struct shmid64_ds (x86-64, 112 bytes)."""
    return pack_perm(seg) + struct.pack("<QqqqiiQQQ", seg.size, seg.atime, seg.dtime, seg.ctime, seg.cpid,
                                        seg.lpid, reg.nattch(seg), 0, 0)


@syscall("shmctl")
def sys_shmctl(k, p, shmid, cmd, buf, *_):  # type: ignore[no-untyped-def]
    reg = registry(k)
    shmid, cmd = s32(shmid), s32(cmd) & ~IPC_64
    if cmd == IPC_INFO:
        # struct shminfo64: shmmax, shmmin, shmmni, shmseg, shmall, 4 unused
        p.mm.copy_out(buf, struct.pack("<9Q", SHMMAX, SHMMIN, SHMMNI, SHMMNI, SHMALL, 0, 0, 0, 0))
        return reg.max_index()
    if cmd == SHM_INFO:
        # struct shm_info: used_ids, shm_tot, shm_rss, shm_swp, swap_attempts, swap_successes
        tot = sum(s.pages for s in reg.segments.values())
        p.mm.copy_out(buf, struct.pack("<i4xQQQQQ", len(reg.segments), tot, reg.resident_pages(), 0, 0, 0))
        return reg.max_index()
    if cmd in (SHM_STAT, SHM_STAT_ANY):
        seg = reg.segments.get(shmid)  # by index
        if seg is None:
            raise SyscallError(EINVAL)
        p.mm.copy_out(buf, pack_shmid_ds(reg, seg))
        return seg.id
    seg = reg.lookup(shmid)
    if cmd == IPC_STAT:
        p.mm.copy_out(buf, pack_shmid_ds(reg, seg))
        return 0
    if cmd == IPC_SET:
        _key, uid, gid, _cuid, _cgid, mode = struct.unpack_from("<iIIIII", p.mm.copy_in(buf, 24))
        seg.uid, seg.gid, seg.mode = uid, gid, mode & 0o777
        seg.ctime = k.clock.now_s()
        return 0
    if cmd == IPC_RMID:
        reg.remove(seg)
        return 0
    if cmd in (SHM_LOCK, SHM_UNLOCK):
        seg.locked = cmd == SHM_LOCK
        seg.ctime = k.clock.now_s()
        return 0
    raise SyscallError(EINVAL)

