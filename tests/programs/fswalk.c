/* Guest workload for the corrupt-image fuzzer: touch every kind of file-system metadata in one
 * cheap static process. Walks the tree from / (lstat, readdir, read, readlink, stat through
 * links), then changes what it found (append, overwrite, truncate, rename, unlink, rmdir of the
 * emptied directories) and makes a new tree in /tmp (files big enough for indirect blocks).
 * Files are also mapped and touched page by page (a page that cannot be read is SIGBUS, caught).
 * Every failure is counted by errno, never fatal: it prints "errors=N eio=N sigbus=N", exits 0.
 * Bounded: at most MAX_ENTRIES entries, MAX_DEPTH levels, READ_MAX bytes read per file.
 * `fswalk mmap PATH` only maps PATH and touches its pages. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ENTRIES 4000
#define MAX_DEPTH 24
#define READ_MAX (64 * 1024)
#define MAX_VICTIMS 48

static long entries, errors, eio, sigbus;
static sigjmp_buf on_bus;
static char victims[MAX_VICTIMS][512];
static int nvictims;
static char dirs[MAX_VICTIMS][512];
static int ndirs;
static char buf[READ_MAX];

#define fail() fail_at(__LINE__)

static void fail_at(int line)
{
    fprintf(stderr, "fswalk.c:%d: %s\n", line, strerror(errno));
    errors++;
    if (errno == EIO || errno == EUCLEAN) eio++;
}

#define TRY(expr) do { if ((expr) < 0) fail(); } while (0)

static void bus(int sig)
{
    (void)sig;
    siglongjmp(on_bus, 1);
}

/* Map up to READ_MAX bytes of an open file and read one byte per page. */
static void touch_pages(int fd, off_t size)
{
    size_t len = size < READ_MAX ? (size_t)size : READ_MAX;
    if (!len) return;
    volatile char *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { fail(); return; }
    volatile long sum = 0;
    if (sigsetjmp(on_bus, 1)) sigbus++;
    else for (size_t off = 0; off < len; off += 4096) sum += m[off];
    munmap((void *)m, len);
}

static void walk(const char *path, int depth, dev_t dev)
{
    DIR *d = opendir(path);
    if (!d) { fail(); return; }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && entries < MAX_ENTRIES) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        entries++;
        char p[512];
        if (snprintf(p, sizeof p, "%s/%s", strcmp(path, "/") ? path : "", e->d_name) >= (int)sizeof p) continue;
        struct stat st;
        if (lstat(p, &st) < 0) { fail(); continue; }
        if (st.st_dev != dev) continue;  /* /dev: not the disk */
        if (S_ISDIR(st.st_mode)) {
            char cwd[512];
            if (chdir(p) == 0 && !getcwd(cwd, sizeof cwd)) fail();  /* walks the '..' chain */
            if (depth < MAX_DEPTH) walk(p, depth + 1, dev);
            if (ndirs < MAX_VICTIMS && entries % 3 == 0) strcpy(dirs[ndirs++], p);
        } else if (S_ISLNK(st.st_mode)) {
            char t[512];
            TRY(readlink(p, t, sizeof t));
            struct stat st2;
            stat(p, &st2);  /* a dangling link is no error worth counting */
        } else if (S_ISREG(st.st_mode)) {
            int fd = open(p, O_RDONLY);
            if (fd < 0) { fail(); continue; }
            ssize_t n;
            long total = 0;
            while (total < READ_MAX && (n = read(fd, buf, READ_MAX - total)) > 0) total += n;
            if (n < 0) fail();
            if (st.st_size > READ_MAX) TRY(pread(fd, buf, 4096, st.st_size - 4096));
            touch_pages(fd, st.st_size);
            close(fd);
            if (nvictims < MAX_VICTIMS && entries % 5 == 0 && strncmp(p, "/bin", 4) && strncmp(p, "/lib", 4)
                && strncmp(p, "/usr", 4))
                strcpy(victims[nvictims++], p);
        }
    }
    closedir(d);
}

static void make_tree(void)
{
    static char big[80 * 1024];
    memset(big, 'z', sizeof big);
    TRY(mkdir("/tmp/fz", 0755));
    TRY(mkdir("/tmp/fz/d", 0755));
    int fd = open("/tmp/fz/d/big", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0) { fail(); return; }
    if (write(fd, big, sizeof big) != (ssize_t)sizeof big) fail();
    if (pread(fd, buf, 4096, sizeof big - 4096) != 4096) fail();
    else if (memcmp(buf, big, 4096)) printf("readback mismatch\n");
    TRY(ftruncate(fd, 10000));
    close(fd);
    TRY(symlink("/tmp/fz/d/big", "/tmp/fz/ln"));
    TRY(link("/tmp/fz/d/big", "/tmp/fz/hard"));
    TRY(rename("/tmp/fz/hard", "/tmp/fz/d/moved"));
    TRY(rename("/tmp/fz/d", "/tmp/fz/e"));
    TRY(unlink("/tmp/fz/e/big"));
    TRY(unlink("/tmp/fz/e/moved"));
    TRY(unlink("/tmp/fz/ln"));
    TRY(rmdir("/tmp/fz/e"));
    TRY(rmdir("/tmp/fz"));
}

static void change_victims(void)
{
    for (int i = 0; i < nvictims; i++) {
        const char *p = victims[i];
        int fd = open(p, O_RDWR | O_APPEND);
        if (fd < 0) { fail(); continue; }
        TRY(write(fd, "appended\n", 9));
        TRY(pwrite(fd, "X", 1, 0));
        struct stat st;
        if (fstat(fd, &st) == 0) TRY(ftruncate(fd, st.st_size / 2));
        close(fd);
        char q[520];
        snprintf(q, sizeof q, "%s.r", p);
        if (i % 2) { TRY(rename(p, q)); TRY(unlink(q)); }
        else TRY(unlink(p));
    }
    for (int i = 0; i < ndirs; i++) {  /* children were listed before their parents */
        char q[520];
        snprintf(q, sizeof q, "%s.r", dirs[i]);
        if (rename(dirs[i], q) < 0) { fail(); continue; }
        if (rmdir(q) < 0 && errno != ENOTEMPTY && errno != EEXIST) fail();
    }
}

int main(int argc, char **argv)
{
    signal(SIGBUS, bus);
    if (argc == 3 && !strcmp(argv[1], "mmap")) {
        int fd = open(argv[2], O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) { perror(argv[2]); return 1; }
        touch_pages(fd, st.st_size);
        printf("sigbus=%ld\n", sigbus);
        return 0;
    }
    struct stat root;
    if (stat("/", &root) < 0) { fail(); return 0; }
    walk("/", 0, root.st_dev);
    make_tree();
    change_victims();
    make_tree();
    sync();
    printf("entries=%ld errors=%ld eio=%ld sigbus=%ld\n", entries, errors, eio, sigbus);
    return 0;
}
