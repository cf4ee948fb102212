"""The label of a storage window (storage as memory): the last page of the mapped image says
where the file system's bytes end and where the log the guest keeps its metadata consistent with
lies (like an NVDIMM namespace label). The host writes it once (vmm/storage.py); the guest kernel
reads it to find its log (guestkernel/dax.py)."""
from __future__ import annotations

import dataclasses
import struct

PAGE = 4096
LABEL_MAGIC = b"EMUSTOR1"
# magic, bytes of the image before the log (the file system's device), log offset, log bytes
LABEL = struct.Struct("<8sQQQ")


@dataclasses.dataclass(frozen=True)
class WindowLabel:
    data_bytes: int   # the image's bytes: the file system's device
    log_offset: int   # the redo log, from the window's start
    log_bytes: int
    window_bytes: int  # the whole window: data, log and the label page

    def pack(self) -> bytes:
        return LABEL.pack(LABEL_MAGIC, self.data_bytes, self.log_offset, self.log_bytes).ljust(PAGE, b"\0")


def read_label(page: bytes | memoryview, window_bytes: int) -> WindowLabel | None:
    """The label in a window's last page, or None if there is none (or it does not fit)."""
    magic, data, log_off, log_n = LABEL.unpack_from(page, 0)
    if magic != LABEL_MAGIC:
        return None
    if data % PAGE or log_off != data or log_n % PAGE or data + log_n + PAGE != window_bytes:
        return None
    return WindowLabel(data, log_off, log_n, window_bytes)


