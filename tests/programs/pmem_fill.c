/* Plain stores (no flush, no fence) over 12 MiB of /dev/pmem0, more than the 8 MiB cache: dirty
 * SCM lines are written back when a later store evicts them, so the persistence events (and a
 * power cut at one of them) happen inside guest stores. Prints "filled". */
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define BYTES (12u << 20)

int main(void)
{
    int fd = open("/dev/pmem0", O_RDWR);
    volatile uint64_t *p = mmap(0, BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return 1;
    for (uint64_t i = 0; i < BYTES / 8; i += 8)  /* one word a line */
        p[i] = i * 0x9E3779B97F4A7C15ull;
    write(1, "filled\n", 7);
    return 0;
}
