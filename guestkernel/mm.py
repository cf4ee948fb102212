"""A process's memory: virtual memory areas over a page table, demand paging and copy-on-write.

Pages are allocated on first touch (anonymous pages zeroed, file pages filled from the file
through the page cache), private writable pages are shared copy-on-write after `fork`, and the
kernel's own accesses to user memory (`copy_in`/`copy_out`) go through the same translation, with
the same accessed/dirty bits, as the guest's.

User address layout (no randomisation, as under `setarch -R`)::

    0x0000_5555_5555_4000   PIE executables, then brk heap
    0x0000_7fff_f7ff_f000   top of the mmap area (grows down; ld.so and libraries)
    0x0000_7fff_ffff_f000   top of the stack (8 MiB, grows down)
    0xffff_ffff_ff60_0000   sentinel page (read-only zeros; see hw/cpu.py)
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Protocol

from guestkernel.errors import EFAULT, EINVAL, ENOMEM, SyscallError
from guestkernel.frames import Frames
from guestkernel.gfp import Gfp
from guestkernel.ids import IdSource
from guestkernel.paging import PTE_ADDR, PTE_NX, PTE_W, AddressSpace
from guestkernel.slab import NO_OBJECTS
from hw.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from guestkernel.slab import Objects

PAGE = PAGE_SIZE  # the hardware page (hw/physmem.py)
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_FIXED_NOREPLACE = 0x100000
TASK_SIZE = 0x7FFFFFFFF000
STACK_TOP = 0x7FFFFFFFF000
STACK_SIZE = 8 << 20
MMAP_TOP = 0x7FFFF7FFF000
PIE_BASE = 0x555555554000
ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH = 0, 1, 2


def page_down(x: int) -> int:
    return x & ~(PAGE - 1)


def page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


class Backing(Protocol):
    """What a file-backed mapping reads its pages from (an open inode)."""

    def read_at(self, offset: int, n: int) -> bytes: ...

    def page_frame(self, offset: int) -> int | None:
        """A frame holding the page at `offset` to share read-only (a reference is taken for
        the caller), or None to have the page copied."""

    # Optional: `vma_closed()`, called after a VMA of this backing is unmapped (shm segments
    # count their attaches).


@dataclass
class VMA:
    start: int
    end: int
    prot: int
    shared: bool = False
    backing: Backing | None = None
    offset: int = 0  # file offset of `start`
    name: str = ""

    @property
    def device(self) -> bool:
        """Device memory (a pmem mapping) or a shared memory object's mapping (guestkernel/shm.py):
        its pages are not reference-counted per mapping."""
        return getattr(self.backing, "device", False)

    @property
    def file(self) -> bool:
        """Backed by a file or a device, whose contents can be read (not anonymous memory,
        shared anonymous memory's object included)."""
        return self.backing is not None and not getattr(self.backing, "anonymous", False)

    def __repr__(self) -> str:
        p = "".join(c if self.prot & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))
        return f"{self.start:012x}-{self.end:012x} {p}{'s' if self.shared else 'p'} {self.offset:08x} {self.name}"


Translator = Callable[[int, int, int], int]  # (cr3_gpa, gva, access) -> gpa or -1


