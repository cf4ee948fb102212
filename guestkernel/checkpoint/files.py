"""How a checkpoint describes each kind of open file and builds it again, one codec per kind
(as CRIU keeps one set of dump and restore operations per file type), chosen by the file's
class. A codec gives:

- `describe(f, cx)`: what stays the same while the file is open (the static description, built
  again only when the group's fingerprint moves: see state.py),
- `state(f, cx, now)`: what may change at any syscall, beside the flags and offset every file has,
- `rebuild(fd, rx, number)`: a new open file from both (`fd`: the two merged),
- `relink(f, fd, rx)`: what refers to other files or to the processes, once all are back.

A file of a kind no codec serves refuses the checkpoint (`Unsupported`). Sockets are kept in a
table of their own (tables.py: a socket reaches sockets no descriptor holds); their codec only
names the entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guestkernel.eventpoll import EpollFile, EventFile
from guestkernel.signalfd import SignalFile
from guestkernel.timerfd import TimerFile
from guestkernel.unixsock import UnixSocket
from guestkernel.vfs import ConsoleFile, DevDirFile, DevFile, InodeFile, OpenFile, Pipe, PipeEnd
from guestkernel.vfs.pseudo import FILE, Entry, PseudoDirFile, PseudoFile, PseudoNode

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel


class Unsupported(Exception):
    """The group holds something a checkpoint cannot describe (the checkpoint is skipped)."""


@dataclass
class Numbering:
    """What a description numbers while it is built: the live processes (a /proc file names
    one), the pipes (in the order met), and, for the per-checkpoint state, every file and socket
    by identity (tables.py's `socket_table`; None when no file needs it)."""
    pids: set[int] = field(default_factory=set)
    pipes: list[Pipe] = field(default_factory=list)
    pipe_ids: dict[int, int] = field(default_factory=dict)
    index: dict[int, int] | None = None

    def pipe(self, pipe: Pipe) -> int:
        i = self.pipe_ids.get(pipe.serial)
        if i is None:
            i = self.pipe_ids[pipe.serial] = len(self.pipes)
            self.pipes.append(pipe)
        return i


@dataclass
class Rebuilt:
    """What a restart has rebuilt before the open files: the kernel, the pipes and the table of
    sockets (by file number), in the image's numbering."""
    k: "Kernel"
    pipes: list[Pipe]
    socks: dict[int, UnixSocket]
    files: list[OpenFile] = field(default_factory=list)


class FileCodec:
    kind = ""
    classes: tuple[type, ...] = ()

    def describe(self, f: Any, cx: Numbering) -> dict[str, Any]:
        return {}

    def state(self, f: Any, cx: Numbering, now: int) -> dict[str, Any]:
        return {}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        raise NotImplementedError

    def relink(self, f: Any, fd: dict[str, Any], rx: Rebuilt) -> None:
        pass


class _Inode(FileCodec):
    kind, classes = "inode", (InodeFile,)

    def describe(self, f: InodeFile, cx: Numbering) -> dict[str, Any]:
        return {"ino": f.ino, "path": f.path.decode("latin-1")}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        return InodeFile(rx.k.vfs, fd["ino"], fd["flags"], fd["path"].encode("latin-1"))


class _Pipe(FileCodec):
    kind, classes = "pipe", (PipeEnd,)

    def describe(self, f: PipeEnd, cx: Numbering) -> dict[str, Any]:
        return {"pipe": cx.pipe(f.pipe), "write": f.write_end}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        return PipeEnd(rx.pipes[fd["pipe"]], fd["write"], fd["flags"])


class _Console(FileCodec):
    kind, classes = "console", (ConsoleFile,)

    def describe(self, f: ConsoleFile, cx: Numbering) -> dict[str, Any]:
        return {"stream": f.stream}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        return ConsoleFile(rx.k.vfs, fd["stream"], fd["flags"])


class _Dev(FileCodec):
    kind, classes = "dev", (DevFile,)

    def describe(self, f: DevFile, cx: Numbering) -> dict[str, Any]:
        return {"name": f.node.name}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        return DevFile(rx.k.vfs, rx.k.vfs.devices[fd["name"]], fd["flags"])


class _DevDir(FileCodec):
    kind, classes = "devdir", (DevDirFile,)

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        return DevDirFile(rx.k.vfs, fd["flags"])


class _Pseudo(FileCodec):
    """A /proc or /sys file or directory: its node by path; a file keeps the contents its first
    read made (the reads that follow go on in them)."""
    kind, classes = "pseudo", (PseudoFile, PseudoDirFile)

    def describe(self, f: PseudoFile | PseudoDirFile, cx: Numbering) -> dict[str, Any]:
        head = f.node.path.partition("/")[0]
        if f.node.fs == "proc" and head.isdigit() and int(head) not in cx.pids:
            raise Unsupported("an open /proc file of a process that has gone")
        return {"fs": f.node.fs, "path": f.node.path, "dir": isinstance(f, PseudoDirFile)}

    def state(self, f: PseudoFile | PseudoDirFile, cx: Numbering, now: int) -> dict[str, Any]:
        return {"data": f.data} if isinstance(f, PseudoFile) and f.data is not None else {}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        vfs = rx.k.vfs
        node = PseudoNode(fd["fs"], fd["path"])
        if fd["dir"]:
            return PseudoDirFile(vfs.pseudo[node.fs], node, fd["flags"])
        f = PseudoFile(vfs.pseudo[node.fs], node, Entry(FILE), fd["flags"])
        f.data = fd.get("data")
        return f

    def relink(self, f: PseudoFile | PseudoDirFile, fd: dict[str, Any], rx: Rebuilt) -> None:
        if isinstance(f, PseudoFile):  # (/proc/PID names a process: there once they are back)
            f.entry = f.fs.get(f.node)


class _Event(FileCodec):
    kind, classes = "eventfd", (EventFile,)

    def describe(self, f: EventFile, cx: Numbering) -> dict[str, Any]:
        return {"semaphore": f.semaphore}

    def state(self, f: EventFile, cx: Numbering, now: int) -> dict[str, Any]:
        return {"count": f.count}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        f = EventFile(fd["count"], fd["flags"])
        f.semaphore = fd["semaphore"]
        return f


class _Signal(FileCodec):
    kind, classes = "signalfd", (SignalFile,)

    def state(self, f: SignalFile, cx: Numbering, now: int) -> dict[str, Any]:
        return {"mask": f.mask}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        return SignalFile(rx.k, fd["mask"], fd["flags"])


class _Timer(FileCodec):
    """A timerfd: expirations not read yet, the time to the next one (re-armed with it), and
    its interval."""
    kind, classes = "timerfd", (TimerFile,)

    def describe(self, f: TimerFile, cx: Numbering) -> dict[str, Any]:
        return {"clock": f.clock}

    def state(self, f: TimerFile, cx: Numbering, now: int) -> dict[str, Any]:
        return {"timer": [f.ticks, max(1, f.deadline - now) if f.deadline else 0, f.interval]}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        f = TimerFile(rx.k, fd["clock"], fd["flags"])
        f.resume(*fd["timer"])
        return f


class _Epoll(FileCodec):
    """An epoll set: its interest list by file number, and whether each edge-triggered entry
    reported its file's last wake-up."""
    kind, classes = "epoll", (EpollFile,)

    def state(self, f: EpollFile, cx: Numbering, now: int) -> dict[str, Any]:
        assert cx.index is not None
        return {"interest": [[it.fd, cx.index[id(it.file)], it.events, it.data, it.reported]
                             for it in f.interest.values()]}

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        return EpollFile(fd["flags"])

    def relink(self, f: EpollFile, fd: dict[str, Any], rx: Rebuilt) -> None:
        for num, fi, events, data, reported in fd["interest"]:
            f.readd(num, rx.files[fi], events, data, reported)


class _Socket(FileCodec):
    kind, classes = "socket", (UnixSocket,)

    def rebuild(self, fd: dict[str, Any], rx: Rebuilt, number: int) -> OpenFile:
        return rx.socks[number]


CODECS: tuple[FileCodec, ...] = (_Inode(), _Pipe(), _Console(), _Dev(), _DevDir(), _Pseudo(), _Event(), _Signal(),
                                 _Timer(), _Epoll(), _Socket())
BY_KIND = {c.kind: c for c in CODECS}
_BY_CLASS: dict[type, FileCodec | None] = {cls: c for c in CODECS for cls in c.classes}


def codec_of(f: OpenFile) -> FileCodec:
    """The codec of `f`'s class (or of the nearest class above it that has one)."""
    cls = type(f)
    c = _BY_CLASS.get(cls)
    if c is None and cls not in _BY_CLASS:
        c = _BY_CLASS[cls] = next((_BY_CLASS[b] for b in cls.__mro__ if _BY_CLASS.get(b) is not None), None)
    if c is None:
        raise Unsupported(f"open file of kind {f.kind}")
    return c
