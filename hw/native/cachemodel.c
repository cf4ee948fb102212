/*
 * Memory-hierarchy model: one physically indexed, write-back, write-allocate, LRU cache in
 * front of the machine's memory channels, with the persistence semantics of SCM ranges.
 *
 *  - Called per guest memory access from Unicorn memory hooks (cm_access) and by the kernel for
 *    its own copies (cm_access_range). The per-access path allocates nothing and calls no Python.
 *  - Every range has a CPU view (what loads/stores see); an scm range also has a media buffer
 *    (what survives power failure). A line reaches media only when it is written back:
 *    eviction, clflush, wbinvd (durable now); clwb/clflushopt snapshot the line into a pending
 *    queue that reaches media at the next fence; non-temporal stores bypass the cache and are
 *    queued the same way.
 *  - Persistence events (each scm line landing on media, each NT store landing, each fence, each
 *    block the storage device writes via cm_event) are numbered 1, 2, ...; cm_set_fail_at_event
 *    makes the power fail just before event K: nothing from K on reaches media (a callback set
 *    with cm_set_fail_event_callback may say "go on" instead: a fork server forks there).
 *
 * Every symbol is prefixed cm_ so this file can be concatenated after hotpath.c in one
 * translation unit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unicorn/unicorn.h>

#include "emu_abi.h"

#define CM_PAGE_SHIFT 12
#define CM_INVALID (~0ull)
#define CM_DIRTY 1u

/* ---------------------------------------------------------------- setup */

struct cm *cm_new(uint64_t size_bytes, uint32_t ways, uint32_t line_size)
{
    if (line_size < 8 || line_size > 64 || (line_size & (line_size - 1)) || ways == 0 || ways > 64)
        return NULL;
    if (size_bytes % ((uint64_t)ways * line_size))
        return NULL;
    uint64_t nsets = size_bytes / ((uint64_t)ways * line_size);
    if (nsets == 0 || nsets > (1u << 30))
        return NULL;
    struct cm *cm = calloc(1, sizeof *cm);
    if (!cm)
        return NULL;
    cm->size_bytes = size_bytes;
    cm->line_size = line_size;
    cm->line_shift = (uint32_t)__builtin_ctz(line_size);
    cm->ways = ways;
    cm->nsets = (uint32_t)nsets;
    cm->sets_pow2 = (nsets & (nsets - 1)) == 0;
    cm->set_mask = cm->sets_pow2 ? nsets - 1 : 0;
    uint64_t n = nsets * ways;
    cm->tags = malloc(n * sizeof *cm->tags);
    cm->stamps = calloc(n, sizeof *cm->stamps);
    cm->meta = calloc(n, 1);
    if (!cm->tags || !cm->stamps || !cm->meta) {
        free(cm->tags); free(cm->stamps); free(cm->meta); free(cm);
        return NULL;
    }
    memset(cm->tags, 0xff, n * sizeof *cm->tags);
    cm->last_line = CM_INVALID;
    cm->level = CM_LEVEL_FULL;
    return cm;
}

void cm_free(struct cm *cm)
{
    if (!cm)
        return;
    for (int i = 0; i < cm->nranges; i++)
        free(cm->ranges[i].wear);
    free(cm->tags); free(cm->stamps); free(cm->meta); free(cm->pq);
    free(cm);
}

/* Returns the range index, or -1 (bad arguments / full / overlap). */
int cm_add_range(struct cm *cm, uint64_t base, uint64_t size, int kind, int channel,
                 uint8_t *cpu, uint8_t *media)
{
    if (cm->nranges >= CM_MAX_RANGES || size == 0 || channel < 0 || channel >= CM_MAX_CHANNELS)
        return -1;
    if ((base | size) & ((1u << CM_PAGE_SHIFT) - 1))
        return -1;
    if (kind == CM_KIND_SCM && (!cpu || !media))
        return -1;
    for (int i = 0; i < cm->nranges; i++) {
        struct cm_range *r = &cm->ranges[i];
        if (base < r->base + r->size && r->base < base + size)
            return -1;
    }
    struct cm_range *r = &cm->ranges[cm->nranges];
    r->base = base; r->size = size; r->cpu = cpu; r->media = media;
    r->kind = kind; r->channel = channel;
    r->npages = size >> CM_PAGE_SHIFT;
    r->wear = NULL;
    if (kind == CM_KIND_SCM) {
        r->wear = calloc(r->npages, sizeof *r->wear);
        if (!r->wear)
            return -1;
    }
    return cm->nranges++;
}

