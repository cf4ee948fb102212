/* Threads and the waits fio's helper thread uses: pthread_create/join (clone with
 * CLONE_THREAD, CLONE_CHILD_CLEARTID + futex wake), a mutex and a condition variable (futex
 * wait/wake), a timed wait that expires, a timerfd read through pselect6 beside a pipe, select,
 * poll and ppoll with timeouts, a chdir and a umask in a thread that the whole process sees
 * (CLONE_FS) but a forked child's do not, and exit_group from a thread. Only the main thread prints; the
 * test compares with the native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int started, counter;
static pid_t main_pid, thread_pid, thread_tid;

static void *worker(void *arg) {
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&m);
        counter++;
        pthread_mutex_unlock(&m);
    }
    pthread_mutex_lock(&m);
    started++;
    thread_pid = getpid();
    thread_tid = gettid();
    pthread_cond_signal(&c);
    pthread_mutex_unlock(&m);
    return (void *)((long)arg * 10);
}

static void *exiter(void *arg) {
    (void)arg;
    exit(7);  /* exit_group from a thread ends the whole process */
}

static void *mover(void *arg) {
    (void)arg;
    if (chdir("/tmp") != 0) return (void *)1;
    umask(027);
    return NULL;
}

static void fs_shared(void) {
    char before[256], after[256];
    if (!getcwd(before, sizeof before)) return;
    if (chdir("/") != 0) return;
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, mover, NULL);
    pthread_join(t, &r);
    mode_t old = umask(022);
    printf("after a thread's chdir: %s, umask %03o, thread %ld\n", getcwd(after, sizeof after) ? after : "?",
           (unsigned)old, (long)r);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        if (chdir("/tmp") != 0) _exit(1);
        umask(077);
        _exit(0);
    }
    waitpid(c, NULL, 0);
    old = umask(022);
    printf("after a child's chdir: %s, umask %03o\n", getcwd(after, sizeof after) ? after : "?", (unsigned)old);
    if (chdir(before) != 0) return;
}

int main(void) {
    main_pid = getpid();
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    pthread_mutex_lock(&m);
    while (started < 4)
        pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    long sum = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (long)r;
    }
    printf("counter=%d joined sum=%ld same pid=%d own tid=%d\n", counter, sum, thread_pid == main_pid,
           thread_tid != main_pid);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_mutex_lock(&m);
    int e = pthread_cond_timedwait(&c, &m, &ts);
    pthread_mutex_unlock(&m);
    printf("timedwait: %s\n", e == ETIMEDOUT ? "ETIMEDOUT" : "woken");

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    int p[2];
    if (pipe(p))
        return 2;
    uint64_t ticks;
    ssize_t got = read(tfd, &ticks, 8);
    printf("timerfd read before expiry: %zd errno=%d\n", got, errno);
    struct itimerspec its = {.it_value = {0, 250000000}, .it_interval = {0, 100000000}};
    timerfd_settime(tfd, 0, &its, NULL);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    FD_SET(tfd, &r);
    int n = pselect(tfd + 1, &r, NULL, NULL, NULL, NULL);
    printf("pselect: %d timerfd=%d pipe=%d\n", n, FD_ISSET(tfd, &r) != 0, FD_ISSET(p[0], &r) != 0);
    got = read(tfd, &ticks, 8);
    printf("timerfd read: %zd ticks=%llu\n", got, (unsigned long long)ticks);
    struct timeval tv = {0, 50000};
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    printf("select timeout: %d\n", select(p[0] + 1, &r, NULL, NULL, &tv));
    if (write(p[1], "x", 1) != 1)
        return 2;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    printf("select pipe: %d\n", select(p[0] + 1, &r, NULL, NULL, NULL));

    char byte;
    if (read(p[0], &byte, 1) != 1)
        return 2;
    struct pollfd pf[3] = {{.fd = p[0], .events = POLLIN}, {.fd = p[1], .events = POLLOUT}, {.fd = -1}};
    int pr = poll(pf, 3, 30);
    printf("poll: %d in=%x out=%x\n", pr, pf[0].revents, pf[1].revents);
    pf[1].fd = -1;
    pr = poll(pf, 2, 30);
    printf("poll timeout: %d\n", pr);
    struct timespec pts = {0, 20000000};
    close(p[1]);
    pr = ppoll(pf, 1, &pts, NULL);
    printf("ppoll hangup: %d revents=%x\n", pr, pf[0].revents);
    pf[0].fd = 999;
    pr = poll(pf, 1, 0);
    printf("poll bad fd: %d revents=%x\n", pr, pf[0].revents);

    fs_shared();
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        pthread_t x;
        pthread_create(&x, NULL, exiter, NULL);
        pause();
        return 1;
    }
    int st;
    waitpid(child, &st, 0);
    printf("child with exiting thread: exited=%d code=%d\n", WIFEXITED(st), WEXITSTATUS(st));
    return 0;
}
