/* fallocate(2) on ext2, as Linux answers it: the argument checks of vfs_fallocate in their
 * order, then EOPNOTSUPP (ext2 has no fallocate operation); posix_fallocate(3) still works
 * through glibc's fallback of writing into every block. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void say(const char *what, int r) {
    printf("%s: %d %s\n", what, r, r < 0 ? strerrorname_np(errno) : "");
    errno = 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/tmp/falloc.dat";
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int ro = open(path, O_RDONLY);
    int p[2];
    if (pipe(p))
        return 2;
    int null = open("/dev/null", O_WRONLY);
    say("mode 0", fallocate(fd, 0, 0, 65536));
    say("keep size", fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 65536));
    say("punch hole", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096));
    say("punch without keep size", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096));
    say("collapse with keep size", fallocate(fd, FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE, 0, 4096));
    say("unknown mode bit", fallocate(fd, 0x100, 0, 4096));
    say("zero length", fallocate(fd, 0, 0, 0));
    say("negative offset", fallocate(fd, 0, -1, 10));
    say("read-only fd", fallocate(ro, 0, 0, 10));
    say("pipe", fallocate(p[1], 0, 0, 10));
    say("/dev/null", fallocate(null, 0, 0, 10));
    say("bad fd", fallocate(999, 0, 0, 10));
    int r = posix_fallocate(fd, 0, 100000);
    struct stat st;
    fstat(fd, &st);
    printf("posix_fallocate: %d size=%lld\n", r, (long long)st.st_size);
    unlink(path);
    return 0;
}
