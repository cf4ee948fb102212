/* Allocate and touch anonymous memory 1 MiB at a time up to the MiB given, reporting every 16
 * MiB: more than the machine has ends in the OOM killer's SIGKILL (exit status 137 in a shell). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
    long want = argc > 1 ? atol(argv[1]) : 1024;
    for (long mib = 1; mib <= want; mib++) {
        char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        for (long i = 0; i < (1 << 20); i += 4096)
            p[i] = (char)i | 1;
        if (mib % 16 == 0) {
            printf("%ld MiB\n", mib);
            fflush(stdout);
        }
    }
    printf("allocated %ld MiB\n", want);
    return 0;
}
