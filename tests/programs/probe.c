/* Guest-side probe of the kernel's error handling: each sub-command does one thing and prints
 * "<what>=<result>" where result is the return value or -errno. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define WILD ((void *)0xdead0000000ul)
#define R(expr) ((expr) < 0 ? -errno : (long)(expr))

static void show(const char *what, long v) { printf("%s=%ld\n", what, v); }

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "exec")) {             /* execve a file: prints -errno if it fails */
        char *args[] = { argv[2], NULL };
        execve(argv[2], args, NULL);
        show("execve", -errno);
        return 0;
    }
    if (!strcmp(cmd, "spawn")) {            /* fork + execve + wait: print the wait status */
        pid_t pid = fork();
        if (pid == 0) { char *args[] = { argv[2], NULL }; execve(argv[2], args, NULL); _exit(100 + errno); }
        int st = 0;
        waitpid(pid, &st, 0);
        show("status", st);
        return 0;
    }
    if (!strcmp(cmd, "efault")) {
        int fd = open("/etc/passwd", O_RDONLY);
        show("read_wild", R(read(fd, WILD, 100)));
        show("write_wild", R(write(1, WILD, 100)));
        show("open_wild", R(open(WILD, O_RDONLY)));
        show("stat_wild", R(stat("/etc/passwd", WILD)));
        show("pipe_wild", R(pipe(WILD)));
        show("getcwd_wild", R(syscall(SYS_getcwd, WILD, 100)));
        show("kernel_addr", R(read(fd, (void *)0xffff800000000000ul, 10)));
        fflush(stdout);
        return 0;
    }
    if (!strcmp(cmd, "escape")) {           /* the guest sees its image and nothing else */
        char buf[256] = {0};
        int fd = open("/../../../../../etc/hostname", O_RDONLY);
        long n = fd < 0 ? -errno : read(fd, buf, sizeof buf - 1);
        show("dotdot_open", fd < 0 ? -errno : 0);
        printf("dotdot_content=%s", n > 0 ? buf : "\n");
        show("symlink", R(symlink("/../../../../../../root/.bashrc", "/tmp/esc")));
        show("open_symlink", R(open("/tmp/esc", O_RDONLY)));
        show("rel_symlink", R(symlink("../../../../../../../../../usr/bin/python3", "/tmp/esc2")));
        show("open_rel_symlink", R(open("/tmp/esc2", O_RDONLY)));
        chdir("/tmp");
        show("chdir_up", R(chdir("../../../../..")));
        char cwd[256];
        printf("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
        show("loop", R(symlink("/tmp/loop", "/tmp/loop")));
        show("open_loop", R(open("/tmp/loop", O_RDONLY)));
        return 0;
    }
    if (!strcmp(cmd, "enosys")) {
        show("unknown", R(syscall(400)));
        show("rseq", R(syscall(SYS_rseq, 0, 0, 0, 0)));
        return 0;
    }
    if (!strcmp(cmd, "rdtsc")) {            /* the TSC is the virtual clock: deterministic */
        unsigned lo, hi, lo2, hi2, aux;
        __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
        for (volatile int i = 0; i < 1000; i++) ;
        __asm__ volatile("rdtscp" : "=a"(lo2), "=d"(hi2), "=c"(aux));
        printf("tsc1=%llu\ntsc2=%llu\naux=%u\n", ((unsigned long long)hi << 32) | lo, ((unsigned long long)hi2 << 32) | lo2, aux);
        return 0;
    }
    if (!strcmp(cmd, "segv")) {
        *(volatile int *)WILD = 1;
        return 0;
    }
    if (!strcmp(cmd, "sigpipe")) {
        int fds[2];
        pipe(fds);
        close(fds[0]);
        write(fds[1], "x", 1);              /* default SIGPIPE kills the process */
        return 0;
    }
    return 2;
}
