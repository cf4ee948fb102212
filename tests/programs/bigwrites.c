/* Writes larger than the pipe's or the socket's buffer, to a reader that drains them (tests/guest/
 * test_stress_tools.py compares it with a native run; tests/campaigns/test_checkpoint.py cuts it
 * under checkpoints at every syscall): a blocking write(2) and writev(2) of three vectors to a pipe
 * and to a stream socket pair each return the whole count, the reader gets every byte in order. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static char a[100000], b[150000], c[120000], big[300000];

static void drain(int fd)
{
    char buf[8192];
    long total = 0;
    unsigned sum = 0;
    int n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (int i = 0; i < n; i++) sum = sum * 31 + (unsigned char)buf[i];
        total += n;
    }
    printf("  read %ld, sum %08x\n", total, sum);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    memset(c, 'c', sizeof c);
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
    for (int kind = 0; kind < 2; kind++) {
        for (int vec = 0; vec < 2; vec++) {
            int fd[2];
            if (kind == 0) pipe(fd);
            else socketpair(AF_UNIX, SOCK_STREAM, 0, fd);
            fflush(stdout);
            pid_t r = fork();
            if (r == 0) {
                close(fd[1]);
                drain(fd[0]);
                _exit(0);
            }
            close(fd[0]);
            struct iovec v[3] = {{a, sizeof a}, {b, sizeof b}, {c, sizeof c}};
            ssize_t n = vec ? writev(fd[1], v, 3) : write(fd[1], big, sizeof big);
            close(fd[1]);
            waitpid(r, NULL, 0);
            printf("%s %s: %zd\n", kind ? "socket" : "pipe", vec ? "writev" : "write", n);
        }
    }
    return 0;
}
