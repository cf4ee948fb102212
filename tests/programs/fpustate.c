/* Register state live across raw syscalls: an x87 value and an SSE value stay in registers
 * through `syscall` instructions (inline asm, so the compiler cannot spill them), and are
 * printed afterwards. A checkpoint taken at one of those syscalls must bring them back. */
#include <stdio.h>
#include <unistd.h>

static long double x87_across_syscalls(long double seed)
{
    long double r;
    long ret;
    __asm__ volatile("fldt %2\n\t"
                     "fldpi\n\t"
                     "faddp\n\t"                      /* st0 = seed + pi, kept live */
                     "mov $39, %%eax\n\tsyscall\n\t"   /* getpid */
                     "mov $39, %%eax\n\tsyscall\n\t"
                     "mov $39, %%eax\n\tsyscall\n\t"
                     : "=t"(r), "=&a"(ret)
                     : "m"(seed)
                     : "rcx", "r11", "memory");
    return r;
}

static double sse_across_syscalls(double seed)
{
    double r;
    long ret;
    __asm__ volatile("movsd %2, %%xmm7\n\t"
                     "addsd %%xmm7, %%xmm7\n\t"       /* xmm7 = 2 * seed, kept live */
                     "mov $39, %%eax\n\tsyscall\n\t"
                     "mov $39, %%eax\n\tsyscall\n\t"
                     "movsd %%xmm7, %0\n\t"
                     : "=m"(r), "=&a"(ret)
                     : "m"(seed)
                     : "rcx", "r11", "xmm7", "memory");
    return r;
}

int main(void)
{
    long double acc = 0.0L;
    double sacc = 0.0;
    for (int i = 0; i < 60; i++) {
        acc = x87_across_syscalls(acc / 3.0L + (long double)i);
        sacc = sse_across_syscalls(sacc / 3.0 + i);
        if (i % 10 == 9)
            printf("%d %.18Lg %.17g\n", i, acc, sacc);
    }
    return 0;
}
