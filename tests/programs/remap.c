/* mremap as Linux does it (tests/guest/test_remap.py, compared with a native run byte for
 * byte): a move keeps a mapping what it is. A private file mapping moved (and grown) still reads
 * the file where it was never touched, keeps its written pages and its offset (as
 * /proc/self/maps shows it); a private anonymous mapping moved in a child after fork keeps its
 * copy-on-write pages (the parent's stay its own); pieces of one mapping split by mprotect and
 * made whole again grow in place; MREMAP_DONTUNMAP leaves the old range mapped and empty (zeros,
 * the file again, the same shared pages); old_len 0 maps a shared mapping's pages a second
 * time. Errors: growing a range over two mappings, an unmapped address (EFAULT), bad flags (EINVAL), growing with
 * no room and no MREMAP_MAYMOVE (ENOMEM). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define PG 4096L
#define FILE_PAGES 8

static unsigned sum(const unsigned char *p, long n)
{
    unsigned s = 0;
    for (long i = 0; i < n; i++) s = s * 31 + p[i];
    return s;
}

static void pages(const char *what, const unsigned char *p, int n)
{
    printf("%s:", what);
    for (int i = 0; i < n; i++) printf(" %08x", sum(p + i * PG, PG));
    printf("\n");
}

static void err(const char *what, void *r)
{
    printf("%s: %s\n", what, r == MAP_FAILED ? strerror(errno) : "mapped");
}

/* The perms and offset /proc/self/maps gives the mapping at p (addresses differ natively). */
static void maps_line(const char *what, const void *p)
{
    char line[512], want[32];
    snprintf(want, sizeof want, "%lx-", (unsigned long)p);
    FILE *f = fopen("/proc/self/maps", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, want, strlen(want)) == 0) {
            char perms[8];
            unsigned long off;
            sscanf(line, "%*s %7s %lx", perms, &off);
            printf("%s: %s offset %lx%s\n", what, perms, off, strstr(line, "remap.data") ? " remap.data" : "");
        }
    }
    if (f) fclose(f);
}

