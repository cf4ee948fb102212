/* Signal masks around waits, as a program sees them: sigsuspend, ppoll and pselect wait with a
 * temporary mask and the original comes back after the call (also when a handler ran, whose
 * frame holds the original); a masked signal does not interrupt a sleep and is taken once it is
 * unmasked; an unmasked one does (EINTR). Prints only what is the same on any machine. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int got_usr1, got_alrm;
static sigset_t in_handler;
static void on_usr1(int sig) { (void)sig; got_usr1++; sigprocmask(SIG_BLOCK, NULL, &in_handler); }
static void on_alrm(int sig) { (void)sig; got_alrm++; }

static void show(const char *what)
{
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    printf("%s: USR1 %s, USR2 %s, ALRM %s\n", what, sigismember(&cur, SIGUSR1) ? "blocked" : "open",
           sigismember(&cur, SIGUSR2) ? "blocked" : "open", sigismember(&cur, SIGALRM) ? "blocked" : "open");
}

static void arm(long usec)
{
    struct itimerval it = {{0, 0}, {0, usec}};
    setitimer(ITIMER_REAL, &it, NULL);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_alrm;
    sigaction(SIGALRM, &sa, NULL);
    sigset_t usr, none;
    sigemptyset(&usr);
    sigaddset(&usr, SIGUSR1);
    sigaddset(&usr, SIGUSR2);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &usr, NULL);
    show("start");

    /* sigsuspend: a USR1 sent before is taken inside it; the original mask is back after */
    kill(getpid(), SIGUSR1);
    int r = sigsuspend(&none);
    printf("sigsuspend = %d %s, usr1 %d\n", r, strerror(errno), got_usr1);
    {
        printf("in the handler: USR1 %s, USR2 %s\n", sigismember(&in_handler, SIGUSR1) ? "blocked" : "open",
               sigismember(&in_handler, SIGUSR2) ? "blocked" : "open");
    }
    show("after sigsuspend");

    /* sigsuspend woken by a timer with ALRM open in the temporary mask */
    sigset_t only_usr;
    sigemptyset(&only_usr);
    sigaddset(&only_usr, SIGUSR1);
    arm(20000);
    r = sigsuspend(&only_usr);
    printf("sigsuspend(ALRM) = %d %s, alrm %d\n", r, strerror(errno), got_alrm);
    show("after sigsuspend(ALRM)");

    /* ppoll with a mask that opens USR1, nothing to poll: the pending USR1 ends it with EINTR */
    kill(getpid(), SIGUSR1);
    struct timespec ts = {1, 0};
    r = ppoll(NULL, 0, &ts, &none);
    printf("ppoll = %d %s, usr1 %d\n", r, strerror(errno), got_usr1);
    show("after ppoll");

    /* ppoll that times out: no handler ran, the mask comes back too */
    struct timespec short_ts = {0, 1000000};
    r = ppoll(NULL, 0, &short_ts, &none);
    printf("ppoll timeout = %d\n", r);
    show("after ppoll timeout");

    /* pselect with a mask that opens USR1 */
    kill(getpid(), SIGUSR1);
    r = pselect(0, NULL, NULL, NULL, &ts, &none);
    printf("pselect = %d %s, usr1 %d\n", r, strerror(errno), got_usr1);
    show("after pselect");

    /* a masked signal does not interrupt a sleep; unmasking delivers it */
    pid_t child = fork();
    if (child == 0) {
        usleep(20000);
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    struct timespec nap = {0, 100000000}, left;
    r = nanosleep(&nap, &left);
    printf("nanosleep with USR1 masked = %d, usr1 %d\n", r, got_usr1);
    waitpid(child, NULL, 0);
    sigprocmask(SIG_UNBLOCK, &usr, NULL);
    printf("after unmasking: usr1 %d\n", got_usr1);

    /* an open signal does interrupt it */
    child = fork();
    if (child == 0) {
        usleep(20000);
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    r = nanosleep(&nap, &left);
    printf("nanosleep with USR1 open = %d %s, usr1 %d\n", r, strerror(errno), got_usr1);
    waitpid(child, NULL, 0);
    show("end");
    return 0;
}
