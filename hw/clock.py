"""The machine clock: retired guest instructions plus kernel work charged by a cost model.

Guest time is derived from it alone, from a fixed boot epoch, so runs are deterministic. The CPU
runs at `cpu_hz` with one instruction per cycle; kernel work is charged in nanoseconds:

    syscall entry/exit        SYSCALL_NS
    page fault handled        FAULT_NS
    byte copied user<->kernel COPY_NS_PER_KIB / 1024
    block request             what the disk's timing model says (hw/disktiming.py: storage.disk;
                              the flat disk: storage.block_io a block, BLOCK_IO_NS by default)
    idle (all processes wait) up to the next kernel timer (a sleep, a futex/select timeout)
    checkpoint decision+meta  CKPT_NS, plus CKPT_SCAN_NS per resident page whose dirty bit is read
    SCM line written back     SCM_LINE_NS (clflush of a dirty line: 64 B at about 3 GB/s)
    SCM fence                 SCM_FENCE_NS
    page copied to SCM        COPY_NS_PER_KIB * 4 plus its 64 line flushes

The host may also pause the guest (a hypervisor's page migration): `pause(ns)` adds to uptime as
`paused_ns`, apart from kernel work.
"""
from __future__ import annotations

SYSCALL_NS = 100
FAULT_NS = 250
COPY_NS_PER_KIB = 100
BLOCK_IO_NS = 10_000
CKPT_NS = 2_000
CKPT_SCAN_NS = 5
SCM_LINE_NS = 20
SCM_FENCE_NS = 100
BOOT_EPOCH_NS = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z, the images' timestamp


class Clock:
    def __init__(self, icount, cpu_hz: int = 2_000_000_000, boot_epoch_ns: int = BOOT_EPOCH_NS) -> None:  # type: ignore[no-untyped-def]
        self._icount = icount  # callable returning retired instructions
        self.cpu_hz = cpu_hz
        self.boot_epoch_ns = boot_epoch_ns
        self.kernel_ns = 0
        self.base_ns = 0  # uptime carried over from a checkpoint at restart
        self.paused_ns = 0  # the guest paused by the host (page migration)
        # Time before the last kernel handover (rejuvenation), not counted: the new kernel's
        # uptime starts from 0 as at power-on and goes on from its image's (base_ns).
        self.handover_ns = 0

    def charge(self, ns: int) -> None:
        self.kernel_ns += ns

    def pause(self, ns: int) -> None:
        self.paused_ns += ns

    def new_kernel(self) -> None:
        """A new kernel instance takes the machine over (rejuvenation): uptime reads 0 until
        it sets base_ns from the image it resumes, as a restart after power-on does; retired
        instructions and kernel work go on counting."""
        self.handover_ns += self.uptime_ns()
        self.base_ns = 0

    def save_state(self) -> dict:
        return {"kernel_ns": self.kernel_ns, "base_ns": self.base_ns, "paused_ns": self.paused_ns,
                "handover_ns": self.handover_ns}

    def load_state(self, state: dict) -> None:
        self.kernel_ns, self.base_ns, self.paused_ns = state["kernel_ns"], state["base_ns"], state["paused_ns"]
        self.handover_ns = state.get("handover_ns", 0)

    def instructions(self) -> int:
        return int(self._icount())

    def user_ns(self) -> int:
        return self._icount() * 10**9 // self.cpu_hz

    def uptime_ns(self) -> int:
        return self.base_ns + self.user_ns() + self.kernel_ns + self.paused_ns - self.handover_ns

    def now_ns(self) -> int:
        return self.boot_epoch_ns + self.uptime_ns()

    def now_s(self) -> int:
        return self.now_ns() // 10**9
