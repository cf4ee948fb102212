/* Real-time signals queued with their values, and a standard one, wait blocked while the program
 * goes on making syscalls; then sigtimedwait takes them in order. Under checkpointing and cut
 * anywhere, a restart must bring back every queued instance with its sender and value. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 2);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (int i = 0; i < 4; i++) {
        union sigval v = {.sival_int = 100 + i};
        sigqueue(getpid(), SIGRTMIN + 2, v);
        kill(getpid(), SIGUSR1);
        printf("queued %d\n", i);
        fflush(stdout);
    }
    struct timespec zero = {0, 0};
    siginfo_t si;
    int s;
    while ((s = sigtimedwait(&set, &si, &zero)) > 0) {
        printf("%s code %d value %d mine %d\n", s == SIGUSR1 ? "SIGUSR1" : "RTMIN+2", si.si_code,
               s == SIGUSR1 ? 0 : si.si_value.sival_int, si.si_pid == getpid());
        fflush(stdout);
    }
    return 0;
}
