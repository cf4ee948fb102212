"""/sys: a small read-only sysfs.

It describes the machine's CPUs (`cpus`), in Linux's formats (cpu lists such as "0-3\n"), so that
programs that size themselves from sysfs (stress-ng, glibc's get_nprocs_conf) find it, and holds
the kernel's debugfs files at /sys/kernel/debug (given by the kernel):

    /sys/devices/system/cpu/{online,possible,present,offline,kernel_max}
    /sys/devices/system/cpu/cpuN/topology/{core_id,physical_package_id,die_id,...}
    /sys/kernel/debug/extfrag/{unusable_index,extfrag_index}
    /sys/block/loopN/{dev,size,ro,removable,loop/...}, /sys/dev/block/7:N (vfs/loop.py)

Files are 0444 and report size 4096, as sysfs does; opening one for writing is EACCES, and
nothing can be created, removed or renamed here (EPERM, as for kernfs directories without those
operations). Directories list their entries in table order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from guestkernel.vfs.pseudo import DIR, FILE, LINK, Entry, PseudoFS

def cpu_list(n: int) -> bytes:
    """Linux's cpu-list format for CPUs 0..n-1 ("0\n", "0-3\n")."""
    return b"0\n" if n == 1 else b"0-%d\n" % (n - 1)


def cpu_tree(cpus: int) -> dict[str, bytes | None]:
    """path below /sys -> file contents, or None for a directory: the machine's CPUs (`cpus`, one
    package, one core each, all online), as Linux lays them out."""
    tree: dict[str, bytes | None] = {
        "": None, "devices": None, "devices/system": None, "devices/system/cpu": None,
        "devices/system/cpu/online": cpu_list(cpus), "devices/system/cpu/possible": cpu_list(cpus),
        "devices/system/cpu/present": cpu_list(cpus), "devices/system/cpu/offline": b"\n",
        "devices/system/cpu/kernel_max": b"8191\n"}
    for i in range(cpus):
        own, package = b"%d\n" % i, cpu_list(cpus)
        topology = {"core_id": own, "physical_package_id": b"0\n", "die_id": b"0\n", "cluster_id": own,
                    "core_cpus_list": own, "thread_siblings_list": own, "cluster_cpus_list": own,
                    "core_siblings_list": package, "die_cpus_list": package, "package_cpus_list": package}
        tree[f"devices/system/cpu/cpu{i}"] = None
        tree[f"devices/system/cpu/cpu{i}/topology"] = None
        tree.update({f"devices/system/cpu/cpu{i}/topology/{n}": v for n, v in topology.items()})
    return tree


class SysFS(PseudoFS):
    mount = "sys"
    dev = 0x15
    file_size = 4096  # what sysfs reports for every attribute file

    def __init__(self, files: dict[str, Callable[[], bytes]] | None = None, cpus: int = 1) -> None:
        """`files`: more read-only files, path below /sys -> what makes their contents; `cpus`:
        how many CPUs devices/system/cpu describes."""
        self.tree: dict[str, bytes | Callable[[], bytes] | Link | None] = dict(cpu_tree(cpus))
        # path -> is it there now (a bound loop device's loop/ directory, as Linux adds it)
        self.when: dict[str, Callable[[], bool]] = {}
        self.writers: dict[str, tuple[Callable[[bytes], None], int]] = {}  # path -> (writer, mode)
        for path, read in (files or {}).items():
            self.add(path, read)

    def add(self, path: str, what: "bytes | Callable[[], bytes] | Link | None",
            when: Callable[[], bool] | None = None, write: Callable[[bytes], None] | None = None) -> None:
        """A file (its contents, or what makes them), a directory (None) or a symbolic link at
        `path`, its parent directories made; `when`: present only while it says so; `write`:
        a debugfs file root may write (0200 without contents, else 0644)."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            self.tree.setdefault("/".join(parts[:i]), None)
        self.tree[path] = what if what is not None or write is None else b""
        if when is not None:
            self.when[path] = when
        if write is not None:
            self.writers[path] = (write, 0o200 if what is None else 0o644)

    def _present(self, path: str) -> bool:
        if not self.when:
            return True
        parts = path.split("/")
        return all(self.when.get("/".join(parts[:i]), _always)() for i in range(1, len(parts) + 1))

    def entry(self, path: str) -> Entry | None:
        if path not in self.tree or not self._present(path):
            return None
        data = self.tree[path]
        if data is None:
            return Entry(DIR, 0o755)
        if isinstance(data, Link):
            return Entry(LINK, target=lambda: data.target)
        if path in self.writers:
            write, mode = self.writers[path]
            return Entry(FILE, mode, read=data if callable(data) else lambda: data, write=write)
        return Entry(FILE, 0o444, read=data if callable(data) else lambda: data)

    def names(self, path: str) -> list[str]:
        prefix = path + "/" if path else ""
        return [p[len(prefix):] for p in self.tree if p and p != path and p.startswith(prefix)
                and "/" not in p[len(prefix):] and self._present(p)]


@dataclass(frozen=True)
class Link:
    """A symbolic link in /sys (the /sys/dev/block/MAJOR:MINOR names of block devices)."""

    target: bytes


def _always() -> bool:
    return True
