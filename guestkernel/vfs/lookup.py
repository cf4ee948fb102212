"""Path resolution, contained in the guest root: `..` at the root stays there and absolute symlink
targets restart at the guest root, so nothing of the host is reachable. A path names a node:
an ext2 inode number, or one of the kernel's own (/dev and its devices, /sys)."""
from __future__ import annotations

import stat as S
from typing import Any

from guestkernel.vfs.pseudo import LINK, PseudoNode
from guestkernel.errors import ELOOP, ENAMETOOLONG, ENOENT, ENOTDIR, SyscallError
from guestkernel.vfs.devices import DEV_DIR, FD_ALIASES, DevNode
from guestkernel.vfs.file import fs_error

MAX_SYMLINKS = 40
Node = Any  # an ext2 inode number, a DevNode, DEV_DIR, an "fd:" alias or a PseudoNode (/sys, /proc)


class PathLookup:
    """Mixed into VFS: names -> nodes (uses self.fs, self.devices and self.relatime)."""

    def lookup(self, dir_node: Node, name: bytes) -> Node:
        if dir_node == DEV_DIR:
            if name in (b".",):
                return DEV_DIR
            if name == b"..":
                return self.fs.root_ino
            dev = self.devices.get(name.decode(errors="replace"))
            if dev is None and name.decode(errors="replace") not in FD_ALIASES:
                raise SyscallError(ENOENT)
            return dev if dev is not None else "fd:" + name.decode()
        if isinstance(dir_node, PseudoNode):
            if dir_node.is_root and name == b"..":
                return self.fs.root_ino
            return self.pseudo[dir_node.fs].lookup(dir_node, name)
        if isinstance(dir_node, (DevNode, str)):
            raise SyscallError(ENOTDIR)
        if dir_node == self.fs.root_ino and name == b"dev":
            return DEV_DIR
        if dir_node == self.fs.root_ino and name.decode(errors="replace") in self.pseudo:
            return self.pseudo[name.decode()].root
        mounts = self.fs
        if name == b".." and mounts.is_mount_root(dir_node):  # up out of a mounted file system
            return self.lookup(mounts.of(dir_node).point, b"..")
        try:
            node = mounts.lookup(dir_node, name)
        except Exception as e:  # FsError carries an errno
            raise fs_error(e) from None
        while node in mounts.covered:  # down into what is mounted on a directory
            node = mounts.covered[node]
        return node

    def resolve(self, path: bytes, cwd: Node, *, follow: bool = True, _depth: int = 0) -> Node:
        """Resolve a path to a node. Raises ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG."""
        parent, name = self.resolve_parent(path, cwd, _depth=_depth)
        if name in (b"", b".", b".."):
            return parent if name != b".." else self.lookup(parent, b"..")
        node = self.lookup(parent, name)
        if follow and self.is_symlink(node):
            if _depth >= MAX_SYMLINKS:
                raise SyscallError(ELOOP)
            return self.resolve(self.follow(node), parent, follow=True, _depth=_depth + 1)
        return node

    def resolve_parent(self, path: bytes, cwd: Node, *, _depth: int = 0,
                       keep_slash: bool = False) -> tuple[Node, bytes]:
        """Resolve all but the last component; returns (directory node, last name). A trailing
        slash makes the last component resolve to a directory (returned as (it, ".")), unless
        keep_slash: calls that create or remove the last name (mkdir, rmdir, rename) take it as
        a name and check the slash themselves, as Linux does."""
        if not path:
            raise SyscallError(ENOENT)
        if len(path) >= 4096:
            raise SyscallError(ENAMETOOLONG)
        node: Node = self.fs.root_ino if path.startswith(b"/") else cwd
        parts = [p for p in path.split(b"/") if p]
        if not parts:
            return node, b"."
        trailing_slash = path.endswith(b"/")
        for comp in parts[:-1]:
            if len(comp) > 255:
                raise SyscallError(ENAMETOOLONG)
            node = self._step(node, comp, _depth)
        last = parts[-1]
        if len(last) > 255:
            raise SyscallError(ENAMETOOLONG)
        if trailing_slash and last not in (b".", b"..") and not keep_slash:
            # "dir/" must name a directory: resolve it fully and hand back "."
            node = self._step(node, last, _depth)
            self._require_dir(node)
            return node, b"."
        self._require_dir(node)
        return node, last

    def _step(self, node: Node, comp: bytes, depth: int) -> Node:
        self._require_dir(node)
        if comp == b".":
            return node
        nxt = self.lookup(node, comp)
        if self.is_symlink(nxt):
            if depth >= MAX_SYMLINKS:
                raise SyscallError(ELOOP)
            nxt = self.resolve(self.follow(nxt), node, follow=True, _depth=depth + 1)
        return nxt

    def is_symlink(self, node: Node) -> bool:
        if isinstance(node, int):
            return S.S_ISLNK(self.fs.stat(node).mode)
        return isinstance(node, PseudoNode) and self.pseudo[node.fs].get(node).kind == LINK

    def follow(self, node: Node) -> bytes:
        """A symbolic link's target (reading an ext2 link updates its atime)."""
        if isinstance(node, PseudoNode):
            return self.pseudo[node.fs].readlink(node)
        target = self.fs.readlink(node)
        self.relatime(node, self.fs.stat(node))
        return target

    def _require_dir(self, node: Node) -> None:
        if node == DEV_DIR or (isinstance(node, PseudoNode) and self.pseudo[node.fs].get(node).kind == "dir"):
            return
        if not isinstance(node, int) or not S.S_ISDIR(self.fs.stat(node).mode):
            raise SyscallError(ENOTDIR)

    def is_dir(self, node: Node) -> bool:
        return (node == DEV_DIR or (isinstance(node, int) and S.S_ISDIR(self.fs.stat(node).mode))
                or (isinstance(node, PseudoNode) and self.pseudo[node.fs].get(node).kind == "dir"))
