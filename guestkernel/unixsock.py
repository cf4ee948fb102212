"""AF_UNIX sockets: stream, datagram and seqpacket, paired, bound to paths in the guest file system
or to abstract names, listening and connecting, with SCM_RIGHTS descriptor passing (Linux's
net/unix/af_unix.c, in the kernel's own terms).

A socket queues what was sent to it as segments (bytes, passed files, the sender's name); a
stream read joins segments but stops at one that carries files (so that they arrive with their
bytes, as Linux's skbs do); a datagram or seqpacket read takes one segment, truncated to the
buffer. A sender writes into its peer's queue, up to SOCK_BUF bytes queued (then it blocks, or
EAGAIN). Each socket's wait queue is woken when anything changes for it: bytes arrived, room
freed in its peer's queue, its peer shut down or closed, a connection queued on a listener.
Queued bytes live in kernel memory outside guest frames (unlike pipes' rings). A name is a
socket inode made in the file system at bind (mknod S_IFSOCK, left when the socket closes, as on
Linux) or an abstract name; the kernel's table maps names to bound sockets.
"""
from __future__ import annotations

import stat as S
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guestkernel.errors import (EAGAIN, ECONNREFUSED, EINVAL, EISCONN, EMSGSIZE, ENOTCONN, EOPNOTSUPP, EPIPE,
                                EPROTOTYPE, Block, SyscallError)
from guestkernel.vfs import (O_NONBLOCK, O_RDWR, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM, OpenFile,
                             Stat, WaitQueue)

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel

AF_UNIX = 1
SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
SOCK_BUF = 212992  # net.core.wmem_default
POLLRDHUP = 0x2000
MAX_BACKLOG = 4096  # net.core.somaxconn


@dataclass
class Segment:
    data: bytes
    files: list[OpenFile] = field(default_factory=list)
    sender: bytes = b""  # the sender's name (datagrams)


class UnixSocket(OpenFile):
    kind = "socket"
    pollable = True

    def __init__(self, k: "Kernel", type_: int, flags: int, creds: tuple[int, int, int]) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK))
        self.k = k
        self.type = type_
        self.creds = creds                # (pid, uid, gid) of its creator: the peer's SO_PEERCRED
        self.peer: UnixSocket | None = None
        self.connected = False            # (stream, seqpacket) connected once; datagram: has a peer
        self.queue: deque[Segment] = deque()
        self.queued = 0
        self.waitq = WaitQueue("socket")
        self.name: bytes | None = None    # the bound name (sun_path bytes; abstract: leading NUL)
        self.key: Any = None              # its key in the kernel's name table
        self.listening = False
        self.backlog: deque[UnixSocket] = deque()
        self.max_backlog = 0
        self.shut_rd = self.shut_wr = False
        self.peer_gone = False            # a connected peer closed
        self.closed = False
        self.family = AF_UNIX             # AF_INET: a loopback TCP/UDP socket (syscalls/net.py)
        self.inet_peer = b""              # a connected UDP socket's peer address

    @property
    def stream(self) -> bool:
        return self.type == SOCK_STREAM

    @property
    def writes_whole(self) -> bool:  # a blocking stream write waits until all of it is queued
        return self.stream

    # -- sending and receiving ----------------------------------------------------------------
    def _peer_or_fail(self) -> "UnixSocket":
        if self.shut_wr:
            raise SyscallError(EPIPE)
        if self.type != SOCK_DGRAM and not self.connected:
            raise SyscallError(ENOTCONN)
        if self.peer_gone or self.peer is None or self.peer.closed:
            if self.type == SOCK_DGRAM and self.peer is None:
                raise SyscallError(ENOTCONN)
            raise SyscallError(EPIPE if self.type != SOCK_DGRAM else ECONNREFUSED)
        if self.peer.shut_rd:
            raise SyscallError(EPIPE)
        return self.peer

    def send(self, data: bytes, files: list[OpenFile], nonblock: bool, to: "UnixSocket | None" = None) -> int:
        """Queue `data` (and `files`, whose references the segment now holds) in the peer's (or
        `to`'s) queue; returns the bytes queued (a stream may take part of them)."""
        target = to if to is not None else self._peer_or_fail()
        if to is not None and (to.closed or to.shut_rd):
            raise SyscallError(ECONNREFUSED)
        if self.stream:
            room = SOCK_BUF - target.queued
            if room <= 0:
                if nonblock or self.flags & O_NONBLOCK:
                    raise SyscallError(EAGAIN)
                raise Block(self.waitq)
            data = data[:room]
        else:
            if len(data) > SOCK_BUF:
                raise SyscallError(EMSGSIZE)
            if target.queued + len(data) > SOCK_BUF and target.queue:
                if nonblock or self.flags & O_NONBLOCK:
                    raise SyscallError(EAGAIN)
                raise Block(self.waitq)
        for f in files:
            f.refs += 1
        target.queue.append(Segment(bytes(data), list(files), self.name or b""))
        target.queued += len(data)
        target.waitq.wake()
        return len(data)

    def _eof(self) -> bool:
        return self.shut_rd or self.peer_gone or (self.peer is not None and self.peer.shut_wr) or \
            (self.type != SOCK_DGRAM and self.connected and self.peer is not None and self.peer.closed)

    def recv(self, n: int, peek: bool, nonblock: bool, waitall: bool = False) -> tuple[bytes, list[OpenFile], bytes, int]:
        """(bytes, files, sender, the segment's whole length) of what is queued; EOF gives b""."""
        if self.listening:
            raise SyscallError(EINVAL)
        if self.type != SOCK_DGRAM and not self.connected and not self.queue:
            raise SyscallError(EINVAL if self.stream else ENOTCONN)
        if not self.queue:
            if self._eof():
                return b"", [], b"", 0
            if nonblock or self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise Block(self.waitq)
        sender = self.queue[0].sender
        if not self.stream:
            seg = self.queue[0]
            if not peek:
                self.queue.popleft()
                self.queued -= len(seg.data)
                self._room_freed()
            return seg.data[:n], seg.files if not peek else [], seg.sender, len(seg.data)
        parts: list[bytes] = []
        files: list[OpenFile] = []
        got = 0
        for seg in list(self.queue):
            if got >= n or (seg.files and got):
                break
            take = seg.data[:n - got]
            parts.append(take)
            got += len(take)
            if not peek:
                files += seg.files
                seg.files = []
                if len(take) == len(seg.data):
                    self.queue.popleft()
                else:
                    seg.data = seg.data[len(take):]
                self.queued -= len(take)
            if files:
                break
        if not peek:
            self._room_freed()
        return b"".join(parts), files, sender, got

    def _room_freed(self) -> None:
        self.waitq.wake()
        if self.peer is not None:
            self.peer.waitq.wake()

    # -- as a file ----------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        data, files, _, _ = self.recv(n, False, False)
        for f in files:  # read(2) cannot take them: they are closed
            self.k.drop_file(f)
        return data

    def write(self, data: bytes) -> int:
        return self.send(data, [], False)

    def poll_mask(self) -> int:
        """Linux's unix_poll / unix_dgram_poll."""
        if self.listening:
            return POLLIN | POLLRDNORM if self.backlog else 0
        mask = 0
        if self.queue:
            mask |= POLLIN | POLLRDNORM
        if self.shut_rd or (self.peer is not None and self.peer.shut_wr):
            mask |= POLLRDHUP | POLLIN | POLLRDNORM
        if (self.shut_rd and self.shut_wr) or (self.type != SOCK_DGRAM and self.connected and self._peer_dead()):
            mask |= POLLHUP
        if self.type != SOCK_DGRAM and not self.connected:
            return mask
        peer = self.peer
        if peer is not None and not self._peer_dead() and not self.shut_wr and peer.queued < SOCK_BUF:
            mask |= POLLOUT | POLLWRNORM
        elif self.type == SOCK_DGRAM and peer is None:
            mask |= POLLOUT | POLLWRNORM
        if self.type != SOCK_DGRAM and self.connected and self._peer_dead() and self.shut_wr:
            mask |= POLLERR
        return mask

    def _peer_dead(self) -> bool:
        return self.peer_gone or self.peer is None or self.peer.closed

    def poll_queue(self) -> WaitQueue:
        return self.waitq

    def close(self) -> None:
        self.closed = True
        for seg in self.queue:  # files in flight go with their message
            for f in seg.files:
                self.k.drop_file(f)
        self.queue.clear()
        self.queued = 0
        while self.backlog:  # connections never accepted: their clients see the end
            pending = self.backlog.popleft()
            pending.close()
        if self.peer is not None and self.type != SOCK_DGRAM:
            self.peer.peer_gone = True
        if self.peer is not None:
            self.peer.waitq.wake()
        names = self.k.unix_names
        if self.key is not None and names.get(self.key) is self:
            del names[self.key]
        self.waitq.wake()

    def stat(self) -> Stat:
        return Stat(ino=id(self) & 0xFFFFFF, mode=S.S_IFSOCK | 0o777, dev=0x8)  # sockfs


