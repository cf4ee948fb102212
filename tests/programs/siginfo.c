/* What a signal carries, as Linux gives it: si_code and si_pid of kill, tgkill and sigqueue, the
 * value of sigqueue, real-time signals queued once per send and standard ones once in all,
 * SIGCHLD's child, code and status (sigwaitinfo, waitid), sigtimedwait's timeout, the same
 * through a signalfd, the fault codes and addresses of SIGSEGV and SIGFPE, and EPERM for a
 * process posing as the kernel. Compared with a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int got_code, got_pid_ok, got_sig;
static sigjmp_buf jb;
static volatile void *got_addr;

static void on_info(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    got_sig = sig;
    got_code = si->si_code;
    got_pid_ok = si->si_pid == getpid();
}

static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    got_sig = sig;
    got_code = si->si_code;
    got_addr = si->si_addr;
    siglongjmp(jb, 1);
}

static void take_all(sigset_t *set) {
    struct timespec zero = {0, 0};
    siginfo_t si;
    int s;
    while ((s = sigtimedwait(set, &si, &zero)) > 0)
        printf("  took %s code %d value %d from me %d\n", s == SIGUSR2 ? "SIGUSR2" : s == SIGRTMIN ? "RTMIN" : "RTMIN+1",
               si.si_code, si.si_value.sival_int, si.si_pid == getpid());
    printf("  then: %s\n", errno == EAGAIN ? "EAGAIN" : strerror(errno));
}

int main(void) {
    struct sigaction sa = {.sa_sigaction = on_info, .sa_flags = SA_SIGINFO};
    sigaction(SIGUSR1, &sa, NULL);
    kill(getpid(), SIGUSR1);
    printf("kill: sig %d code %d (SI_USER %d) pid is mine %d\n", got_sig, got_code, SI_USER, got_pid_ok);
    syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1);
    printf("tgkill: code %d (SI_TKILL %d) pid is mine %d\n", got_code, SI_TKILL, got_pid_ok);
    union sigval v = {.sival_int = 5};
    sigqueue(getpid(), SIGUSR1, v);
    printf("sigqueue: code %d (SI_QUEUE %d)\n", got_code, SI_QUEUE);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN);
    sigaddset(&set, SIGRTMIN + 1);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (int i = 0; i < 3; i++) {
        v.sival_int = 40 + i;
        sigqueue(getpid(), SIGRTMIN + 1, v);
    }
    v.sival_int = 7;
    sigqueue(getpid(), SIGRTMIN, v);
    kill(getpid(), SIGUSR2);
    kill(getpid(), SIGUSR2);
    printf("sigtimedwait, everything pending:\n");
    take_all(&set);

    pid_t c = fork();
    if (c == 0) _exit(3);
    siginfo_t si;
    int s = sigwaitinfo(&set, &si);
    printf("sigwaitinfo: SIGCHLD %d code %d (CLD_EXITED %d) child %d status %d\n", s == SIGCHLD, si.si_code,
           CLD_EXITED, si.si_pid == c, si.si_status);
    waitpid(c, NULL, 0);
    c = fork();
    if (c == 0) { pause(); _exit(0); }
    kill(c, SIGTERM);
    s = sigwaitinfo(&set, &si);
    printf("killed child: code %d (CLD_KILLED %d) status %d\n", si.si_code, CLD_KILLED, si.si_status);
    memset(&si, 0, sizeof si);
    waitid(P_PID, c, &si, WEXITED);
    printf("waitid: signo %d code %d child %d status %d\n", si.si_signo, si.si_code, si.si_pid == c, si.si_status);
    struct timespec t50 = {0, 50000000};
    s = sigtimedwait(&set, &si, &t50);
    printf("sigtimedwait 50 ms: %d %s\n", s, errno == EAGAIN ? "EAGAIN" : strerror(errno));

    int sfd = signalfd(-1, &set, 0);
    v.sival_int = 99;
    sigqueue(getpid(), SIGRTMIN, v);
    c = fork();
    if (c == 0) _exit(9);
    struct signalfd_siginfo fi;
    for (int i = 0; i < 2; i++) {
        if (read(sfd, &fi, sizeof fi) != sizeof fi) return 2;
        if (fi.ssi_signo == (unsigned)SIGRTMIN)
            printf("signalfd: RTMIN code %d pid is mine %d int %d ptr %llu\n", fi.ssi_code, fi.ssi_pid == (unsigned)getpid(),
                   fi.ssi_int, (unsigned long long)fi.ssi_ptr);
        else
            printf("signalfd: SIGCHLD %d code %d child %d status %d\n", fi.ssi_signo == SIGCHLD, fi.ssi_code,
                   fi.ssi_pid == (unsigned)c, fi.ssi_status);
    }
    waitpid(c, NULL, 0);

    c = fork();
    if (c == 0) { pause(); _exit(0); }
    memset(&si, 0, sizeof si);
    si.si_code = SI_USER;
    long r = syscall(SYS_rt_sigqueueinfo, c, SIGUSR1, &si);
    printf("rt_sigqueueinfo posing as kill to another: %ld %s\n", r, r ? (errno == EPERM ? "EPERM" : strerror(errno)) : "");
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);

    /* sigtimedwait takes a signal of its set even when the program did not block it (Linux
     * unblocks the set for the wait and dequeues what comes): the handler does not run */
    got_sig = 0;
    int hs[2];
    if (pipe(hs)) return 2;
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    c = fork();
    if (c == 0) {
        char b;
        if (read(hs[0], &b, 1) != 1) _exit(1);
        usleep(50000);
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    struct timespec two = {2, 0};
    if (write(hs[1], "x", 1) != 1) return 2;
    s = sigtimedwait(&usr1, &si, &two);
    printf("sigtimedwait on an unblocked signal: took %s, handler ran %d\n", s == SIGUSR1 ? "SIGUSR1" : "nothing",
           got_sig != 0);
    waitpid(c, NULL, 0);

    struct sigaction fa = {.sa_sigaction = on_fault, .sa_flags = SA_SIGINFO};
    sigaction(SIGSEGV, &fa, NULL);
    sigaction(SIGFPE, &fa, NULL);
    char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!sigsetjmp(jb, 1)) ro[8] = 1;
    printf("write to read-only: sig %d code %d (SEGV_ACCERR %d) addr right %d\n", got_sig, got_code, SEGV_ACCERR,
           got_addr == ro + 8);
    munmap(ro, 4096);
    if (!sigsetjmp(jb, 1)) *(volatile char *)(ro + 16) = 1;
    printf("write to unmapped: code %d (SEGV_MAPERR %d) addr right %d\n", got_code, SEGV_MAPERR, got_addr == ro + 16);
    got_sig = 0;
    if (!sigsetjmp(jb, 1)) {
        int q, d = 0;
        __asm__ volatile("cltd; idivl %2" : "=a"(q) : "a"(1), "r"(d) : "edx");  /* #DE */
        printf("no trap: %d\n", q);
    }
    printf("divide by zero: sig %d code %d (FPE_INTDIV %d) addr set %d\n", got_sig, got_code, FPE_INTDIV, got_addr != 0);
    return 0;
}
