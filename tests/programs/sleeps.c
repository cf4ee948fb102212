/* Sleeps interrupted by a handled signal (tests/guest/test_stress_tools.py compares it with a
 * native run; tests/campaigns/test_checkpoint.py cuts it anywhere under checkpoints at every
 * syscall): nanosleep and a relative clock_nanosleep return EINTR with the time left in `rem`
 * (SA_RESTART or not), an absolute one leaves `rem` alone, and a loop that sleeps again on
 * what was left (coreutils' sleep) ends on time; select and ppoll leave the time they did not
 * wait in their timeout (Linux's way). A forked child sleeps while its parent sleeps
 * half as long and then makes syscalls: cut there, a restart sleeps what was left of the child's
 * sleep, not all of it again. Times are
 * printed in tenths of the sleeps' lengths, which hold natively too. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sys/select.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void on_alarm(int sig) { (void)sig; }

static long ms(const struct timespec *t) { return t->tv_sec * 1000 + t->tv_nsec / 1000000; }

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return ms(&t);
}

static void alarm_in(long msec)
{
    struct itimerval it = {.it_value = {msec / 1000, (msec % 1000) * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = on_alarm};
    for (int restart = 0; restart < 2; restart++) {
        sa.sa_flags = restart ? SA_RESTART : 0;
        sigaction(SIGALRM, &sa, NULL);
        struct timespec req = {1, 0}, rem = {99, 0};
        alarm_in(300);
        int r = nanosleep(&req, &rem);
        printf("nanosleep%s: %d %s, left %ld tenths\n", restart ? " (SA_RESTART)" : "", r, r ? strerror(errno) : "",
               (ms(&rem) + 50) / 100);
    }
    struct timespec req = {1, 0}, rem = {99, 0};
    alarm_in(400);
    int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
    printf("clock_nanosleep: %d %s, left %ld tenths\n", r, strerror(r), (ms(&rem) + 50) / 100);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 1;
    rem.tv_sec = 99;
    alarm_in(200);
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, &rem);
    printf("absolute: %d %s, rem untouched %d\n", r, strerror(r), rem.tv_sec == 99);

    /* coreutils' sleep: on EINTR, sleep again on what is left */
    long t0 = now_ms();
    struct timespec ts = {0, 800000000};
    alarm_in(250);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    printf("loop slept %ld tenths of 8\n", (now_ms() - t0 + 50) / 100);

    /* select and ppoll leave the time not waited in their timeout (Linux's, not POSIX's) */
    int pfd[2];
    pipe(pfd);
    pid_t w = fork();
    if (w == 0) {
        struct timespec nap = {0, 300000000};
        nanosleep(&nap, NULL);
        write(pfd[1], "x", 1);
        _exit(0);
    }
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(pfd[0], &rd);
    struct timeval tv = {1, 0};
    r = select(pfd[0] + 1, &rd, NULL, NULL, &tv);
    printf("select: %d, left %ld tenths\n", r, (tv.tv_sec * 1000 + tv.tv_usec / 1000 + 50) / 100);
    char ch;
    read(pfd[0], &ch, 1);
    waitpid(w, NULL, 0);
    struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
    struct timespec pt = {1, 0};
    alarm_in(400);
    r = ppoll(&pf, 1, &pt, NULL);
    printf("ppoll: %d %s, left %ld tenths\n", r, r < 0 ? strerror(errno) : "", (ms(&pt) + 50) / 100);

    /* a child asleep while the parent makes syscalls */
    pid_t c = fork();
    if (c == 0) {
        struct timespec nap = {0, 600000000};
        long s = now_ms();
        nanosleep(&nap, NULL);
        printf("child slept %ld tenths of 6\n", (now_ms() - s + 50) / 100);
        _exit(0);
    }
    struct timespec part = {0, 300000000};
    nanosleep(&part, NULL);  /* half of the child's sleep gone: then a checkpoint at each syscall */
    for (int i = 0; i < 1500; i++) getppid();
    int st;
    waitpid(c, &st, 0);
    printf("done\n");
    return 0;
}
