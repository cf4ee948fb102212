/* The checkpoint's read rule through a private mapping: map PATH privately, read a byte through
 * the mapping when asked (a demand fill: a read of the file), then write the file with pwrite(2).
 * A checkpoint must be forced at the pwrite only after the fill (a replay from before it would
 * read what the write put there). Usage: mapwrite PATH touch|notouch */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) { perror("open"); return 1; }
    char *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 1; }
    char c = strcmp(argv[2], "touch") == 0 ? m[0] : '-';
    if (pwrite(fd, "X", 1, 0) != 1) { perror("pwrite"); return 1; }
    printf("read %c\n", c);
    return 0;
}
