/* sigaltstack: a handler installed with SA_ONSTACK runs on the alternate stack (and sees
 * SS_ONSTACK), one without it on the normal stack; changing the stack while on it is EPERM, a
 * small one ENOMEM, bad flags EINVAL; SS_DISABLE turns it off. Compared with a native run. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *alt;
static size_t altsize = 65536;
static volatile int on_alt, saw_onstack, eperm;

static void handler(int sig) {
    char local;
    on_alt = (uintptr_t)&local > (uintptr_t)alt && (uintptr_t)&local <= (uintptr_t)alt + altsize;
    stack_t cur;
    sigaltstack(NULL, &cur);
    saw_onstack = (cur.ss_flags & SS_ONSTACK) != 0;
    stack_t other = {.ss_sp = malloc(65536), .ss_size = 65536};
    eperm = sigaltstack(&other, NULL) < 0 && errno == EPERM;
    (void)sig;
}

static const char *en(int r) { return r == 0 ? "ok" : errno == ENOMEM ? "ENOMEM" : errno == EINVAL ? "EINVAL" : strerror(errno); }

int main(void) {
    stack_t none;
    sigaltstack(NULL, &none);
    printf("initially disabled: %d\n", (none.ss_flags & SS_DISABLE) != 0);
    alt = malloc(altsize);
    stack_t ss = {.ss_sp = alt, .ss_size = altsize};
    printf("set: %s\n", en(sigaltstack(&ss, NULL)));
    stack_t small = {.ss_sp = alt, .ss_size = 1024};
    printf("too small: %s\n", en(sigaltstack(&small, NULL)));
    stack_t bad = {.ss_sp = alt, .ss_size = altsize, .ss_flags = 0x40};
    printf("bad flags: %s\n", en(sigaltstack(&bad, NULL)));
    struct sigaction sa = {.sa_handler = handler, .sa_flags = SA_ONSTACK};
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("SA_ONSTACK: on the alternate stack %d, SS_ONSTACK %d, EPERM while on it %d\n", on_alt, saw_onstack, eperm);
    sa.sa_flags = 0;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    printf("without SA_ONSTACK: on the alternate stack %d\n", on_alt);
    stack_t got;
    sigaltstack(NULL, &got);
    printf("still set: %d, size %zu\n", got.ss_sp == alt && !(got.ss_flags & SS_DISABLE), got.ss_size);
    stack_t off = {.ss_flags = SS_DISABLE};
    printf("disable: %s\n", en(sigaltstack(&off, NULL)));
    sigaltstack(NULL, &got);
    printf("now disabled: %d\n", (got.ss_flags & SS_DISABLE) != 0);
    return 0;
}