void cm_set_level(struct cm *cm, int level) { cm->level = level; }
void cm_set_fail_at_event(struct cm *cm, uint64_t k) { cm->fail_at_event = k; }

void cm_set_fail_event_callback(struct cm *cm, int (*fn)(void *), void *ctx)
{
    cm->at_fail_event = fn;
    cm->at_fail_event_ctx = ctx;
}
void cm_set_power_fail_callback(struct cm *cm, void (*fn)(void *), void *ctx)
{
    cm->on_power_fail = fn;
    cm->on_power_fail_ctx = ctx;
}
void cm_mark_nt(struct cm *cm) { cm->nt_mark = 1; }
void cm_end_nt(struct cm *cm) { cm->nt_mark = 0; }

/* ---------------------------------------------------------------- helpers */

static inline int cm_find_range(struct cm *cm, uint64_t hpa)
{
    struct cm_range *r = &cm->ranges[cm->last_range];
    if (hpa - r->base < r->size)
        return cm->last_range;
    for (int i = 0; i < cm->nranges; i++) {
        r = &cm->ranges[i];
        if (hpa - r->base < r->size) {
            cm->last_range = i;
            return i;
        }
    }
    return -1;
}

static inline int cm_modelled(struct cm *cm, int ri)
{
    return ri >= 0 && (cm->level == CM_LEVEL_FULL || cm->ranges[ri].kind == CM_KIND_SCM);
}

static inline uint64_t cm_set_of(struct cm *cm, uint64_t line)
{
    return cm->sets_pow2 ? (line & cm->set_mask) : (line % cm->nsets);
}

/* slot index of a cached line, or -1 */
static inline int64_t cm_lookup_slot(struct cm *cm, uint64_t line)
{
    uint64_t base = cm_set_of(cm, line) * cm->ways;
    const uint64_t *t = cm->tags + base;
    for (uint32_t w = 0; w < cm->ways; w++)
        if (t[w] == line)
            return (int64_t)(base + w);
    return -1;
}

static inline void cm_invalidate_slot(struct cm *cm, uint64_t idx)
{
    if (cm->last_line == cm->tags[idx])
        cm->last_line = CM_INVALID;
    cm->tags[idx] = CM_INVALID;
    cm->meta[idx] = 0;
}

static inline int cm_channel_of(struct cm *cm, int ri, uint64_t hpa)
{
    struct cm_range *r = &cm->ranges[ri];
    if (r->nch <= 1) return r->channel;
    return r->chans[((hpa - r->base) >> r->gran_shift) % (uint64_t)r->nch];
}

int cm_set_interleave(struct cm *cm, int ri, int nch, const int32_t *chans, uint32_t gran_shift)
{
    if (ri < 0 || ri >= (int)cm->nranges || nch < 1 || nch > 8) return -1;
    for (int i = 0; i < nch; i++)
        if (chans[i] < 0 || chans[i] >= CM_MAX_CHANNELS) return -1;
    struct cm_range *r = &cm->ranges[ri];
    r->nch = nch;
    memcpy(r->chans, chans, sizeof(int32_t) * (size_t)nch);
    r->gran_shift = gran_shift;
    return 0;
}

static inline void cm_count_read(struct cm *cm, int ri, uint64_t hpa, int k, uint64_t bytes)
{
    struct cm_chan *c = &cm->chan[cm_channel_of(cm, ri, hpa)];
    c->read_req[k]++;
    c->read_bytes[k] += bytes;
}

static inline void cm_count_write(struct cm *cm, int ri, uint64_t hpa, int k, uint64_t bytes)
{
    struct cm_chan *c = &cm->chan[cm_channel_of(cm, ri, hpa)];
    c->write_req[k]++;
    c->write_bytes[k] += bytes;
}

static inline uint64_t cm_filter_bit(uint64_t line)
{
    return (line * 0x9E3779B97F4A7C15ull) >> 52; /* 12 bits */
}

static void cm_clear_queue(struct cm *cm)
{
    cm->pq_len = 0;
    cm->pq_live_wb = 0;
    cm->pq_live_nt = 0;
    memset(cm->filter, 0, sizeof cm->filter);
}

static void cm_do_power_fail(struct cm *cm, int eadr, int from_event);

