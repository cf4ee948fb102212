"""Sockets: AF_UNIX (guestkernel/unixsock.py) and AF_INET on the loopback network only (TCP and
UDP between programs of the guest, on 127.0.0.0/8; other destinations are unreachable: no
traffic ever leaves the machine); other families get EAFNOSUPPORT. socket, socketpair, bind,
listen, connect, accept/accept4, the send and receive calls with SCM_RIGHTS (AF_UNIX), shutdown,
names and the common socket options. An AF_INET socket is an AF_UNIX one underneath (the same
queues and waits) named by a sockaddr_in; ports are the kernel's table of names."""
from __future__ import annotations

import stat as S
import struct
from typing import Callable

from guestkernel.errors import (EADDRINUSE, EADDRNOTAVAIL, EAFNOSUPPORT, EAGAIN, EBADF, ECONNREFUSED, EDESTADDRREQ,
                                EEXIST, EINVAL, EISCONN, ENETUNREACH, ENOPROTOOPT, ENOTCONN, ENOTSOCK, EOPNOTSUPP,
                                EPROTONOSUPPORT, ESOCKTNOSUPPORT, Block, SyscallError)
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import AT_FDCWD, dir_node, fs_call, s32
from guestkernel.syscalls.numbers import NUMBERS
from guestkernel.syscalls.rw import sigpipe_on_epipe, sys_writev
from guestkernel.unixsock import (AF_UNIX, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, UnixSocket, autobind_name, connect,
                                  listen, new_pair)
from guestkernel.vfs import O_CLOEXEC, O_NONBLOCK

