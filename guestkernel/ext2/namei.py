"""Namespace operations, in the terms of Linux's fs/ext2/namei.c: lookup, create, mknod, mkdir,
symlink, link, unlink, rmdir, rename and exchange. Each checks the name and the directories,
then changes inodes and directory records so that an error (ENOSPC) leaves things as they were.

unlink and rename never free the inode whose link they drop: they return it, and the kernel
calls release() when it has no links and no open files."""
from __future__ import annotations

import errno
import stat as S
import struct
from typing import Callable

from .fserror import FsError
from .layout import LINK_MAX, NAME_MAX, ROOT_INO, Inode, major, minor


class Namei:
    """Mixed into Ext2: names in directories."""

    def lookup(self, dir_ino: int, name: bytes) -> int:
        key = (dir_ino, bytes(name))
        hit = self._dcache.get(key)
        if hit is not None:
            self._dcache.move_to_end(key)
            ino = hit[0]
        else:
            dind = self._dir(dir_ino)
            found = self._find(dind, key[1])
            if found is None:
                raise FsError(errno.ENOENT, f"ext2: {bytes(name)!r} not found")
            ino = found[0]
        if ino != ROOT_INO and ino < self.first_ino:
            raise self.errors.error("ext2_get_inode", f"bad inode number: {ino}")
        ind = self._iget(ino)
        if ind.mode == 0 or (ind.links == 0 and ind.dtime):
            raise self.errors.error("ext2_lookup", f"deleted inode referenced: {ino}")
        if hit is None and key[1] not in (b".", b".."):
            self._dcache[key] = (ino, self.obj_alloc("dentry"))
            if len(self._dcache) > self.DENTRY_CACHE_MAX:
                self.obj_free(self._dcache.popitem(last=False)[1][1])
        return ino

    def _dentry_changed(self, dir_ino: int, name: bytes) -> None:
        """A directory entry was added, removed or repointed: forget what was cached for it."""
        hit = self._dcache.pop((dir_ino, bytes(name)), None)
        if hit is not None:
            self.obj_free(hit[1])

    @staticmethod
    def _check_name(name: bytes) -> bytes:
        name = bytes(name)
        if not name or b"/" in name or b"\0" in name:
            raise FsError(errno.EINVAL, f"ext2: invalid name {name!r}")
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG, "ext2: name too long")
        return name

    def _prepare_new(self, dir_ino: int, name: bytes) -> tuple[Inode, bytes]:
        name = self._check_name(name)
        dind = self._dir(dir_ino)
        if dind.links == 0:
            raise FsError(errno.ENOENT, "ext2: directory has been removed")
        if name in (b".", b"..") or self._find(dind, name) is not None:
            raise FsError(errno.EEXIST, f"ext2: {name!r} exists")
        return dind, name

    def _create_node(self, dir_ino: int, name: bytes, mode: int, uid: int, gid: int,
                     init: Callable[[Inode], None] | None = None) -> int:
        dind, name = self._prepare_new(dir_ino, name)
        ind = self._new_inode(dind, mode, uid, gid)
        try:
            if init is not None:
                init(ind)
            self._add_entry(dind, name, ind.ino, self._ftype(mode))
        except BaseException:
            self._destroy(ind)
            raise
        return ind.ino

    def create(self, dir_ino: int, name: bytes, mode: int, uid: int, gid: int) -> int:
        fmt = S.S_IFMT(mode) or S.S_IFREG
        if fmt != S.S_IFREG:
            raise FsError(errno.EINVAL, "ext2: create() makes regular files only")
        return self._create_node(dir_ino, name, S.S_IFREG | (mode & 0o7777), uid, gid)

    def mknod(self, dir_ino: int, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> int:
        fmt = S.S_IFMT(mode) or S.S_IFREG
        if fmt not in (S.S_IFREG, S.S_IFIFO, S.S_IFCHR, S.S_IFBLK, S.S_IFSOCK):
            raise FsError(errno.EINVAL, "ext2: mknod: bad file type")

        def init(ind: Inode) -> None:
            if fmt in (S.S_IFCHR, S.S_IFBLK):
                ma, mi = major(rdev), minor(rdev)
                if ma < 256 and mi < 256:
                    ind.block[0] = (ma << 8) | mi
                else:
                    ind.block[1] = (mi & 0xFF) | (ma << 8) | ((mi & ~0xFF) << 12)
                self._iput(ind)

        return self._create_node(dir_ino, name, fmt | (mode & 0o7777), uid, gid, init)

    def mkdir(self, dir_ino: int, name: bytes, mode: int, uid: int, gid: int) -> int:
        dind, name = self._prepare_new(dir_ino, name)
        if dind.links >= LINK_MAX:
            raise FsError(errno.EMLINK, "ext2: too many links to parent directory")
        ind = self._new_inode(dind, S.S_IFDIR | (mode & 0o7777), uid, gid)
        bs = self.block_size
        try:
            p, new = self._bmap_alloc(ind, 0, self._group_start((ind.ino - 1) // self.ipg))
            view = self.cache.get(p, new)
            view[:] = self._zero
            self._put_entry(view, 0, ind.ino, 12, b".", self._ftype(S.S_IFDIR))
            self._put_entry(view, 12, dind.ino, bs - 12, b"..", self._ftype(S.S_IFDIR))
            self.cache.mark_dirty(p, ind.ino)
            del view
            ind.size = bs
            ind.links = 2
            self._iput(ind)
            self._add_entry(dind, name, ind.ino, self._ftype(S.S_IFDIR))
        except BaseException:
            ind.links = 0
            self._destroy(ind)
            raise
        dind.links += 1
        self._iput(dind)
        return ind.ino

    def symlink(self, dir_ino: int, name: bytes, target: bytes, uid: int, gid: int) -> int:
        target = bytes(target)
        if not target or b"\0" in target:
            raise FsError(errno.EINVAL if b"\0" in target else errno.ENOENT, "ext2: bad symlink target")
        if len(target) >= self.block_size:
            raise FsError(errno.ENAMETOOLONG, "ext2: symlink target too long")

        def init(ind: Inode) -> None:
            if len(target) < 60:  # fast symlink: target lives in i_block
                raw = target.ljust(60, b"\0")
                ind.block = list(struct.unpack("<15I", raw))
                ind.size = len(target)
                self._iput(ind)
            else:
                self._write(ind, 0, memoryview(target))

        return self._create_node(dir_ino, name, S.S_IFLNK | 0o777, uid, gid, init)

    def link(self, dir_ino: int, name: bytes, ino: int) -> None:
        ind = self._live(ino)
        if S.S_ISDIR(ind.mode):
            raise FsError(errno.EPERM, "ext2: hard link to a directory")
        if ind.links >= LINK_MAX:
            raise FsError(errno.EMLINK, "ext2: too many links")
        if ind.links == 0:
            raise FsError(errno.ENOENT, "ext2: inode has been unlinked")
        dind, name = self._prepare_new(dir_ino, name)
        self._add_entry(dind, name, ino, self._ftype(ind.mode))
        ind.links += 1
        ind.ctime = self.now()
        self._iput(ind)

    def unlink(self, dir_ino: int, name: bytes) -> int:
        name = self._check_name(name)
        dind = self._dir(dir_ino)
        found = self._find(dind, name)
        if found is None:
            raise FsError(errno.ENOENT, f"ext2: {name!r} not found")
        ind = self._iget(found[0])
        if S.S_ISDIR(ind.mode):
            raise FsError(errno.EISDIR, f"ext2: {name!r} is a directory")
        self._remove_entry(dind, name)
        if ind.links > 0:
            ind.links -= 1
        ind.ctime = self.now()
        self._iput(ind)
        return ind.ino

    def rmdir(self, dir_ino: int, name: bytes) -> None:
        name = self._check_name(name)
        if name == b".":
            raise FsError(errno.EINVAL, "ext2: rmdir of '.'")
        if name == b"..":
            raise FsError(errno.ENOTEMPTY, "ext2: rmdir of '..'")
        dind = self._dir(dir_ino)
        found = self._find(dind, name)
        if found is None:
            raise FsError(errno.ENOENT, f"ext2: {name!r} not found")
        ind = self._iget(found[0])
        if not S.S_ISDIR(ind.mode):
            raise FsError(errno.ENOTDIR, f"ext2: {name!r} is not a directory")
        if not self._is_empty_dir(ind):
            raise FsError(errno.ENOTEMPTY, f"ext2: {name!r} is not empty")
        self._remove_entry(dind, name)
        dind.links = max(dind.links - 1, 0)
        self._iput(dind)
        self._drop_dir(ind, rmdir=True)

    def _drop_dir(self, ind: Inode, rmdir: bool) -> None:
        """A directory lost its name: free it, or, while it is open, leave it dead (no links:
        nothing can be created in it) until release(). rmdir also shows it empty (size 0), as
        Linux's ext2/ext4 do; a directory renamed over keeps its size."""
        ind.links = 0
        if self.is_open(ind.ino):
            if rmdir:
                ind.size = 0
            ind.ctime = self.now()
            self._iput(ind)
        else:
            self._destroy(ind)

    def rename(self, old_dir: int, old_name: bytes, new_dir: int, new_name: bytes) -> int:
        """Move old_name to new_name, replacing a file or an empty directory there.

        Returns the inode of a replaced file whose link count it dropped (the caller releases
        it when it has no links and is not open), else 0. A replaced directory is freed here."""
        old_name, new_name = self._check_name(old_name), self._check_name(new_name)
        for nm in (old_name, new_name):
            if nm in (b".", b".."):
                raise FsError(errno.EINVAL, "ext2: cannot rename '.' or '..'")
        odir, ndir = self._dir(old_dir), self._dir(new_dir)
        found = self._find(odir, old_name)
        if found is None:
            raise FsError(errno.ENOENT, f"ext2: {old_name!r} not found")
        src = self._iget(found[0])
        is_dir = S.S_ISDIR(src.mode)
        if is_dir and src.ino == new_dir:
            raise FsError(errno.EINVAL, "ext2: cannot move a directory into itself")
        if is_dir and old_dir != new_dir and self._is_ancestor(src.ino, new_dir):
            raise FsError(errno.EINVAL, "ext2: cannot move a directory into its own subtree")
        if is_dir and old_dir != new_dir and self._find(src, b"..") is None:  # before changing anything
            raise self.errors.error("ext2_rename", f"directory {src.ino} has no '..' entry")
        tfound = self._find(ndir, new_name)
        ft = self._ftype(src.mode)
        replaced = 0
        if tfound is not None:
            tgt = self._iget(tfound[0])
            if tgt.ino == src.ino:
                return 0  # both names are links to the same inode: POSIX says do nothing
            if is_dir:
                if not S.S_ISDIR(tgt.mode):
                    raise FsError(errno.ENOTDIR, f"ext2: {new_name!r} is not a directory")
                if not self._is_empty_dir(tgt):
                    raise FsError(errno.ENOTEMPTY, f"ext2: {new_name!r} is not empty")
            elif S.S_ISDIR(tgt.mode):
                raise FsError(errno.EISDIR, f"ext2: {new_name!r} is a directory")
            self._set_entry(ndir, new_name, src.ino, ft)
            if S.S_ISDIR(tgt.mode):
                ndir.links = max(ndir.links - 1, 0)  # the victim's '..' is gone
                self._iput(ndir)
                self._drop_dir(tgt, rmdir=False)
            else:
                tgt.links = max(tgt.links - 1, 0)
                tgt.ctime = self.now()
                self._iput(tgt)
                replaced = tgt.ino
        else:
            if is_dir and old_dir != new_dir and ndir.links >= LINK_MAX:
                raise FsError(errno.EMLINK, "ext2: too many links to target directory")
            self._add_entry(ndir, new_name, src.ino, ft)  # ENOSPC here leaves everything intact
        self._remove_entry(odir, old_name)
        if is_dir and old_dir != new_dir:
            self._set_entry(src, b"..", new_dir, self._ftype(S.S_IFDIR), touch=False)
            odir.links = max(odir.links - 1, 0)
            ndir.links += 1
            self._iput(odir)
            self._iput(ndir)
        src.ctime = self.now()
        self._iput(src)
        return replaced

    def exchange(self, old_dir: int, old_name: bytes, new_dir: int, new_name: bytes) -> None:
        """Swap two names atomically (renameat2 RENAME_EXCHANGE): each entry points at the other's
        inode; a directory moved to another parent gets its '..' repointed, and when only one of
        the two is a directory the parents' link counts follow it (as ext4_cross_rename)."""
        old_name, new_name = self._check_name(old_name), self._check_name(new_name)
        for nm in (old_name, new_name):
            if nm in (b".", b".."):
                raise FsError(errno.EINVAL, "ext2: cannot exchange '.' or '..'")
        odir, ndir = self._dir(old_dir), self._dir(new_dir)
        ofound, nfound = self._find(odir, old_name), self._find(ndir, new_name)
        if ofound is None or nfound is None:
            raise FsError(errno.ENOENT, "ext2: exchange needs both names")
        a, b = self._iget(ofound[0]), self._iget(nfound[0])
        if a.ino == b.ino:
            return
        a_dir, b_dir = S.S_ISDIR(a.mode), S.S_ISDIR(b.mode)
        if old_dir != new_dir:
            if a_dir and self._is_ancestor(a.ino, new_dir) or b_dir and self._is_ancestor(b.ino, old_dir):
                raise FsError(errno.EINVAL, "ext2: cannot move a directory into its own subtree")
        self._set_entry(odir, old_name, b.ino, self._ftype(b.mode))
        self._set_entry(ndir, new_name, a.ino, self._ftype(a.mode))
        if old_dir != new_dir:
            if a_dir:
                self._set_entry(a, b"..", new_dir, self._ftype(S.S_IFDIR), touch=False)
            if b_dir:
                self._set_entry(b, b"..", old_dir, self._ftype(S.S_IFDIR), touch=False)
            if a_dir != b_dir:
                moved_to, left = (ndir, odir) if a_dir else (odir, ndir)
                moved_to.links += 1
                left.links = max(left.links - 1, 0)
                self._iput(odir)
                self._iput(ndir)
        t = self.now()
        for ind in (a, b):
            ind.ctime = t
            self._iput(ind)

    def _is_ancestor(self, anc: int, ino: int) -> bool:
        """Is directory anc on the '..' chain from directory ino up to the root?"""
        seen: set[int] = set()
        while ino != ROOT_INO and ino not in seen:
            if ino == anc:
                return True
            seen.add(ino)
            found = self._find(self._dir(ino), b"..")
            if found is None:
                return False
            ino = found[0]
        return ino == anc