/* One persistence event is about to happen: 1 = go ahead, 0 = the power failed instead. */
static int cm_event_check(struct cm *cm)
{
    if (cm->power_failed)
        return 0;
    if (cm->fail_at_event && cm->st.events + 1 >= cm->fail_at_event) {
        if (cm->at_fail_event && !cm->at_fail_event(cm->at_fail_event_ctx)) {
            cm->st.events++;
            return 1;
        }
        cm->st.failed_at_event = cm->st.events + 1;
        cm_do_power_fail(cm, 0, 1);
        return 0;
    }
    cm->st.events++;
    return 1;
}

int cm_event(struct cm *cm) { return cm_event_check(cm); }

/* A durable write of a whole line supersedes older pending entries of that line (the CPU view
 * it copies already holds everything they carry). */
static void cm_supersede(struct cm *cm, uint64_t line)
{
    if (!cm->pq_len)
        return;
    uint64_t b = cm_filter_bit(line);
    if (!(cm->filter[b >> 6] & (1ull << (b & 63))))
        return;
    for (uint64_t i = 0; i < cm->pq_len; i++) {
        struct cm_pend *p = &cm->pq[i];
        if (p->kind != CM_PEND_DEAD && (p->hpa >> cm->line_shift) == line) {
            if (p->kind == CM_PEND_WB) cm->pq_live_wb--; else cm->pq_live_nt--;
            p->kind = CM_PEND_DEAD;
        }
    }
}

static inline void cm_wear(struct cm_range *r, uint64_t hpa)
{
    r->wear[(hpa - r->base) >> CM_PAGE_SHIFT]++;
}

/* Durable write-back of one line: counted on its channel; on scm it is a persistence event and
 * the line's bytes go CPU view -> media. Returns 0 if the power failed instead. */
static int cm_wb_durable(struct cm *cm, uint64_t line, int ri, int k)
{
    struct cm_range *r = &cm->ranges[ri];
    if (r->kind == CM_KIND_SCM) {
        if (!cm_event_check(cm))
            return 0;
        uint64_t hpa = line << cm->line_shift;
        memcpy(r->media + (hpa - r->base), r->cpu + (hpa - r->base), cm->line_size);
        cm_wear(r, hpa);
        cm->st.media_line_writes++;
        cm_supersede(cm, line);
    }
    cm_count_write(cm, ri, line << cm->line_shift, k, cm->line_size);
    cm->st.writebacks++;
    return 1;
}

static struct cm_pend *cm_enqueue(struct cm *cm, uint64_t hpa, int kind, int ri)
{
    if (cm->pq_len == cm->pq_cap) {
        uint64_t cap = cm->pq_cap ? cm->pq_cap * 2 : 256;
        struct cm_pend *n = realloc(cm->pq, cap * sizeof *n);
        if (!n)
            return NULL;
        cm->pq = n;
        cm->pq_cap = cap;
    }
    struct cm_pend *p = &cm->pq[cm->pq_len++];
    p->hpa = hpa;
    p->kind = kind;
    p->range = ri;
    uint64_t b = cm_filter_bit(hpa >> cm->line_shift);
    cm->filter[b >> 6] |= 1ull << (b & 63);
    if (kind == CM_PEND_WB) { cm->pq_live_wb++; cm->st.pending_wb_issued++; }
    else { cm->pq_live_nt++; cm->st.pending_nt_issued++; }
    return p;
}

/* clwb/clflushopt write-back: counted now, reaches media at the next fence. */
static void cm_wb_pending(struct cm *cm, uint64_t line, int ri, int k)
{
    struct cm_range *r = &cm->ranges[ri];
    cm_count_write(cm, ri, line << cm->line_shift, k, cm->line_size);
    cm->st.writebacks++;
    if (r->kind == CM_KIND_SCM) {
        uint64_t hpa = line << cm->line_shift;
        struct cm_pend *p = cm_enqueue(cm, hpa, CM_PEND_WB, ri);
        if (p) {
            p->len = cm->line_size;
            memcpy(p->data, r->cpu + (hpa - r->base), cm->line_size);
        }
    }
}

/* ---------------------------------------------------------------- access path */

