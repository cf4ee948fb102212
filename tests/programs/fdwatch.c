/* An epoll set over a pipe, an eventfd (edge-triggered), a signalfd and a timerfd, used a few
 * syscalls at a time (tests/guest/test_stress_tools.py compares it with a native run;
 * tests/campaigns/test_checkpoint.py cuts it anywhere under checkpoints at every syscall: the
 * set's interest list, the edge-triggered entry's "already reported", the timer's time left and
 * interval come back with a restart). The output depends on no host timing. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static const char *names[] = {"pipe", "eventfd", "signalfd", "timer"};

static void ready(int ep, const char *when, int timeout)
{
    struct epoll_event ev[8];
    int n = epoll_wait(ep, ev, 8, timeout);
    unsigned seen = 0;
    for (int i = 0; i < n; i++) seen |= 1u << ev[i].data.u32;
    printf("%s:", when);
    for (int i = 0; i < 4; i++)
        if (seen & (1u << i)) printf(" %s", names[i]);
    printf("%s\n", n ? "" : " nothing");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2];
    pipe(p);
    int efd = eventfd(0, EFD_NONBLOCK);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN};
    int fds[] = {p[0], efd, sfd, tfd};
    for (uint32_t i = 0; i < 4; i++) {
        e.data.u32 = i;
        e.events = i == 1 ? EPOLLIN | EPOLLET : EPOLLIN;
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
        getppid();
    }
    ready(ep, "nothing yet", 0);
    uint64_t one = 1, v;
    write(efd, &one, 8);
    getppid();
    ready(ep, "eventfd written", 0);
    ready(ep, "again, edge-triggered", 0);
    write(p[1], "x", 1);
    kill(getpid(), SIGUSR1);
    getppid();
    ready(ep, "pipe and signal", 0);
    write(efd, &one, 8);
    ready(ep, "eventfd written again", 0);
    char c;
    read(p[0], &c, 1);
    struct signalfd_siginfo si;
    read(sfd, &si, sizeof si);
    read(efd, &v, 8);
    printf("eventfd count %llu\n", (unsigned long long)v);
    ready(ep, "all read", 0);

    /* a one-shot timer of 2 ms, waited for; then every 1 ms */
    struct itimerspec its = {.it_value = {0, 2000000}};
    timerfd_settime(tfd, 0, &its, NULL);
    getppid();
    ready(ep, "timer armed", 0);
    ready(ep, "after waiting", -1);
    read(tfd, &v, 8);
    printf("one-shot expirations %llu\n", (unsigned long long)v);
    its.it_value.tv_nsec = its.it_interval.tv_nsec = 1000000;
    timerfd_settime(tfd, 0, &its, NULL);
    struct timespec nap = {0, 3500000};
    nanosleep(&nap, NULL);
    getppid();
    read(tfd, &v, 8);
    printf("interval expirations: at least 3: %s\n", v >= 3 ? "yes" : "no");
    struct itimerspec cur;
    timerfd_gettime(tfd, &cur);
    printf("still armed: %s, interval %ld ns\n", cur.it_value.tv_nsec > 0 ? "yes" : "no", cur.it_interval.tv_nsec);
    epoll_ctl(ep, EPOLL_CTL_DEL, tfd, NULL);
    nanosleep(&nap, NULL);
    ready(ep, "timer removed", 0);
    return 0;
}
