/* What a program sees of the machine's CPUs: sysconf, the affinity mask (nproc's source), the
 * sysfs lists and /proc/cpuinfo's processors; setting the affinity to one CPU and back. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void show(const char *path) {
    char buf[64] = "";
    FILE *f = fopen(path, "r");
    if (f) { if (!fgets(buf, sizeof buf, f)) buf[0] = 0; fclose(f); }
    printf("%s: %s", path, buf);
}

int main(void) {
    printf("onln %ld conf %ld\n", sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_CONF));
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) < 0) { perror("getaffinity"); return 1; }
    printf("affinity %d\n", CPU_COUNT(&set));
    show("/sys/devices/system/cpu/online");
    show("/sys/devices/system/cpu/possible");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    int procs = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "processor", 9)) procs++;
    printf("cpuinfo processors %d\n", procs);
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    printf("set to cpu1: %d\n", sched_setaffinity(0, sizeof set, &set));
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    printf("now %d, cpu1 %d\n", CPU_COUNT(&set), CPU_ISSET(1, &set));
    return 0;
}