/* A free spot of n pages (mapped then unmapped), for MREMAP_FIXED. */
static unsigned char *spot(long n)
{
    unsigned char *s = mmap(NULL, n * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(s, n * PG);
    return s;
}

static int file_mappings(void)
{
    int fd = open("/tmp/remap.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    unsigned char buf[PG];
    for (int i = 0; i < FILE_PAGES; i++) {
        memset(buf, 'a' + i, sizeof buf);
        snprintf((char *)buf, 32, "file page %d", i);
        if (write(fd, buf, sizeof buf) != sizeof buf) return 1;
    }
    /* pages 2-5 of the file, private; page 0 of the mapping written, page 1 read, 2-3 untouched */
    /* (with a mapping right after it, the wall: growing must move) */
    unsigned char *wall = mmap(NULL, 5 * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *m = mmap(wall, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 2 * PG);
    if (m != wall) return 2;
    wall += 4 * PG;
    strcpy((char *)m, "written before the move");
    volatile unsigned char c = m[PG];
    (void)c;
    err("grow without MAYMOVE", mremap(m, 4 * PG, 6 * PG, 0));
    unsigned char *moved = mremap(m, 4 * PG, 6 * PG, MREMAP_MAYMOVE);
    if (moved == MAP_FAILED) return 4;
    printf("moved: %s\n", moved == m ? "in place" : "elsewhere");
    pages("private file mapping, moved and grown", moved, 6);
    printf("page 0: %s; page 3: %.11s; page 5: %.11s\n", moved, moved + 3 * PG, moved + 5 * PG);
    maps_line("moved file mapping", moved);
    err("old address after the move", mremap(m, PG, PG, MREMAP_MAYMOVE));
    munmap(wall, PG);

    /* MREMAP_FIXED of a middle part: the offset goes with it */
    unsigned char *to = spot(2);
    unsigned char *mid = mremap(moved + 2 * PG, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    if (mid != to) return 5;
    maps_line("middle part moved", mid);
    pages("middle part", mid, 2);
    pages("what is left, left", moved, 2);
    pages("what is left, right", moved + 4 * PG, 2);

    /* DONTUNMAP: the old range maps the file again, the new one keeps the written page */
    unsigned char *f2 = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    strcpy((char *)f2, "private write");
    unsigned char *f3 = mremap(f2, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
    if (f3 == MAP_FAILED) return 6;
    printf("dontunmap file: old %s | new %s\n", f2, f3);
    munmap(moved, 6 * PG);
    munmap(mid, 2 * PG);
    munmap(f2, 2 * PG);
    munmap(f3, 2 * PG);
    close(fd);
    unlink("/tmp/remap.data");
    return 0;
}

static int after_fork(void)
{
    unsigned char *a = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 4; i++) snprintf((char *)a + i * PG, 32, "parent page %d", i);
    pid_t c = fork();
    if (c == 0) {
        unsigned char *b = mremap(a, 4 * PG, 8 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, spot(8));
        if (b == MAP_FAILED) _exit(1);
        strcpy((char *)b + PG, "child wrote page 1 after the move");
        strcpy((char *)b + 6 * PG, "child, grown part");
        printf("child: %s | %s | %s | %s\n", b, b + PG, b + 3 * PG, b + 6 * PG);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    printf("parent after the child's move: %s | %s | status %d\n", a, a + PG, WEXITSTATUS(st));
    munmap(a, 4 * PG);
    return 0;
}

static int pieces_and_errors(void)
{
    /* split by mprotect and made whole: one mapping again, grows in place */
    unsigned char *a = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(a + 4 * PG, 4 * PG);
    strcpy((char *)a + 3 * PG, "last page");
    mprotect(a + PG, PG, PROT_READ);
    mprotect(a + PG, PG, PROT_READ | PROT_WRITE);
    unsigned char *g = mremap(a, 4 * PG, 6 * PG, 0);
    printf("pieces grown in place: %s, %s\n", g == a ? "same address" : "moved", g == MAP_FAILED ? "" : (char *)g + 3 * PG);

    /* two pieces of different protection are two mappings: EFAULT to grow over both */
    mprotect(a + 2 * PG, PG, PROT_READ);
    err("grow over two mappings", mremap(a, 4 * PG, 8 * PG, MREMAP_MAYMOVE));
    /* (not here: Linux 6.17 moves several mappings with MREMAP_FIXED and no resize, and refuses
     * to shrink over two; Linux 6.1, which emu is, does the opposite) */
    err("unmapped address", mremap(spot(1), PG, 2 * PG, MREMAP_MAYMOVE));
    err("unaligned", mremap(a + 1, PG, 2 * PG, MREMAP_MAYMOVE));
    err("new_len 0", mremap(a, PG, 0, MREMAP_MAYMOVE));
    err("unknown flag", mremap(a, PG, PG, MREMAP_MAYMOVE | 64));
    err("FIXED without MAYMOVE", mremap(a, PG, PG, MREMAP_FIXED, spot(1)));
    err("DONTUNMAP, other length", mremap(a, PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0));
    err("DONTUNMAP without MAYMOVE", mremap(a, PG, PG, MREMAP_DONTUNMAP, 0));
    err("FIXED onto itself", mremap(a, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, a + PG));
    err("duplicate a private mapping", mremap(a, 0, PG, MREMAP_MAYMOVE));
    munmap(a, 6 * PG);

    /* DONTUNMAP of private anonymous memory: the old range reads zeros */
    unsigned char *d = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy((char *)d, "anonymous data");
    unsigned char *d2 = mremap(d, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
    int zero = 1;
    for (long i = 0; i < 2 * PG; i++) zero &= d[i] == 0;
    printf("dontunmap anon: old %s | new %s\n", zero ? "all zeros" : "not zeros", d2);
    strcpy((char *)d, "old range written again");
    printf("dontunmap anon, after: old %s | new %s\n", d, d2);

    /* shared anonymous: DONTUNMAP and old_len 0 both leave two views of the same pages */
    unsigned char *s = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    strcpy((char *)s, "shared");
    unsigned char *s2 = mremap(s, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
    unsigned char *s3 = mremap(s2, 0, 2 * PG, MREMAP_MAYMOVE);
    err("duplicate without MAYMOVE", mremap(s2, 0, 2 * PG, 0));
    if (s2 == MAP_FAILED || s3 == MAP_FAILED) return 1;
    strcpy((char *)s3 + PG, "through the duplicate");
    printf("shared: old %s | moved %s %s | duplicate %s\n", s, s2, s2 + PG, s3);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int r = file_mappings();
    if (r) { printf("file mappings failed: %d\n", r); return r; }
    if ((r = after_fork())) return 10 + r;
    if ((r = pieces_and_errors())) return 20 + r;
    return 0;
}
