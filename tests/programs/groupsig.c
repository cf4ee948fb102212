/* Signals sent to a process go to the whole thread group (Linux's shared pending set): a
 * dedicated thread takes them with sigwaitinfo while every other thread blocks them; a thread
 * that does not block a signal runs its handler when the main thread blocks it; tgkill aims at
 * one thread; a signalfd made by the main thread reads the group's signals. Compared with a
 * native run. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile pid_t handled_by;
static pid_t worker_tid;
static pthread_barrier_t b;

static void on_usr2(int sig) { (void)sig; handled_by = (pid_t)syscall(SYS_gettid); }

static void *waiter(void *arg) {
    sigset_t *set = arg;
    siginfo_t si;
    for (int i = 0; i < 4; i++) {
        int s = sigwaitinfo(set, &si);
        printf("waiter took %s from the process %d value %d\n", s == SIGUSR1 ? "SIGUSR1" : s == SIGTERM ? "SIGTERM" : "RTMIN",
               si.si_pid == getpid(), s == SIGRTMIN ? si.si_value.sival_int : 0);
        fflush(stdout);
    }
    return NULL;
}

static void *catcher(void *arg) {
    (void)arg;
    worker_tid = (pid_t)syscall(SYS_gettid);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);  /* takes SIGUSR2 */
    pthread_barrier_wait(&b);
    for (int i = 0; i < 2000 && !handled_by; i++) usleep(1000);  /* (bounded: a wrong kernel prints 0) */
    pthread_barrier_wait(&b);
    return NULL;
}

int main(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN);
    pthread_sigmask(SIG_BLOCK, &set, NULL);  /* inherited by the threads */
    sigdelset(&set, SIGUSR2);
    pthread_t w;
    pthread_create(&w, NULL, waiter, &set);
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGTERM);
    for (int i = 1; i <= 2; i++) {
        union sigval v = {.sival_int = i};
        sigqueue(getpid(), SIGRTMIN, v);
    }
    pthread_join(w, NULL);

    signal(SIGUSR2, on_usr2);
    pthread_barrier_init(&b, NULL, 2);
    pthread_t c;
    pthread_create(&c, NULL, catcher, NULL);
    pthread_barrier_wait(&b);
    kill(getpid(), SIGUSR2);
    pthread_barrier_wait(&b);
    pthread_join(c, NULL);
    printf("SIGUSR2 handled by the thread that does not block it: %d\n", handled_by == worker_tid);

    int fd = signalfd(-1, &set, 0);
    kill(getpid(), SIGTERM);
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGUSR1);
    sigset_t pend;
    sigpending(&pend);
    printf("pending: SIGUSR1 %d SIGTERM %d\n", sigismember(&pend, SIGUSR1), sigismember(&pend, SIGTERM));
    struct signalfd_siginfo fi[2];
    ssize_t n = read(fd, fi, sizeof fi);
    printf("signalfd: %zd records, first %s code %d, then %s code %d\n", n / (ssize_t)sizeof fi[0],
           fi[0].ssi_signo == SIGUSR1 ? "SIGUSR1" : "SIGTERM", fi[0].ssi_code,
           fi[1].ssi_signo == SIGUSR1 ? "SIGUSR1" : "SIGTERM", fi[1].ssi_code);
    return 0;
}
