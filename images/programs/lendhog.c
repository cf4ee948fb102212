/* Hold MIB MiB of anonymous memory with a known pattern while storage is lent as memory
 * (swapon on storage as memory), then try to give the storage back: swapoff while everything is
 * held (RAM cannot take the pages living on storage: ENOMEM), release the first half (which sits
 * in RAM) and swapoff again (the pages on storage move to RAM), then check the second half.
 * usage: lendhog MIB SWAPFILE
 *        lendhog on FILE [PRIO]   swapon(2) itself (util-linux's swapon checks the header first) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/swap.h>

static unsigned char pattern(size_t i) { return (unsigned char)((i * 2654435761u) >> 13) | 1; }

static void swap_line(void) {
    char line[256];
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "SwapTotal:", 10) || !strncmp(line, "SwapFree:", 9))
            fputs(line, stdout);
    if (f) fclose(f);
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "on")) {
        int flags = argc > 3 ? SWAP_FLAG_PREFER | (atoi(argv[3]) & SWAP_FLAG_PRIO_MASK) : 0;
        printf("swapon %s: %s\n", argv[2], swapon(argv[2], flags) ? strerror(errno) : "ok");
        return 0;
    }
    if (argc != 3) return 2;
    size_t n = (size_t)atol(argv[1]) << 20, half = n / 2;
    unsigned char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    for (size_t i = 0; i < n; i += 64) p[i] = pattern(i);
    printf("held %s MiB\n", argv[1]);
    swap_line();
    printf("swapoff while held: %s\n", swapoff(argv[2]) ? strerror(errno) : "ok");
    munmap(p, half);
    printf("swapoff after half: %s\n", swapoff(argv[2]) ? strerror(errno) : "ok");
    swap_line();
    for (size_t i = half; i < n; i += 64)
        if (p[i] != pattern(i)) { printf("pattern BAD at %zu\n", i); return 1; }
    printf("pattern ok\n");
    fflush(stdout);
    return 0;
}
