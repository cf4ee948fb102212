/* Loop-device and mount(2) calls with bad and edge arguments: each result and errno, as the
 * guest sees them (tests/guest/test_mounts.py compares with Linux's errors). */
#include <stdio.h>
#include <fcntl.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <linux/loop.h>
#define T(name, expr) do { errno = 0; long r_ = (long)(expr); int e_ = errno; printf("%s: %ld %s\n", name, r_, r_ < 0 ? strerror(e_) : ""); } while (0)
int main(void) {
    int c = open("/dev/loop-control", O_RDWR);
    T("add big", ioctl(c, LOOP_CTL_ADD, 1L << 40));
    T("add 300", ioctl(c, LOOP_CTL_ADD, 300));
    T("add 9", ioctl(c, LOOP_CTL_ADD, 9));
    T("add 9 again", ioctl(c, LOOP_CTL_ADD, 9));
    int l = open("/dev/loop0", O_RDWR);
    T("cfg badptr", ioctl(l, LOOP_CONFIGURE, (void *)8));
    T("setfd badfd", ioctl(l, LOOP_SET_FD, 999));
    T("setfd dir", ioctl(l, LOOP_SET_FD, open("/", O_RDONLY)));
    T("status unbound", ioctl(l, LOOP_GET_STATUS64, (void *)8));
    T("clr unbound", ioctl(l, LOOP_CLR_FD, 0));
    T("getsize badptr", ioctl(l, 0x80081272, (void *)8));
    T("mount bad type ptr", mount("/dev/loop0", "/mnt", (char *)8, 0, 0));
    T("mount nonext2", mount("/dev/loop0", "/mnt", "xfs", 0, 0));
    T("mount file", mount("/vol/v000.img", "/mnt", "ext2", 0, 0));
    T("mount unbound", mount("/dev/loop0", "/mnt", "ext2", 0, 0));
    T("umount notmnt", umount2("/mnt", 0));
    T("umount root", umount2("/", 0));
    T("umount badflags", umount2("/mnt", 0x100));
    int f = open("/vol/v000.img", O_RDONLY);
    T("setfd ro", ioctl(l, LOOP_SET_FD, f));
    T("mount ro dev rw", mount("/dev/loop0", "/mnt", "ext2", 0, 0));
    T("write ro", open("/mnt/x", O_CREAT|O_WRONLY, 0644));
    T("umount", umount2("/mnt", 0));
    T("clr", ioctl(l, LOOP_CLR_FD, 0));
    int l1 = open("/dev/loop1", O_RDWR);
    ioctl(l1, LOOP_SET_FD, f);
    close(l1);
    T("remove bound", ioctl(c, LOOP_CTL_REMOVE, 1));
    T("remove neg", ioctl(c, LOOP_CTL_REMOVE, -1));
    T("remove absent", ioctl(c, LOOP_CTL_REMOVE, 200));
    T("remove open", ioctl(c, LOOP_CTL_REMOVE, 0));
    T("remove 9", ioctl(c, LOOP_CTL_REMOVE, 9));
    T("remove 9 again", ioctl(c, LOOP_CTL_REMOVE, 9));
    T("open removed", open("/dev/loop9", O_RDWR));
    T("sysfs removed", access("/sys/block/loop9", F_OK));
    T("add back 9", ioctl(c, LOOP_CTL_ADD, 9));
    T("sysfs back", access("/sys/block/loop9/size", F_OK));
    T("remove 3", ioctl(c, LOOP_CTL_REMOVE, 3));
    T("free", ioctl(c, LOOP_CTL_GET_FREE));
    close(l);
    T("free after close", ioctl(c, LOOP_CTL_GET_FREE));
    l1 = open("/dev/loop1", O_RDWR);
    T("clr 1", ioctl(l1, LOOP_CLR_FD, 0));
    close(l1);
    for (int i = 0; i <= 9; i++) ioctl(c, LOOP_CTL_REMOVE, i);
    T("free makes lowest", ioctl(c, LOOP_CTL_GET_FREE));
    return 0;
}
