/* fsdiff: runs scripts of file-system syscalls and prints every call with its result, so that
 * the guest kernel's answers can be compared line by line with Linux's (tests/guest/test_fsdiff.py).
 *
 * Usage: fsdiff BATCH...   A batch file holds scripts separated by lines "===". Script N runs in
 * a fresh directory sN of the current directory; afterwards its descriptors are closed, its
 * mappings unmapped, its tree dumped (names sorted; type, mode, size, links, a label per inode
 * shared by hard links, content hash or link target) and removed.
 *
 * One call per line, tokens separated by spaces; S names a descriptor slot (0-9), M a mapping
 * slot, N/OFF/LEN are decimal, MODE octal, C one data character:
 *   open S PATH FLAGS [MODE]      FLAGS: comma list of r w rw creat excl trunc append directory
 *   openat S DS PATH FLAGS [MODE]        nofollow cloexec (DS: a slot or "cwd")
 *   creat S PATH MODE | close S | fsync S | fstat S | getdents S
 *   read S N | write S N C | pread S N OFF | pwrite S N C OFF
 *   lseek S OFF set|cur|end|data|hole | ftruncate S LEN | truncate PATH LEN
 *   rename OLD NEW | renameat2 OLD NEW 0|noreplace|exchange|noreplace,exchange
 *   link OLD NEW | unlink PATH | symlink TARGET PATH | readlink PATH
 *   mkdir PATH MODE | rmdir PATH | chmod PATH MODE | fchmod S MODE
 *   utimens PATH ATIME MTIME 0|nofollow     (a time: seconds, now or omit)
 *   stat PATH | lstat PATH
 *   dup S NS | dup3 S NS 0|cloexec          (dup3 onto NS's descriptor, or onto 20+NS)
 *   fcntl S getfl|getfd | fcntl S setfl FLAGS | fcntl S setfd 0|1
 *   setlk S rd|wr|un START LEN | getlk S rd|wr|un START LEN
 *   mmap M S LEN OFF private|shared | mread M OFF N | mwrite M OFF N C | munmap M
 *
 * Output: the line, then " = RET" or " = -1 ERRNO", then what the call returned (data as runs
 * "a*3 \0*4093", stat fields). Times are printed only when a script set them (below 10^9);
 * inode numbers, st_blocks and st_dev never. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NSLOTS 10
#define MAXTOK 8

static int fds[NSLOTS];
static struct { char *addr; size_t len; } maps[NSLOTS];
static sigjmp_buf fault_jmp;
static char iobuf[1 << 20];

static void on_fault(int sig) { siglongjmp(fault_jmp, sig); }

static void result(long r) {
    if (r < 0) printf(" = -1 %s", strerrorname_np(errno));
    else printf(" = %ld", r);
}

/* Bytes as runs: "a*3 \0*4093"; printable characters as themselves. */
static void runs(const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] == p[i]) j++;
        if (p[i] >= 0x21 && p[i] < 0x7f) printf(" %c*%zu", p[i], j - i);
        else printf(" \\x%02x*%zu", p[i], j - i);
        i = j;
    }
}

static int parse_flags(const char *s) {
    static const struct { const char *name; int bit; } names[] = {
        {"r", O_RDONLY}, {"w", O_WRONLY}, {"rw", O_RDWR}, {"creat", O_CREAT}, {"excl", O_EXCL},
        {"trunc", O_TRUNC}, {"append", O_APPEND}, {"directory", O_DIRECTORY},
        {"nofollow", O_NOFOLLOW}, {"cloexec", O_CLOEXEC}, {"nonblock", O_NONBLOCK}, {"0", 0},
    };
    int flags = 0;
    char buf[256], *save, *t;
    snprintf(buf, sizeof buf, "%s", s);
    for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t i;
        for (i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!strcmp(t, names[i].name)) { flags |= names[i].bit; break; }
        if (i == sizeof names / sizeof names[0]) { printf("bad flag %s\n", t); exit(2); }
    }
    return flags;
}

static const char *type_name(mode_t m) {
    return S_ISREG(m) ? "reg" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "lnk" : S_ISFIFO(m) ? "fifo" : "other";
}

static void print_time(const char *what, time_t t) {
    if (t < 1000000000) printf(" %s=%ld", what, (long)t);
}

static void print_stat(const struct stat *st) {
    printf(" %s %04o size=%lld nlink=%ld uid=%d gid=%d", type_name(st->st_mode), st->st_mode & 07777,
           (long long)st->st_size, (long)st->st_nlink, st->st_uid, st->st_gid);
    print_time("atime", st->st_atime);
    print_time("mtime", st->st_mtime);
}

