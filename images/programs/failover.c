/* The split-zone paper's failover: attach N volume images to loop devices and mount each, as a
 * NAS blade mounts the file systems of its failed partner, timing every mount(2).
 *
 *   failover DIR N MNT     for i in 0..N-1: losetup a free loop device on DIR/vNNN.img
 *                          (LOOP_CTL_GET_FREE, LOOP_CONFIGURE), mkdir MNT/NNN, mount -t ext2;
 *                          print "mount I NS" (CLOCK_MONOTONIC, the machine's virtual time) or
 *                          "mount I failed ERRNO-NAME" and stop at the first failure.
 *   failover -u N MNT      unmount MNT/000 .. and detach their loop devices (LOOP_CLR_FD).
 *
 * The same system calls util-linux's losetup and mount make (its tools are in the image too;
 * this program only keeps 256 dynamically linked program starts out of the measurement). */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char *ename(int e) {
    switch (e) {
    case ENOMEM: return "ENOMEM";
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case ENXIO: return "ENXIO";
    case ENOENT: return "ENOENT";
    default: return strerror(e);
    }
}

static int unmount_all(int n, const char *mnt) {
    char path[512];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%03d", mnt, i);
        if (umount2(path, 0) != 0)
            printf("umount %d failed %s\n", i, ename(errno));
    }
    for (int i = 0; i < 1024; i++) {
        snprintf(path, sizeof path, "/dev/loop%d", i);
        int fd = open(path, O_RDWR);
        if (fd < 0)
            break;
        ioctl(fd, LOOP_CLR_FD, 0);
        close(fd);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "-u") == 0)
        return unmount_all(atoi(argv[2]), argv[3]);
    if (argc != 4) {
        fprintf(stderr, "usage: failover DIR N MNT | failover -u N MNT\n");
        return 2;
    }
    const char *dir = argv[1], *mnt = argv[3];
    int n = atoi(argv[2]);
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        perror("/dev/loop-control");
        return 1;
    }
    long long total = 0;
    for (int i = 0; i < n; i++) {
        char img[512], dev[64], at[512];
        snprintf(img, sizeof img, "%s/v%03d.img", dir, i);
        snprintf(at, sizeof at, "%s/%03d", mnt, i);
        mkdir(at, 0755);
        int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (nr < 0) {
            printf("mount %d failed %s (loop-control)\n", i, ename(errno));
            return 1;
        }
        snprintf(dev, sizeof dev, "/dev/loop%d", nr);
        int ffd = open(img, O_RDWR | O_CLOEXEC), dfd = open(dev, O_RDWR | O_CLOEXEC);
        if (ffd < 0 || dfd < 0) {
            printf("mount %d failed %s (open)\n", i, ename(errno));
            return 1;
        }
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (unsigned)ffd;
        strncpy((char *)cfg.info.lo_file_name, img, LO_NAME_SIZE - 1);
        if (ioctl(dfd, LOOP_CONFIGURE, &cfg) != 0) {
            printf("mount %d failed %s (LOOP_CONFIGURE)\n", i, ename(errno));
            return 1;
        }
        close(ffd);
        close(dfd);
        long long t0 = now_ns();
        int r = mount(dev, at, "ext2", 0, NULL);
        long long dt = now_ns() - t0;
        if (r != 0) {
            printf("mount %d failed %s after %lld ns\n", i, ename(errno), dt);
            fflush(stdout);
            return 3;
        }
        total += dt;
        printf("mount %d %lld\n", i, dt);
    }
    printf("mounted %d total_ns %lld\n", n, total);
    return 0;
}
