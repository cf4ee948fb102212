"""Storage lent as memory: swapon(2) of a file on storage as memory (the third paper's fusion of
storage and memory management).

Linux copies anonymous pages out to a swap file under pressure and back in at the next fault. On
storage as memory the file's blocks are pages the CPU addresses directly (the storage window), so
nothing needs copying: swapon takes the file's pages as page frames, a zone of their own at the
end of the zonelist of user pages (Frames.lend), which serves only when RAM's zones are below
their low watermark. A page that lands there lives on storage (its loads and stores go to the
storage channel) until it is freed. swapoff gives the frames back: every page living in them
moves to RAM (compaction's migration: copy, repoint every PTE, shared memory object page (System V segment, shared anonymous mapping) and shared futex
wait), or, when RAM cannot take them, swapoff fails with ENOMEM and the file stays lent, as
Linux's try_to_unuse does (the pages already moved stay in RAM).

The file is what `mkswap` made and swapon(8) passes: Linux's checks and errors (the SWAPSPACE2
signature and version 1 header in the first page, which is never lent; bad pages left out; no
holes; a file already in use is EBUSY). Only a file of the root on storage as memory can be lent
(4 KiB blocks, one block per page); swapping to a block device or to a file of a block-mode file
system is not implemented (EINVAL, said in the kernel log). While lent, the file is held like
the checkpoint image file (vfs.kernel_files): writes and truncations ETXTBSY, unlink and rename
EPERM. /proc/swaps and /proc/meminfo's SwapTotal/SwapFree count the lent pages, used and free:
the pages living on storage are what Linux would have swapped out.

A checkpoint covers pages living on lent storage like those in RAM (Frames.ram is the scan's
mask) and names the active areas; a restart lends the same files again, with the same
priorities, before it restores the processes' pages.
"""
from __future__ import annotations

import errno
import posixpath
import stat as S
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guestkernel.buddy import BuddyAllocator
from guestkernel.compaction import MIGRATE_NS, migrate, reverse_map
from guestkernel.errors import EBUSY, EINVAL, ENOMEM, SyscallError
from guestkernel.gfp import Gfp
from guestkernel.interface import RestartRefused
from guestkernel.scm import PAGE

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process
    from guestkernel.shm import ShmObject

SWAP_MAGIC = b"SWAPSPACE2"
_INFO = struct.Struct("<III")          # version, last_page, nr_badpages (at 1024)
_BADPAGES_AT = 1024 + 12 + 16 + 16 + 117 * 4
MAX_BADPAGES = (PAGE - _BADPAGES_AT - len(SWAP_MAGIC)) // 4
SWAP_FLAG_PREFER, SWAP_FLAG_PRIO_MASK = 0x8000, 0x7FFF
SWAP_FLAGS_VALID = SWAP_FLAG_PRIO_MASK | SWAP_FLAG_PREFER | 0x10000 | 0x20000 | 0x40000  # + the discard flags


@dataclass
class Lent:
    """One active swap file: its window pages, lent as the zone `zone`."""
    path: bytes
    node: int
    gpfns: list[int]
    zone: BuddyAllocator

    @property
    def prio(self) -> int:
        """Its swap priority: the lent zone's (Frames orders the zonelist by it)."""
        return self.zone.prio

    @property
    def used(self) -> int:
        return len(self.gpfns) - self.zone.free_frames


