/* Runs syscalls read from a file of records: 7 little-endian 64-bit words each (number, six
 * arguments). An argument with bit 62 set is an offset into a scratch buffer (a valid pointer);
 * other values are passed as they are. Prints each result; the kernel must survive them all. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>

static unsigned char scratch[1 << 16];

int main(int argc, char **argv)
{
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) return 3;
    uint64_t rec[7];
    int n = 0;
    while (read(fd, rec, sizeof rec) == sizeof rec) {
        long a[6];
        for (int i = 0; i < 6; i++)
            a[i] = (rec[i + 1] & (1ull << 62)) ? (long)(scratch + (rec[i + 1] & 0xffff)) : (long)rec[i + 1];
        long r = syscall((long)rec[0], a[0], a[1], a[2], a[3], a[4], a[5]);
        printf("%d:%ld:%ld\n", n++, (long)rec[0], r);
        fflush(stdout);
    }
    printf("done %d\n", n);
    return 0;
}