/* One line access (cached). Returns 0 if the power failed during it. */
static inline int cm_line(struct cm *cm, uint64_t line, int ri, int is_write, int k)
{
    uint64_t base = cm_set_of(cm, line) * cm->ways;
    uint64_t *t = cm->tags + base;
    uint32_t ways = cm->ways;
    cm->st.accesses++;
    int hit = -1;
    for (uint32_t w = 0; w < ways; w++)
        if (t[w] == line) { hit = (int)w; break; }
    if (hit >= 0) {
        uint64_t idx = base + (uint64_t)hit;
        cm->stamps[idx] = ++cm->clock;
        cm->meta[idx] |= (uint8_t)(is_write != 0);
        cm->st.hits++;
        cm->last_line = line;
        cm->last_idx = idx;
        return 1;
    }
    /* miss: read the line from its channel (write-allocate too) */
    cm->st.misses++;
    cm_count_read(cm, ri, line << cm->line_shift, k, cm->line_size);
    uint64_t *s = cm->stamps + base;
    uint32_t victim = 0;
    uint64_t best = UINT64_MAX;
    for (uint32_t w = 0; w < ways; w++) {
        if (t[w] == CM_INVALID) { victim = w; best = 0; break; }
        if (s[w] < best) { best = s[w]; victim = w; }
    }
    uint64_t idx = base + victim;
    if (t[victim] != CM_INVALID) {
        cm->st.evictions++;
        if (cm->meta[idx] & CM_DIRTY) {
            cm->st.dirty_evictions++;
            if (!cm_wb_durable(cm, t[victim], cm->meta[idx] >> 1, k))
                return 0;
        }
    }
    t[victim] = line;
    cm->stamps[idx] = ++cm->clock;
    cm->meta[idx] = (uint8_t)((ri << 1) | (is_write != 0));
    cm->last_line = line;
    cm->last_idx = idx;
    return 1;
}

/* Non-temporal store of n (<= 8) bytes within one line. */
static void cm_nt_piece(struct cm *cm, uint64_t hpa, uint32_t n, uint64_t value, int ri, int k)
{
    uint64_t line = hpa >> cm->line_shift;
    int64_t idx = cm_lookup_slot(cm, line);
    if (idx >= 0) {
        if (cm->meta[idx] & CM_DIRTY) {
            if (!cm_wb_durable(cm, line, cm->meta[idx] >> 1, k))
                return;
        }
        cm_invalidate_slot(cm, (uint64_t)idx);
    }
    cm_count_write(cm, ri, hpa, k, n);
    if (cm->ranges[ri].kind == CM_KIND_SCM) {
        struct cm_pend *p = cm_enqueue(cm, hpa, CM_PEND_NT, ri);
        if (p) {
            p->len = n;
            for (uint32_t i = 0; i < n; i++)
                p->data[i] = (uint8_t)(value >> (8 * i));
        }
    }
}

static void cm_access_slow(struct cm *cm, uint64_t hpa, uint32_t size, int is_write, int k,
                           uint64_t value)
{
    if (size == 0)
        return;
    uint64_t first = hpa >> cm->line_shift, last = (hpa + size - 1) >> cm->line_shift;
    if (cm->nt_mark && is_write) {
        cm->st.nt_stores++;
        uint64_t a = hpa, end = hpa + size;
        while (a < end) {
            uint64_t lend = ((a >> cm->line_shift) + 1) << cm->line_shift;
            uint32_t n = (uint32_t)((lend < end ? lend : end) - a);
            int ri = cm_find_range(cm, a);
            if (cm_modelled(cm, ri))
                cm_nt_piece(cm, a, n, value, ri, k);
            if (cm->power_failed)
                return;
            value = n >= 8 ? 0 : value >> (8 * n);
            a += n;
        }
        return;
    }
    for (uint64_t line = first; line <= last; line++) {
        int ri = cm_find_range(cm, line << cm->line_shift);
        if (!cm_modelled(cm, ri))
            continue;
        if (!cm_line(cm, line, ri, is_write, k))
            return;
    }
}

void cm_access(struct cm *cm, uint64_t hpa, uint32_t size, int is_write, int is_kernel,
               uint64_t value)
{
    if (cm->level == CM_LEVEL_FAST || cm->power_failed)
        return;
    uint64_t line = hpa >> cm->line_shift;
    if (line == cm->last_line && !cm->nt_mark && ((hpa + size - 1) >> cm->line_shift) == line) {
        /* the most recently used line is already MRU in its set */
        cm->st.accesses++;
        cm->st.hits++;
        cm->meta[cm->last_idx] |= (uint8_t)(is_write != 0);
        return;
    }
    cm_access_slow(cm, hpa, size, is_write, is_kernel != 0, value);
}

