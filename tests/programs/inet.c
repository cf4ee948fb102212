/* TCP and UDP on the loopback network: a server on an ephemeral port of 127.0.0.1, a forked
 * client that connects and talks, an echo, shutdown and EOF; UDP datagrams with their sender's
 * address; names; and the errors (ECONNREFUSED on a closed port, EADDRINUSE, EADDRNOTAVAIL for a
 * foreign address, EINVAL for a short address). Prints nothing that depends on the port numbers;
 * compared with a native run. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(long r) {
    if (r >= 0) return "ok";
    switch (errno) {
    case ECONNREFUSED: return "ECONNREFUSED"; case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL"; case EINVAL: return "EINVAL"; case ENOTCONN: return "ENOTCONN";
    case EAGAIN: return "EAGAIN"; case EPIPE: return "EPIPE"; default: return strerror(errno);
    }
}

static struct sockaddr_in loop(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int main(void) {
    int srv = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = loop(0);
    printf("bind ephemeral: %s\n", en(bind(srv, (struct sockaddr *)&a, sizeof a)));
    socklen_t al = sizeof a;
    getsockname(srv, (struct sockaddr *)&a, &al);
    printf("got a port: %d, address 127.0.0.1: %d, length %u\n", ntohs(a.sin_port) > 0,
           a.sin_addr.s_addr == htonl(INADDR_LOOPBACK), al);
    int port = ntohs(a.sin_port);
    printf("listen: %s\n", en(listen(srv, 8)));
    int dup = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in same = loop(port);
    printf("bind the same port: %s\n", en(bind(dup, (struct sockaddr *)&same, sizeof same)));
    struct sockaddr_in foreign = loop(0);
    foreign.sin_addr.s_addr = inet_addr("8.8.8.8");
    printf("bind a foreign address: %s\n", en(bind(dup, (struct sockaddr *)&foreign, sizeof foreign)));
    printf("bind a short address: %s\n", en(bind(dup, (struct sockaddr *)&same, 8)));
    int c0 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in closed = loop(port == 40000 ? 40001 : 40000);
    printf("connect to a closed port: %s\n", en(connect(c0, (struct sockaddr *)&closed, sizeof closed)));

    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in to = loop(port);
        if (connect(s, (struct sockaddr *)&to, sizeof to) < 0) _exit(1);
        int nd = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &nd, sizeof nd);
        write(s, "ping over tcp", 13);
        char b[64] = {0};
        read(s, b, sizeof b - 1);
        shutdown(s, SHUT_WR);
        int eof = read(s, b + 8, sizeof b - 8) == 0;
        close(s);
        _exit(strcmp(b, "pong") == 0 && eof ? 0 : 1);
    }
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    int conn = accept(srv, (struct sockaddr *)&peer, &pl);
    printf("accepted: %s, from 127.0.0.1: %d\n", en(conn), peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    char buf[64] = {0};
    printf("server got: %zd %s\n", read(conn, buf, sizeof buf - 1), buf);
    write(conn, "pong", 4);
    printf("then EOF: %zd\n", read(conn, buf, sizeof buf));
    close(conn);
    int status;
    waitpid(c, &status, 0);
    printf("client got the echo and EOF: %d\n", WIFEXITED(status) && WEXITSTATUS(status) == 0);

    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ua = loop(0);
    bind(u1, (struct sockaddr *)&ua, sizeof ua);
    socklen_t ul = sizeof ua;
    getsockname(u1, (struct sockaddr *)&ua, &ul);
    printf("udp sendto: %s\n", en(sendto(u2, "datagram", 8, 0, (struct sockaddr *)&ua, sizeof ua)));
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    memset(buf, 0, sizeof buf);
    ssize_t n = recvfrom(u1, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    struct sockaddr_in u2a;
    socklen_t u2l = sizeof u2a;
    getsockname(u2, (struct sockaddr *)&u2a, &u2l);
    printf("udp got %zd %s, from the sender's port: %d\n", n, buf, from.sin_port == u2a.sin_port && from.sin_port != 0);
    printf("udp send unconnected: %s\n", en(send(u2, "x", 1, 0)));
    printf("getpeername unconnected: %s\n", en(getpeername(u2, (struct sockaddr *)&from, &fl)));
    return 0;
}
