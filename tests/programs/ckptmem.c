/* Private memory across checkpoints (tests/campaigns/test_ckpt_live_in_file.py): heap and
 * anonymous pages written between syscalls (a checkpoint at each with tcp = 0), shared
 * copy-on-write with a child after fork and written by both, a shared anonymous mapping, mprotect
 * read-only and back, mremap that moves, munmap of a part. Prints checksums: the same with and
 * without checkpoints, and after a restart. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define NP 48

static unsigned sum(const unsigned char *p, size_t n)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static void touch(unsigned char *p, int pages, int step, int salt)
{
    for (int i = 0; i < pages; i += step) {
        p[i * PG + (salt * 67) % PG] = (unsigned char)(i * 7 + salt);
        if (i % 4 == 0) getppid(); /* a syscall: a checkpoint between the writes */
    }
}

int main(void)
{
    size_t n = NP * PG;
    unsigned char *a = malloc(n);
    unsigned char *m = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *sh = mmap(0, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!a || m == MAP_FAILED || sh == MAP_FAILED) return 1;
    memset(a, 1, n);
    memset(m, 2, n);
    memset(sh, 0, 4 * PG);
    for (int r = 0; r < 4; r++) {
        touch(a, NP, 1, r);
        touch(m, NP, 1, r + 10);
    }
    printf("start %08x %08x\n", sum(a, n), sum(m, n));
    fflush(stdout);

    pid_t c = fork();
    if (c == 0) {
        for (int r = 0; r < 3; r++) {
            touch(m, NP, 2, r + 20); /* half the pages: copies of pages shared with the parent */
            sh[r] = (unsigned char)(0x40 + r);
        }
        printf("child %08x %08x\n", sum(a, n), sum(m, n));
        fflush(stdout);
        _exit(0);
    }
    for (int r = 0; r < 3; r++) touch(m + PG, NP - 1, 3, r + 30);
    int st;
    waitpid(c, &st, 0);
    printf("parent %08x %08x shared %02x%02x%02x status %d\n", sum(a, n), sum(m, n), sh[0], sh[1], sh[2], st);

    mprotect(m, n, PROT_READ);
    getppid();
    printf("read-only %08x\n", sum(m, n));
    mprotect(m, n, PROT_READ | PROT_WRITE);
    touch(m, NP, 5, 40);
    unsigned char *a2 = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *m2 = mremap(m, n, 2 * n, MREMAP_MAYMOVE);
    if (m2 == MAP_FAILED || a2 == MAP_FAILED) return 2;
    touch(m2, 2 * NP, 3, 50);
    printf("moved %d %08x\n", m2 != m, sum(m2, 2 * n));
    munmap(m2 + 8 * PG, 8 * PG);
    touch(m2, 8, 1, 60);
    touch(m2 + 16 * PG, 2 * NP - 16, 1, 61);
    printf("unmapped %08x %08x\n", sum(m2, 8 * PG), sum(m2 + 16 * PG, (2 * NP - 16) * PG));

    c = fork(); /* a child that exits at once: the parent's next writes copy pages it shared */
    if (c == 0) _exit(3);
    waitpid(c, &st, 0);
    touch(a, NP, 1, 70);
    printf("end %08x status %d\n", sum(a, n), WEXITSTATUS(st));
    return 0;
}