void cm_access_range(struct cm *cm, uint64_t hpa, uint64_t len, int is_write, int is_kernel)
{
    if (cm->level == CM_LEVEL_FAST || cm->power_failed || len == 0)
        return;
    int k = is_kernel != 0;
    uint64_t first = hpa >> cm->line_shift, last = (hpa + len - 1) >> cm->line_shift;
    for (uint64_t line = first; line <= last; line++) {
        int ri = cm_find_range(cm, line << cm->line_shift);
        if (!cm_modelled(cm, ri))
            continue;
        if (!cm_line(cm, line, ri, is_write, k))
            return;
    }
}

/* Unicorn UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE callback (user_data = struct cm *): guest
 * accesses, attributed to user code. */
void cm_uc_mem_hook(uc_engine *uc, uc_mem_type type, uint64_t address, int size, int64_t value,
                    void *user_data)
{
    (void)uc;
    cm_access((struct cm *)user_data, address, (uint32_t)size, type == UC_MEM_WRITE, 0,
              (uint64_t)value);
}

/* ---------------------------------------------------------------- flushes and fences */

/* op: 0 clflush, 1 clflushopt, 2 clwb */
static void cm_flush_op(struct cm *cm, uint64_t hpa, int k, int op)
{
    if (cm->level == CM_LEVEL_FAST || cm->power_failed)
        return;
    int ri = cm_find_range(cm, hpa);
    if (!cm_modelled(cm, ri))
        return;
    if (op == 0) cm->st.clflush++; else if (op == 1) cm->st.clflushopt++; else cm->st.clwb++;
    uint64_t line = hpa >> cm->line_shift;
    int64_t idx = cm_lookup_slot(cm, line);
    if (idx < 0)
        return;
    int lri = cm->meta[idx] >> 1;
    if (cm->meta[idx] & CM_DIRTY) {
        if (op == 0) {
            if (!cm_wb_durable(cm, line, lri, k))
                return;
        } else {
            cm_wb_pending(cm, line, lri, k);
        }
    }
    if (op == 2)
        cm->meta[idx] &= (uint8_t)~CM_DIRTY;
    else
        cm_invalidate_slot(cm, (uint64_t)idx);
}

void cm_clflush(struct cm *cm, uint64_t hpa, int is_kernel) { cm_flush_op(cm, hpa, is_kernel != 0, 0); }

/* clflush every line of [hpa, hpa+len): the kernel's bulk flush (checkpoint commits). Stops
 * at a power failure; the caller checks power_failed. */
void cm_clflush_range(struct cm *cm, uint64_t hpa, uint64_t len, int is_kernel)
{
    if (len == 0)
        return;
    uint64_t first = hpa >> cm->line_shift, last = (hpa + len - 1) >> cm->line_shift;
    for (uint64_t line = first; line <= last && !cm->power_failed; line++)
        cm_flush_op(cm, line << cm->line_shift, is_kernel != 0, 0);
}
/* A store of [hpa, hpa+len), then clflush of its lines: the kernel's persistent writes (checkpoint
 * pages, DAX blocks) in one call. Stops at a power failure, as the two calls would. */
void cm_store_flush(struct cm *cm, uint64_t hpa, uint64_t len, int is_kernel)
{
    cm_access_range(cm, hpa, len, 1, is_kernel);
    cm_clflush_range(cm, hpa, len, is_kernel);
}
void cm_clflushopt(struct cm *cm, uint64_t hpa, int is_kernel) { cm_flush_op(cm, hpa, is_kernel != 0, 1); }
void cm_clwb(struct cm *cm, uint64_t hpa, int is_kernel) { cm_flush_op(cm, hpa, is_kernel != 0, 2); }

static void cm_apply_pending(struct cm *cm, struct cm_pend *p)
{
    struct cm_range *r = &cm->ranges[p->range];
    memcpy(r->media + (p->hpa - r->base), p->data, p->len);
    cm_wear(r, p->hpa);
    if (p->kind == CM_PEND_WB) { cm->st.media_line_writes++; cm->pq_live_wb--; }
    else { cm->st.media_nt_writes++; cm->pq_live_nt--; }
    p->kind = CM_PEND_DEAD;
}