class SwapAreas:
    def __init__(self, k: "Kernel") -> None:
        self.k = k
        self.areas: list[Lent] = []
        self.least_prio = -1   # Linux's least_priority: the first area without a priority gets -2
        self.pages_moved = 0   # pages swapoff moved back to RAM

    # --- swapon ---------------------------------------------------------------------------------
    def swapon(self, p: "Process", path: bytes, flags: int) -> None:
        self.lend(path, flags, p.cwd)

    def lend(self, path: bytes, flags: int, cwd: object) -> None:
        """swapon(2)'s work, also done by a restart for the areas its image names."""
        k = self.k
        if flags & ~SWAP_FLAGS_VALID:
            raise SyscallError(EINVAL)
        node = k.vfs.resolve(path, cwd)
        if not isinstance(node, int):
            k.log.append("swapon: swapping to a device is not supported (lend a file on storage as memory)")
            raise SyscallError(EINVAL)
        if not S.S_ISREG(k.fs.stat(node).mode):
            raise SyscallError(EINVAL)
        if any(a.node == node for a in self.areas) or node in k.vfs.kernel_files:
            raise SyscallError(EBUSY)
        dax = k.dax
        if dax is None or node >> 32 or k.fs.rootfs.block_size != PAGE:
            k.log.append("swapon: only a file of the root on storage as memory (storage.mode = memory, "
                         "4 KiB blocks) can be lent as memory")
            raise SyscallError(EINVAL)
        size = k.fs.stat(node).size
        head = k.fs.read(node, 0, PAGE)
        if len(head) < PAGE or head[PAGE - len(SWAP_MAGIC):] != SWAP_MAGIC:
            k.log.append("Unable to find swap-space signature")
            raise SyscallError(EINVAL)
        version, last_page, nbad = _INFO.unpack_from(head, 1024)
        if version != 1:
            k.log.append(f"Unable to handle swap header version {version}")
            raise SyscallError(EINVAL)
        maxpages = last_page + 1
        if last_page == 0 or maxpages > size // PAGE:
            k.log.append("Swap area shorter than signature indicates")
            raise SyscallError(EINVAL)
        if nbad > MAX_BADPAGES:
            raise SyscallError(EINVAL)
        bad = set(struct.unpack_from(f"<{nbad}I", head, _BADPAGES_AT))
        if any(b == 0 or b > last_page for b in bad):
            raise SyscallError(EINVAL)
        fs, ino = k.fs.rootfs, node
        blocks = [fs.bmap(ino, fb) for fb in range(maxpages)]
        if 0 in blocks:
            k.log.append("swapon: swapfile has holes")
            raise SyscallError(EINVAL)
        gpfns = [dax.window_gpfn + blocks[fb] for fb in range(1, maxpages) if fb not in bad]
        if not gpfns:
            k.log.append("Empty swap-file")
            raise SyscallError(EINVAL)
        if flags & SWAP_FLAG_PREFER:
            prio = flags & SWAP_FLAG_PRIO_MASK
        else:
            self.least_prio -= 1
            prio = self.least_prio
        name = posixpath.normpath(path if path.startswith(b"/") else k.vfs.node_path(cwd) + b"/" + path)
        zone = k.frames.lend(gpfns, "Storage", prio)
        k.vfs.kernel_files.add(node)
        self.areas.append(Lent(name, node, gpfns, zone))
        extents = 1 + sum(1 for a, b in zip(gpfns, gpfns[1:]) if b != a + 1)
        span = (max(gpfns) - min(gpfns) + 1) * 4
        k.log.append(f"Adding {len(gpfns) * 4}k swap on {name.decode(errors='replace')}.  "
                     f"Priority:{prio} extents:{extents} across:{span}k (lent as memory)")

    # --- swapoff --------------------------------------------------------------------------------
    def swapoff(self, p: "Process", path: bytes) -> None:
        k = self.k
        node = k.vfs.resolve(path, p.cwd)
        area = next((a for a in self.areas if a.node == node), None)
        if area is None:
            raise SyscallError(EINVAL)
        f = k.frames
        f.stop_lending(area.zone)  # no new page lands there while its pages move out
        if not self._move_out(area):
            f.lend_again(area.zone)
            raise SyscallError(ENOMEM)
        f.unlend(area.zone, area.gpfns)
        self.areas.remove(area)
        if area.prio < 0:  # as Linux: the areas after it move up, the lowest priority comes back
            for a in self.areas:
                if a.prio < area.prio:
                    a.zone.prio += 1
            self.least_prio += 1
        k.vfs.kernel_files.discard(node)

    def _move_out(self, area: Lent) -> bool:
        """Every page living in the area to RAM; False if RAM could not take one."""
        k, f = self.k, self.k.frames
        lo, hi = area.zone.base_pfn, area.zone.base_pfn + area.zone.nframes
        used = [pfn for pfn in area.gpfns if f.refs[pfn]]
        if not used:
            return True
        rmap = reverse_map(k)
        shm = getattr(k, "shm", None)
        seg_of: dict[int, tuple["ShmObject", int]] = shm.frame_owners(lo, hi) if shm is not None else {}
        futexes = getattr(k, "futexes", None)  # made at the first futex wait
        shared_waits = [key for key in (futexes.waiters if futexes is not None else ())
                        if isinstance(key, tuple) and key[0] == "shared" and lo <= key[1] >> 12 < hi]
        moved, ok = 0, True
        for pfn in used:
            maps = rmap.get(pfn, ())
            # (a shared memory object's page: its one reference is the object's, PTEs take none)
            if (1 if pfn in seg_of else len(maps)) != f.refs[pfn]:  # held by something we cannot repoint
                k.log.append(f"swapoff: page {pfn:#x} is held by the kernel")
                ok = False
                break
            gfp = Gfp(f.kind[pfn])
            dst = self._ram_frame(gfp)
            if dst is None:
                ok = False
                break
            migrate(k, pfn, dst, maps, None)
            f.put_back(pfn)
            if pfn in seg_of:
                obj, i = seg_of[pfn]
                obj.moved(i, dst)
            for key in [w for w in shared_waits if w[1] >> 12 == pfn]:
                new = ("shared", dst << 12 | key[1] & 0xFFF)
                assert futexes is not None
                waiters = futexes.waiters.pop(key)
                for w in waiters:
                    w.key = new
                futexes.waiters.setdefault(new, []).extend(waiters)
            moved += 1
        self.pages_moved += moved
        k.clock.charge(moved * MIGRATE_NS)
        if moved:
            k.cpu.tlb_flush()
        return ok

    def _ram_frame(self, gfp: Gfp) -> int | None:
        """A RAM frame for a page moving in: above min, else after direct reclaim (no OOM
        killer: swapoff fails instead)."""
        f = self.k.frames
        for _ in range(2):
            pfn = f.try_frame(gfp)
            if pfn is not None:
                return pfn
            if not self.k.reclaim.shrink(32, [z for z in f.zonelists[gfp] if z not in f.lent], "direct"):
                break
        return None

    # --- checkpoints -------------------------------------------------------------------------------
    def describe(self) -> list[list[object]]:
        """The active areas for a checkpoint image: [path, priority] in the order they were lent."""
        return [[a.path.decode("latin-1"), a.prio] for a in self.areas]

    def lend_again(self, areas: list[list[object]]) -> None:
        """A restart: lend the image's areas again (same files, same priorities) before the
        processes' pages come back, some of which lived there. RestartRefused (one line) when
        one cannot be lent any more."""
        for path, prio in areas:
            assert isinstance(path, str) and isinstance(prio, int)
            try:
                self.lend(path.encode("latin-1"), SWAP_FLAG_PREFER | prio if prio >= 0 else 0, self.k.fs.root_ino)
            except SyscallError as e:
                raise RestartRefused(f"the swap file {path} cannot be lent again "
                                     f"({errno.errorcode.get(e.errno, e.errno)})") from None

    # --- what /proc shows -------------------------------------------------------------------------
    def totals(self) -> tuple[int, int]:
        """(pages lent, pages of them free)."""
        return sum(len(a.gpfns) for a in self.areas), sum(a.zone.free_frames for a in self.areas)

    def proc_swaps(self) -> bytes:
        """/proc/swaps as Linux's swap_show prints it (sizes in KiB)."""
        out = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        for a in sorted(self.areas, key=lambda a: -a.prio):
            name = a.path.decode(errors="replace")
            size, used = len(a.gpfns) * 4, a.used * 4
            out += (f"{name}{' ' * (40 - len(name) if len(name) < 40 else 1)}file\t\t{size}\t"
                    f"{chr(9) if size < 10_000_000 else ''}{used}\t{chr(9) if used < 10_000_000 else ''}{a.prio}\n")
        return out.encode()