class MM:
    def __init__(self, frames: Frames, translate: Translator, on_tlb_stale: Callable[[], None],
                 sentinel_pfn: int, asids: IdSource, on_page_stale: Callable[[int, int], None]) -> None:
        self.frames = frames
        self.asids = asids
        self.translate = translate
        self.on_tlb_stale = on_tlb_stale  # mappings changed: the whole TLB goes
        self.on_page_stale = on_page_stale  # (asid, gva): one page's mapping changed
        self.sentinel_pfn = sentinel_pfn
        self.aspace = AddressSpace(frames)
        self.asid = next(asids)
        from hw.cpu import SENTINEL_GVA

        # Unicorn translates the `until` address and the page below it (as fetches) on every
        # emu_start: both pages map one read-only page of zeros.
        for gva in (SENTINEL_GVA - PAGE, SENTINEL_GVA):
            frames.get(sentinel_pfn)
            self.aspace.map(gva, sentinel_pfn, writable=False, executable=True)
        self.vmas: list[VMA] = []
        self._starts: list[int] = []
        # Bumped at every change of the VMAs (their list or a VMA's bounds or protection): a
        # checkpoint describes the mappings again only when it moved (checkpoint/state.py).
        self.vm_version = 0
        self.ckpt_checked: tuple[int, str | None] = (-1, None)  # (vm_version, refusal) of the last check
        self.fault_beyond_eof = False  # the last failed fault hit a file page past EOF (SIGBUS)
        self.shadowed = False  # the last fault copied a page of the checkpoint image file in it
        # Pages copied from a file at a read fault (a hole, the partial last page): a mapping
        # must show later writes to the file, so they are dropped then (drop_file_pages).
        self.file_copies: set[int] = set()
        self.brk_start = 0
        self.brk = 0
        # Where exec laid out argv and the environment, and the initial stack pointer
        # (/proc/PID/cmdline, environ and stat read them, as Linux's mm_struct keeps them).
        self.arg_start = self.arg_end = self.env_start = self.env_end = self.start_stack = 0
        self.icache: object = None  # the CPU's block-count table for this address space
        # Called with each new executable file-backed VMA (the kernel scans it for rdtsc).
        self.on_exec_map: Callable[[VMA], None] = lambda v: None
        self.faults = 0
        # One vm_area_struct object per VMA, from the kernel's slab (the kernel sets objects).
        self.objects: "Objects" = NO_OBJECTS
        self.vma_objs: list[int] = []

    # --- VMA bookkeeping ----------------------------------------------------------------------
    def _reindex(self) -> None:
        self.vm_version += 1
        self.vmas.sort(key=lambda v: v.start)
        self._starts = [v.start for v in self.vmas]
        objs = self.vma_objs
        while len(objs) < len(self.vmas):
            objs.append(self.objects.alloc("vm_area_struct"))
        while len(objs) > len(self.vmas):
            self.objects.free(objs.pop())

    def find(self, gva: int) -> VMA | None:
        i = bisect.bisect_right(self._starts, gva) - 1
        if i >= 0 and self.vmas[i].end > gva:
            return self.vmas[i]
        return None

    def _split_at(self, addr: int) -> None:
        v = self.find(addr)
        if v and v.start < addr:
            right = replace(v, start=addr, offset=v.offset + (addr - v.start))
            v.end = addr
            self.vmas.append(right)
            self._reindex()

    def mapping_end(self, gva: int) -> int:
        """The end of the mapping that holds gva (0 if none does): its VMA's end, or further
        where the next VMAs are pieces of the same mapping, which Linux would have merged (an
        mprotect split made alike again, two anonymous mmaps side by side): adjacent, with the
        same protection, sharing and name, the same backing at consecutive offsets."""
        v = self.find(gva)
        if v is None:
            return 0
        end = v.end
        for w in self.vmas[bisect.bisect_right(self._starts, gva):]:
            if w.start != end or (w.prot, w.shared, w.name) != (v.prot, v.shared, v.name) \
                    or not _same_backing(v.backing, w.backing) \
                    or v.backing is not None and w.offset - v.offset != w.start - v.start:
                break
            end = w.end
        return end

    def grow(self, end: int, new_end: int) -> None:
        """The mapping ending at `end` grows in place to new_end (mremap; the caller checked
        that nothing is mapped there)."""
        v = self.find(end - 1)
        assert v is not None and v.end == end and new_end > end
        v.end = new_end
        self._reindex()
        if v.prot & PROT_EXEC and v.file:
            self.on_exec_map(v)

    def move(self, old: int, length: int, dest: int, new_length: int, keep_old: bool = False) -> None:
        """mremap's move: the VMAs of the range [old, old+length) (one mapping: see
        mapping_end) to dest, the last grown to make new_length, with their offsets and their
        PTEs (the frames stay mapped: the same pages, not copies; a page never touched is still
        the file's or the object's). `keep_old` (MREMAP_DONTUNMAP): the old range stays mapped
        as it was, with no pages (the next access faults afresh: zeros, the file, the object)."""
        self._split_at(old)
        self._split_at(old + length)
        vs = [v for v in self.vmas if v.start >= old and v.end <= old + length]
        assert vs and sum(v.end - v.start for v in vs) == length and new_length >= length
        self.unmap(dest, new_length)
        left = [replace(v) for v in vs] if keep_old else []
        moved = list(self.aspace.leaves(old, old + length))
        for _gva, slot, _pte in moved:
            self.aspace.write_slot(slot, 0)
        for gva, _slot, pte in moved:
            self.aspace.set(dest + gva - old, pte)
            if gva in self.file_copies:
                self.file_copies.discard(gva)
                self.file_copies.add(dest + gva - old)
        for v in vs:
            v.start, v.end = v.start - old + dest, v.end - old + dest
        vs[-1].end = dest + new_length
        self.vmas.extend(left)
        self._reindex()
        for v in vs:  # (the instructions the machine must see, at their new addresses)
            if v.prot & PROT_EXEC and v.file:
                self.on_exec_map(v)
        self.on_tlb_stale()

    def overlapping(self, start: int, end: int) -> list[VMA]:
        return [v for v in self.vmas if v.start < end and v.end > start]

    # --- mapping --------------------------------------------------------------------------------
    def get_unmapped_area(self, length: int, hint: int = 0) -> int:
        length = page_up(length)
        if hint and hint + length <= TASK_SIZE and not self.overlapping(page_down(hint), page_down(hint) + length):
            return page_down(hint)
        # Top-down first fit below MMAP_TOP, as Linux's default mmap layout.
        top = MMAP_TOP
        for v in sorted((v for v in self.vmas if v.start < MMAP_TOP), key=lambda v: v.start, reverse=True):
            if v.end <= top - length:
                return top - length
            top = min(top, v.start)
        if top - length < max(self.brk, PAGE * 16):
            raise SyscallError(ENOMEM)
        return top - length

    def map(self, start: int, length: int, prot: int, *, shared: bool = False, backing: Backing | None = None,
            offset: int = 0, name: str = "") -> int:
        length = page_up(length)
        if start % PAGE or start + length > TASK_SIZE or length <= 0:
            raise SyscallError(EINVAL)
        self.unmap(start, length)
        vma = VMA(start, start + length, prot, shared, backing, offset, name)
        self.vmas.append(vma)
        self._reindex()
        if prot & PROT_EXEC and vma.file:
            self.on_exec_map(vma)
        return start

    def unmap(self, start: int, length: int) -> None:
        end = start + page_up(length)
        if not self.overlapping(start, end):
            return
        self._split_at(start)
        self._split_at(end)
        gone = [v for v in self.vmas if v.start >= start and v.end <= end]
        self.vmas = [v for v in self.vmas if not (v.start >= start and v.end <= end)]
        self._reindex()
        for v in gone:
            self._drop_pages(v.start, v.end, v.device)
        _closed(gone)

    def _drop_pages(self, start: int, end: int, device: bool = False) -> None:
        dropped = False
        for gva, slot, pte in list(self.aspace.leaves(start, end)):
            self.aspace.write_slot(slot, 0)
            pfn = (pte & PTE_ADDR) >> 12
            if not device and self.frames.is_ram(pfn):  # (a DAX file's pages are the window's)
                self.frames.put(pfn)
            self.file_copies.discard(gva)
            dropped = True
        if dropped:
            self.on_tlb_stale()

    def drop_file_pages(self, ino: int, eof: int | None) -> None:
        """A file's data changed: drop the pages copied from it at read faults (the next access
        reads the file again, as mappings share Linux's page cache) and, when it was truncated
        to eof, every page of it wholly past eof (an access is then SIGBUS)."""
        dropped = False
        for v in self.vmas:
            if v.device or getattr(v.backing, "ino", None) != ino:
                continue
            for gva, slot, pte in list(self.aspace.leaves(v.start, v.end)):
                if gva in self.file_copies or eof is not None and v.offset + gva - v.start >= page_up(eof):
                    self.aspace.write_slot(slot, 0)
                    if self.frames.is_ram((pte & PTE_ADDR) >> 12):
                        self.frames.put((pte & PTE_ADDR) >> 12)
                    self.file_copies.discard(gva)
                    dropped = True
        if dropped:
            self.on_tlb_stale()

    def protect(self, start: int, length: int, prot: int) -> None:
        end = start + page_up(length)
        covered = sum(min(v.end, end) - max(v.start, start) for v in self.overlapping(start, end))
        if covered != end - start:
            raise SyscallError(ENOMEM)
        self._split_at(start)
        self._split_at(end)
        for v in self.overlapping(start, end):
            newly_exec = prot & PROT_EXEC and not v.prot & PROT_EXEC
            v.prot = prot
            self.vm_version += 1
            if newly_exec and v.file:
                self.on_exec_map(v)
        for gva, slot, pte in list(self.aspace.leaves(start, end)):
            new = pte | PTE_NX if not prot & PROT_EXEC else pte & ~PTE_NX
            if not prot & PROT_WRITE:
                new &= ~PTE_W
            # Write permission comes back through a write fault (it may need a COW copy).
            if new != pte:
                self.aspace.write_slot(slot, new)
        self.on_tlb_stale()

    def write_protect(self, gpfns: set[int] | None) -> None:
        """Clear the write permission of every shared file mapping's PTE that maps one of
        `gpfns` (None: all): pages just written back, whose next write must fault and mark them
        dirty again."""
        stale = False
        for v in self.vmas:
            if not v.shared or not hasattr(v.backing, "page_dirtied"):
                continue
            for gva, slot, pte in list(self.aspace.leaves(v.start, v.end)):
                if pte & PTE_W and (gpfns is None or (pte & PTE_ADDR) >> 12 in gpfns):
                    self.aspace.write_slot(slot, pte & ~PTE_W)
                    stale = True
        if stale:
            self.on_tlb_stale()

    def set_brk(self, new: int) -> int:
        if new < self.brk_start:
            return self.brk
        old_top, new_top = page_up(self.brk), page_up(new)
        if new_top > old_top:
            if self.overlapping(old_top, new_top):
                return self.brk
            heap = next((v for v in self.vmas if v.name == "[heap]"), None)
            if heap is not None and heap.end == old_top:
                heap.end = new_top
                self.vm_version += 1
            else:
                self.vmas.append(VMA(old_top, new_top, PROT_READ | PROT_WRITE, name="[heap]"))
                self._reindex()
        elif new_top < old_top:
            self.unmap(new_top, old_top - new_top)
        self.brk = new
        return new

    # --- faults ---------------------------------------------------------------------------------
    def page_stale(self, page: int) -> None:
        """Page `page` now maps another frame (a copy on write, a page moved into the image file):
        its TLB entries go."""
        self.on_page_stale(self.asid, page)

    def fault(self, gva: int, access: int) -> bool:
        """Resolve a translation fault. False means the access is illegal: SIGSEGV, or SIGBUS
        when `fault_beyond_eof` (a file page wholly past the end of the file)."""
        self.fault_beyond_eof = False
        self.shadowed = False
        v = self.find(gva)
        if v is None:
            return False
        if access == ACCESS_WRITE and not v.prot & PROT_WRITE:
            return False
        if access == ACCESS_FETCH and not v.prot & PROT_EXEC:
            return False
        if not v.prot & (PROT_READ | PROT_WRITE | PROT_EXEC):
            return False
        self.faults += 1
        page = page_down(gva)
        pte = self.aspace.get(page)
        writable = bool(v.prot & PROT_WRITE)
        executable = bool(v.prot & PROT_EXEC)
        if pte & 1:
            if access != ACCESS_WRITE or pte & PTE_W:
                return True  # already fine (e.g. another path filled it)
            self.file_copies.discard(page)  # written: the process's own data from now on
            old = (pte & PTE_ADDR) >> 12
            ram = self.frames.is_ram(old)
            if v.shared or (v.device and not ram) or (ram and self.frames.refs[old] == 1):
                if v.shared and hasattr(v.backing, "page_dirtied"):  # a shared file mapping
                    v.backing.page_dirtied(v.offset + (page - v.start), old)  # type: ignore[union-attr]
                self.aspace.set(page, pte | PTE_W)
            else:  # copy on write (a DAX file's page too: the window is the file)
                # A page of the checkpoint image file: copied to a fresh page of that file when
                # private pages live there (checkpoint/live.py), else into RAM.
                shadow = self.frames.shadow_write
                new = shadow(old) if shadow is not None and not ram and not executable else None
                self.shadowed = new is not None
                if new is None:
                    new = self.frames.alloc(zero=False, gfp=Gfp.USER)
                    self.frames.copy(new, old)
                self._mark_code(new, executable)
                self.aspace.map(page, new, writable=True, executable=executable)
                if ram:
                    self.frames.put(old)
                self.page_stale(page)
            return True
        offset = v.offset + (page - v.start)
        beyond_eof = getattr(v.backing, "beyond_eof", None)
        if beyond_eof is not None and beyond_eof(offset):
            self.fault_beyond_eof = True
            return False
        if v.shared and hasattr(v.backing, "shared_frame"):
            # A shared file mapping: the file's page itself (the page-cache frame, or the storage
            # window's page on DAX), writable at once on a write fault (and then dirty), else
            # read-only until the first write.
            pfn = v.backing.shared_frame(offset)  # type: ignore[union-attr]
            if pfn is None:
                self.fault_beyond_eof = True
                return False
            dirty = access == ACCESS_WRITE and writable
            if dirty:
                v.backing.page_dirtied(offset, pfn)  # type: ignore[union-attr]
            self._mark_code(pfn, executable)
            self.aspace.map(page, pfn, writable=dirty, executable=executable)
            return True
        if v.backing is not None and not (access == ACCESS_WRITE and writable):
            shared_pfn = v.backing.page_frame(offset)
            if shared_pfn is not None:
                # Map the cached page read-only; a write will copy it (private mapping).
                if not v.device:
                    self._mark_code(shared_pfn, executable)
                self.aspace.map(page, shared_pfn, writable=v.shared and writable, executable=executable)
                return True
        if v.device and v.shared:
            pfn = v.backing.page_frame(offset)  # type: ignore[union-attr]
            if pfn is None:
                return False
            if self.frames.is_ram(pfn):  # (a shared memory object's page)
                self._mark_code(pfn, executable)
            self.aspace.map(page, pfn, writable=writable, executable=executable)
            return True
        data = v.backing.read_at(offset, PAGE) if v.backing is not None else b""  # may fail (EIO): before alloc
        pfn = self.frames.alloc(zero=v.backing is None, gfp=Gfp.USER)
        if v.backing is not None:  # (none for a page mapped in place)
            self.frames.events["text_pages_copied" if executable else "file_pages_copied"] += 1
        if v.backing is not None:
            view = self.frames.view(pfn)
            view[: len(data)] = data
            if len(data) < PAGE:
                view[len(data):] = bytes(PAGE - len(data))
            if access != ACCESS_WRITE:
                self.file_copies.add(page)
                writable = False  # a write fault will make it the process's own
        self._mark_code(pfn, executable)
        self.aspace.map(page, pfn, writable=writable, executable=executable)
        return True

    def _mark_code(self, pfn: int, executable: bool) -> None:
        if executable:
            self.frames.code[pfn] = 1

    def private_page(self, gva: int) -> int:
        """Make the page at gva present and private to this process (copying a shared frame);
        returns its gpa. For the kernel's own writes into read-only mappings (ELF .bss tails)."""
        page = page_down(gva)
        if not self.aspace.get(page) & 1 and not self.fault(page, ACCESS_READ):
            raise SyscallError(EFAULT)
        pte = self.aspace.get(page)
        old = (pte & PTE_ADDR) >> 12
        ram = self.frames.is_ram(old)
        if not ram or self.frames.refs[old] > 1:
            new = self.frames.alloc(zero=False, gfp=Gfp.USER)
            self.frames.copy(new, old)
            self._mark_code(new, not pte & PTE_NX)
            self.aspace.set(page, (pte & ~PTE_ADDR) | (new << 12))
            if ram:
                self.frames.put(old)
            self.page_stale(page)
            old = new
        return (old << 12) | (gva & (PAGE - 1))

    # --- the kernel's accesses to user memory --------------------------------------------------
    def _gpa(self, gva: int, access: int) -> int:
        if gva < 0 or gva >= TASK_SIZE:
            raise SyscallError(EFAULT)
        gpa = self.translate(self.aspace.cr3, gva, access)
        if gpa < 0:
            if not self.fault(gva, access):
                raise SyscallError(EFAULT)
            gpa = self.translate(self.aspace.cr3, gva, access)
            if gpa < 0:
                raise SyscallError(EFAULT)
        return gpa

    def _chunks(self, gva: int, n: int, access: int):  # type: ignore[no-untyped-def]
        """(view, gpa) for each page piece of the user range [gva, gva+n)."""
        page = self.frames.page
        while n > 0:
            chunk = min(n, PAGE - (gva & (PAGE - 1)))
            gpa = self._gpa(gva, access)
            off = gpa & (PAGE - 1)
            yield page(gpa >> 12)[off : off + chunk], gpa
            gva += chunk
            n -= chunk

    def copy_in(self, gva: int, n: int) -> bytes:
        """Read n bytes of user memory (EFAULT if any part is not readable)."""
        out = bytearray()
        for view, gpa in self._chunks(gva, n, ACCESS_READ):
            out += view
            self.frames.kernel_access(gpa, len(view), False)
        return bytes(out)

    def copy_out(self, gva: int, data: bytes | memoryview) -> None:
        """Write data into user memory (EFAULT if any part is not writable)."""
        src = memoryview(data).cast("B")
        pos = 0
        for view, gpa in self._chunks(gva, len(src), ACCESS_WRITE):
            view[:] = src[pos : pos + len(view)]
            self.frames.kernel_access(gpa, len(view), True)
            pos += len(view)

    def user_pages(self, gva: int, n: int, write: bool) -> list[memoryview]:
        """Views of the user buffer [gva, gva+n), page piece by page piece."""
        return [view for view, _ in self._chunks(gva, n, ACCESS_WRITE if write else ACCESS_READ)]

    def read_cstr(self, gva: int, limit: int = 4096) -> bytes:
        out = bytearray()
        page = self.frames.page
        while len(out) < limit:
            chunk = PAGE - (gva & (PAGE - 1))
            gpa = self._gpa(gva, ACCESS_READ)
            off = gpa & (PAGE - 1)
            piece = bytes(page(gpa >> 12)[off : off + chunk])
            self.frames.kernel_access(gpa, chunk, False)
            z = piece.find(b"\0")
            if z >= 0:
                out += piece[:z]
                return bytes(out)
            out += piece
            gva += chunk
        from guestkernel.errors import ENAMETOOLONG

        raise SyscallError(ENAMETOOLONG)

    def read_u64(self, gva: int) -> int:
        return int.from_bytes(self.copy_in(gva, 8), "little")

    def read_ptr_array(self, gva: int, limit: int = 1 << 16) -> list[int]:
        out = []
        while True:
            p = self.read_u64(gva + 8 * len(out))
            if p == 0:
                return out
            out.append(p)
            if len(out) > limit:
                from guestkernel.errors import E2BIG

                raise SyscallError(E2BIG)

    # --- fork / exit ----------------------------------------------------------------------------
    def fork(self) -> "MM":
        child = MM(self.frames, self.translate, self.on_tlb_stale, self.sentinel_pfn, self.asids, self.on_page_stale)
        child.brk_start, child.brk = self.brk_start, self.brk
        child.arg_start, child.arg_end, child.env_start, child.env_end, child.start_stack = (
            self.arg_start, self.arg_end, self.env_start, self.env_end, self.start_stack)
        child.on_exec_map = self.on_exec_map
        child.objects = self.objects
        child.vmas = [replace(v) for v in self.vmas]
        child._reindex()
        for v in self.vmas:
            for gva, slot, pte in self.aspace.leaves(v.start, v.end):
                pfn = (pte & PTE_ADDR) >> 12
                if not v.device and self.frames.is_ram(pfn):
                    self.frames.get(pfn)
                if not v.shared and pte & PTE_W:
                    pte &= ~PTE_W  # both sides copy on their next write
                    self.aspace.write_slot(slot, pte)
                child.aspace.set(gva, pte)
        self.on_tlb_stale()
        return child

    def release(self) -> None:
        for v in self.vmas:
            if v.device:
                continue
            for gva, slot, pte in self.aspace.leaves(v.start, v.end):
                if self.frames.is_ram((pte & PTE_ADDR) >> 12):
                    self.frames.put((pte & PTE_ADDR) >> 12)
        gone, self.vmas = self.vmas, []
        self._reindex()
        _closed(gone)
        self.frames.put(self.sentinel_pfn)
        self.frames.put(self.sentinel_pfn)
        self.aspace.destroy()

    def resident_pages(self) -> int:
        return sum(1 for v in self.vmas for _ in self.aspace.leaves(v.start, v.end))

    def shmem_pages(self) -> int:
        """Resident pages of shared memory objects' mappings (Linux's RssShmem)."""
        return sum(1 for v in self.vmas if getattr(v.backing, "shmem", False) for _ in self.aspace.leaves(v.start, v.end))


def _same_backing(a: Backing | None, b: Backing | None) -> bool:
    """Do two VMAs map the same thing: anonymous memory both, the same shared memory object or
    the same file (each mmap makes its own backing object)?"""
    if a is None or b is None or a is b:
        return a is b
    if type(a) is not type(b):
        return False
    obj = getattr(a, "obj", None)
    if obj is not None:
        return obj is getattr(b, "obj", None)
    ino = getattr(a, "ino", None)
    return ino is not None and ino == getattr(b, "ino", None)


def _closed(vmas: list[VMA]) -> None:
    for v in vmas:
        closed = getattr(v.backing, "vma_closed", None)
        if closed is not None:
            closed()