static int slot(const char *s) {
    int i = atoi(s);
    if (i < 0 || i >= NSLOTS) { printf("bad slot %s\n", s); exit(2); }
    return i;
}

static int fd_of(const char *s) { return !strcmp(s, "cwd") ? AT_FDCWD : fds[slot(s)]; }

static struct timespec parse_time(const char *s) {
    struct timespec t = {0, 0};
    if (!strcmp(s, "now")) t.tv_nsec = UTIME_NOW;
    else if (!strcmp(s, "omit")) t.tv_nsec = UTIME_OMIT;
    else t.tv_sec = atol(s);
    return t;
}

static int lock_type(const char *s) { return !strcmp(s, "rd") ? F_RDLCK : !strcmp(s, "wr") ? F_WRLCK : F_UNLCK; }

static void set_fd(int s, long r) {
    if (r >= 0) {
        if (fds[s] >= 0) close(fds[s]);  /* a slot reused without close: drop the old one */
        fds[s] = (int)r;
    }
}

static void getdents_all(int fd) {
    char names[256][260];
    int n = 0;
    long total = 0, r;
    while ((r = syscall(SYS_getdents64, fd, iobuf, sizeof iobuf)) > 0) {
        total += r;
        for (long off = 0; off < r;) {
            struct dirent64 *d = (struct dirent64 *)(iobuf + off);
            if (n < 256) snprintf(names[n++], sizeof names[0], "%s:%d", d->d_name, d->d_type);
            off += d->d_reclen;
        }
    }
    result(r < 0 ? r : n);
    qsort(names, n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < n; i++) printf(" %s", names[i]);
}

