"""The CPU: a Unicorn x86-64 core (Skylake-Server model) wired to the native hot path.

Translation is `UC_TLB_VIRTUAL`: on a TLB miss Unicorn calls the C fill callback, which walks the
running process's page table in guest-physical frames. A miss the table cannot satisfy stops the
CPU with a recorded fault that the kernel resolves (demand paging, copy-on-write) or turns into a
signal. The exact retired-instruction count that drives the virtual clock is kept by the translated
code itself with the patched libunicorn (hw/native/ucpatch.py), else by a C block hook; either
stops the CPU before a block that would pass a deadline (scheduler quantum). Syscalls reach the
kernel through one Python hook. EMU_UNICORN=stock runs the stock wheel, =hook the patched library
with the block hook, =memhook the patched library with level full's memory accesses through
Unicorn's hook list instead of its direct callback (vmm/machine.py's build_cache; for comparisons).
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any, Callable

from unicorn import (UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INTR, UC_MODE_64, UC_PROT_ALL, UC_TLB_VIRTUAL, Uc,
                     UcError)
from unicorn.unicorn_const import UC_ERR_FETCH_PROT, UC_ERR_INSN_INVALID
from unicorn.unicorn_py3.unicorn import uclib
from unicorn.x86_const import UC_CPU_X86_SKYLAKE_SERVER, UC_X86_INS_SYSCALL
from unicorn import x86_const as X

from hw.native import load as load_native
from hw.ept import EPT
from hw.sites import Site
from hw.physmem import PhysicalMemory

# A page mapped (non-executable) in every address space: Unicorn touches the `until` address of
# every emu_start through the TLB, so it must always translate. It sits where Linux's vsyscall
# page used to be.
SENTINEL_GVA = 0xFFFFFFFFFF600000

ACCESS_NAMES = ("read", "write", "fetch")

# Stop kinds returned by CPU.run
STOP_REQUESTED = "requested"   # a hook (syscall) asked the CPU to stop
STOP_DEADLINE = "deadline"     # the instruction count reached the deadline
STOP_FAULT = "fault"           # a translation fault: see Stop.fault_gva / fault_access
STOP_EXCEPTION = "exception"   # a CPU exception (interrupt number in Stop.intno)
STOP_INVALID = "invalid"       # an invalid instruction


@dataclass
class Stop:
    kind: str
    pc: int = 0
    fault_gva: int = 0
    fault_access: int = 0
    intno: int = -1


GPR_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
             "r13", "r14", "r15", "rip", "rflags", "fs_base", "gs_base")
GPR_IDS = tuple(getattr(X, "UC_X86_REG_" + n.upper()) for n in GPR_NAMES)
SYSCALL_ARG_IDS = (X.UC_X86_REG_RAX, X.UC_X86_REG_RDI, X.UC_X86_REG_RSI, X.UC_X86_REG_RDX,
                   X.UC_X86_REG_R10, X.UC_X86_REG_R8, X.UC_X86_REG_R9)


class CPU:
    def __init__(self, physmem: PhysicalMemory, ept: "EPT", mmio: frozenset[str] = frozenset(),
                 access_stops: bool = True) -> None:
        """`mmio`: names of ranges to map as MMIO through the cache model (SCM at level persist).
        `access_stops`: a memory hook or an MMIO callback may stop the CPU (a power cut in the
        cache model); False (level fast) lets the patched Unicorn leave out its exit test after
        every guest memory access."""
        self.ffi, self.lib = load_native()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.uc.ctl_set_cpu_model(UC_CPU_X86_SKYLAKE_SERVER)
        self.uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        self.st = self.lib.emu_state_new()
        self._uc_ptr = self.ffi.cast("uc_engine *", self.uc._uch.value)
        self._reg_ids: dict[tuple[int, ...], Any] = {}  # register id tuples as C arrays (read_regs_raw)
        # The syscall path reads 7 registers and writes rax on every call: straight through
        # libunicorn (the binding's generic batch read costs ~57 us, this ~2 us).
        n = len(SYSCALL_ARG_IDS)
        self._arg_ids = (ctypes.c_int * n)(*SYSCALL_ARG_IDS)
        self._arg_vals = (ctypes.c_uint64 * n)()
        self._arg_ptrs = (ctypes.c_void_p * n)(*[ctypes.addressof(self._arg_vals) + 8 * i for i in range(n)])
        self._rax = ctypes.c_uint64()
        self._keep = []
        for r in physmem.ranges:
            ptr = self.ffi.from_buffer(r.buffer)
            self._keep.append(ptr)
            if r.spec.name in mmio:
                err = self.lib.emu_map_scm_mmio(self._uc_ptr, self.st, r.spec.base_hpa, r.spec.size_bytes,
                                                self.ffi.cast("uint8_t *", ptr))
                if err:
                    raise RuntimeError(f"cannot map {r.spec.name} as MMIO (uc_err {err})")
            else:
                self.uc.mem_map_ptr(r.spec.base_hpa, r.spec.size_bytes, UC_PROT_ALL, int(self.ffi.cast("uintptr_t", ptr)))
            self.lib.emu_add_range(self.st, r.spec.base_hpa, r.spec.size_bytes, self.ffi.cast("uint8_t *", ptr))
        self._ept_map = self.ffi.from_buffer("uint32_t[]", ept.map)
        self._ept_bits = self.ffi.from_buffer("uint8_t[]", ept.bits)
        self.lib.emu_set_ept(self.st, self._ept_map, self._ept_bits, ept.pages)
        ept.on_change = self.tlb_flush
        ept.on_data_move = self.flush_translations
        use_patch = os.environ.get("EMU_UNICORN") not in ("stock", "hook")
        err = self.lib.emu_install(self._uc_ptr, self.st, int(use_patch), int(access_stops))
        if err:
            raise RuntimeError(f"cannot install the native hooks (uc_err {err})")
        self.on_syscall: Callable[[], None] = lambda: None
        self.uc.hook_add(UC_HOOK_INSN, self._syscall_hook, None, 1, 0, UC_X86_INS_SYSCALL)
        self.uc.hook_add(UC_HOOK_INTR, self._intr_hook)
        self._intno = -1
        self._stop_requested = False
        self._asid = -1
        self._sites: list[object] = []
        self._site_keys: set[tuple[int, bytes]] = set()  # (gva, instruction) of every site hooked
        self._code_hooks: list[int] = []  # Unicorn handles of add_code_hook's hooks (a kernel's)

    # --- hooks -------------------------------------------------------------------------------
    def _syscall_hook(self, uc: Uc, _ud: object) -> None:
        self.on_syscall()

    def _intr_hook(self, uc: Uc, intno: int, _ud: object) -> None:
        self._intno = intno
        self.uc.emu_stop()

    def add_code_hook(self, gva: int, callback: Callable[[int], None]) -> None:
        """Call callback(gva) before any instruction that starts at gva executes (any process).
        Add it before the code there runs: translated code does not see new hooks."""
        self._code_hooks.append(self.uc.hook_add(UC_HOOK_CODE, lambda uc, addr, size, ud: callback(addr), None, gva, gva))

    def add_site(self, site: "Site") -> None:
        """A C hook for a persistence-instruction site (see hw/native/sites.c)."""
        key = (site.gva, bytes(site.insn))
        if key in self._site_keys:  # hooked already (by the kernel this one replaced): the
            return                  # C hook checks the bytes, so it serves any kernel
        self._site_keys.add(key)
        kinds = {"clflush": 0, "clflushopt": 1, "clwb": 2, "sfence": 3, "mfence": 4, "wbinvd": 5, "nt": 6}
        s = self.lib.emu_site_new(self.st)
        s.gva = site.gva
        s.len = len(site.insn)
        self.ffi.memmove(s.bytes, site.insn, len(site.insn))
        s.kind = kinds[site.kind]
        s.base_reg, s.index_reg, s.seg_reg = site.base_reg, site.index_reg, site.seg_reg
        s.rip_relative = int(site.rip_relative)
        s.scale = site.scale
        s.disp = site.disp
        s.nt_bytes = site.nt_bytes
        self._sites.append(s)
        err = self.lib.emu_site_install(self._uc_ptr, s)
        if err:
            raise RuntimeError(f"cannot hook the site at {site.gva:#x} (uc_err {err})")

    def forget_kernel(self) -> None:
        """The kernel driving this CPU is being replaced (rejuvenation, vmm/machine.py): its
        code hooks (closures of the old kernel) go, the syscall hook answers nothing until the
        new kernel sets it, the next set_address_space loads tables whatever their asid (the new
        kernel numbers its address spaces afresh), and the TLB and translated code are dropped.
        Persistence-instruction sites stay: they depend on the instruction bytes only."""
        for h in self._code_hooks:
            self.uc.hook_del(h)
        self._code_hooks.clear()
        self.on_syscall = lambda: None
        self._asid = -1
        self.st.icache = self.ffi.NULL
        self.tlb_flush()
        self.flush_translations()

    def skip_instruction(self, gva: int, size: int) -> None:
        """From a code hook: do not execute the instruction at gva (it was emulated); it still
        retires once."""
        self.uc.reg_write(X.UC_X86_REG_RIP, gva + size)
        # Unicorn continues in a new block at gva+size, which counts its instructions again.
        self._uncount_from(gva + size)

    def request_stop(self) -> None:
        """Called from within a hook: leave emu_start at the end of the current block."""
        self._stop_requested = True
        self.uc.emu_stop()

    # --- address space -----------------------------------------------------------------------
    def set_address_space(self, asid: int, cr3_gpa: int, icache: object) -> None:
        """Switch to another address space. `asid` names it uniquely for the whole run (a freed
        page-table root may come back for another process), so a change always flushes the TLB."""
        if self._asid != asid:
            self._asid = asid
            self.st.cr3 = cr3_gpa
            self.st.icache = icache
            self.tlb_flush()

    def flush_translations(self) -> None:
        """Drop every translated block (code frames are being reused for other contents)."""
        self.uc.ctl_flush_tb()

    def tlb_flush(self) -> None:
        self.lib.emu_tlb_flush(self._uc_ptr)

    def tlb_flush_page(self, asid: int, gva: int) -> None:
        """The mapping of page gva of address space `asid` changed: its TLB entries go (a
        space not loaded has none: a switch flushes the whole TLB)."""
        if asid == self._asid:
            self.lib.emu_tlb_flush_page(self._uc_ptr, gva)

    def tlb_flush_dirty(self, asid: int, leaves: Any, n: int) -> None:
        """The dirty bits of address space `asid`'s pages were cleared; `leaves` are its
        pt_leaves rows from before (n of them). Its pages that were dirty lose their TLB entries
        (the next store faults to set D again); a space not loaded has none."""
        if asid == self._asid:
            self.lib.emu_tlb_flush_dirty(self._uc_ptr, leaves, n)

    def translate(self, cr3_gpa: int, gva: int, access: int) -> int:
        """gpa of gva in that address space, or -1 when the access would fault."""
        gpa = self.lib.emu_translate(self.st, cr3_gpa, gva, access)
        return -1 if gpa == 0xFFFFFFFFFFFFFFFF else gpa

    def read_regs_raw(self, ids: "list[int] | tuple[int, ...]", ctx: object = None) -> bytes:
        """Registers `ids` from the live CPU, or from a saved context, in one C call: 16 bytes
        each, little-endian (the Python binding costs microseconds per register)."""
        ptr = self.ffi.NULL if ctx is None else self.ffi.cast("uc_context *", ctx.context.value)  # type: ignore[attr-defined]
        out = self.ffi.new("uint8_t[]", 16 * len(ids))
        c_ids = self._reg_ids.get(ids) if isinstance(ids, tuple) else None
        if c_ids is None:
            c_ids = self.ffi.new("int[]", list(ids))
            if isinstance(ids, tuple):
                self._reg_ids[ids] = c_ids
        if self.lib.emu_read_regs(self._uc_ptr, ptr, c_ids, len(ids), out) != 0:
            raise RuntimeError("uc_reg_read_batch failed")
        return bytes(self.ffi.buffer(out))

    def pt_leaves(self, cr3_gpa: int, start: int, end: int) -> list[int]:
        """Every present leaf of a page table in [start, end), flattened: gva, PTE slot gpa, PTE,
        gva, ... (the C walk)."""
        buf, n = self.pt_leaf_rows(cr3_gpa, start, end)
        return self.ffi.unpack(buf, 3 * n) if n else []

    def pt_leaf_rows(self, cr3_gpa: int, start: int, end: int) -> tuple[Any, int]:
        """The same rows left in a C array (uint64_t[3n]) for another C pass, and n."""
        n = self.lib.emu_pt_leaves(self.st, cr3_gpa, start, end, self.ffi.NULL, 0)
        if not n:
            return self.ffi.NULL, 0
        buf = self.ffi.new("uint64_t[]", 3 * n)
        self.lib.emu_pt_leaves(self.st, cr3_gpa, start, end, buf, n)
        return buf, n

    def access(self, cr3_gpa: int, gva: int, access: int) -> int:
        """Like translate, for the kernel's own access: sets accessed/dirty bits."""
        gpa = self.lib.emu_access(self.st, cr3_gpa, gva, access)
        return -1 if gpa == 0xFFFFFFFFFFFFFFFF else gpa

    # --- clock -------------------------------------------------------------------------------
    @property
    def icount(self) -> int:
        return self.st.icount

    @property
    def counts_in_translated_code(self) -> bool:
        """True with the patched libunicorn (no block hook)."""
        return bool(self.st.icount_in_tb)

    # --- running -----------------------------------------------------------------------------
    def run(self, pc: int, deadline: int) -> Stop:
        st = self.st
        st.deadline = st.limit = deadline
        st.deadline_hit = 0
        st.fault_pending = 0
        st.last_block_size = 0
        self._intno = -1
        self._stop_requested = False
        try:
            self.uc.emu_start(pc, SENTINEL_GVA)
        except UcError as e:
            rip = self.uc.reg_read(X.UC_X86_REG_RIP)
            self._uncount_from(rip)
            if st.fault_pending:
                st.fault_pending = 0
                return Stop(STOP_FAULT, rip, self.lib.emu_fault_gva(self._uc_ptr, st), st.fault_access)
            if e.errno == UC_ERR_INSN_INVALID:
                return Stop(STOP_INVALID, rip)
            if e.errno == UC_ERR_FETCH_PROT:
                return Stop(STOP_FAULT, rip, rip, 2)
            return Stop(STOP_EXCEPTION, rip, intno=self._intno if self._intno >= 0 else 13)
        rip = self.uc.reg_read(X.UC_X86_REG_RIP)
        if self._intno >= 0:
            self._uncount_from(rip)
            return Stop(STOP_EXCEPTION, rip, intno=self._intno)
        if self._stop_requested:
            return Stop(STOP_REQUESTED, rip)
        if st.deadline_hit:
            return Stop(STOP_DEADLINE, rip)
        return Stop(STOP_REQUESTED, rip)

    def step(self) -> Stop:
        """Execute exactly one instruction (or fault on it). Used to reach an exact count."""
        st = self.st
        before = st.icount
        st.deadline = st.limit = 0xFFFFFFFFFFFFFFFF
        st.deadline_hit = 0
        st.fault_pending = 0
        self._intno = -1
        self._stop_requested = False
        rip = self.uc.reg_read(X.UC_X86_REG_RIP)
        try:
            self.uc.emu_start(rip, SENTINEL_GVA, 0, 1)
        except UcError as e:
            st.icount = before
            if st.fault_pending:
                st.fault_pending = 0
                return Stop(STOP_FAULT, rip, self.lib.emu_fault_gva(self._uc_ptr, st), st.fault_access)
            if e.errno == UC_ERR_INSN_INVALID:
                return Stop(STOP_INVALID, rip)
            return Stop(STOP_EXCEPTION, rip, intno=self._intno if self._intno >= 0 else 13)
        if self._intno >= 0:
            st.icount = before
            return Stop(STOP_EXCEPTION, rip, intno=self._intno)
        st.icount = before + 1
        st.last_block_size = 0
        return Stop(STOP_REQUESTED, self.uc.reg_read(X.UC_X86_REG_RIP))

    def _uncount_from(self, rip: int) -> None:
        """The whole block was counted as it started; take back the instructions from `rip` on,
        which did not retire because the CPU stopped inside the block."""
        st = self.st
        start, size = st.last_block_gva, st.last_block_size
        if size and start <= rip < start + size:
            done = self.lib.emu_count_insns(st, start, size, rip)
            if done >= 0:
                st.icount -= st.last_block_count - done
        st.last_block_size = 0

    # --- registers ---------------------------------------------------------------------------
    def syscall_args(self) -> tuple[int, ...]:
        if uclib.uc_reg_read_batch(self.uc._uch, self._arg_ids, self._arg_ptrs, len(SYSCALL_ARG_IDS)):
            return self.uc.reg_read_batch(SYSCALL_ARG_IDS)  # let the binding raise its error
        return tuple(self._arg_vals)

    def set_rax(self, value: int) -> None:
        self._rax.value = value & 0xFFFFFFFFFFFFFFFF
        if uclib.uc_reg_write(self.uc._uch, X.UC_X86_REG_RAX, ctypes.byref(self._rax)):
            self.set_reg("rax", value)

    def reg(self, name: str) -> int:
        return self.uc.reg_read(getattr(X, "UC_X86_REG_" + name.upper()))

    def set_reg(self, name: str, value: int) -> None:
        self.uc.reg_write(getattr(X, "UC_X86_REG_" + name.upper()), value & 0xFFFFFFFFFFFFFFFF)

    def read_gprs(self) -> dict[str, int]:
        return dict(zip(GPR_NAMES, self.uc.reg_read_batch(GPR_IDS)))

    def write_gprs(self, regs: dict[str, int]) -> None:
        self.uc.reg_write_batch([(getattr(X, "UC_X86_REG_" + k.upper()), v & 0xFFFFFFFFFFFFFFFF) for k, v in regs.items()])

    def save_state(self) -> dict:
        """The registers (a Unicorn context) and the counters; translations, TLB and hooks are
        not state: they are rebuilt (hooks by whoever added them)."""
        st = self.st
        return {"context": self.uc.context_save(), "icount": st.icount, "blocks_decoded": st.blocks_decoded,
                "tlb_fills": st.tlb_fills, "nt_remaining": st.nt_remaining}

    def load_state(self, state: dict) -> None:
        self.uc.context_restore(state["context"])
        st = self.st
        st.icount, st.blocks_decoded = state["icount"], state["blocks_decoded"]
        st.tlb_fills, st.nt_remaining = state["tlb_fills"], state["nt_remaining"]
        self._asid = -1  # the next set_address_space loads the running process's tables
        self.tlb_flush()
        self.flush_translations()

    def save_context(self) -> object:
        return self.uc.context_save()

    def restore_context(self, ctx: object) -> None:
        self.uc.context_restore(ctx)

    def new_icache(self) -> object:
        return self.lib.emu_icache_new()

    def free_icache(self, ic: object) -> None:
        if ic is not None and ic == self.st.icache:
            self.st.icache = self.ffi.NULL
        self.lib.emu_icache_free(ic)

    def clear_icache(self, ic: object) -> None:
        self.lib.emu_icache_clear(ic)