/* kind: 0 sfence, 1 mfence, 2 kernel fence. The fence is an event, then each pending entry
 * landing on media is one, in issue order. */
void cm_fence(struct cm *cm, int is_kernel, int kind)
{
    (void)is_kernel;
    if (cm->level == CM_LEVEL_FAST || cm->power_failed)
        return;
    if (kind == CM_FENCE_SFENCE) cm->st.sfence++;
    else if (kind == CM_FENCE_MFENCE) cm->st.mfence++;
    else cm->st.kfence++;
    if (!cm_event_check(cm))
        return;
    for (uint64_t i = 0; i < cm->pq_len; i++) {
        struct cm_pend *p = &cm->pq[i];
        if (p->kind == CM_PEND_DEAD)
            continue;
        if (!cm_event_check(cm))
            return;
        cm_apply_pending(cm, p);
    }
    cm_clear_queue(cm);
}

void cm_wbinvd(struct cm *cm)
{
    if (cm->level == CM_LEVEL_FAST || cm->power_failed)
        return;
    cm->st.wbinvd++;
    uint64_t n = (uint64_t)cm->nsets * cm->ways;
    for (uint64_t i = 0; i < n; i++) {
        if (cm->tags[i] == CM_INVALID)
            continue;
        if (cm->meta[i] & CM_DIRTY) {
            if (!cm_wb_durable(cm, cm->tags[i], cm->meta[i] >> 1, 1))
                return;
        }
        cm_invalidate_slot(cm, i);
    }
}

/* Kernel non-temporal store of arbitrary data: written to the CPU view and queued, in pieces
 * of at most 8 bytes that do not cross a line. */
void cm_nt_store(struct cm *cm, uint64_t hpa, const uint8_t *data, uint64_t len, int is_kernel)
{
    uint64_t a = hpa, end = hpa + len;
    while (a < end) {
        uint64_t lend = ((a >> cm->line_shift) + 1) << cm->line_shift;
        uint64_t n = end - a;
        if (n > 8) n = 8;
        if (a + n > lend) n = lend - a;
        uint64_t v = 0;
        for (uint64_t i = 0; i < n; i++)
            v |= (uint64_t)data[a - hpa + i] << (8 * i);
        cm->nt_mark = 1;
        cm_access(cm, a, (uint32_t)n, 1, is_kernel, v);
        cm->nt_mark = 0;
        int ri = cm_find_range(cm, a);
        if (ri >= 0 && cm->ranges[ri].cpu)
            memcpy(cm->ranges[ri].cpu + (a - cm->ranges[ri].base), data + (a - hpa), n);
        a += n;
    }
}

/* ---------------------------------------------------------------- power */

static void cm_do_power_fail(struct cm *cm, int eadr, int from_event)
{
    uint64_t n = (uint64_t)cm->nsets * cm->ways;
    if (!cm->power_failed) {
        cm->st.power_failures++;
        cm->st.lost_dirty_lines = cm->st.lost_dirty_dram_lines = 0;
        cm->st.lost_pending_wb = cm->st.lost_pending_nt = 0;
        cm->st.eadr_flushed_lines = cm->st.eadr_flushed_pending = 0;
        if (eadr) {
            /* the pending queues first (older), then the dirty lines (newest data) */
            for (uint64_t i = 0; i < cm->pq_len; i++) {
                struct cm_pend *p = &cm->pq[i];
                if (p->kind == CM_PEND_DEAD)
                    continue;
                cm_apply_pending(cm, p);
                cm->st.eadr_flushed_pending++;
            }
        } else {
            cm->st.lost_pending_wb = cm->pq_live_wb;
            cm->st.lost_pending_nt = cm->pq_live_nt;
        }
        for (uint64_t i = 0; i < n; i++) {
            if (cm->tags[i] == CM_INVALID || !(cm->meta[i] & CM_DIRTY))
                continue;
            struct cm_range *r = &cm->ranges[cm->meta[i] >> 1];
            if (r->kind != CM_KIND_SCM) {
                cm->st.lost_dirty_dram_lines++;
            } else if (eadr) {
                uint64_t hpa = cm->tags[i] << cm->line_shift;
                memcpy(r->media + (hpa - r->base), r->cpu + (hpa - r->base), cm->line_size);
                cm_wear(r, hpa);
                cm->st.media_line_writes++;
                cm->st.eadr_flushed_lines++;
            } else {
                cm->st.lost_dirty_lines++;
            }
        }
    }
    memset(cm->tags, 0xff, n * sizeof *cm->tags);
    memset(cm->meta, 0, n);
    cm->last_line = CM_INVALID;
    cm->nt_mark = 0;
    cm_clear_queue(cm);
    cm->power_failed = 1;
    if (from_event && cm->on_power_fail)
        cm->on_power_fail(cm->on_power_fail_ctx);
}