static void run_line(char *line) {
    char *tok[MAXTOK] = {0}, *save;
    int nt = 0;
    for (char *t = strtok_r(line, " ", &save); t && nt < MAXTOK; t = strtok_r(NULL, " ", &save)) tok[nt++] = t;
    if (!nt) return;
    for (int i = 0; i < nt; i++) printf("%s%s", i ? " " : "", tok[i]);
    const char *op = tok[0];
    long r;
    struct stat st;
    errno = 0;
#define A(i) (tok[i] ? tok[i] : "0")
#define N(i) atol(A(i))
#define MODE(i) ((mode_t)strtol(tok[i] ? tok[i] : "644", NULL, 8))
    if (!strcmp(op, "open")) {
        r = open(A(2), parse_flags(A(3)), MODE(4));
        result(r);
        set_fd(slot(A(1)), r);
    } else if (!strcmp(op, "openat")) {
        r = openat(fd_of(A(2)), A(3), parse_flags(A(4)), MODE(5));
        result(r);
        set_fd(slot(A(1)), r);
    } else if (!strcmp(op, "creat")) {
        r = creat(A(2), MODE(3));
        result(r);
        set_fd(slot(A(1)), r);
    } else if (!strcmp(op, "close")) {
        int s = slot(A(1));
        result(close(fds[s]));
        fds[s] = -1;
    } else if (!strcmp(op, "read") || !strcmp(op, "pread")) {
        size_t n = (size_t)N(2) > sizeof iobuf ? sizeof iobuf : (size_t)N(2);
        r = op[0] == 'p' ? pread(fds[slot(A(1))], iobuf, n, N(3)) : read(fds[slot(A(1))], iobuf, n);
        result(r);
        if (r > 0) runs((unsigned char *)iobuf, r);
    } else if (!strcmp(op, "write") || !strcmp(op, "pwrite")) {
        size_t n = (size_t)N(2) > sizeof iobuf ? sizeof iobuf : (size_t)N(2);
        memset(iobuf, A(3)[0], n);
        r = op[0] == 'p' ? pwrite(fds[slot(A(1))], iobuf, n, N(4)) : write(fds[slot(A(1))], iobuf, n);
        result(r);
    } else if (!strcmp(op, "lseek")) {
        static const char *wh[] = {"set", "cur", "end", "data", "hole"};
        int w = 0;
        while (w < 5 && strcmp(wh[w], A(3))) w++;
        result(lseek(fds[slot(A(1))], N(2), w));
    } else if (!strcmp(op, "ftruncate")) {
        result(ftruncate(fds[slot(A(1))], N(2)));
    } else if (!strcmp(op, "truncate")) {
        result(truncate(A(1), N(2)));
    } else if (!strcmp(op, "fsync")) {
        result(fsync(fds[slot(A(1))]));
    } else if (!strcmp(op, "rename")) {
        result(rename(A(1), A(2)));
    } else if (!strcmp(op, "renameat2")) {
        unsigned flags = (strstr(A(3), "noreplace") ? RENAME_NOREPLACE : 0) | (strstr(A(3), "exchange") ? RENAME_EXCHANGE : 0);
        result(renameat2(AT_FDCWD, A(1), AT_FDCWD, A(2), flags));
    } else if (!strcmp(op, "link")) {
        result(link(A(1), A(2)));
    } else if (!strcmp(op, "unlink")) {
        result(unlink(A(1)));
    } else if (!strcmp(op, "symlink")) {
        result(symlink(A(1), A(2)));
    } else if (!strcmp(op, "readlink")) {
        char buf[4096];
        r = readlink(A(1), buf, sizeof buf);
        result(r);
        if (r >= 0) printf(" %.*s", (int)r, buf);
    } else if (!strcmp(op, "mkdir")) {
        result(mkdir(A(1), MODE(2)));
    } else if (!strcmp(op, "rmdir")) {
        result(rmdir(A(1)));
    } else if (!strcmp(op, "chmod")) {
        result(chmod(A(1), MODE(2)));
    } else if (!strcmp(op, "fchmod")) {
        result(fchmod(fds[slot(A(1))], MODE(2)));
    } else if (!strcmp(op, "utimens")) {
        struct timespec ts[2] = {parse_time(A(2)), parse_time(A(3))};
        result(utimensat(AT_FDCWD, A(1), ts, strcmp(A(4), "nofollow") ? 0 : AT_SYMLINK_NOFOLLOW));
    } else if (!strcmp(op, "stat") || !strcmp(op, "lstat") || !strcmp(op, "fstat")) {
        r = op[0] == 's' ? stat(A(1), &st) : op[0] == 'l' ? lstat(A(1), &st) : fstat(fds[slot(A(1))], &st);
        result(r);
        if (r == 0) print_stat(&st);
    } else if (!strcmp(op, "getdents")) {
        getdents_all(fds[slot(A(1))]);
    } else if (!strcmp(op, "dup")) {
        r = dup(fds[slot(A(1))]);
        result(r);
        set_fd(slot(A(2)), r);
    } else if (!strcmp(op, "dup3")) {
        int s = slot(A(2)), target = fds[s] >= 0 ? fds[s] : 20 + s;
        r = dup3(fds[slot(A(1))], target, strcmp(A(3), "cloexec") ? 0 : O_CLOEXEC);
        result(r);
        if (r >= 0) fds[s] = (int)r;
    } else if (!strcmp(op, "fcntl")) {
        int fd = fds[slot(A(1))];
        const char *cmd = A(2);
        if (!strcmp(cmd, "getfl")) {
            r = fcntl(fd, F_GETFL);
            if (r >= 0) printf(" = 0%lo", r); else result(r);
        } else if (!strcmp(cmd, "getfd")) result(fcntl(fd, F_GETFD));
        else if (!strcmp(cmd, "setfl")) result(fcntl(fd, F_SETFL, parse_flags(A(3))));
        else result(fcntl(fd, F_SETFD, (int)N(3)));
    } else if (!strcmp(op, "setlk") || !strcmp(op, "getlk")) {
        struct flock fl = {.l_type = lock_type(A(2)), .l_whence = SEEK_SET, .l_start = N(3), .l_len = N(4)};
        r = fcntl(fds[slot(A(1))], op[0] == 's' ? F_SETLK : F_GETLK, &fl);
        result(r);
        if (r == 0 && op[0] == 'g')
            printf(" type=%s", fl.l_type == F_UNLCK ? "un" : fl.l_type == F_RDLCK ? "rd" : "wr");
    } else if (!strcmp(op, "mmap")) {
        int m = slot(A(1)), shared = !strcmp(A(5), "shared");
        if (maps[m].addr) munmap(maps[m].addr, maps[m].len);
        maps[m].addr = NULL;
        void *a = mmap(NULL, N(3), shared ? PROT_READ : PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE,
                       fds[slot(A(2))], N(4));
        result(a == MAP_FAILED ? -1 : 0);
        if (a != MAP_FAILED) { maps[m].addr = a; maps[m].len = N(3); }
    } else if (!strcmp(op, "mread") || !strcmp(op, "mwrite")) {
        int m = slot(A(1));
        size_t off = N(2), n = N(3);
        if (!maps[m].addr || off + n > maps[m].len) {
            printf(" = no mapping");
        } else {
            int sig = sigsetjmp(fault_jmp, 1);
            if (sig) {
                printf(" = %s", sigabbrev_np(sig));
            } else if (op[1] == 'r') {
                memcpy(iobuf, maps[m].addr + off, n);  /* may fault: print nothing before */
                printf(" = %zu", n);
                runs((unsigned char *)iobuf, n);
            } else {
                memset(maps[m].addr + off, A(4)[0], n);
                printf(" = %zu", n);
            }
        }
    } else if (!strcmp(op, "munmap")) {
        int m = slot(A(1));
        result(maps[m].addr ? munmap(maps[m].addr, maps[m].len) : -1);
        maps[m].addr = NULL;
    } else {
        printf(" = unknown op");
    }
    printf("\n");
    fflush(stdout);
}

