"""Storage as memory (the third paper), the host side: the image file mapped into guest-physical
memory as a persistent window on its own channel.

`storage.mode = "memory"` turns the image into an SCM pool named `storage` whose media is the
image file itself (a `MAP_SHARED` mapping, so the host page cache is what the guest reaches, as in
the paper). At level fast the CPU's view is that mapping: every store is durable at once. At
persist/full the CPU sees a copy-on-write view and a line reaches the file only when the cache
model writes it back (eviction, clflush, clwb + fence), exactly as SCM media: a power cut leaves
the image as its durable lines left it.

The window is the image followed by a log area the guest's file system uses to keep its metadata
consistent (a redo log, guestkernel/dax.py). The host appends it to the image once, with a label
in the window's last page (like an NVDIMM namespace label) that says where the file system's bytes
end and where the log is; the file system never covers it, and e2fsck and debugfs accept a device
larger than its file system. An image that already carries the label is mapped as it is.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from hw.storagelabel import WindowLabel, read_label
from vmm.config import MachineConfig, RangeConfig
from vmm.config.schema import MAX_CHANNEL, STORAGE_POOL
from vmm.config.units import GiB
from vmm.errors import EmuError

PAGE = 4096


def prepare_image(image: Path, log_bytes: int) -> WindowLabel:
    """Give `image` its log area and label (once) and return its label."""
    size = image.stat().st_size
    if size % PAGE or size < 2 * PAGE:
        raise EmuError(f"image {image}: {size} bytes is not a whole number of 4 KiB pages; "
                       "storage.mode = 'memory' maps it page by page")
    with open(image, "r+b") as f:
        f.seek(size - PAGE)
        label = read_label(f.read(PAGE), size)
        if label is not None:
            return label
        label = WindowLabel(size, size, log_bytes, size + log_bytes + PAGE)
        f.truncate(label.window_bytes)   # the log starts zeroed (a hole): no committed record
        f.seek(label.window_bytes - PAGE)
        f.write(label.pack())
        f.flush()
        os.fsync(f.fileno())
    return label


def with_storage_pool(cfg: MachineConfig, window_bytes: int) -> MachineConfig:
    """`cfg` with the pool that maps the image: after the highest pool (on a GiB boundary), on
    `storage.channel` or the first channel no pool uses."""
    pools = tuple(r for r in cfg.pools if r.name != STORAGE_POOL)  # (a saved machine has it: made anew)
    top = max(r.end_hpa for r in pools)
    base = -(-top // GiB) * GiB
    channel = cfg.storage.channel
    if channel < 0:
        used = {r.channel for r in pools} | {c for r in pools for c in r.channels}
        channel = next((c for c in range(MAX_CHANNEL + 1) if c not in used), MAX_CHANNEL)
    pool = RangeConfig(STORAGE_POOL, "scm", base, window_bytes, channel=channel)
    return dataclasses.replace(cfg, pools=pools + (pool,))
