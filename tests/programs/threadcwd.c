/* The threads of a process share one working directory and umask (clone's CLONE_FS): a thread
 * changes them, the main thread sees it and creates files under them, and back again. Run under
 * checkpointing and cut anywhere, a restart must rebuild the sharing (one fs context, not a copy
 * per thread). Prints what the main thread sees; files under $1. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_barrier_t b;
static const char *dir;

static void *mover(void *arg) {
    (void)arg;
    for (int round = 0; round < 3; round++) {
        pthread_barrier_wait(&b);
        if (chdir(round % 2 ? "/" : dir) != 0) return (void *)1;
        umask(round % 2 ? 022 : 077);
        pthread_barrier_wait(&b);
    }
    return NULL;
}

int main(int argc, char **argv) {
    dir = argc > 1 ? argv[1] : "/tmp";
    mkdir(dir, 0755);
    pthread_barrier_init(&b, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, mover, NULL);
    for (int round = 0; round < 3; round++) {
        pthread_barrier_wait(&b);
        pthread_barrier_wait(&b);
        char cwd[256], name[32];
        snprintf(name, sizeof name, "f%d", round);
        int fd = open(name, O_CREAT | O_WRONLY | O_TRUNC, 0666);
        struct stat st;
        fstat(fd, &st);
        close(fd);
        unlink(name);
        mode_t m = umask(0);
        umask(m);
        printf("round %d: cwd %s umask %03o file mode %03o\n", round,
               getcwd(cwd, sizeof cwd) && cwd[1] ? "the directory" : "/", (unsigned)m, (unsigned)(st.st_mode & 0777));
    }
    void *r;
    pthread_join(t, &r);
    printf("thread %ld\n", (long)r);
    return 0;
}
