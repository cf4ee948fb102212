/* signalfd: blocked signals read through a descriptor (SIGUSR1 sent to itself, SIGCHLD from a
 * child's exit seen through epoll, a new mask on the same descriptor), EAGAIN and EINVAL as
 * Linux; compared with a native run. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(int fd, const char *what) {
    struct signalfd_siginfo si[4];
    ssize_t n = read(fd, si, sizeof si);
    if (n < 0) { printf("%s: %s\n", what, errno == EAGAIN ? "EAGAIN" : strerror(errno)); return; }
    printf("%s:", what);
    for (ssize_t i = 0; i < n / (ssize_t)sizeof si[0]; i++) printf(" %u", si[i].ssi_signo);
    printf("\n");
}

int main(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigdelset(&set, SIGUSR2);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    show(fd, "nothing pending");
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR2);
    show(fd, "after SIGUSR1 and SIGUSR2");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    if (fork() == 0) _exit(3);
    printf("epoll: %d\n", epoll_wait(ep, &out, 1, 1000));
    show(fd, "child exited");
    wait(NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    printf("new mask: %s\n", signalfd(fd, &set, 0) == fd ? "same fd" : "other");
    show(fd, "SIGUSR2 now");
    char small[8];
    printf("short read: %s\n", read(fd, small, sizeof small) < 0 && errno == EINVAL ? "EINVAL" : "?");
    printf("bad flags: %s\n", signalfd(-1, &set, 0x1234) < 0 && errno == EINVAL ? "EINVAL" : "?");
    return 0;
}
