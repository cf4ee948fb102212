/* File locks between a parent and its child: POSIX record locks (conflicts seen through
 * F_GETLK, splitting and merging, release when any descriptor of the file is closed, a blocking
 * F_SETLKW woken by the unlock, EDEADLK), OFD locks and flock (conversion, LOCK_NB, EINVAL
 * before EBADF). Prints one line per check; the test compares the output with the native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

static int fd;
static pid_t parent;

static void say(const char *what, int r) {
    printf("%s: %d %s\n", what, r, r < 0 ? strerror(errno) : "");
    fflush(stdout);
    errno = 0;
}

static int setlk(int f, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(f, cmd, &fl);
}

static void getlk(const char *what, int f, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    int r = fcntl(f, cmd, &fl);
    printf("%s: %d type=%d start=%ld len=%ld pid=%s\n", what, r, fl.l_type, (long)fl.l_start, (long)fl.l_len,
           fl.l_type == F_UNLCK ? "-" : fl.l_pid == parent ? "parent" : fl.l_pid == -1 ? "-1" : "other");
    fflush(stdout);
}

static void wait_byte(int p) { char c; if (read(p, &c, 1) != 1) exit(3); }
static void send_byte(int p) { if (write(p, "x", 1) != 1) exit(3); }

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/tmp/locks.dat";
    parent = getpid();
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (write(fd, "0123456789abcdefghij", 20) != 20) return 2;
    int to_child[2], to_parent[2];
    if (pipe(to_child) || pipe(to_parent)) return 2;

    say("wrlck 0-9", setlk(fd, F_SETLK, F_WRLCK, 0, 10));
    say("rdlck 20-", setlk(fd, F_SETLK, F_RDLCK, 20, 0));
    say("unlock 4-5 (split)", setlk(fd, F_SETLK, F_UNLCK, 4, 2));
    say("wrlck 10-19 (merges with 6-9)", setlk(fd, F_SETLK, F_WRLCK, 10, 10));
    say("bad type", setlk(fd, F_SETLK, 7, 0, 1));
    say("negative start", setlk(fd, F_SETLK, F_RDLCK, -5, 1));

    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open(path, O_RDWR);
        getlk("child getlk 0", cfd, F_GETLK, F_RDLCK, 0, 1);
        getlk("child getlk 4-5", cfd, F_GETLK, F_WRLCK, 4, 2);
        getlk("child getlk 6", cfd, F_GETLK, F_RDLCK, 6, 1);
        getlk("child getlk 25 read", cfd, F_GETLK, F_RDLCK, 25, 1);
        getlk("child getlk 25 write", cfd, F_GETLK, F_WRLCK, 25, 1);
        say("child rdlck 4-5", setlk(cfd, F_SETLK, F_RDLCK, 4, 2));
        say("child wrlck 0 nowait", setlk(cfd, F_SETLK, F_WRLCK, 0, 1));
        send_byte(to_parent[1]);
        say("child wrlck 0 wait", setlk(cfd, F_SETLKW, F_WRLCK, 0, 1));  /* parent closes a dup */
        /* Deadlock: the child holds 0 and 100, the parent waits for 100 while holding 200. */
        say("child wrlck 100", setlk(cfd, F_SETLK, F_WRLCK, 100, 1));
        send_byte(to_parent[1]);
        wait_byte(to_child[0]);
        sleep(1);  /* natively, let the parent block on 100 first (emu runs it first) */
        say("child wrlck 200 wait (deadlock)", setlk(cfd, F_SETLKW, F_WRLCK, 200, 1));
        close(cfd);  /* releases the child's locks: the parent's wait ends */
        _exit(0);
    }
    wait_byte(to_parent[0]);
    int dupfd = dup(fd);
    printf("parent closes a dup (drops all its locks)\n");
    fflush(stdout);
    close(dupfd);
    wait_byte(to_parent[0]);
    say("parent wrlck 200", setlk(fd, F_SETLK, F_WRLCK, 200, 1));
    send_byte(to_child[1]);
    say("parent wrlck 100 wait", setlk(fd, F_SETLKW, F_WRLCK, 100, 1));
    int st;
    waitpid(pid, &st, 0);
    printf("child status %d\n", st);

    /* OFD locks belong to the open file description. */
    int o1 = open(path, O_RDWR), o2 = open(path, O_RDWR);
    say("ofd wrlck o1", setlk(o1, F_OFD_SETLK, F_WRLCK, 0, 10));
    say("ofd wrlck o2 conflicts", setlk(o2, F_OFD_SETLK, F_WRLCK, 5, 1));
    getlk("ofd getlk o2", o2, F_OFD_GETLK, F_WRLCK, 5, 1);
    getlk("posix getlk sees ofd", fd, F_GETLK, F_WRLCK, 5, 1);
    struct flock bad = {.l_type = F_WRLCK, .l_pid = 1};
    say("ofd with l_pid", fcntl(o2, F_OFD_SETLK, &bad));
    close(o1);
    say("ofd after close o1", setlk(o2, F_OFD_SETLK, F_WRLCK, 5, 1));
    close(o2);

    /* flock: one lock per description, converted in place. */
    int f1 = open(path, O_RDONLY), f2 = open(path, O_RDONLY);
    say("flock sh f1", flock(f1, LOCK_SH));
    say("flock sh f2", flock(f2, LOCK_SH | LOCK_NB));
    say("flock ex f2 nb", flock(f2, LOCK_EX | LOCK_NB));
    say("flock un f2", flock(f2, LOCK_UN));
    say("flock ex f1 (convert)", flock(f1, LOCK_EX | LOCK_NB));
    say("flock sh f2 nb", flock(f2, LOCK_SH | LOCK_NB));
    int f3 = dup(f1);
    close(f1);
    say("flock held through dup", flock(f2, LOCK_SH | LOCK_NB));
    close(f3);
    say("flock after last close", flock(f2, LOCK_SH | LOCK_NB));
    say("flock bad op, bad fd", flock(9999, 77));
    say("flock bad fd", flock(9999, LOCK_SH));
    say("lockf F_TLOCK", lockf(fd, F_TLOCK, 0));
    say("lockf F_TEST", lockf(fd, F_TEST, 0));
    unlink(path);
    return 0;
}
