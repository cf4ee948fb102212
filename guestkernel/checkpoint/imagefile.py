"""Where the checkpoint images live: the SCM range (the first paper), or a file of the root file
system on storage as memory (the third paper: `checkpoint.into = "file:/PATH"`).

A file on the storage window is persistent memory the kernel can address page by page, like the
SCM range: the image store (store.py) runs on it unchanged, through an `ScmMedium` whose pages are
the file's blocks (4 KiB blocks: one block, one page) in file order. The file is made once, by the
first boot that does not find it, at the configured size, every block allocated and zeroed (ext2
has no fallocate; `mkswap` users write zeros the same way), so that its block map never changes
while the kernel uses it. The kernel holds it like an active swap file (vfs.kernel_files): writes
and truncations fail with ETXTBSY, unlink and rename with EPERM, so that no other file can get
its blocks and a restart finds it by its path.

Being memory the processes can map, the file is also their private pages' home between
checkpoints (live.py): a checkpoint maps the pages it copied from there, a write copies a page to
a fresh page of the file, the next checkpoint flushes that page in place instead of copying it,
and a restart maps the image's pages back instead of copying them.
"""
from __future__ import annotations

import errno
import stat as S
from typing import TYPE_CHECKING

from guestkernel.ext2 import ROOT_INO
from guestkernel.ext2.fserror import FsError
from guestkernel.scm import PAGE, ScmMedium

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel


def file_medium(k: "Kernel", path: str, size: int) -> tuple[ScmMedium, int]:
    """The image file at `path` on the DAX root, made (parents too) if missing; returns its
    medium and inode number. ValueError (one line) when it cannot be used."""
    dax = k.dax
    if dax is None:
        raise ValueError(f"checkpoint file {path}: needs the root on storage as memory")
    fs = k.fs.rootfs
    if fs.block_size != PAGE:
        raise ValueError(f"checkpoint file {path}: needs a file system of 4 KiB blocks, not {fs.block_size}")
    parts = [c.encode() for c in path.strip("/").split("/") if c]
    ino = ROOT_INO
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            try:
                ino = fs.lookup(ino, name)
            except FsError as e:
                if e.errno != errno.ENOENT:
                    raise
                ino = (fs.create(ino, name, S.S_IFREG | 0o600, 0, 0) if last
                       else fs.mkdir(ino, name, 0o755, 0, 0))
        st = fs.stat(ino)
        if not S.S_ISREG(st.mode):
            raise ValueError(f"checkpoint file {path}: not a regular file")
        npages = max(st.size, size) // PAGE
        blocks = [fs.map_block(ino, fb) for fb in range(npages)]  # holes get zeroed blocks
        if st.size < npages * PAGE:
            fs.truncate(ino, npages * PAGE)
        fs.sync()  # committed before any image goes in
    except FsError as e:
        raise ValueError(f"checkpoint file {path}: {e.msg or errno.errorcode.get(e.errno, e.errno)}") from None
    gpfns = [dax.window_gpfn + b for b in blocks]
    return ScmMedium(lambda i: k.frames.page(gpfns[i]), npages, k.memory, 0, k.clock, gpfns=gpfns,
                     label=f"checkpoint file {path}"), ino
