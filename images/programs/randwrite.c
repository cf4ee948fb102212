/* The split-zone paper's random-write script (environment 2): create N small files, write 16
 * bytes to each, then write 16 bytes to W randomly chosen ones (a fixed-seed generator, so every
 * run writes the same files). The paper used 900,000 files on a 3.25 GB kernel; emu's
 * experiment scales N to the guest's RAM (emu/reproduce/fragmentation.py says by how much).
 *
 *   randwrite DIR N W [PER_DIR]      files DIR/dNNNN/fNNNNNN, PER_DIR (default 1000) a directory */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned long long state = 0x9E3779B97F4A7C15ULL;

static unsigned long long next(void) { /* xorshift64* */
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1DULL;
}

static void name(char *buf, size_t n, const char *dir, long i, long per) {
    snprintf(buf, n, "%s/d%04ld/f%06ld", dir, i / per, i);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: randwrite DIR N W [PER_DIR]\n");
        return 2;
    }
    const char *dir = argv[1];
    long n = atol(argv[2]), w = atol(argv[3]), per = argc > 4 ? atol(argv[4]) : 1000;
    char path[512], data[16];
    mkdir(dir, 0755);
    for (long i = 0; i < n; i++) {
        if (i % per == 0) {
            snprintf(path, sizeof path, "%s/d%04ld", dir, i / per);
            mkdir(path, 0755);
        }
        name(path, sizeof path, dir, i, per);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            perror(path);
            return 1;
        }
        snprintf(data, sizeof data, "%015ld", i);
        if (write(fd, data, 16) != 16) {
            perror("write");
            return 1;
        }
        close(fd);
    }
    for (long j = 0; j < w; j++) {
        long i = (long)(next() % (unsigned long long)n);
        name(path, sizeof path, dir, i, per);
        int fd = open(path, O_WRONLY);
        if (fd < 0) {
            perror(path);
            return 1;
        }
        snprintf(data, sizeof data, "%015ld", j);
        if (pwrite(fd, data, 16, 0) != 16) {
            perror("pwrite");
            return 1;
        }
        close(fd);
    }
    printf("randwrite: %ld files, %ld random writes\n", n, w);
    return 0;
}
