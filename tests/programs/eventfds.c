/* eventfd and signalfd across syscalls and fork (tests/guest/test_stress_tools.py compares it with a
 * native run; tests/campaigns/test_checkpoint.py cuts it anywhere under checkpoints at every
 * syscall): an eventfd counter and a semaphore eventfd written and read a little at a time; a
 * signalfd whose mask changes, read by the process that created it and, inherited, by a child:
 * Linux's signalfd gives the reader its own signals (the child sees what it sent itself, not
 * the parent's pending SIGUSR2, which the parent reads after). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(int fd, const char *what)
{
    struct signalfd_siginfo si[4];
    ssize_t n = read(fd, si, sizeof si);
    if (n < 0) {
        printf("%s: %s\n", what, errno == EAGAIN ? "EAGAIN" : strerror(errno));
        return;
    }
    printf("%s:", what);
    for (ssize_t i = 0; i < n / (ssize_t)sizeof si[0]; i++) printf(" %u", si[i].ssi_signo);
    printf("\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int counter = eventfd(5, EFD_NONBLOCK), sem = eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK);
    uint64_t v = 3;
    write(counter, &v, 8);
    for (int i = 0; i < 4; i++) {
        v = i + 1;
        write(sem, &v, 8);
        getppid();
    }
    read(counter, &v, 8);
    printf("counter: %llu\n", (unsigned long long)v);
    printf("counter again: %s\n", read(counter, &v, 8) < 0 && errno == EAGAIN ? "EAGAIN" : "value");
    unsigned long long total = 0;
    while (read(sem, &v, 8) == 8) {
        total += v;
        getppid();
    }
    printf("semaphore: %llu reads of 1\n", total);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int fd = signalfd(-1, &set, SFD_NONBLOCK);
    show(fd, "nothing yet");
    kill(getpid(), SIGUSR2);
    sigdelset(&set, SIGUSR2);
    signalfd(fd, &set, 0);  /* SIGUSR1 only */
    show(fd, "USR2 pending, mask USR1");
    pid_t c = fork();
    if (c == 0) {
        sigaddset(&set, SIGUSR2);
        signalfd(fd, &set, 0);
        kill(getpid(), SIGUSR1);
        getppid();
        show(fd, "child");
        show(fd, "child again");
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    sigaddset(&set, SIGUSR2);
    signalfd(fd, &set, 0);
    show(fd, "parent");
    show(fd, "parent again");
    return 0;
}
