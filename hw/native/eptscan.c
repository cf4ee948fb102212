/*
 * The hypervisor's scan of the EPT accessed/dirty bits (the memory-access tracing of the hybrid
 * DRAM/MRAM paper): one pass over a run of guest frames that lists the dirty ones (and the
 * accessed ones) and clears their bits, so the next scan sees only what happened since. Eight
 * frames' bits are tested at once (64 when all are clear): a whole-RAM scan of 4 GiB of guest RAM (1 Mi frames) reads
 * 1 MiB of bits and costs well under a millisecond when few pages were touched.
 * (Compiled after hotpath.c in one translation unit.)
 */
#include "emu_abi.h"

uint64_t emu_ept_scan(uint8_t *bits, uint64_t first, uint64_t count, uint32_t *dirty,
                      uint32_t *accessed, uint64_t *naccessed, int clear)
{
    uint64_t nd = 0, na = 0, i = first, end = first + count;
    while (i < end) {
        if ((i & 63) == 0 && i + 64 <= end) {  /* 64 frames with no bit set: skip them */
            uint64_t w[8], any = 0;
            memcpy(w, bits + i, 64);
            for (int k = 0; k < 8; k++) any |= w[k];
            if (any == 0) { i += 64; continue; }
        }
        if ((i & 7) == 0 && i + 8 <= end) {
            uint64_t word;
            memcpy(&word, bits + i, 8);
            if (word == 0) { i += 8; continue; }
        }
        uint8_t b = bits[i];
        if (b) {
            if (b & EPT_D) dirty[nd++] = (uint32_t)i;
            if (b & EPT_A) { if (accessed) accessed[na] = (uint32_t)i; na++; }
            if (clear) bits[i] = 0;
        }
        i++;
    }
    if (naccessed) *naccessed = na;
    return nd;
}

void emu_fill_seq(uint32_t *out, uint64_t n, uint32_t first)
{
    for (uint64_t i = 0; i < n; i++)
        out[i] = first + (uint32_t)i;
}