/* Power cut now. Returns what was lost: dirty scm lines + pending write-backs + pending NT
 * stores (details in stats.lost_*). */
uint64_t cm_power_fail(struct cm *cm, int eadr)
{
    cm_do_power_fail(cm, eadr, 0);
    return cm->st.lost_dirty_lines + cm->st.lost_pending_wb + cm->st.lost_pending_nt;
}

/* Power back on (after a restore): the model runs again; the fail-at-event trigger is cleared. */
void cm_power_on(struct cm *cm)
{
    cm->power_failed = 0;
    cm->fail_at_event = 0;
}

/* Empty the cache and the pending queues without writing anything back. */
/* ---------------------------------------------------------------- state
 * The whole model as a flat byte string (a machine snapshot): counters, every line's tag, LRU
 * stamp and dirty bit, the pending queue and each SCM page's wear. Geometry and ranges are
 * the configuration's: cm_load checks them and refuses a string of another model. */

struct cm_state_head {
    uint64_t magic, nsets, ways, line_size, nranges, pq_len;
};
#define CM_STATE_MAGIC 0x31657461747343ULL  /* "Cstate1" */

static uint64_t cm_wear_words(const struct cm *cm)
{
    uint64_t n = 0;
    for (int i = 0; i < cm->nranges; i++)
        if (cm->ranges[i].wear)
            n += cm->ranges[i].npages;
    return n;
}

uint64_t cm_state_size(struct cm *cm)
{
    uint64_t lines = (uint64_t)cm->nsets * cm->ways;
    return sizeof(struct cm_state_head) + sizeof cm->st + sizeof cm->chan + 4 * sizeof(int32_t) + 4 * sizeof(uint64_t)
           + sizeof cm->filter + lines * (sizeof *cm->tags + sizeof *cm->stamps + 1)
           + cm->pq_len * sizeof(struct cm_pend) + cm_wear_words(cm) * sizeof(uint32_t);
}

#define PUT(ptr, n) do { memcpy(out, (ptr), (n)); out += (n); } while (0)
#define GET(ptr, n) do { memcpy((ptr), in, (n)); in += (n); } while (0)

void cm_save(struct cm *cm, uint8_t *out)
{
    uint64_t lines = (uint64_t)cm->nsets * cm->ways;
    struct cm_state_head h = {CM_STATE_MAGIC, cm->nsets, cm->ways, cm->line_size, (uint64_t)cm->nranges, cm->pq_len};
    int32_t flags[4] = {cm->level, cm->power_failed, cm->nt_mark, 0};
    uint64_t words[4] = {cm->fail_at_event, cm->clock, cm->pq_live_wb, cm->pq_live_nt};
    PUT(&h, sizeof h);
    PUT(&cm->st, sizeof cm->st);
    PUT(cm->chan, sizeof cm->chan);
    PUT(flags, sizeof flags);
    PUT(words, sizeof words);
    PUT(cm->filter, sizeof cm->filter);
    PUT(cm->tags, lines * sizeof *cm->tags);
    PUT(cm->stamps, lines * sizeof *cm->stamps);
    PUT(cm->meta, lines);
    PUT(cm->pq, cm->pq_len * sizeof(struct cm_pend));
    for (int i = 0; i < cm->nranges; i++)
        if (cm->ranges[i].wear)
            PUT(cm->ranges[i].wear, cm->ranges[i].npages * sizeof(uint32_t));
}

