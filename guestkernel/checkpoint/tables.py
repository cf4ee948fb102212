"""The tables a checkpoint keeps beside the open files: the sockets (a socket reaches sockets no
descriptor holds: a peer whose descriptor is closed, connections waiting on a listener) and the
file locks (POSIX, OFD, flock: held by processes or open files, on inodes or pipes). Each is
described from the live kernel and built again on restart, as files.py does for each open file.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from guestkernel.checkpoint.files import Unsupported
from guestkernel.eventpoll import EpollFile
from guestkernel.locks import FileLock, InodeLocks
from guestkernel.unixsock import Segment as Message
from guestkernel.unixsock import UnixSocket
from guestkernel.vfs import OpenFile, Pipe

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel


def socket_table(files: list[OpenFile]) -> tuple[dict[int, int] | None, list[UnixSocket]]:
    """Refuse what the files' state has become since the static description was made (a socket
    message carrying descriptors, an epoll set watching a file no descriptor holds) before
    anything is written. Returns the numbers, by identity, of the files and then of the sockets
    they reach (a peer whose descriptor is closed, connections waiting on a listener), when an
    epoll set or a socket needs them, and those sockets in that order."""
    index: dict[int, int] | None = None
    socks: list[UnixSocket] = []
    for f in files:
        if isinstance(f, (UnixSocket, EpollFile)):
            index = {id(g): i for i, g in enumerate(files)}
            break
    if index is None:
        return None, socks
    todo = [f for f in files if isinstance(f, UnixSocket)]
    seen: set[int] = set()
    while todo:
        sk = todo.pop(0)
        if id(sk) in seen:
            continue
        seen.add(id(sk))
        socks.append(sk)
        if id(sk) not in index:
            index[id(sk)] = len(index)
        if any(seg.files for seg in sk.queue):
            raise Unsupported("a socket message carrying descriptors")
        todo += ([sk.peer] if sk.peer is not None else []) + list(sk.backlog)
    for f in files:
        if isinstance(f, EpollFile) and any(id(it.file) not in index for it in f.interest.values()):
            raise Unsupported("an epoll set watching a file no descriptor holds")
    return index, socks


def lock_state(k: "Kernel", files: list[OpenFile], pipes: list[Pipe]) -> list[list[Any]]:
    """Every file lock (POSIX, OFD, flock), in each file's order, as [where, kind, owner, pid,
    type, start, end]: the locked inode (or pipe, by its number), the list it is in, its owner
    (a pid for POSIX; for OFD and flock, [the number of the open file]). A lock on anything else
    (a device, a socket) or of an open file no descriptor holds refuses the checkpoint."""
    if not k.locks.files:
        return []
    file_ix: dict[int, int] | None = None
    pipe_ix = {pipe.serial: i for i, pipe in enumerate(pipes)}
    out = []
    for key, il in k.locks.files.items():
        for kind, held in (("posix", il.posix), ("flock", il.flock)):
            for lk in held:
                if key[0] == "ino":
                    where = ["ino", key[1]]
                elif key[0] == "pipe" and key[1] in pipe_ix:
                    where = ["pipe", pipe_ix[key[1]]]
                else:
                    raise Unsupported("a lock on a device or a socket")
                owner: Any = lk.owner
                if not isinstance(owner, int):
                    file_ix = file_ix or {id(f): i for i, f in enumerate(files)}
                    if id(owner) not in file_ix:
                        raise Unsupported("a lock of an open file no descriptor holds")
                    owner = [file_ix[id(owner)]]
                out.append([where, kind, owner, lk.pid, lk.type, lk.start, lk.end])
    return out


def socket_state(k: "Kernel", sk: UnixSocket, index: dict[int, int] | None) -> dict[str, Any]:
    """A socket as the table of sockets holds it (numbers: see socket_table): its name and
    whether it holds it in the kernel's table, its connection, the connections waiting on it,
    what is queued to it (bytes and sender), its shutdowns."""
    assert index is not None
    return {"number": index[id(sk)], "family": sk.family, "type": sk.type, "creds": list(sk.creds),
            "flags": sk.flags, "name": sk.name, "key": list(sk.key) if sk.key is not None else None,
            "bound": sk.key is not None and k.unix_names.get(sk.key) is sk, "connected": sk.connected,
            "peer": index[id(sk.peer)] if sk.peer is not None else None,
            "state": [sk.peer_gone, sk.shut_rd, sk.shut_wr, sk.closed, sk.listening, sk.max_backlog],
            "backlog": [index[id(b)] for b in sk.backlog], "queue": [[seg.data, seg.sender] for seg in sk.queue],
            "inet_peer": sk.inet_peer}


def restore_sockets(k: "Kernel", meta: dict[str, Any]) -> dict[int, UnixSocket]:
    """The image's sockets by number, connected, queued and named as they were."""
    table = meta.get("sockets", [])
    socks = {d["number"]: UnixSocket(k, d["type"], d["flags"], tuple(d["creds"])) for d in table}  # type: ignore[arg-type]
    for d in table:
        sk = socks[d["number"]]
        sk.family, sk.flags, sk.name, sk.connected, sk.inet_peer = d["family"], d["flags"], d["name"], d["connected"], d["inet_peer"]
        sk.key = tuple(d["key"]) if d["key"] is not None else None
        if d["bound"]:
            k.unix_names[sk.key] = sk
        sk.peer = socks[d["peer"]] if d["peer"] is not None else None
        sk.peer_gone, sk.shut_rd, sk.shut_wr, sk.closed, sk.listening, sk.max_backlog = d["state"]
        sk.backlog = deque(socks[i] for i in d["backlog"])
        sk.queue = deque(Message(data, [], sender) for data, sender in d["queue"])
        sk.queued = sum(len(data) for data, _sender in d["queue"])
    if table:
        k._unix_autobind = meta.get("autobind", 0)  # type: ignore[attr-defined]
    return socks


def restore_locks(k: "Kernel", table: list[list[Any]], files: list[OpenFile], pipes: list[Pipe]) -> None:
    """The image's file locks (see lock_state), each back in its list, once the files are."""
    for where, kind, owner, pid, type_, start, end in table:
        il = k.locks.files.setdefault(("ino", where[1]) if where[0] == "ino" else ("pipe", pipes[where[1]].serial),
                                      InodeLocks())
        (il.posix if kind == "posix" else il.flock).append(
            FileLock(owner if isinstance(owner, int) else files[owner[0]], pid, type_, start, end))
