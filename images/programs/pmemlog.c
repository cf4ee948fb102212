/*
 * pmemlog: a persistent append-only log kept in SCM through /dev/pmem0 (DAX mmap), the classic
 * persistent-memory programming pattern. A record is made durable (clwb + sfence) before the
 * header that counts it; the header is made durable before the commit is announced.
 *
 *   pmemlog append N [--nofence]   append N records, printing "committed I" after each
 *   pmemlog check                   verify the log: "count=C ok" or "count=C corrupt at I"
 *
 * --nofence is the buggy variant: it omits the sfence after flushing the header, so a commit is
 * announced while its header write-back is still pending and a power cut can lose it.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LOG_BYTES (1 << 20)
#define LINE 64

struct header { uint64_t magic; uint64_t count; uint8_t pad[48]; };
struct record { uint64_t seq; uint64_t sum; uint8_t payload[48]; };

static inline void clwb(const void *p) { __asm__ volatile("clwb %0" : "+m"(*(volatile char *)p)); }
static inline void sfence(void) { __asm__ volatile("sfence" ::: "memory"); }

static uint64_t checksum(const struct record *r)
{
    uint64_t h = 1469598103934665603ull ^ r->seq;
    for (int i = 0; i < 48; i++) h = (h ^ r->payload[i]) * 1099511628211ull;
    return h;
}

static void say(const char *s) { write(1, s, strlen(s)); }

/* "<prefix><n>\n" without stdio, so that one commit is a short instruction sequence. */
static void say_num(const char *prefix, uint64_t n)
{
    char buf[48];
    size_t len = strlen(prefix);
    memcpy(buf, prefix, len);
    char digits[24];
    int d = 0;
    do { digits[d++] = (char)('0' + n % 10); n /= 10; } while (n);
    while (d) buf[len++] = digits[--d];
    buf[len++] = '\n';
    write(1, buf, len);
}

int main(int argc, char **argv)
{
    if (argc < 2) { say("usage: pmemlog append N [--nofence] | check\n"); return 2; }
    int fd = open("/dev/pmem0", O_RDWR);
    if (fd < 0) { perror("open /dev/pmem0"); return 1; }
    uint8_t *base = mmap(NULL, LOG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    struct header *h = (struct header *)base;
    struct record *recs = (struct record *)(base + LINE);
    if (h->magic != 0x676f6c6d656d70ull) {  /* "pmemlog": format a fresh log */
        h->magic = 0x676f6c6d656d70ull;
        h->count = 0;
        clwb(h);
        sfence();
    }
    if (!strcmp(argv[1], "check")) {
        char out[64];
        for (uint64_t i = 0; i < h->count; i++) {
            if (recs[i].seq != i || recs[i].sum != checksum(&recs[i])) {
                snprintf(out, sizeof out, "count=%llu corrupt at %llu\n", (unsigned long long)h->count, (unsigned long long)i);
                say(out);
                return 1;
            }
        }
        snprintf(out, sizeof out, "count=%llu ok\n", (unsigned long long)h->count);
        say(out);
        return 0;
    }
    int n = argc > 2 ? atoi(argv[2]) : 1;
    int nofence = argc > 3 && !strcmp(argv[3], "--nofence");
    for (int k = 0; k < n; k++) {
        uint64_t i = h->count;
        struct record *r = &recs[i];
        r->seq = i;
        for (int j = 0; j < 48; j++) r->payload[j] = (uint8_t)(i * 7 + j);
        r->sum = checksum(r);
        clwb(r);
        sfence();                 /* the record is durable before the header counts it */
        h->count = i + 1;
        clwb(h);
        if (!nofence) sfence();   /* the commit is durable before it is announced */
        say_num("committed ", i);
    }
    return 0;
}