AF_UNSPEC = 0
SOCK_TYPE_MASK = 0xF
MSG_OOB, MSG_PEEK, MSG_CTRUNC, MSG_TRUNC, MSG_DONTWAIT, MSG_EOR = 0x1, 0x2, 0x8, 0x20, 0x40, 0x80
MSG_WAITALL, MSG_NOSIGNAL, MSG_CMSG_CLOEXEC = 0x100, 0x4000, 0x40000000
SOL_SOCKET, SCM_RIGHTS = 1, 1
SO_TYPE, SO_ERROR, SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, SO_PEERCRED, SO_ACCEPTCONN, SO_DOMAIN = 3, 4, 7, 8, 16, 17, 30, 39
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
SUN_PATH = 108
AF_INET, IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP = 2, 0, 6, 17
INADDR_ANY, LOOPBACK = 0, 0x7F000001
EPHEMERAL = (32768, 61000)  # net.ipv4.ip_local_port_range
MSGHDR = struct.Struct("<QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
CMSGHDR = struct.Struct("<Qii")          # len, level, type
SCM_MAX_FD = 253


def sock(p, fd) -> UnixSocket:  # type: ignore[no-untyped-def]
    f = p.fds.get(s32(fd))
    if not isinstance(f, UnixSocket):
        raise SyscallError(ENOTSOCK)
    return f


def creds(p) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    return (p.pid, 0, 0)


def check_type(family: int, type_: int) -> tuple[int, int]:
    if family not in (AF_UNIX, AF_INET):
        raise SyscallError(EAFNOSUPPORT)
    kind = type_ & SOCK_TYPE_MASK
    if type_ & ~(SOCK_TYPE_MASK | O_NONBLOCK | O_CLOEXEC):
        raise SyscallError(EINVAL)
    if kind not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
        raise SyscallError(ESOCKTNOSUPPORT if kind in (3, 4, 10) else EINVAL)  # raw, rdm, packet
    if family == AF_INET and kind == SOCK_SEQPACKET:
        raise SyscallError(ESOCKTNOSUPPORT)
    return kind, type_ & (O_NONBLOCK | O_CLOEXEC)


@syscall("socket")
def sys_socket(k, p, family, type_, protocol, *_):  # type: ignore[no-untyped-def]
    family = s32(family)
    kind, flags = check_type(family, s32(type_))
    allowed = (0, AF_UNIX) if family == AF_UNIX else (0, IPPROTO_TCP if kind == SOCK_STREAM else IPPROTO_UDP)
    if s32(protocol) not in allowed:
        raise SyscallError(EPROTONOSUPPORT)
    s = UnixSocket(k, kind, flags, creds(p))
    s.family = family
    return p.fds.install(s, cloexec=bool(flags & O_CLOEXEC))


@syscall("socketpair")
def sys_socketpair(k, p, family, type_, protocol, sv, *_):  # type: ignore[no-untyped-def]
    if s32(family) == AF_INET:
        raise SyscallError(EOPNOTSUPP)
    kind, flags = check_type(s32(family), s32(type_))
    if s32(protocol) not in (0, AF_UNIX):
        raise SyscallError(EPROTONOSUPPORT)
    p.mm.user_pages(sv, 8, write=True)
    a, b = new_pair(k, kind, flags, creds(p))
    fa = p.fds.install(a, cloexec=bool(flags & O_CLOEXEC))
    fb = p.fds.install(b, cloexec=bool(flags & O_CLOEXEC))
    p.mm.copy_out(sv, struct.pack("<ii", fa, fb))
    return 0


def read_addr(p, addr: int, addrlen: int) -> bytes:  # type: ignore[no-untyped-def]
    """The name in a sockaddr_un: a path (up to its NUL) or an abstract name (leading NUL);
    b"" for an address of the family alone (autobind)."""
    addrlen = s32(addrlen)
    if addrlen < 2 or addrlen > 2 + SUN_PATH:
        raise SyscallError(EINVAL)
    raw = p.mm.copy_in(addr, addrlen)
    (family,) = struct.unpack_from("<H", raw)
    if family != AF_UNIX:
        raise SyscallError(EINVAL if family != AF_UNSPEC else EAFNOSUPPORT)
    path = raw[2:]
    if not path:
        return b""
    if path[0] == 0:
        return path
    return path.split(b"\0", 1)[0]


def name_key(k, p, name: bytes):  # type: ignore[no-untyped-def]
    """The kernel-table key of a name: an abstract one as it is, a path by its node (ENOENT
    and the other lookup errors as Linux)."""
    if name.startswith(b"\0"):
        return ("abstract", name)
    return ("path", k.vfs.resolve(name, dir_node(k, p, AT_FDCWD)))


# -- AF_INET on the loopback network ------------------------------------------------------------
def inet_read(p, addr: int, addrlen: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(address, port) of a sockaddr_in."""
    if s32(addrlen) < 16:
        raise SyscallError(EINVAL)
    raw = p.mm.copy_in(addr, 16)
    (family,) = struct.unpack_from("<H", raw)
    if family != AF_INET:
        raise SyscallError(EAFNOSUPPORT)
    port, ip = struct.unpack_from(">HI", raw, 2)
    return ip, port


def inet_name(ip: int, port: int) -> bytes:
    return struct.pack("<H", AF_INET) + struct.pack(">HI", port, ip) + bytes(8)


def inet_port(name: bytes) -> int:
    return struct.unpack_from(">H", name, 2)[0]


def local(ip: int) -> bool:
    return ip == INADDR_ANY or ip >> 24 == 127


def inet_bind(k, s: UnixSocket, ip: int, port: int) -> None:  # type: ignore[no-untyped-def]
    if not local(ip):
        raise SyscallError(EADDRNOTAVAIL)
    if port == 0:  # an ephemeral port, the lowest free one (deterministic)
        port = next((q for q in range(EPHEMERAL[0], EPHEMERAL[1]) if ("inet", s.type, q) not in k.unix_names), 0)
        if not port:
            raise SyscallError(EADDRINUSE)
    key = ("inet", s.type, port)
    if key in k.unix_names:
        raise SyscallError(EADDRINUSE)
    s.name, s.key = inet_name(ip, port), key
    k.unix_names[key] = s


def inet_target(k, kind: int, ip: int, port: int) -> UnixSocket | None:  # type: ignore[no-untyped-def]
    if not local(ip):
        raise SyscallError(ENETUNREACH)  # the machine has no network but its loopback
    return k.unix_names.get(("inet", kind, port))


def sockaddr_of(s: UnixSocket, name: bytes | None) -> bytes:
    """What getsockname and friends store: a sockaddr_un (family and name, a path with its NUL)
    or a sockaddr_in (0.0.0.0:0 when unbound)."""
    if s.family == AF_INET:
        return name or inet_name(INADDR_ANY, 0)
    raw = struct.pack("<H", AF_UNIX) + (name or b"")
    return raw + b"\0" if name and not name.startswith(b"\0") else raw


@syscall("bind")
def sys_bind(k, p, fd, addr, addrlen, *_):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    if s.family == AF_INET:
        ip, port = inet_read(p, addr, addrlen)
        if s.name is not None:
            raise SyscallError(EINVAL)
        inet_bind(k, s, ip, port)
        return 0
    name = read_addr(p, addr, addrlen)
    if s.name is not None:
        raise SyscallError(EINVAL)
    if not name:
        name = autobind_name(k)
    if name.startswith(b"\0"):
        key = ("abstract", name)
        if key in k.unix_names:
            raise SyscallError(EADDRINUSE)
    else:  # a socket inode in the file system (EADDRINUSE if the name exists)
        parent, last = k.vfs.resolve_parent(name, dir_node(k, p, AT_FDCWD))
        if not isinstance(parent, int) or last in (b"", b".", b".."):
            raise SyscallError(EADDRINUSE)
        k.on_dir_change(p)
        try:
            node = fs_call(k.fs.mknod, parent, last, S.S_IFSOCK | (0o777 & ~p.umask), 0, 0, 0)
        except SyscallError as e:
            raise SyscallError(EADDRINUSE if e.errno == EEXIST else e.errno) from None
        key = ("path", node)
    s.name, s.key = name, key
    k.unix_names[key] = s
    return 0


@syscall("listen")
def sys_listen(k, p, fd, backlog, *_):  # type: ignore[no-untyped-def]
    listen(sock(p, fd), s32(backlog))
    return 0


def target_of(k, p, name: bytes) -> UnixSocket:  # type: ignore[no-untyped-def]
    key = name_key(k, p, name)
    if key[0] == "path" and not S.S_ISSOCK(k.fs.stat(key[1]).mode):
        raise SyscallError(ECONNREFUSED)
    target = k.unix_names.get(key)
    if target is None:
        raise SyscallError(ECONNREFUSED)
    return target


@syscall("connect")
def sys_connect(k, p, fd, addr, addrlen, *_):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    if s32(addrlen) >= 2 and s.type == SOCK_DGRAM:
        (family,) = struct.unpack("<H", p.mm.copy_in(addr, 2))
        if family == AF_UNSPEC:  # a datagram socket forgets its peer
            s.peer, s.connected, s.inet_peer = None, False, b""
            return 0
    if s.family == AF_INET:
        ip, port = inet_read(p, addr, addrlen)
        target = inet_target(k, s.type, ip, port)
        if s.name is None:
            inet_bind(k, s, LOOPBACK, 0)
        if s.type == SOCK_DGRAM:
            s.peer, s.connected = target, True  # (no socket there: what is sent is dropped)
            s.inet_peer = inet_name(ip or LOOPBACK, port)
            return 0
        if target is None:
            raise SyscallError(ECONNREFUSED)
        if s.connected:
            raise SyscallError(EISCONN)
        connect(target, s, False)
        return 0
    name = read_addr(p, addr, addrlen)
    if not name:
        raise SyscallError(EINVAL)
    target = target_of(k, p, name)
    if s.type == SOCK_DGRAM:
        if target.type != SOCK_DGRAM:
            raise SyscallError(ECONNREFUSED)
        s.peer, s.connected = target, True
        return 0
    if s.connected:
        raise SyscallError(EISCONN)
    if s.listening:
        raise SyscallError(EINVAL)
    connect(target, s, False)
    return 0


def write_addr(p, addr: int, addrlen_ptr: int, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    """Store a socket address (truncated to the caller's length) and its real length."""
    if not addr:
        return
    have = struct.unpack("<i", p.mm.copy_in(addrlen_ptr, 4))[0]
    if have < 0:
        raise SyscallError(EINVAL)
    if have:
        p.mm.copy_out(addr, raw[:have])
    p.mm.copy_out(addrlen_ptr, struct.pack("<i", len(raw)))


def do_accept(k, p, fd, addr, addrlen, flags):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    if flags & ~(O_NONBLOCK | O_CLOEXEC):
        raise SyscallError(EINVAL)
    if s.type == SOCK_DGRAM:
        raise SyscallError(EOPNOTSUPP)
    if not s.listening:
        raise SyscallError(EINVAL)
    if not s.backlog:
        if s.flags & O_NONBLOCK:
            raise SyscallError(EAGAIN)
        raise Block(s.waitq)
    server = s.backlog.popleft()
    server.flags |= flags & O_NONBLOCK
    s.waitq.wake()  # room in the backlog for a blocked connect
    client = server.peer
    write_addr(p, addr, addrlen, sockaddr_of(s, client.name if client is not None else None))
    return p.fds.install(server, cloexec=bool(flags & O_CLOEXEC))


@syscall("accept")
def sys_accept(k, p, fd, addr, addrlen, *_):  # type: ignore[no-untyped-def]
    return do_accept(k, p, fd, addr, addrlen, 0)


@syscall("accept4")
def sys_accept4(k, p, fd, addr, addrlen, flags, *_):  # type: ignore[no-untyped-def]
    return do_accept(k, p, fd, addr, addrlen, s32(flags))


@syscall("getsockname")
def sys_getsockname(k, p, fd, addr, addrlen, *_):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    write_addr(p, addr, addrlen, sockaddr_of(s, s.name))
    return 0


@syscall("getpeername")
def sys_getpeername(k, p, fd, addr, addrlen, *_):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    if not s.connected or (s.peer is None and not s.inet_peer):
        raise SyscallError(ENOTCONN)
    write_addr(p, addr, addrlen, s.inet_peer or sockaddr_of(s, s.peer.name))
    return 0


@syscall("shutdown")
def sys_shutdown(k, p, fd, how, *_):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    how = s32(how)
    if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
        raise SyscallError(EINVAL)
    if not s.connected:
        raise SyscallError(ENOTCONN)
    if how in (SHUT_RD, SHUT_RDWR):
        s.shut_rd = True
    if how in (SHUT_WR, SHUT_RDWR):
        s.shut_wr = True
    s.waitq.wake()
    if s.peer is not None:
        s.peer.waitq.wake()
    return 0


@syscall("getsockopt")
def sys_getsockopt(k, p, fd, level, name, val, vallen, *_):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    level, name = s32(level), s32(name)
    if level in (IPPROTO_TCP, IPPROTO_IP) and s.family == AF_INET:
        data = struct.pack("<i", 0)  # TCP_NODELAY and the like: off
        have = struct.unpack("<i", p.mm.copy_in(vallen, 4))[0]
        p.mm.copy_out(val, data[:max(have, 0)])
        p.mm.copy_out(vallen, struct.pack("<i", min(max(have, 0), 4)))
        return 0
    if level != SOL_SOCKET:
        raise SyscallError(ENOPROTOOPT)
    if name == SO_PEERCRED:
        if s.peer is None or not s.connected:
            raise SyscallError(ENOTCONN)
        data = struct.pack("<iII", *s.peer.creds)
    elif name in (SO_TYPE, SO_ERROR, SO_SNDBUF, SO_RCVBUF, SO_ACCEPTCONN, SO_DOMAIN, SO_PASSCRED):
        value = {SO_TYPE: s.type, SO_ERROR: 0, SO_SNDBUF: 212992, SO_RCVBUF: 212992,
                 SO_ACCEPTCONN: int(s.listening), SO_DOMAIN: s.family, SO_PASSCRED: 0}[name]
        data = struct.pack("<i", value)
    else:
        raise SyscallError(ENOPROTOOPT)
    have = struct.unpack("<i", p.mm.copy_in(vallen, 4))[0]
    if have < 0:
        raise SyscallError(EINVAL)
    p.mm.copy_out(val, data[:have])
    p.mm.copy_out(vallen, struct.pack("<i", min(have, len(data))))
    return 0


@syscall("setsockopt")
def sys_setsockopt(k, p, fd, level, name, val, vallen, *_):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    if s32(level) != SOL_SOCKET and not (s.family == AF_INET and s32(level) in (IPPROTO_TCP, IPPROTO_IP)):
        raise SyscallError(ENOPROTOOPT)
    if s32(vallen) < 4:
        raise SyscallError(EINVAL)
    return 0  # buffer sizes, SO_PASSCRED...: accepted, without effect here


# -- sending and receiving ------------------------------------------------------------------------
def files_from_control(k, p, control: int, controllen: int) -> list:  # type: ignore[no-untyped-def]
    """The files an SCM_RIGHTS message names (EBADF for a closed descriptor, EINVAL for a
    malformed header or another kind of message)."""
    files = []
    if not control or controllen == 0:
        return files
    raw = p.mm.copy_in(control, controllen)
    off = 0
    while off + CMSGHDR.size <= len(raw):
        clen, level, ctype = CMSGHDR.unpack_from(raw, off)
        if clen < CMSGHDR.size or off + clen > len(raw):
            raise SyscallError(EINVAL)
        if level != SOL_SOCKET or ctype != SCM_RIGHTS:
            raise SyscallError(EINVAL)
        n = (clen - CMSGHDR.size) // 4
        if n > SCM_MAX_FD:
            raise SyscallError(EINVAL)
        for (fd,) in struct.iter_unpack("<i", raw[off + CMSGHDR.size: off + CMSGHDR.size + 4 * n]):
            f = p.fds.fds.get(fd)
            if f is None:
                raise SyscallError(EBADF)
            files.append(f)
        off += (clen + 7) & ~7
    return files


def do_send(k, p, s: UnixSocket, data: bytes, files: list, flags: int, to_name: bytes | None) -> int:  # type: ignore[no-untyped-def]
    to = None
    if s.family == AF_INET and s.type == SOCK_DGRAM:  # UDP: to a port nobody holds, dropped
        if s.name is None:
            inet_bind(k, s, LOOPBACK, 0)
        if to_name is not None:
            ip, port = struct.unpack_from(">HI", to_name, 2)[::-1]
            to = inet_target(k, SOCK_DGRAM, ip, port)
        elif not s.connected:
            raise SyscallError(EDESTADDRREQ)
        else:
            to = s.peer
        if to is None or to.closed:
            return len(data)
        return s.send(data, [], bool(flags & MSG_DONTWAIT), to)
    if to_name is not None:
        if s.type != SOCK_DGRAM:
            if not s.connected:
                raise SyscallError(ENOTCONN)
            raise SyscallError(EISCONN)
        to = target_of(k, p, to_name)
        if to.type != SOCK_DGRAM:
            raise SyscallError(ECONNREFUSED)
    elif s.type == SOCK_DGRAM and s.peer is None:
        raise SyscallError(ENOTCONN)  # (Linux's unix_dgram_sendmsg: no peer, no address)
    nonblock = bool(flags & MSG_DONTWAIT)
    sent = 0

    def more() -> int:  # (parked with its progress: the rest when there is room, as write(2) to a pipe)
        nonlocal sent
        try:
            while True:
                sent += s.send(data[sent:], files if sent == 0 else [], nonblock, to)
                if sent >= len(data) or not s.stream or nonblock or s.flags & O_NONBLOCK:
                    return sent
        except SyscallError as e:
            if sent:  # an error after some bytes: they are the result, no SIGPIPE (unix_stream_sendmsg)
                return sent
            if not flags & MSG_NOSIGNAL:
                sigpipe_on_epipe(k, p, e)
            raise
        except Block as b:
            if sent:
                raise Block(b.waitq, retry=more, done=sent) from None
            raise

    return more()


def iovecs(p, iov: int, iovlen: int) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    if iovlen > 1024:
        raise SyscallError(EINVAL)
    raw = p.mm.copy_in(iov, 16 * iovlen) if iovlen else b""
    return [struct.unpack_from("<QQ", raw, 16 * i) for i in range(iovlen)]


@syscall("sendto")
def sys_sendto(k, p, fd, buf, n, flags, addr, addrlen):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    data = p.mm.copy_in(buf, n) if n else b""
    to = (inet_name(*inet_read(p, addr, addrlen)) if s.family == AF_INET else read_addr(p, addr, addrlen)) if addr \
        else None
    return do_send(k, p, s, data, [], s32(flags), to or None)


@syscall("sendmsg")
def sys_sendmsg(k, p, fd, msg, flags, *_, skip: int = 0):  # type: ignore[no-untyped-def]
    """sendmsg(2); `skip`: the first bytes (and the descriptors) went before (resume_transfer)."""
    s = sock(p, fd)
    name, namelen, iov, iovlen, control, controllen, _ = MSGHDR.unpack(p.mm.copy_in(msg, MSGHDR.size))
    data = b"".join(p.mm.copy_in(base, length) for base, length in iovecs(p, iov, iovlen) if length)[skip:]
    files = files_from_control(k, p, control, controllen) if not skip else []
    if files and s.family != AF_UNIX:
        raise SyscallError(EINVAL)  # descriptors pass over AF_UNIX only
    to = (inet_name(*inet_read(p, name, namelen)) if s.family == AF_INET else read_addr(p, name, namelen)) if name \
        else None
    return do_send(k, p, s, data, files, s32(flags), to or None)


def install_files(k, p, files: list, room: int, cloexec: bool) -> tuple[bytes, int]:  # type: ignore[no-untyped-def]
    """Received files into descriptors: the SCM_RIGHTS message (as many as `room` bytes of
    control hold) and its flags (MSG_CTRUNC when some did not fit: those are closed)."""
    fit = max(0, (room - CMSGHDR.size) // 4) if room >= CMSGHDR.size else 0
    fds = []
    for i, f in enumerate(files):
        if i < fit:
            fds.append(p.fds.install(f, cloexec=cloexec))  # (the segment's reference moves here)
        else:
            k.drop_file(f)
    if not fds:
        return b"", MSG_CTRUNC if files else 0
    body = CMSGHDR.pack(CMSGHDR.size + 4 * len(fds), SOL_SOCKET, SCM_RIGHTS) + struct.pack(f"<{len(fds)}i", *fds)
    body += b"\0" * (-len(body) % 8)
    return body[:room], MSG_CTRUNC if len(fds) < len(files) else 0


def receive(s: UnixSocket, n: int, flags: int, put: Callable[[int, bytes], None],
            then: Callable[[int, list, bytes, int], int]) -> int:
    """s.recv of up to n bytes, each piece handed to `put(offset, bytes)` as it arrives, then
    `then(length, files, sender, whole)` gives the call's result. With MSG_WAITALL on a stream
    (not peeking, not MSG_DONTWAIT) the call takes pieces until it has n bytes, the stream ends
    or descriptors come (Linux's unix_stream_read_generic with target n): the bytes are taken as
    they come, so that a sender of more than the socket's buffer goes on; a wait after some bytes
    parks the call with its progress (Block.done), which a signal then returns."""
    peek, nonblock = bool(flags & MSG_PEEK), bool(flags & MSG_DONTWAIT)
    data, files, sender, whole = s.recv(n, peek, nonblock)
    put(0, data)
    if not (flags & MSG_WAITALL and s.stream and not peek and not nonblock) or not data or files:
        return then(len(data), files, sender, whole)

    got = len(data)

    def more() -> int:
        nonlocal got
        while got < n:
            try:
                piece, fds, _, _ = s.recv(n - got, False, False)
            except Block as b:
                raise Block(b.waitq, retry=more, done=got) from None
            except SyscallError:  # (an error after some bytes: they are the result, as on Linux)
                break
            put(got, piece)
            got += len(piece)
            files.extend(fds)
            if not piece or fds:
                break
        return then(got, files, sender, got)

    return more()


NR_WRITEV, NR_SENDTO, NR_RECVFROM, NR_SENDMSG, NR_RECVMSG = (NUMBERS[n] for n in ("writev", "sendto", "recvfrom", "sendmsg", "recvmsg"))


def resume_transfer(k, p, nr: int, regs: dict[str, int], done: int) -> int:  # type: ignore[no-untyped-def]
    """The rest of a writev (to a pipe or a stream socket), a sendto or sendmsg, or of a
    recvfrom or recvmsg waiting for all
    (MSG_WAITALL), that had moved `done` bytes when it was parked and the machine restarted from
    its image: the same call on the bytes left (no SIGPIPE: bytes went before), its result
    counting both."""
    fd, buf, n, flags, addr, addrlen = (regs[r] for r in ("rdi", "rsi", "rdx", "r10", "r8", "r9"))
    if nr == NR_SENDTO:
        return _go_on(lambda: sys_sendto(k, p, fd, buf + done, n - done, flags | MSG_NOSIGNAL, addr, addrlen), done)
    if nr == NR_RECVFROM:
        return _go_on(lambda: sys_recvfrom(k, p, fd, buf + done, n - done, flags, addr, addrlen), done)
    if nr == NR_WRITEV:  # (fd, iov, iovcnt: the vectors' bytes after the first `done`)
        return _go_on(lambda: sys_writev(k, p, fd, buf, n, skip=done), done)
    msg, flags = buf, n  # (sendmsg and recvmsg: fd, msg, flags)
    if nr == NR_SENDMSG:
        return _go_on(lambda: sys_sendmsg(k, p, fd, msg, flags | MSG_NOSIGNAL, skip=done), done)
    return _go_on(lambda: sys_recvmsg(k, p, fd, msg, flags, skip=done), done)


def _go_on(call: Callable[[], int], done: int) -> int:
    try:
        return done + call()
    except SyscallError:  # (an error after some bytes: they are the result)
        return done
    except Block as b:
        again = b.retry or call
        raise Block(b.waitq, retry=lambda: _go_on(again, done), done=done + b.done, takes=b.takes) from None


@syscall("recvfrom")
def sys_recvfrom(k, p, fd, buf, n, flags, addr, addrlen):  # type: ignore[no-untyped-def]
    s = sock(p, fd)
    flags = s32(flags)
    if flags & MSG_OOB:
        raise SyscallError(EOPNOTSUPP)
    if n:
        p.mm.user_pages(buf, 1, write=True)

    def put(at: int, data: bytes) -> None:
        if data:
            p.mm.copy_out(buf + at, data)

    return receive(s, n, flags, put, lambda got, files, sender, whole: _recvfrom_done(k, p, s, flags, addr, addrlen,
                                                                                    got, files, sender, whole))


def _recvfrom_done(k, p, s, flags, addr, addrlen, got, files, sender, whole):  # type: ignore[no-untyped-def]
    for f in files:
        k.drop_file(f)
    if addr:  # the sender's name, if it has one (Linux's unix_copy_addr), else a length of 0
        if sender:
            write_addr(p, addr, addrlen, sockaddr_of(s, sender))
        else:
            p.mm.copy_out(addrlen, struct.pack("<i", 0))
    return whole if flags & MSG_TRUNC and not s.stream else got


@syscall("recvmsg")
def sys_recvmsg(k, p, fd, msg, flags, *_, skip: int = 0):  # type: ignore[no-untyped-def]
    """recvmsg(2); `skip`: the first bytes of the vectors were filled before (resume_transfer)."""
    s = sock(p, fd)
    flags = s32(flags)
    if flags & MSG_OOB:
        raise SyscallError(EOPNOTSUPP)
    name, namelen, iov, iovlen, control, controllen, _ = MSGHDR.unpack(p.mm.copy_in(msg, MSGHDR.size))
    vecs = iovecs(p, iov, iovlen)
    for base, length in vecs:
        if length:
            p.mm.user_pages(base, 1, write=True)
    total = sum(length for _, length in vecs) - skip

    def put(at: int, data: bytes) -> None:  # bytes at..at+len(data) of the message, over the vectors
        at += skip
        pos = 0
        for base, length in vecs:
            lo, hi = max(at, pos), min(at + len(data), pos + length)
            if lo < hi:
                p.mm.copy_out(base + lo - pos, data[lo - at:hi - at])
            pos += length

    return receive(s, total, flags, put, lambda got, files, sender, whole: _recvmsg_done(k, p, s, msg, flags, name,
                                                                                       namelen, control, controllen,
                                                                                       got, files, sender, whole))


def _recvmsg_done(k, p, s, msg, flags, name, namelen, control, controllen, got, files, sender, whole):  # type: ignore[no-untyped-def]
    out_flags = MSG_TRUNC if not s.stream and whole > got else 0
    cmsg, ctrunc = install_files(k, p, files, controllen if control else 0, bool(flags & MSG_CMSG_CLOEXEC))
    if cmsg:
        p.mm.copy_out(control, cmsg)
    out_namelen = 0
    if name and sender:
        raw = sockaddr_of(s, sender)
        if namelen:
            p.mm.copy_out(name, raw[:namelen])
        out_namelen = len(raw)
    head = bytearray(p.mm.copy_in(msg, MSGHDR.size))
    struct.pack_into("<I", head, 8, out_namelen)
    struct.pack_into("<Q", head, 40, len(cmsg))
    struct.pack_into("<i", head, 48, out_flags | ctrunc)
    p.mm.copy_out(msg, bytes(head))
    return whole if flags & MSG_TRUNC and not s.stream else got


