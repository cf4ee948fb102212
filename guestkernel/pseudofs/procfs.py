"""/proc: the kernel's view of itself, as Linux's procfs lays it out.

    /proc/{meminfo,vmstat,buddyinfo,zoneinfo,pagetypeinfo,slabinfo}   memory (procmem.py)
    /proc/{uptime,loadavg,stat,cpuinfo,version,filesystems}          the machine
    /proc/self, /proc/thread-self, /proc/mounts                      symbolic links
    /proc/sys/vm/drop_caches (write 1, 2 or 3), /proc/sys/vm/*, /proc/sys/kernel/*
    /proc/PID/{stat,status,statm,maps,cmdline,environ,comm,exe,cwd,fd/,task/,mounts}

Directories of processes appear and vanish with them (a zombie keeps its directory until it is
reaped, as on Linux). Only root-owned entries exist: every guest process runs as root.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from guestkernel.dax import DaxStore
from guestkernel.errors import EINVAL, SyscallError
from guestkernel.vfs.pseudo import DIR, FILE, LINK, Entry, PseudoFS
from guestkernel.pseudofs import procmem, procpid

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.mounts import Mount
    from guestkernel.process import Process

_TOP_FILES: dict[str, Callable[["Kernel"], bytes]] = {
    "buddyinfo": procmem.buddyinfo, "cpuinfo": procmem.cpuinfo, "loadavg": procmem.loadavg,
    "meminfo": procmem.meminfo, "pagetypeinfo": procmem.pagetypeinfo, "slabinfo": procmem.slabinfo,
    "stat": procmem.stat, "uptime": procmem.uptime, "version": procmem.version, "vmstat": procmem.vmstat,
    "zoneinfo": procmem.zoneinfo, "swaps": lambda k: k.swap.proc_swaps(), "filesystems": lambda k: b"nodev\tsysfs\nnodev\tproc\nnodev\tpipefs\n\text2\n",
}
_TOP_MODES = {"pagetypeinfo": 0o400, "slabinfo": 0o400}

_PID_FILES: dict[str, Callable[["Kernel", "Process"], bytes]] = {
    "cmdline": procpid.cmdline, "comm": procpid.comm, "environ": procpid.environ, "maps": procpid.maps,
    "mounts": lambda k, p: _mounts(k), "mountinfo": lambda k, p: _mountinfo(k), "stat": procpid.stat, "statm": procpid.statm, "status": procpid.status,
}
_PID_MODES = {"environ": 0o400, "comm": 0o644}
_PID_NAMES = ("cmdline", "comm", "cwd", "environ", "exe", "fd", "maps", "mountinfo", "mounts", "stat", "statm", "status", "task")


# The kernel's pseudo file systems as mounts: source, mount point, type, options, and the VFS's
# name for it (whose st_dev mountinfo shows).
_PSEUDO_MOUNTS = ((b"sysfs", b"/sys", b"sysfs", b"ro,nosuid,nodev,noexec,relatime", "sys"),
                  (b"proc", b"/proc", b"proc", b"rw,nosuid,nodev,noexec,relatime", "proc"))


def _ext2_mounts(k: "Kernel") -> list[tuple[int, int, object]]:
    """(mount id, parent's mount id, Mount) of the ext2 mounts in mount order: ids 1 (the root),
    then 2 and 3 for /sys and /proc, then 3 + the table's id."""
    out = []
    for m in k.fs.in_order():
        parent = 0 if m.point is None else k.fs.of(m.point).mid
        out.append((1 if m.mid == 0 else 3 + m.mid, 0 if m.point is None else (1 if parent == 0 else 3 + parent), m))
    return out


def _dax(m: "Mount") -> bytes:
    """ext2's ",dax" option: a file system on storage mapped as memory (guestkernel/dax.py)."""
    return b",dax" if isinstance(m.cache, DaxStore) else b""


def _mounts(k: "Kernel") -> bytes:
    """/proc/self/mounts (fstab's format)."""
    lines = []
    for i, (_mid, _parent, m) in enumerate(_ext2_mounts(k)):
        lines.append(b"%s %s ext2 %s,relatime%s 0 0\n" % (m.source, m.target, b"ro" if m.read_only else b"rw", _dax(m)))
        if i == 0:
            lines += [b"%s %s %s %s 0 0\n" % (src, at, fs, opts) for src, at, fs, opts, _name in _PSEUDO_MOUNTS]
    return b"".join(lines)


def _mountinfo(k: "Kernel") -> bytes:
    """/proc/self/mountinfo: id, parent id, major:minor, root, mount point, options, -, type,
    source, super options."""
    lines = []
    for i, (mid, parent, m) in enumerate(_ext2_mounts(k)):
        rw = b"ro" if m.read_only else b"rw"
        lines.append(b"%d %d %d:%d / %s %s,relatime - ext2 %s %s%s\n"
                     % (mid, parent, m.rdev >> 8, m.rdev & 0xFF, m.target, rw, m.source, rw, _dax(m)))
        if i == 0:
            lines += [b"%d 1 0:%d / %s %s - %s %s %s\n" % (2 + j, k.vfs.pseudo[name].dev, at, opts, fs, src,
                                                            opts.split(b",")[0])
                      for j, (src, at, fs, opts, name) in enumerate(_PSEUDO_MOUNTS)]
    return b"".join(lines)


class ProcFS(PseudoFS):
    mount = "proc"
    dev = 0x16

    def __init__(self, k: "Kernel") -> None:
        self.k = k
        # /proc/sys: path -> (mode, reader, writer); directories are the prefixes.
        self.sysctl: dict[str, tuple[int, Callable[[], bytes] | None, Callable[[bytes], None] | None]] = {
            "sys/vm/drop_caches": (0o200, None, self._drop_caches),
            "sys/vm/min_free_kbytes": (0o644, lambda: b"%d\n" % k.reclaim.min_free_kb, None),
            "sys/vm/overcommit_memory": (0o644, lambda: b"0\n", None),
            "sys/vm/watermark_scale_factor": (0o644, lambda: b"10\n", None),
            "sys/kernel/pid_max": (0o644, lambda: b"4194304\n", None),
            "sys/kernel/osrelease": (0o444, lambda: k.uname["release"] + b"\n", None),
            "sys/kernel/ostype": (0o444, lambda: k.uname["sysname"] + b"\n", None),
            "sys/kernel/hostname": (0o644, lambda: k.uname["nodename"] + b"\n", None),
        }

    # --- what is where --------------------------------------------------------------------------
    def entry(self, path: str) -> Entry | None:
        if not path:
            return Entry(DIR, 0o555)
        head, _, rest = path.partition("/")
        if head.isdigit():
            return self._pid_entry(head, rest)
        if rest == "":
            if head in _TOP_FILES:
                fn = _TOP_FILES[head]
                return Entry(FILE, _TOP_MODES.get(head, 0o444), read=lambda: fn(self.k))
            if head == "self":
                return Entry(LINK, target=lambda: str(self._caller().pid).encode())
            if head == "thread-self":
                return Entry(LINK, target=lambda: f"{self._caller().pid}/task/{self._caller().pid}".encode())
            if head == "mounts":
                return Entry(LINK, target=lambda: b"self/mounts")
        if path in self.sysctl:
            mode, read, write = self.sysctl[path]
            return Entry(FILE, mode, read=read, write=write)
        if any(key.startswith(path + "/") for key in self.sysctl):
            return Entry(DIR, 0o555)
        return None

    def names(self, path: str) -> list[str]:
        if not path:
            pids = [str(pid) for pid in sorted(self.k.procs) if self.k.procs[pid].leader is None]
            return [*sorted([*_TOP_FILES, "self", "thread-self", "mounts", "sys"]), *pids]
        head, _, rest = path.partition("/")
        if head.isdigit():
            p = self._process(head)
            if rest == "":
                return list(_PID_NAMES)
            if rest == "fd" and p is not None:
                return [str(fd) for fd in sorted(p.fds.fds)]
            if rest == "task" and p is not None:
                return [str(q.pid) for q in self._threads(p)]
            return []
        prefix = path + "/"
        seen: list[str] = []
        for key in self.sysctl:
            if key.startswith(prefix):
                name = key[len(prefix):].split("/")[0]
                if name not in seen:
                    seen.append(name)
        return sorted(seen)

    # --- processes --------------------------------------------------------------------------------
    def _caller(self) -> "Process":
        p = self.k.current
        if p is None:
            raise SyscallError(EINVAL)
        return p

    def _process(self, pid: str) -> "Process | None":
        return self.k.procs.get(int(pid)) if len(pid) < 10 else None

    def _threads(self, p: "Process") -> list["Process"]:
        return [p, *sorted((q for q in self.k.procs.values() if q.leader is p), key=lambda q: q.pid)]

    def _pid_entry(self, pid: str, rest: str) -> Entry | None:
        p = self._process(pid)
        if p is None or str(p.pid) != pid:
            return None
        k = self.k
        if rest == "":
            return Entry(DIR, 0o555)
        if rest in _PID_FILES:
            fn = _PID_FILES[rest]
            return Entry(FILE, _PID_MODES.get(rest, 0o444), read=lambda: fn(k, p))
        if rest == "exe":
            return Entry(LINK, target=lambda: p.exe) if p.mm is not None else None
        if rest == "cwd":
            return Entry(LINK, target=lambda: k.node_path(p.cwd))
        if rest in ("fd", "task"):
            return Entry(DIR, 0o500 if rest == "fd" else 0o555)
        sub, _, name = rest.partition("/")
        if sub == "fd" and name.isdigit() and int(name) in p.fds.fds:
            f = p.fds.fds[int(name)]
            return Entry(LINK, 0o700, target=lambda: k.open_file_path(f))
        if sub == "task" and name.isdigit() and any(str(q.pid) == name for q in self._threads(p)):
            return Entry(DIR, 0o555)  # (the thread's own files are not modelled)
        return None

    # --- /proc/sys ------------------------------------------------------------------------------
    def _drop_caches(self, data: bytes) -> None:
        try:
            mode = int(data.strip() or b"x")
        except ValueError:
            raise SyscallError(EINVAL) from None
        if not 1 <= mode <= 4:
            raise SyscallError(EINVAL)  # proc_dointvec_minmax: 1..4
        self.k.reclaim.drop_caches(mode, self._caller())
