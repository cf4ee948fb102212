/* A pthread pool: four workers take tasks from a queue under a mutex and a condition variable,
 * meet at a barrier, then each sums its share; the main thread writes the results to a file and
 * prints them. The output does not depend on how the threads interleave (compared with a native
 * run); the run is long enough for checkpoints and power cuts to land while threads work.
 * Usage: pthreadpool OUTFILE [TASKS] */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKERS 4
static int ntasks = 64;
static uint64_t results[1024];
static int next_task, done_tasks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER, finished = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t barrier;
static uint64_t partial[WORKERS];

static uint64_t work(int t) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)t;
    for (int i = 0; i < 20000 + t * 100; i++) h = (h ^ (uint64_t)i) * 1099511628211ULL;
    return h;
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (next_task >= ntasks && done_tasks < ntasks) pthread_cond_wait(&more, &lock);
        if (next_task >= ntasks) { pthread_mutex_unlock(&lock); break; }
        int t = next_task++;
        pthread_mutex_unlock(&lock);
        uint64_t r = work(t);
        pthread_mutex_lock(&lock);
        results[t] = r;
        if (++done_tasks == ntasks) { pthread_cond_broadcast(&more); pthread_cond_signal(&finished); }
        pthread_mutex_unlock(&lock);
    }
    pthread_barrier_wait(&barrier);
    uint64_t s = 0;
    for (int t = id; t < ntasks; t += WORKERS) s += results[t] % 1000003;
    partial[id] = s;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (argc > 2) ntasks = atoi(argv[2]) > 1024 ? 1024 : atoi(argv[2]);
    pthread_t th[WORKERS];
    pthread_barrier_init(&barrier, NULL, WORKERS);
    for (int i = 0; i < WORKERS; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    pthread_mutex_lock(&lock);
    while (done_tasks < ntasks) pthread_cond_wait(&finished, &lock);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char line[128];
    uint64_t total = 0;
    for (int i = 0; i < WORKERS; i++) {
        int n = snprintf(line, sizeof line, "worker %d: %llu\n", i, (unsigned long long)partial[i]);
        write(fd, line, n);
        total += partial[i];
    }
    for (int t = 0; t < ntasks; t += 16) {
        int n = snprintf(line, sizeof line, "task %d: %016llx\n", t, (unsigned long long)results[t]);
        write(fd, line, n);
    }
    close(fd);
    printf("tasks %d total %llu\n", ntasks, (unsigned long long)total);
    return 0;
}
