/* The paper's user process: allocate and touch N MiB (malloc, every byte written), say "ready",
 * then sleep for ever, holding it. SonicShot's experiments snapshot the guest while it sleeps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 200;
    char *p = mib > 0 ? malloc((size_t)mib << 20) : NULL;
    if (mib > 0 && p == NULL) {
        perror("malloc");
        return 1;
    }
    for (long i = 0; i < mib; i++)
        memset(p + (i << 20), (int)(i * 7 + 1), 1 << 20);
    printf("ready %ld MiB\n", mib);
    fflush(stdout);
    for (;;)
        sleep(1000);
}