def new_pair(k: "Kernel", type_: int, flags: int, creds: tuple[int, int, int]) -> tuple[UnixSocket, UnixSocket]:
    a, b = UnixSocket(k, type_, flags, creds), UnixSocket(k, type_, flags, creds)
    a.peer, b.peer = b, a
    a.connected = b.connected = True
    return a, b


def connect(listener: UnixSocket, client: UnixSocket, nonblock: bool) -> None:
    """A stream or seqpacket connection: a server-side socket queued on the listener."""
    if client.connected:
        raise SyscallError(EISCONN)
    if not listener.listening or listener.closed:
        raise SyscallError(ECONNREFUSED)
    if listener.type != client.type:
        raise SyscallError(EPROTOTYPE)
    if len(listener.backlog) > listener.max_backlog:
        if nonblock or client.flags & O_NONBLOCK:
            raise SyscallError(EAGAIN)
        raise Block(listener.waitq)
    server = UnixSocket(listener.k, listener.type, 0, listener.creds)
    server.name = listener.name
    server.peer, client.peer = client, server
    server.connected = client.connected = True
    listener.backlog.append(server)
    listener.waitq.wake()


def listen(sock: UnixSocket, backlog: int) -> None:
    if sock.type == SOCK_DGRAM:
        raise SyscallError(EOPNOTSUPP)
    if sock.name is None or sock.connected:
        raise SyscallError(EINVAL)
    sock.listening = True
    sock.max_backlog = min(max(backlog, 0), MAX_BACKLOG)
    sock.waitq.wake()


def autobind_name(k: "Kernel") -> bytes:
    """An abstract name of five hex digits, as Linux's autobind gives."""
    n = getattr(k, "_unix_autobind", 0)
    while True:
        name = b"\0" + f"{n:05x}".encode()
        n = (n + 1) & 0xFFFFF
        if ("abstract", name) not in k.unix_names:
            k._unix_autobind = n  # type: ignore[attr-defined]
            return name


__all__ = ["AF_UNIX", "SOCK_STREAM", "SOCK_DGRAM", "SOCK_SEQPACKET", "Segment", "UnixSocket", "new_pair",
           "connect", "listen", "autobind_name"]
