/* Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS) across fork for pages nobody touched before
 * the fork (tests/guest/test_shared_anon.py, tests/campaigns/test_checkpoint.py): a child writes
 * such pages, some after an mprotect split its mapping, some after a munmap of the tail and an
 * mremap that grows it back in place (the object kept the pages), some after an mremap that
 * moved it, some through a second child of the child; then it exits (the pages are only the
 * object's). The parent, whose mapping is one VMA untouched since the fork, waits and prints
 * what it sees, a syscall between pages (a checkpoint at each with tcp = 0). A third child
 * touches a page past the object's end through an mremap-grown mapping: SIGBUS, as on Linux.
 * `shanon meminfo` also prints the parent's mapping as /proc/self/maps shows it, its RssShmem and
 * how much /proc/meminfo's Shmem grew (not compared natively). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define NP 16

static long kb_of(const char *file, const char *format)
{
    FILE *f = fopen(file, "r");
    char line[128];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, format, &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

static long shmem_kb(void) { return kb_of("/proc/meminfo", "Shmem: %ld kB"); }

static void put(unsigned char *p, int page, const char *what)
{
    snprintf((char *)p + (size_t)page * PG, 64, "page %d: %s", page, what);
    p[(size_t)page * PG + PG - 1] = (unsigned char)(page * 13 + 1);
    getppid(); /* a syscall: a checkpoint between the writes */
}

static int waitfor(pid_t c)
{
    int st = 0;
    if (waitpid(c, &st, 0) != c) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int child(unsigned char *sh, unsigned char *spot)
{
    put(sh, 1, "child, after the fork");
    put(sh, 3, "child, after the fork");
    /* mprotect splits the mapping in three; each piece keeps its offset in the object */
    if (mprotect(sh + 4 * PG, 2 * PG, PROT_READ)) return 2;
    put(sh, 6, "child, right of an mprotect split");
    if (mprotect(sh + 4 * PG, 2 * PG, PROT_READ | PROT_WRITE)) return 3;
    put(sh, 5, "child, middle of the split, writable again");
    /* the tail unmapped: its pages stay the object's; growing the piece back in place maps them */
    put(sh, 14, "child, before the tail was unmapped");
    if (munmap(sh + 12 * PG, 4 * PG)) return 4;
    if (mremap(sh + 6 * PG, 6 * PG, 10 * PG, 0) != sh + 6 * PG) return 5;
    put(sh, 15, "child, in the tail grown back by mremap");
    /* moved: the same object pages at another address */
    unsigned char *mv = mremap(sh + 6 * PG, 10 * PG, 10 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, spot);
    if (mv != spot) return 6;
    put(mv - 6 * PG, 8, "child, through the mapping mremap moved");
    pid_t g = fork();
    if (g == 0) {
        put(mv - 6 * PG, 9, "grandchild, through the moved mapping");
        put(sh, 2, "grandchild, left of the split");
        _exit(0);
    }
    if (waitfor(g) != 0) return 7;
    put(mv - 6 * PG, 10, "child, after its child exited");
    return 0;
}

int main(int argc, char **argv)
{
    int meminfo = argc > 1 && strcmp(argv[1], "meminfo") == 0;
    long kb0 = meminfo ? shmem_kb() : 0;
    unsigned char *sh = mmap(0, NP * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    /* a reserved spot for the move (PROT_NONE), away from the mapping */
    unsigned char *spot = mmap(0, 32 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || spot == MAP_FAILED) return 1;
    spot += 16 * PG;
    put(sh, 0, "parent, before the fork");
    fflush(stdout);

    pid_t c = fork();
    if (c == 0) _exit(child(sh, spot));
    int status = waitfor(c);
    printf("child status %d\n", status);
    put(sh, 11, "parent, after the child exited");
    for (int i = 0; i < NP; i++) {
        unsigned char *p = sh + (size_t)i * PG;
        printf("%2d [%s] %d\n", i, p[0] ? (char *)p : "-", p[PG - 1]);
        getppid();
    }

    /* an mremap-grown mapping past the object's end: SIGBUS on the page past it. Before, the
     * child writes page 12 twice, a syscall between, the second time just before it dies (no
     * syscall: what it wrote then is only in the object, whose PTE went with the child). */
    fflush(stdout);
    c = fork();
    if (c == 0) {
        /* split and made whole again (Linux merges the pieces back): mremap moves the lot */
        if (mprotect(sh + PG, PG, PROT_READ) || mprotect(sh + PG, PG, PROT_READ | PROT_WRITE)) _exit(8);
        unsigned char *g = mremap(sh, NP * PG, (NP + 2) * PG, MREMAP_MAYMOVE);
        if (g == MAP_FAILED) _exit(9);
        printf("grown: last page [%s]\n", (char *)g + (NP - 1) * PG);
        fflush(stdout);
        put(g, 12, "third child, first write");
        snprintf((char *)g + 12 * PG, 64, "page 12: third child, written again just before it died");
        g[NP * PG] = 1;
        _exit(0);
    }
    status = waitfor(c);
    getppid();
    printf("past the end: %s\n", status == 128 + SIGBUS ? "SIGBUS" : status == 128 + SIGSEGV ? "SIGSEGV" : "no signal");
    for (int i = 0; i < NP; i++) {
        unsigned char *p = sh + (size_t)i * PG;
        unsigned h = 2166136261u;
        for (int j = 0; j < PG; j++) h = (h ^ p[j]) * 16777619u;
        printf("%2d %08x [%s]\n", i, h, p[0] ? (char *)p : "-");
        getppid();
    }
    if (meminfo) {
        FILE *f = fopen("/proc/self/maps", "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, "/dev/zero")) fputs(strchr(line, ' ') + 1, stdout); /* (not the address) */
        if (f) fclose(f);
        printf("RssShmem %ld kB, Shmem grew by %ld kB\n", kb_of("/proc/self/status", "RssShmem: %ld kB"),
               shmem_kb() - kb0);
    }
    return munmap(sh, NP * PG);
}
