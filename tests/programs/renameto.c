/* rename(2) as it is, without mv's own checks: prints "rename A B = 0" or "= -1 ERRNO". */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int r = rename(argv[1], argv[2]);
    printf("rename %s %s = %d %s\n", argv[1], argv[2], r, r ? strerrorname_np(errno) : "");
    return r ? 1 : 0;
}
