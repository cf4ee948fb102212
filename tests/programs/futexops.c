/* The futex operations glibc and older thread libraries use beyond WAIT/WAKE: FUTEX_REQUEUE,
 * FUTEX_CMP_REQUEUE (EAGAIN when the word changed) and FUTEX_WAKE_OP (the word updated, both
 * futexes woken by the comparison), with three waiting threads; bad addresses and PI ops get
 * Linux's errors. Prints only deterministic results (counts, values, errno names), compared with
 * a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint32_t f1, f2;
static volatile int ready, done;

static long fx(uint32_t *a, int op, uint32_t val, unsigned long val2, uint32_t *a2, uint32_t val3) {
    return syscall(SYS_futex, a, op, val, val2, a2, val3);
}

static const char *en(long r) {
    if (r >= 0) return "ok";
    switch (errno) {
    case EAGAIN: return "EAGAIN"; case EINVAL: return "EINVAL"; case ENOSYS: return "ENOSYS";
    case EFAULT: return "EFAULT"; case ETIMEDOUT: return "ETIMEDOUT"; default: return strerror(errno);
    }
}

static void *waiter(void *arg) {
    __atomic_add_fetch(&ready, 1, __ATOMIC_SEQ_CST);
    while (fx(&f1, FUTEX_WAIT_PRIVATE, 0, 0, NULL, 0) < 0 && errno == EINTR) {}
    __atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
    return arg;
}

/* Long enough for the threads to be asleep in the kernel (or to run once woken), natively too. */
static void settle(void) { struct timespec ts = {0, 50 * 1000 * 1000}; nanosleep(&ts, NULL); }

int main(void) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, waiter, NULL);
    while (ready < 3) sched_yield();
    settle();
    long r = fx(&f1, FUTEX_CMP_REQUEUE_PRIVATE, 1, 1, &f2, 7);
    printf("cmp_requeue with a stale value: %ld %s\n", r, en(r));
    r = fx(&f1, FUTEX_CMP_REQUEUE_PRIVATE, 1, 1, &f2, 0);
    printf("cmp_requeue wake 1 move 1: %ld\n", r);
    for (int i = 0; i < 100 && done < 1; i++) settle();
    printf("woken so far: %d\n", done);
    r = fx(&f1, FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0);
    printf("wake the one left on f1: %ld\n", r);
    settle();
    /* the one moved to f2: WAKE_OP adds 5 to f2 (old 0) and wakes f2 if old == 0 */
    uint32_t op = FUTEX_OP(FUTEX_OP_ADD, 5, FUTEX_OP_CMP_EQ, 0);
    r = fx(&f1, FUTEX_WAKE_OP_PRIVATE, 1, 1, &f2, op);
    printf("wake_op: %ld, f2 now %u\n", r, f2);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    printf("all woken: %d\n", done);
    r = fx(&f1, FUTEX_REQUEUE_PRIVATE, 1, 1, &f2, 0);
    printf("requeue with nobody waiting: %ld\n", r);
    op = FUTEX_OP(FUTEX_OP_OR, 4, FUTEX_OP_CMP_GT, 100) | (FUTEX_OP_OPARG_SHIFT << 28);
    r = fx(&f1, FUTEX_WAKE_OP_PRIVATE, 1, 1, &f2, op);
    printf("wake_op or 1<<4: %ld, f2 now %u\n", r, f2);
    r = fx((uint32_t *)((char *)&f1 + 1), FUTEX_REQUEUE_PRIVATE, 1, 1, &f2, 0);
    printf("unaligned: %s\n", en(r));
    r = fx(&f1, FUTEX_WAKE_OP_PRIVATE, 1, 1, (uint32_t *)16, op);
    printf("wake_op on a bad address: %s\n", en(r));
    r = fx(&f1, FUTEX_REQUEUE_PRIVATE, 1, 0x80000000UL, &f2, 0);
    printf("negative count: %s\n", en(r));
    return 0;
}
