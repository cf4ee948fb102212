/* A shared writable file mapping: write through it (holes get blocks), msync, write once more
 * (the page was written back and write-protected: the write must mark it dirty again), unmap,
 * then read the file back with read(2). The test checks the image from the host. On DAX storage
 * (storage.mode = memory) the pages are the file's own in the storage window; on a block device,
 * the page cache's. Usage: daxmap PATH [nosync] */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 3
#define SIZE (PAGES * 4096 + 100)

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror("open"); return 1; }
    if (write(fd, "head", 4) != 4) { perror("write"); return 1; }
    if (ftruncate(fd, SIZE) < 0) { perror("ftruncate"); return 1; }  /* pages 1.. are holes */
    char *m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { printf("mmap: %s\n", strerror(errno)); return 1; }
    printf("first bytes: %.4s\n", m);
    for (int i = 0; i < SIZE; i += 512) m[i] = 'a' + (i / 512) % 26;
    memcpy(m + SIZE - 5, "tail\n", 5);
    if (argc < 3 && msync(m, SIZE, MS_SYNC) < 0) { perror("msync"); return 1; }
    if (msync(m + 1, 10, MS_SYNC) == 0 || errno != EINVAL) { printf("msync unaligned: no EINVAL\n"); return 1; }
    m[2 * 4096] = 'Z';  /* after the write-back: must reach the file too */
    if (munmap(m, SIZE) < 0) { perror("munmap"); return 1; }
    char buf[SIZE];
    if (pread(fd, buf, SIZE, 0) != SIZE) { perror("pread"); return 1; }
    for (int i = 0; i < SIZE; i += 512)
        if (buf[i] != (i == 2 * 4096 ? 'Z' : 'a' + (i / 512) % 26)) { printf("byte %d differs\n", i); return 1; }
    printf("read back: %.5s", buf + SIZE - 5);
    close(fd);
    return 0;
}
