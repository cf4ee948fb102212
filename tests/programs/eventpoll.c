/* eventfd and epoll as Linux gives them: counters (semaphore mode, EAGAIN, the forbidden value),
 * an epoll set over a pipe, an eventfd and a timerfd woken by a child, a timer and a write,
 * one-shot and edge-triggered entries, EPOLLHUP when the writer goes, and the errors of
 * epoll_ctl and epoll_wait. Events of one wait are printed sorted by their data, so the output
 * does not depend on the order a kernel lists them in; compared with a native run. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *en(int r) {
    if (r >= 0) return "ok";
    switch (errno) {
    case EAGAIN: return "EAGAIN"; case EINVAL: return "EINVAL"; case EPERM: return "EPERM";
    case EEXIST: return "EEXIST"; case ENOENT: return "ENOENT"; case EBADF: return "EBADF";
    case ELOOP: return "ELOOP"; default: return strerror(errno);
    }
}

static int cmp(const void *a, const void *b) {
    const struct epoll_event *x = a, *y = b;
    return (x->data.u64 > y->data.u64) - (x->data.u64 < y->data.u64);
}

static void wait_and_show(int ep, int timeout, const char *what) {
    struct epoll_event ev[8];
    int n = epoll_wait(ep, ev, 8, timeout);
    printf("%s: %d", what, n);
    if (n > 0) {
        qsort(ev, n, sizeof ev[0], cmp);
        for (int i = 0; i < n; i++) printf(" [%llu %#x]", (unsigned long long)ev[i].data.u64, ev[i].events);
    }
    printf("\n");
}

static void add(int ep, int fd, uint32_t events, uint64_t data) {
    struct epoll_event e = {.events = events, .data.u64 = data};
    int r = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    if (r < 0) printf("add %llu: %s\n", (unsigned long long)data, en(r));
}

int main(void) {
    uint64_t v;
    int e = eventfd(3, EFD_NONBLOCK);
    printf("read %zd", read(e, &v, 8)); printf(" = %llu\n", (unsigned long long)v);
    printf("empty: %s\n", en(read(e, &v, 8)));
    v = 0xffffffffffffffffULL;
    printf("write -1: %s\n", en(write(e, &v, 8)));
    printf("short read: %s\n", en(read(e, &v, 4)));
    int s = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    read(s, &v, 8); printf("semaphore %llu", (unsigned long long)v);
    read(s, &v, 8); printf(" %llu", (unsigned long long)v);
    printf(" then %s\n", en(read(s, &v, 8)));

    int ep = epoll_create1(EPOLL_CLOEXEC);
    int pfd[2];
    pipe(pfd);
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    add(ep, pfd[0], EPOLLIN, 1);
    add(ep, e, EPOLLIN | EPOLLET, 2);
    add(ep, t, EPOLLIN | EPOLLONESHOT, 3);
    add(ep, pfd[0], EPOLLIN, 9);
    int file = open("/proc/self/exe", O_RDONLY);
    add(ep, file, EPOLLIN, 10);
    add(ep, ep, EPOLLIN, 11);
    struct epoll_event dummy = {0};
    printf("del unknown: %s\n", en(epoll_ctl(ep, EPOLL_CTL_DEL, s, &dummy)));
    printf("ctl on a non-epoll fd: %s\n", en(epoll_ctl(e, EPOLL_CTL_ADD, s, &dummy)));
    printf("ctl bad fd: %s\n", en(epoll_ctl(ep, EPOLL_CTL_ADD, 99, &dummy)));
    printf("wait maxevents 0: %s\n", en(epoll_wait(ep, &dummy, 0, 0)));
    wait_and_show(ep, 0, "nothing yet");

    pid_t c = fork();
    if (c == 0) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        write(pfd[1], "hi", 2);
        _exit(0);
    }
    wait_and_show(ep, -1, "child wrote");
    char buf[8];
    printf("read %zd\n", read(pfd[0], buf, sizeof buf));
    waitpid(c, NULL, 0);

    struct itimerspec its = {.it_value = {0, 30 * 1000 * 1000}};
    timerfd_settime(t, 0, &its, NULL);
    wait_and_show(ep, 1000, "timer");
    wait_and_show(ep, 0, "one-shot timer not again");
    v = 1;
    write(e, &v, 8);
    wait_and_show(ep, 0, "eventfd edge");
    wait_and_show(ep, 0, "no new edge");
    write(e, &v, 8);
    wait_and_show(ep, 0, "edge again");
    struct epoll_event m = {.events = EPOLLIN, .data.u64 = 33};
    printf("mod timer: %s\n", en(epoll_ctl(ep, EPOLL_CTL_MOD, t, &m)));
    read(t, &v, 8);
    wait_and_show(ep, 0, "timer read, level");
    close(pfd[1]);
    wait_and_show(ep, 0, "writer closed");
    printf("del pipe: %s\n", en(epoll_ctl(ep, EPOLL_CTL_DEL, pfd[0], NULL)));
    close(e);
    wait_and_show(ep, 100, "eventfd closed, timeout");
    return 0;
}
