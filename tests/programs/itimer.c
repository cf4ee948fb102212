/* alarm/setitimer/getitimer as a program sees them: what alarm returns, SIGALRM from a one-shot
 * and from a periodic ITIMER_REAL, getitimer while armed and after, and a fork's child that does
 * not inherit the timer. Prints only what is the same on any machine (no raw times). */
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

int main(void)
{
    signal(SIGALRM, on_alarm);
    printf("alarm(5) = %u\n", alarm(5));
    printf("alarm(2) = %u\n", alarm(2));
    printf("alarm(0) = %u\n", alarm(0));
    struct itimerval it = {{0, 20000}, {0, 30000}}, cur;
    printf("setitimer = %d\n", setitimer(ITIMER_REAL, &it, NULL));
    getitimer(ITIMER_REAL, &cur);
    printf("armed: interval %ld.%06ld, value > 0: %d, value <= 30ms: %d\n", (long)cur.it_interval.tv_sec,
           (long)cur.it_interval.tv_usec, cur.it_value.tv_usec > 0, cur.it_value.tv_usec <= 30000);
    while (alarms < 3)
        pause();
    printf("periodic: %d alarms\n", alarms);
    struct itimerval off = {{0, 0}, {0, 0}}, old;
    setitimer(ITIMER_REAL, &off, &old);
    printf("old interval %ld.%06ld\n", (long)old.it_interval.tv_sec, (long)old.it_interval.tv_usec);
    getitimer(ITIMER_REAL, &cur);
    printf("disarmed: %ld.%06ld\n", (long)cur.it_value.tv_sec, (long)cur.it_value.tv_usec);
    alarm(1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        printf("child alarm(0) = %u\n", alarm(0));  /* not inherited */
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    alarms = 0;
    pause();  /* the parent's alarm still fires */
    printf("one-shot: %d alarm\n", alarms);
    struct itimerval bad = {{0, 0}, {0, 1000000}};
    printf("bad usec: %d\n", setitimer(ITIMER_REAL, &bad, NULL));
    return 0;
}
