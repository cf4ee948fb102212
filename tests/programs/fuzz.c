/* Runs syscalls read from a file of records: 7 little-endian 64-bit words each (number, six
 * arguments). An argument with bit 62 set is an offset into a scratch buffer (a valid pointer);
 * other values are passed as they are. Prints each result; the kernel must survive them all.
 * Results go to a copy of stdout at descriptor 1023, so a fuzzed close(1) or dup2(x, 1) does
 * not swallow them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>

#define OUT 1023

static unsigned char scratch[1 << 16];

int main(int argc, char **argv)
{
    /* All records are read before the first call: a fuzzed close(3) cannot cut the list short. */
    static uint64_t recs[4096][7];
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0 || dup2(1, OUT) != OUT) return 3;
    long got = read(fd, recs, sizeof recs);
    close(fd);
    int count = got > 0 ? (int)(got / sizeof recs[0]) : 0;
    int n = 0;
    for (int k = 0; k < count; k++) {
        uint64_t *rec = recs[k];
        long a[6];
        for (int i = 0; i < 6; i++)
            a[i] = (rec[i + 1] & (1ull << 62)) ? (long)(scratch + (rec[i + 1] & 0xffff)) : (long)rec[i + 1];
        long r = syscall((long)rec[0], a[0], a[1], a[2], a[3], a[4], a[5]);
        dprintf(OUT, "%d:%ld:%ld\n", n++, (long)rec[0], r);
    }
    dprintf(OUT, "done %d\n", n);
    return 0;
}
