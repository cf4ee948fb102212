"""A kernel loaded with `emu --kernel tests.custom_kernel:RenamedKernel` in the tests: the default
kernel under another host name, to show that the kernel is pluggable."""
from guestkernel.kernel import Kernel, KernelConfig


class RenamedKernel(Kernel):
    name = "renamed"

    def __init__(self, config: KernelConfig | None = None) -> None:
        super().__init__(config)
        self.uname["nodename"] = b"custom-kernel"


class FailingKernel(Kernel):
    """Raises while it is constructed: `emu run` says so in one line."""

    def __init__(self, config: KernelConfig | None = None) -> None:
        raise RuntimeError("no memory map for me")


class NotAKernel:
    """Has none of the interface's methods."""