/* ---- the tree at the end of a script ---- */

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static ino_t seen[4096];
static int nseen;

static int label(ino_t ino) {
    for (int i = 0; i < nseen; i++)
        if (seen[i] == ino) return i;
    seen[nseen] = ino;
    return nseen < 4095 ? nseen++ : nseen;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }
static int not_dots(const struct dirent *d) { return strcmp(d->d_name, ".") && strcmp(d->d_name, ".."); }

static void dump(const char *dir) {
    struct dirent **ents;
    int n = scandir(dir, &ents, not_dots, by_name);
    if (n < 0) { printf("tree %s: %s\n", dir, strerrorname_np(errno)); return; }
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
        if (lstat(path, &st)) { printf("tree %s: %s\n", path, strerrorname_np(errno)); continue; }
        printf("tree %s %s %04o size=%lld nlink=%ld inode=%d", path, type_name(st.st_mode), st.st_mode & 07777,
               (long long)st.st_size, (long)st.st_nlink, label(st.st_ino));
        print_time("atime", st.st_atime);
        print_time("mtime", st.st_mtime);
        if (S_ISREG(st.st_mode)) {
            int fd = open(path, O_RDONLY);
            uint64_t h = 14695981039346656037ULL;
            long r;
            while (fd >= 0 && (r = read(fd, iobuf, sizeof iobuf)) > 0) h = fnv(h, (unsigned char *)iobuf, r);
            if (fd >= 0) close(fd);
            printf(" fnv=%016llx", (unsigned long long)h);
        } else if (S_ISLNK(st.st_mode)) {
            char buf[4096];
            long r = readlink(path, buf, sizeof buf);
            printf(" -> %.*s", (int)(r < 0 ? 0 : r), buf);
        }
        printf("\n");
        if (S_ISDIR(st.st_mode)) dump(path);
        free(ents[i]);
    }
    free(ents);
}

static void remove_tree(const char *dir) {
    struct dirent **ents;
    int n = scandir(dir, &ents, not_dots, by_name);
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
        if (!lstat(path, &st) && S_ISDIR(st.st_mode)) {
            chmod(path, 0700);
            remove_tree(path);
            if (rmdir(path)) printf("cleanup rmdir %s: %s\n", path, strerrorname_np(errno));
        } else if (unlink(path)) {
            printf("cleanup unlink %s: %s\n", path, strerrorname_np(errno));
        }
        free(ents[i]);
    }
    if (n >= 0) free(ents);
}

static void finish_script(int n) {
    char dir[32];
    for (int i = 0; i < NSLOTS; i++) {
        if (fds[i] >= 0) close(fds[i]);
        fds[i] = -1;
        if (maps[i].addr) munmap(maps[i].addr, maps[i].len);
        maps[i].addr = NULL;
    }
    for (int fd = 3; fd < 64; fd++) close(fd);  /* dup3 targets */
    if (chdir("..")) { printf("chdir ..: %s\n", strerrorname_np(errno)); exit(1); }
    snprintf(dir, sizeof dir, "s%d", n);
    nseen = 0;
    dump(dir);
    remove_tree(dir);
    if (rmdir(dir)) printf("cleanup rmdir %s: %s\n", dir, strerrorname_np(errno));
}

static void start_script(int n) {
    char dir[32];
    snprintf(dir, sizeof dir, "s%d", n);
    printf("=== script %d\n", n);
    umask(022);
    if (mkdir(dir, 0755) || chdir(dir)) { printf("setup %s: %s\n", dir, strerrorname_np(errno)); exit(1); }
}

int main(int argc, char **argv) {
    int n = 0;
    struct sigaction sa = {.sa_handler = on_fault};
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    for (int i = 0; i < NSLOTS; i++) fds[i] = -1;
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    for (int a = 1; a < argc; a++) {
        /* Read the whole batch first: no descriptor of ours may be open while a script runs. */
        FILE *f = fopen(argv[a], "r");
        if (!f) { perror(argv[a]); return 1; }
        size_t cap = 1 << 16, len = 0, got;
        char *text = malloc(cap + 1);
        while ((got = fread(text + len, 1, cap - len, f)) > 0)
            if ((len += got) == cap) text = realloc(text, (cap *= 2) + 1);
        fclose(f);
        text[len] = 0;
        start_script(n);
        for (char *line = text, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            if (!strcmp(line, "===")) {
                finish_script(n++);
                start_script(n);
            } else {
                run_line(line);
            }
        }
        free(text);
        finish_script(n++);
    }
    return 0;
}