int cm_load(struct cm *cm, const uint8_t *in, uint64_t n)
{
    struct cm_state_head h;
    if (n < sizeof h)
        return -1;
    memcpy(&h, in, sizeof h);
    if (h.magic != CM_STATE_MAGIC || h.nsets != cm->nsets || h.ways != cm->ways || h.line_size != cm->line_size
        || h.nranges != (uint64_t)cm->nranges)
        return -1;
    uint64_t saved_pq = cm->pq_len;
    cm->pq_len = h.pq_len;
    uint64_t want = cm_state_size(cm);
    cm->pq_len = saved_pq;
    if (n != want)
        return -1;
    if (h.pq_len > cm->pq_cap) {
        struct cm_pend *pq = realloc(cm->pq, h.pq_len * sizeof *pq);
        if (!pq)
            return -2;
        cm->pq = pq;
        cm->pq_cap = h.pq_len;
    }
    uint64_t lines = (uint64_t)cm->nsets * cm->ways;
    int32_t flags[4];
    uint64_t words[4];
    in += sizeof h;
    GET(&cm->st, sizeof cm->st);
    GET(cm->chan, sizeof cm->chan);
    GET(flags, sizeof flags);
    GET(words, sizeof words);
    GET(cm->filter, sizeof cm->filter);
    GET(cm->tags, lines * sizeof *cm->tags);
    GET(cm->stamps, lines * sizeof *cm->stamps);
    GET(cm->meta, lines);
    GET(cm->pq, h.pq_len * sizeof(struct cm_pend));
    for (int i = 0; i < cm->nranges; i++)
        if (cm->ranges[i].wear)
            GET(cm->ranges[i].wear, cm->ranges[i].npages * sizeof(uint32_t));
    cm->level = flags[0];
    cm->power_failed = flags[1];
    cm->nt_mark = flags[2];
    cm->fail_at_event = words[0];
    cm->clock = words[1];
    cm->pq_live_wb = words[2];
    cm->pq_live_nt = words[3];
    cm->pq_len = h.pq_len;
    cm->last_line = CM_INVALID;   /* the MRU shortcut is rebuilt by the next access */
    cm->last_idx = 0;
    return 0;
}

#undef PUT
#undef GET

void cm_reset(struct cm *cm)
{
    uint64_t n = (uint64_t)cm->nsets * cm->ways;
    memset(cm->tags, 0xff, n * sizeof *cm->tags);
    memset(cm->meta, 0, n);
    cm->last_line = CM_INVALID;
    cm->nt_mark = 0;
    cm_clear_queue(cm);
}

void cm_reset_stats(struct cm *cm)
{
    memset(&cm->st, 0, sizeof cm->st);
    memset(cm->chan, 0, sizeof cm->chan);
    for (int i = 0; i < cm->nranges; i++)
        if (cm->ranges[i].wear)
            memset(cm->ranges[i].wear, 0, cm->ranges[i].npages * sizeof *cm->ranges[i].wear);
}

/* ---------------------------------------------------------------- inspection */

/* -1 not cached, 0 clean, 1 dirty */
int cm_line_state(struct cm *cm, uint64_t hpa)
{
    int64_t idx = cm_lookup_slot(cm, hpa >> cm->line_shift);
    return idx < 0 ? -1 : (int)(cm->meta[idx] & CM_DIRTY);
}

void cm_note_unobserved(struct cm *cm, uint64_t hpa, const uint8_t *cpu, const uint8_t *media, uint64_t n)
{
    for (uint64_t off = 0; off + 64 <= n; off += 64) {
        if (memcmp(cpu + off, media + off, 64) == 0 || cm_line_state(cm, hpa + off) == 1)
            continue;
        cm_access_range(cm, hpa + off, 64, 1, 0);
    }
}

uint64_t cm_pending_count(struct cm *cm) { return cm->pq_live_wb + cm->pq_live_nt; }

uint64_t cm_dirty_lines(struct cm *cm)
{
    uint64_t n = (uint64_t)cm->nsets * cm->ways, d = 0;
    for (uint64_t i = 0; i < n; i++)
        d += cm->tags[i] != CM_INVALID && (cm->meta[i] & CM_DIRTY);
    return d;
}

/* Microbenchmark: n 8-byte loads at base, base+stride, ... wrapping at span. Returns ns. */
uint64_t cm_bench(struct cm *cm, uint64_t n, uint64_t base, uint64_t stride, uint64_t span,
                  int is_write)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        cm_access(cm, base + off, 8, is_write, 0, 0);
        off += stride;
        if (off >= span)
            off -= span;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000ull + (uint64_t)(t1.tv_nsec - t0.tv_nsec);
}

/* Address of cm_uc_mem_hook, for uc_hook_add from Python. */
void *cm_uc_mem_hook_ptr(void) { return (void *)cm_uc_mem_hook; }
