/* System V shared memory: a segment shared across fork, IPC_STAT's counts, IPC_EXCL, IPC_RMID
 * with attaches left, and the errors of bad ids and addresses. Prints one line per check; the
 * test compares the output with the native run. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static void check(const char *what, long got) {
    printf("%s: %ld errno=%s\n", what, got, got < 0 ? strerror(errno) : "-");
    errno = 0;
}

int main(void) {
    key_t key = 0x454d55;
    int id = shmget(key, 10000, IPC_CREAT | IPC_EXCL | 0600);
    check("create", id >= 0);
    check("excl again", shmget(key, 10000, IPC_CREAT | IPC_EXCL | 0600) >= 0 ? 0 : -1);
    check("same key", shmget(key, 100, 0) == id);
    check("too big for key", shmget(key, 20000, 0) >= 0 ? 0 : -1);
    check("missing key", shmget(0x12345, 100, 0) >= 0 ? 0 : -1);
    check("size 0", shmget(IPC_PRIVATE, 0, 0600) >= 0 ? 0 : -1);

    struct shmid_ds ds;
    check("stat", shmctl(id, IPC_STAT, &ds));
    printf("segsz=%zu nattch=%lu mode=%o\n", ds.shm_segsz, (unsigned long)ds.shm_nattch, ds.shm_perm.mode & 0777);

    char *a = shmat(id, NULL, 0);
    check("attach", a != (void *)-1);
    strcpy(a, "parent");
    strcpy(a + 9000, "far");
    shmctl(id, IPC_STAT, &ds);
    printf("nattch after attach=%lu\n", (unsigned long)ds.shm_nattch);

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        shmctl(id, IPC_STAT, &ds);
        printf("child sees '%s' '%s' nattch=%lu\n", a, a + 9000, (unsigned long)ds.shm_nattch);
        fflush(stdout);
        strcpy(a, "child");
        char *b = shmat(id, NULL, SHM_RDONLY);
        printf("second attach same data: %d\n", strcmp(b, "child") == 0);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("parent sees '%s'\n", a);
    shmctl(id, IPC_STAT, &ds);
    printf("nattch after child exit=%lu\n", (unsigned long)ds.shm_nattch);

    check("rmid", shmctl(id, IPC_RMID, NULL));
    check("key gone", shmget(key, 100, 0) >= 0 ? 0 : -1);
    shmctl(id, IPC_STAT, &ds);
    printf("dest flag=%d nattch=%lu\n", !!(ds.shm_perm.mode & SHM_DEST), (unsigned long)ds.shm_nattch);
    printf("still readable: '%s'\n", a);
    check("detach", shmdt(a));
    check("detach again", shmdt(a));
    check("stat after last detach", shmctl(id, IPC_STAT, &ds));
    check("attach bad id", shmat(12345678, NULL, 0) == (void *)-1 ? -1 : 0);
    int p2 = shmget(IPC_PRIVATE, 4096, 0600);
    check("attach unaligned", shmat(p2, (void *)0x10001, 0) == (void *)-1 ? -1 : 0);
    char *r = shmat(p2, (void *)0x10001, SHM_RND);
    check("attach rounded", r == (void *)0x10000);
    check("ctl bad cmd", shmctl(p2, 9999, &ds));
    check("rmid private", shmctl(p2, IPC_RMID, NULL));
    return 0;
}
