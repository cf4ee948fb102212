/* AF_UNIX sockets as Linux gives them: a socketpair (stream and datagram), a server bound to a
 * path that a forked client connects to, descriptor passing (SCM_RIGHTS: a pipe end the client
 * then writes to), epoll on the listener and the connection, shutdown and EOF, names, options,
 * abstract names, and the errors (ECONNREFUSED, EADDRINUSE, ENOENT, EBADF for a closed
 * descriptor passed, ENOTCONN, EINVAL), MSG_WAITALL (recv and recvmsg wait for the whole length,
 * also beyond the socket's buffer; EOF, a signal and MSG_DONTWAIT end it early). Compared with a
 * native run; paths under $1. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(long r) {
    if (r >= 0) return "ok";
    switch (errno) {
    case ECONNREFUSED: return "ECONNREFUSED"; case EADDRINUSE: return "EADDRINUSE"; case ENOENT: return "ENOENT";
    case EBADF: return "EBADF"; case ENOTCONN: return "ENOTCONN"; case EISCONN: return "EISCONN";
    case EINVAL: return "EINVAL"; case EAGAIN: return "EAGAIN"; case EPIPE: return "EPIPE";
    case EAFNOSUPPORT: return "EAFNOSUPPORT"; case ENOTSOCK: return "ENOTSOCK"; case EOPNOTSUPP: return "EOPNOTSUPP";
    case EDESTADDRREQ: return "EDESTADDRREQ"; default: return strerror(errno);
    }
}

static socklen_t addr_of(struct sockaddr_un *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, path);
    return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static int send_fd(int s, int fd, const char *text) {
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {(void *)text, strlen(text)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(s, &m, 0);
}

static int recv_fd(int s, char *text, size_t n) {
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {text, n - 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t got = recvmsg(s, &m, 0);
    if (got < 0) return -1;
    text[got] = 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -2;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static unsigned sum(const unsigned char *b, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s = s * 31 + b[i];
    return s;
}

static void on_alarm(int sig) { (void)sig; }

/* A child writes `total` bytes in `chunk`-byte writes (pattern i*7), then closes. */
static pid_t writer(int fd, size_t total, size_t chunk) {
    pid_t c = fork();
    if (c == 0) {
        unsigned char *b = malloc(total);
        for (size_t i = 0; i < total; i++) b[i] = (unsigned char)(i * 7);
        for (size_t at = 0; at < total; at += chunk) {
            size_t n = total - at < chunk ? total - at : chunk;
            if (write(fd, b + at, n) != (ssize_t)n) _exit(1);
            usleep(200);
        }
        _exit(0);
    }
    return c;
}

