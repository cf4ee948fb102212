/*
 * The checkpoint's per-page pass (the first paper's capture, guestkernel/checkpoint/state.py):
 * every present leaf of an address space against what the previous image recorded for it. A
 * page is unchanged when the same frame, of the same generation, is still mapped at that gva and
 * no PTE mapping the frame has its dirty bit set; it is then shared with the previous image, and
 * only the changed pages go back to Python to be stored. The dirty bits of every leaf are cleared
 * on the way (the next write to a clean page faults and sets D again), as the kernel's own
 * PTE writes do: through the EPT, with the table page logged as written by the host.
 * (Compiled after hotpath.c in one translation unit: it uses gpa_to_host.)
 */
#include "emu_abi.h"

/* zlib's crc32 (libz.so.1: Debian's zlib1g is a required package, Python's zlib module links it;
   declared here so that the build needs no zlib headers) */
unsigned long crc32(unsigned long crc, const unsigned char *buf, unsigned int len);

/* A frame of the process's own (RAM, or storage lent as memory: the `ram` mask, npfn long),
 * not a device page (pmem, the DAX storage window's file pages). */
static inline int own_frame(const uint8_t *ram, uint64_t npfn, uint64_t pfn) { return pfn < npfn && ram[pfn]; }

void emu_ckpt_mark_dirty(const uint64_t *leaves, uint64_t n, uint8_t *dirty, const uint8_t *ram, uint64_t npfn,
                         uint8_t value)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t pte = leaves[3 * i + 2];
        uint64_t pfn = (pte & PTE_ADDR) >> 12;
        if ((pte & PTE_D) && own_frame(ram, npfn, pfn)) dirty[pfn] = value;
    }
}

uint64_t emu_ckpt_diff(struct emu_state *st, const uint64_t *leaves, uint64_t n,
                       const struct ckpt_page *prev, uint64_t m, const uint8_t *skip, const uint8_t *dirty,
                       const uint32_t *gen, const uint8_t *ram, uint64_t npfn, uint8_t *log, struct ckpt_page *out,
                       uint32_t *fresh, uint64_t *nfresh, uint64_t *ncleared,
                       const uint32_t *img_pg, const uint32_t *img_crc, const uint8_t *img_dirty, uint64_t img_base,
                       uint64_t img_n)
{
    uint64_t nout = 0, nf = 0, nc = 0, j = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t gva = leaves[3 * i], slot = leaves[3 * i + 1], pte = leaves[3 * i + 2];
        uint64_t pfn = (pte & PTE_ADDR) >> 12;
        if (!own_frame(ram, npfn, pfn)) {
            /* a page of the image file mapped in place: an image's page (read-only) is that
               image page again; a page written since the last checkpoint (img_dirty: a fresh
               page of the file a write fault copied it to) is listed as itself, to be flushed in
               place (fresh[]), and write-protected with its dirty bit cleared, so that the next
               write copies it to another fresh page. Any other device page is a DAX file's own. */
            uint64_t at = pfn - img_base;
            if (at < img_n && img_pg[at] != CKPT_NEW) {
                struct ckpt_page *o = &out[nout];
                o->gva = gva;
                o->pfn = (uint32_t)pfn;
                o->gen = 0;
                o->pg = img_pg[at];
                o->crc = img_crc[at];
                if (img_dirty && img_dirty[at]) {
                    o->crc = 0;
                    fresh[nf++] = (uint32_t)nout;
                    if (pte & (PTE_D | PTE_W)) {
                        uint64_t *e = (uint64_t *)gpa_to_host(st, slot, 8, 0);
                        if (e) { *e = pte & ~(PTE_D | PTE_W); log[slot >> 12] = 1; nc++; }
                    }
                }
                nout++;
            }
            continue;
        }
        if (skip[pfn]) continue;  /* the file's own page: comes back from the file */
        while (j < m && prev[j].gva < gva) j++;  /* both lists are in gva order */
        struct ckpt_page *o = &out[nout];
        o->gva = gva;
        o->pfn = (uint32_t)pfn;
        o->gen = gen[pfn];
        if (j < m && prev[j].gva == gva && prev[j].pfn == pfn && prev[j].gen == o->gen && !dirty[pfn]) {
            o->pg = prev[j].pg;
            o->crc = prev[j].crc;
        } else {
            o->pg = CKPT_NEW;
            o->crc = 0;
            fresh[nf++] = (uint32_t)nout;
        }
        if (pte & PTE_D) {
            uint64_t *e = (uint64_t *)gpa_to_host(st, slot, 8, 0);
            if (e) { *e = pte & ~PTE_D; log[slot >> 12] = 1; nc++; }
        }
        nout++;
    }
    *nfresh = nf;
    *ncleared = nc;
    return nout;
}

/* The image's page list: (gva, page, crc) little-endian records of 16 bytes. */
void emu_ckpt_pack(const struct ckpt_page *recs, uint64_t n, uint8_t *out)
{
    for (uint64_t i = 0; i < n; i++) {
        memcpy(out + 16 * i, &recs[i].gva, 8);
        memcpy(out + 16 * i + 8, &recs[i].pg, 4);
        memcpy(out + 16 * i + 12, &recs[i].crc, 4);
    }
}

/* Reference counts of image pages (see emu_abi.h): one pass over a packed page list. */
void emu_ckpt_refs(const uint8_t *recs, uint64_t n, uint16_t *refs, uint8_t *used, uint64_t npages, int delta)
{
    for (uint64_t i = 0; i < n; i++) {
        uint32_t pg;
        memcpy(&pg, recs + 16 * i + 8, 4);
        if (pg >= npages)
            continue;
        if (delta > 0) {
            refs[pg]++;
            used[pg] = 1;
        } else if (refs[pg] && --refs[pg] == 0) {
            used[pg] = 0;
        }
    }
}

int emu_store_flush_bytes(struct emu_state *st, uint64_t gpa, const uint8_t *data, uint64_t n, uint8_t *log)
{
    if ((gpa & 0xfff) + n > 4096)
        return -1;
    uint64_t hpa = ept_map(st, gpa, EPT_A | EPT_D);
    uint8_t *to = hpa == ~0ull ? NULL : hpa_to_host(st, hpa, n);
    if (!to)
        return -1;
    log[gpa >> 12] = 1;
    memcpy(to, data, n);
    if (st->cm) {
        cm_store_flush(st->cm, hpa, n, 1);
        if (st->cm->power_failed)
            return 1;
    }
    return 0;
}

int64_t emu_ckpt_store(struct emu_state *st, const uint32_t *src, const uint32_t *dst, uint64_t n, uint32_t *crc,
                       uint8_t *log)
{
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *from = gpa_to_host(st, (uint64_t)src[i] << 12, 4096, 0);
        if (!from)
            return -1;
        log[src[i]] = 1;
        crc[i] = (uint32_t)crc32(0L, from, 4096);
        int got = emu_store_flush_bytes(st, (uint64_t)dst[i] << 12, from, 4096, log);
        if (got < 0)
            return -1;
        if (got)
            return (int64_t)i + 1;
    }
    return (int64_t)n;
}
