/* Files a checkpoint must describe besides regular files and pipes (tests/campaigns/
 * test_checkpoint.py): /proc and /sys files read a few bytes at a time, a /proc directory read
 * one entry per getdents64, sockets that socket() made and nothing else touched yet (as glibc's
 * name service does: socket, a connect that fails, close). A syscall between the steps: a
 * checkpoint at each with tcp = 0, and a restart at a cut in the middle goes on reading where the
 * file was, in the contents it had (/proc/self/status shows the signal mask of its first read,
 * before the program blocks SIGUSR1; its memory lines are left out: a restarted process maps the
 * file's pages again only when it touches them, as after CRIU's restore, so its RSS is smaller).
 * Then a connected socket pair, which checkpoints refuse. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

static void slowly(const char *path, int chunk, int block)
{
    char buf[8192];
    int fd = open(path, O_RDONLY), n, got = 0;
    while ((n = read(fd, buf + got, chunk)) > 0) {
        if (!got && block) {  /* the contents are made now: what changes after must not show */
            sigset_t usr1;
            sigemptyset(&usr1);
            sigaddset(&usr1, SIGUSR1);
            sigprocmask(SIG_BLOCK, &usr1, NULL);
        }
        got += n;
        getppid();
    }
    close(fd);
    buf[got] = 0;
    unsigned sum = 0, lines = 0;
    for (char *line = buf; *line; line += strcspn(line, "\n") + (line[strcspn(line, "\n")] != 0)) {
        if (!strncmp(line, "Vm", 2) || !strncmp(line, "Rss", 3)) continue;
        for (char *c = line; *c && *c != '\n'; c++) sum = sum * 31 + (unsigned char)*c;
        lines++;
    }
    printf("%s: %u lines, sum %08x\n", path, lines, sum);
    for (const char *key = "Name:"; key; key = key[0] == 'N' ? "SigBlk:" : NULL) {
        char *line = strstr(buf, key);
        if (line) printf("  %.*s\n", (int)strcspn(line, "\n"), line);
    }
}

static void listing(const char *path)
{
    char buf[64];
    int fd = open(path, O_RDONLY | O_DIRECTORY), n, count = 0;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (int at = 0; at < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + at);
            printf("  %s\n", d->d_name);
            at += d->d_reclen;
            count++;
        }
        getppid();
    }
    close(fd);
    printf("%s: %d entries\n", path, count);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    slowly("/proc/filesystems", 16, 0);
    slowly("/proc/self/status", 64, 1);
    slowly("/sys/devices/system/cpu/online", 1, 0);
    listing("/proc/self/fd");

    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    getppid();
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "/var/run/nscd/socket");
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    printf("connect: %d %s\n", r, r ? strerror(errno) : "");
    getppid();
    close(s);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    getppid();
    struct sockaddr_in in = {.sin_family = AF_INET};
    socklen_t len = sizeof in;
    printf("udp getsockname: %d family %d\n", getsockname(u, (struct sockaddr *)&in, &len), in.sin_family);
    close(u);

    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    char msg[16] = {0};
    write(sv[0], "through the pair", 16);
    getppid();
    read(sv[1], msg, 16);
    printf("pair: %.16s\n", msg);
    close(sv[0]);
    close(sv[1]);
    getppid();
    printf("done\n");
    return 0;
}