static void waitall(void) {
    enum { BIG = 600000 };  /* more than a unix socket's buffer: the sender must be drained as it goes */
    unsigned char *buf = calloc(1, BIG);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pid_t c = writer(sv[0], BIG, 3000);
    close(sv[0]);
    ssize_t r = recv(sv[1], buf, BIG, MSG_WAITALL);
    printf("waitall recv: %zd sum %08x\n", r, sum(buf, r > 0 ? r : 0));
    printf("waitall after EOF: %zd\n", recv(sv[1], buf, 10, MSG_WAITALL));
    waitpid(c, NULL, 0);
    close(sv[1]);

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    c = writer(sv[0], 5000, 700);  /* the writer stops short of the length asked: EOF ends the wait */
    close(sv[0]);
    memset(buf, 0, BIG);
    struct iovec iov[3] = {{buf, 1000}, {buf + 1000, 3000}, {buf + 4000, 4000}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 3};
    r = recvmsg(sv[1], &m, MSG_WAITALL);
    printf("waitall recvmsg short: %zd sum %08x\n", r, sum(buf, 8000));
    waitpid(c, NULL, 0);
    close(sv[1]);

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    write(sv[0], "abc", 3);
    printf("waitall nonblocking: %zd\n", recv(sv[1], buf, 100, MSG_WAITALL | MSG_DONTWAIT));
    /* a signal after some bytes: the call returns what it has */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    write(sv[0], "defg", 4);
    struct itimerval it = {.it_value = {0, 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    printf("waitall interrupted: %zd\n", recv(sv[1], buf, 100, MSG_WAITALL));
    /* a signal during a send or a pipe write larger than the buffer: the bytes taken so far are
     * the result, with or without SA_RESTART */
    int fill = 1;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &fill, sizeof fill);  /* (the minimum: deterministic) */
    setitimer(ITIMER_REAL, &it, NULL);
    ssize_t sent = send(sv[0], buf, BIG, 0);
    printf("send interrupted: %s\n", sent > 0 && sent < BIG ? "short count" : en(sent));
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    int pp[2];
    pipe(pp);
    setitimer(ITIMER_REAL, &it, NULL);
    printf("pipe write interrupted (SA_RESTART): %zd\n", write(pp[1], buf, BIG));
    close(pp[0]);
    close(pp[1]);
    close(sv[0]);
    close(sv[1]);
    free(buf);
}

int main(int argc, char **argv) {
    char path[200], path2[200];
    snprintf(path, sizeof path, "%s/sock", argc > 1 ? argv[1] : "/tmp");
    snprintf(path2, sizeof path2, "%s/nosock", argc > 1 ? argv[1] : "/tmp");
    unlink(path);
    int sv[2];
    printf("socketpair: %s\n", en(socketpair(AF_UNIX, SOCK_STREAM, 0, sv)));
    write(sv[0], "hello ", 6);
    write(sv[0], "world", 5);
    char buf[64] = {0};
    printf("read %zd: %s\n", read(sv[1], buf, sizeof buf - 1), buf);
    shutdown(sv[0], SHUT_WR);
    printf("after shutdown: %zd\n", read(sv[1], buf, sizeof buf));
    printf("write after SHUT_WR: %s\n", en(send(sv[0], "x", 1, MSG_NOSIGNAL)));
    close(sv[0]); close(sv[1]);

    int dg[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, dg);
    send(dg[0], "one", 3, 0);
    send(dg[0], "second", 6, 0);
    memset(buf, 0, sizeof buf);
    printf("dgram truncated: %zd %s\n", recv(dg[1], buf, 2, MSG_TRUNC), buf);
    memset(buf, 0, sizeof buf);
    printf("dgram next: %zd %s\n", recv(dg[1], buf, sizeof buf, 0), buf);
    printf("dgram empty: %s\n", en(recv(dg[1], buf, sizeof buf, MSG_DONTWAIT)));

    int srv = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    socklen_t alen = addr_of(&a, path);
    printf("bind: %s\n", en(bind(srv, (struct sockaddr *)&a, alen)));
    struct stat st;
    stat(path, &st);
    printf("socket file: %s\n", S_ISSOCK(st.st_mode) ? "yes" : "no");
    int again = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("bind again: %s\n", en(bind(again, (struct sockaddr *)&a, alen)));
    struct sockaddr_un b;
    socklen_t blen = addr_of(&b, path2);
    printf("connect to a missing path: %s\n", en(connect(again, (struct sockaddr *)&b, blen)));
    printf("connect before listen: %s\n", en(connect(again, (struct sockaddr *)&a, alen)));
    printf("accept before listen: %s\n", en(accept(srv, NULL, NULL)));
    printf("listen: %s\n", en(listen(srv, 4)));
    printf("getpeername unconnected: %s\n", en(getpeername(again, (struct sockaddr *)&b, &blen)));

    int pfd[2];
    pipe(pfd);
    pid_t c = fork();
    if (c == 0) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, alen) < 0) _exit(1);
        char t[64];
        int fd = recv_fd(s, t, sizeof t);
        dprintf(fd, "via the passed pipe (%s)\n", t);
        write(s, "bye", 3);
        close(s);
        _exit(0);
    }
    close(pfd[1]);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 1}, out[4];
    epoll_ctl(ep, EPOLL_CTL_ADD, srv, &ev);
    printf("listener ready: %d\n", epoll_wait(ep, out, 4, -1));
    struct sockaddr_un peer;
    socklen_t plen = sizeof peer;
    int conn = accept(srv, (struct sockaddr *)&peer, &plen);
    printf("accepted: %s, peer name length %u\n", en(conn), plen);
    int w = pfd[1];
    int wpipe[2];
    pipe(wpipe);
    printf("pass a closed fd: %s\n", en(send_fd(conn, 99, "x")));
    printf("pass the pipe: %s\n", en(send_fd(conn, wpipe[1], "fd")));
    close(wpipe[1]);
    ev.data.u32 = 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev);
    int nready = epoll_wait(ep, out, 4, -1), conn_ready = 0;
    for (int i = 0; i < nready; i++) conn_ready |= out[i].data.u32 == 2;
    printf("connection ready: %d\n", conn_ready);
    memset(buf, 0, sizeof buf);
    printf("from client: %zd %s\n", read(conn, buf, sizeof buf - 1), buf);
    memset(buf, 0, sizeof buf);
    read(wpipe[0], buf, sizeof buf - 1);
    printf("%s", buf);
    waitpid(c, NULL, 0);
    printf("client gone: %zd\n", read(conn, buf, sizeof buf));
    struct sockaddr_un me;
    socklen_t mlen = sizeof me;
    getsockname(srv, (struct sockaddr *)&me, &mlen);
    printf("name matches: %d, length %s\n", strcmp(me.sun_path, path) == 0, mlen == alen ? "right" : "wrong");
    int type; socklen_t tl = sizeof type;
    getsockopt(conn, SOL_SOCKET, SO_TYPE, &type, &tl);
    printf("SO_TYPE %d\n", type);

    int ab = socket(AF_UNIX, SOCK_DGRAM, 0), ab2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un an = {.sun_family = AF_UNIX};
    memcpy(an.sun_path, "\0emu-test", 9);
    socklen_t anl = offsetof(struct sockaddr_un, sun_path) + 9;
    printf("abstract bind: %s\n", en(bind(ab, (struct sockaddr *)&an, anl)));
    struct sockaddr_un an2 = {.sun_family = AF_UNIX};
    memcpy(an2.sun_path, "\0emu-tst2", 9);
    bind(ab2, (struct sockaddr *)&an2, anl);
    printf("sendto abstract: %s\n", en(sendto(ab2, "dg", 2, 0, (struct sockaddr *)&an, anl)));
    struct sockaddr_un from;
    socklen_t fl = sizeof from;
    memset(buf, 0, sizeof buf);
    printf("recvfrom: %zd %s, sender length %u\n", recvfrom(ab, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl), buf, fl);
    printf("send unconnected dgram: %s\n", en(send(ab2, "x", 1, 0)));
    waitall();
    unlink(path);
    return 0;
}
