/* Each persistence idiom on its own line of /dev/pmem0 (line i at offset 64*i), then exit with
 * nothing fenced after the last three. The test cuts the power at the exit and reads the media. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include <immintrin.h>

#define L(i) ((volatile uint64_t *)(base + 64 * (i)))

int main(void)
{
    int fd = open("/dev/pmem0", O_RDWR);
    uint8_t *base = mmap(0, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return 1;
    /* durable */
    *L(0) = 0x1111; __asm__ volatile("clflush %0" : "+m"(*(volatile char *)L(0)));
    *L(1) = 0x2222; __asm__ volatile("clflushopt %0" : "+m"(*(volatile char *)L(1))); __asm__ volatile("sfence" ::: "memory");
    *L(2) = 0x3333; __asm__ volatile("clwb %0" : "+m"(*(volatile char *)L(2))); __asm__ volatile("mfence" ::: "memory");
    __asm__ volatile("movnti %1, %0" : "=m"(*(volatile uint64_t *)L(3)) : "r"((uint64_t)0x4444)); __asm__ volatile("sfence" ::: "memory");
    __m128i v = _mm_set_epi64x(0x5555, 0x5555);
    _mm_stream_si128((__m128i *)L(4), v); __asm__ volatile("sfence" ::: "memory");
    /* indexed addressing: clwb [base + index*8 + 64*5] */
    uint64_t idx = 1;
    *((volatile uint64_t *)(base + 64 * 5) + idx) = 0x6666;
    __asm__ volatile("clwb (%0,%1,8)" :: "r"(base + 64 * 5), "r"(idx) : "memory");
    __asm__ volatile("sfence" ::: "memory");
    /* not durable: no fence after these */
    *L(6) = 0x7777;
    *L(7) = 0x8888; __asm__ volatile("clwb %0" : "+m"(*(volatile char *)L(7)));
    __asm__ volatile("movnti %1, %0" : "=m"(*(volatile uint64_t *)L(8)) : "r"((uint64_t)0x9999));
    _exit(0);
}
