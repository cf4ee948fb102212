/* Fragment memory, then ask for high-order kernel blocks: fill MiB of anonymous memory (each
 * page stamped with its index), unmap every other page (order-0 holes), then create pipes (a
 * 64 KiB ring each, an order-4 block) until pipe() fails or 500 exist; check the pages kept still
 * hold their stamps (compaction may have moved them). Prints the count and the first failure.
 * `fragpipe MIB shared`: a MAP_SHARED|MAP_ANONYMOUS page is touched after each private one (they
 * sit between the holes, compaction must move them too); after the pipes a child adds to each
 * shared page's stamp, and the parent checks it sees that. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long pages = (argc > 1 ? atol(argv[1]) : 16) * 256;
    char *p = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int shared = argc > 2 && strcmp(argv[2], "shared") == 0;
    char *s = shared ? mmap(NULL, pages / 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0) : NULL;
    if (p == MAP_FAILED || s == MAP_FAILED)
        return 1;
    for (long i = 0; i < pages; i++) {
        *(long *)(p + i * 4096) = i * 7919 + 1;
        if (s && i % 2 == 0)
            *(long *)(s + i / 2 * 4096) = i * 31 + 5;
    }
    for (long i = 1; i < pages; i += 2)
        munmap(p + i * 4096, 4096);
    int n = 0, fds[2], err = 0;
    while (n < 500) {
        if (pipe(fds) != 0) {
            err = errno;
            break;
        }
        n++;
    }
    long bad = 0;
    for (long i = 0; i < pages; i += 2)
        bad += *(long *)(p + i * 4096) != i * 7919 + 1;
    if (s) {
        for (int fd = 3; fd < 3 + 2 * n; fd++)  /* (the pipes' memory back, for the fork) */
            close(fd);
        pid_t c = fork();
        if (c == 0) {
            for (long i = 0; i < pages / 2; i++)
                *(long *)(s + i * 4096) += 1;
            _exit(0);
        }
        waitpid(c, NULL, 0);
        for (long i = 0; i < pages / 2; i++)
            bad += *(long *)(s + i * 4096) != i * 2 * 31 + 5 + 1;
    }
    printf("pipes %d (%s), pages changed %ld\n", n, err ? strerror(err) : "none failed", bad);
    return 0;
}
