/*
 * The one description of the native hot path's shared data and entry points: the C sources
 * (hotpath.c, cachemodel.c, sites.c, compiled as one translation unit) include it, and cffi reads
 * it as its cdef (hw/native/__init__.py drops the preprocessor lines but `#define NAME number`),
 * so each struct's layout is written once. Hence only what cffi's parser accepts: integer
 * defines, enums, structs, prototypes. The includer brings <stdint.h>, <unicorn/unicorn.h> and
 * <capstone/capstone.h> (uc_engine, uc_context, csh) first.
 */
#ifndef EMU_ABI_H
#define EMU_ABI_H

/* ---------------------------------------------------------------- hot path (hotpath.c) */

#define MAX_RANGES 16

#define EPT_A 1  /* ept_bits[gpfn]: accessed, dirty (hw/ept.py) */
#define EPT_D 2

struct ram_range { uint64_t hpa; uint64_t size; uint8_t *host; };

struct icache;  /* the per-address-space block-count table (hotpath.c) */

struct emu_state {
    struct ram_range ranges[MAX_RANGES];
    int nranges;
    uint64_t cr3;            /* gpa of the running process's PML4 (0: nothing mapped) */
    uint32_t *ept;           /* gpfn -> hpfn */
    uint8_t *ept_bits;       /* gpfn -> EPT_A | EPT_D */
    uint64_t ept_pages;
    struct icache *icache;   /* the running address space's block-count table */
    /* last translation fault */
    uint64_t fault_gva;
    int fault_access;        /* 0 read, 1 write, 2 fetch */
    int fault_pending;
    /* instruction clock. With the patched Unicorn (hw/native/unicorn/) the translated code
     * itself reads and writes the five fields from icount to last_block_count (its struct
     * uc_icount, same order): keep them together. */
    uint64_t icount;
    uint64_t limit;          /* translated code: a block that would pass it calls back first */
    uint64_t last_block_gva; /* the last block counted (a block is counted whole, as it starts) */
    uint32_t last_block_size;
    uint32_t last_block_count;
    uint64_t deadline;       /* stop the CPU before a block that would take icount past it */
    int deadline_hit;
    int icount_in_tb;        /* 1: counted by the translated code; 0: by the block hook */
    uint64_t blocks_decoded;
    csh cs;
    struct cm *cm;           /* cache model, NULL at model level fast */
    uc_engine *uc;
    uint32_t nt_remaining;   /* bytes of the current non-temporal store still to come */
    int power_failed;
    uint64_t tlb_fills;
    uint64_t fills_at_flush; /* tlb_fills at the last flush the block hook asked for */
};

struct emu_state *emu_state_new(void);
int emu_add_range(struct emu_state *st, uint64_t hpa, uint64_t size, uint8_t *host);
void emu_set_ept(struct emu_state *st, uint32_t *ept, uint8_t *bits, uint64_t pages);
int emu_install(uc_engine *uc, struct emu_state *st, int use_patch, int access_stops);
void emu_tlb_flush(uc_engine *uc);
void emu_tlb_flush_page(uc_engine *uc, uint64_t gva);
uint64_t emu_fault_gva(uc_engine *uc, struct emu_state *st);
void emu_tlb_flush_dirty(uc_engine *uc, const uint64_t *leaves, uint64_t n);
struct icache *emu_icache_new(void);
void emu_icache_free(struct icache *ic);
void emu_icache_clear(struct icache *ic);
uint64_t emu_access(struct emu_state *st, uint64_t cr3, uint64_t gva, int access);
int emu_read_regs(uc_engine *uc, uc_context *ctx, const int *ids, int n, uint8_t *out);
uint64_t emu_pt_leaves(struct emu_state *st, uint64_t cr3, uint64_t start, uint64_t end, uint64_t *out, uint64_t max);
uint64_t emu_translate(struct emu_state *st, uint64_t cr3, uint64_t gva, int access);
int emu_read_virt(struct emu_state *st, uint64_t cr3, uint64_t gva, uint8_t *buf, uint64_t n);
int emu_count_insns(struct emu_state *st, uint64_t gva, uint32_t size, uint64_t stop_gva);

/* ---------------------------------------------------------------- EPT scan (eptscan.c) */

/* The dirty frames of [first, first+count) into dirty[] (returned: how many), the accessed ones
   into accessed[] (may be NULL) and their number into *naccessed (may be NULL); clear: reset the
   bits of every frame listed. */
uint64_t emu_ept_scan(uint8_t *bits, uint64_t first, uint64_t count, uint32_t *dirty,
                      uint32_t *accessed, uint64_t *naccessed, int clear);
/* out[i] = first + i for i < n (an EPT window over a run of host frames, in order). */
void emu_fill_seq(uint32_t *out, uint64_t n, uint32_t first);

/* ---------------------------------------------------------------- checkpoint scan (ckptscan.c) */

/* What an image records of one mapped page (pfn and gen tell whether it changed since). */
struct ckpt_page { uint64_t gva; uint32_t pfn; uint32_t gen; uint32_t pg; uint32_t crc; };
#define CKPT_NEW 4294967295  /* pg of a page that must be stored afresh */

/* dirty[pfn] = value for every frame a leaf (emu_pt_leaves rows) maps with its dirty bit set. */
void emu_ckpt_mark_dirty(const uint64_t *leaves, uint64_t n, uint8_t *dirty, const uint8_t *ram, uint64_t npfn,
                         uint8_t value);
/* One address space's leaves against the previous image's records `prev` (gva order): out gets a
   record per leaf not in `skip`, pg = CKPT_NEW for those to store (their indices into fresh[]);
   every dirty bit is cleared (the table page logged in log[]). Returns the records written.
   Frames that are not the allocator's (!ram[pfn], or pfn >= npfn: the `ram` mask of RAM and
   storage lent as memory) are device pages: an image page a restart mapped back in place
   (img_pg[pfn - img_base] != CKPT_NEW, for pfn in [img_base, img_base + img_n)) is recorded as
   that page with img_crc, or, when img_dirty[pfn - img_base] (a page of the image file written
   since the last checkpoint, not in any image yet: it is flushed in place), as that page with
   crc 0 among fresh[], its PTE write-protected and its dirty bit cleared; any other (a DAX
   file's own page) is left out: it comes back from the file. img_dirty may be NULL. */
uint64_t emu_ckpt_diff(struct emu_state *st, const uint64_t *leaves, uint64_t n,
                       const struct ckpt_page *prev, uint64_t m, const uint8_t *skip, const uint8_t *dirty,
                       const uint32_t *gen, const uint8_t *ram, uint64_t npfn, uint8_t *log, struct ckpt_page *out,
                       uint32_t *fresh, uint64_t *nfresh, uint64_t *ncleared,
                       const uint32_t *img_pg, const uint32_t *img_crc, const uint8_t *img_dirty,
                       uint64_t img_base, uint64_t img_n);
/* Records as the image's page list: (gva u64, page u32, crc u32) little-endian, 16 bytes each. */
void emu_ckpt_pack(const struct ckpt_page *recs, uint64_t n, uint8_t *out);
/* Image-page reference counts over such records (the page of each, at byte 8): delta +1 counts
   each record's page once more and marks it used; -1 counts it once less and clears used[] when
   no image holds it any more. Records naming a page >= npages are ignored. */
void emu_ckpt_refs(const uint8_t *recs, uint64_t n, uint16_t *refs, uint8_t *used, uint64_t npages, int delta);

/* The checkpoint's page copies, n of them in one call: guest frame src[i] into guest frame dst[i]
   (a page of the SCM range), its store and the clflush of its 64 lines through the cache model
   (st->cm, when there is one) as the kernel's, and crc[i] = crc32 of the page. Both frames are
   logged as reached by the host (log[]), dst's EPT accessed and dirty bits set. Returns how many
   pages were stored: fewer than n when the power failed at a flush of page (return - 1). -1 when
   a frame is outside guest-physical memory. */
int64_t emu_ckpt_store(struct emu_state *st, const uint32_t *src, const uint32_t *dst, uint64_t n, uint32_t *crc,
                       uint8_t *log);

/* The kernel's store of n bytes at guest-physical gpa (within one page) and the clflush of their
   lines through the cache model, as GuestMemory.page + store_flush: the page logged in log[],
   its EPT accessed and dirty bits set. 0, 1 when the power failed at a flush, -1 outside guest
   memory. */
int emu_store_flush_bytes(struct emu_state *st, uint64_t gpa, const uint8_t *data, uint64_t n, uint8_t *log);

/* ---------------------------------------------------------------- cache model (cachemodel.c) */

#define CM_MAX_RANGES 16
#define CM_MAX_CHANNELS 16
#define CM_FILTER_WORDS 64 /* 4096-bit filter of line numbers with pending entries */

enum { CM_LEVEL_FAST = 0, CM_LEVEL_PERSIST = 1, CM_LEVEL_FULL = 2 };
enum { CM_KIND_DRAM = 0, CM_KIND_SCM = 1 };
enum { CM_PEND_WB = 0, CM_PEND_NT = 1, CM_PEND_DEAD = 2 };
enum { CM_FENCE_SFENCE = 0, CM_FENCE_MFENCE = 1, CM_FENCE_KERNEL = 2 };

struct cm_range {
    uint64_t base;
    uint64_t size;
    uint8_t *cpu;     /* CPU view (may be NULL for dram) */
    uint8_t *media;   /* scm only: what survives power failure */
    uint32_t *wear;   /* scm only: line/NT writes landing per 4 KiB page */
    uint64_t npages;
    int32_t kind;     /* CM_KIND_DRAM / CM_KIND_SCM */
    int32_t channel;
    int32_t nch;      /* > 1: interleaved over chans[] in 2**gran_shift-byte granules */
    int32_t chans[8];
    uint32_t gran_shift;
};

/* per channel; index [0] user, [1] kernel */
struct cm_chan {
    uint64_t read_req[2];
    uint64_t write_req[2];
    uint64_t read_bytes[2];
    uint64_t write_bytes[2];
};

struct cm_stats {
    uint64_t accesses;          /* line accesses modelled (a straddling access counts 2) */
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions;         /* valid victims replaced */
    uint64_t dirty_evictions;
    uint64_t writebacks;        /* dirty evictions + flush write-backs (clflush/clflushopt/clwb/NT/wbinvd) */
    uint64_t clflush;
    uint64_t clflushopt;
    uint64_t clwb;
    uint64_t sfence;
    uint64_t mfence;
    uint64_t kfence;
    uint64_t wbinvd;
    uint64_t nt_stores;
    uint64_t events;            /* persistence events performed */
    uint64_t media_line_writes; /* lines landed on scm media (write-backs + applied snapshots) */
    uint64_t media_nt_writes;   /* NT stores landed on scm media */
    uint64_t pending_wb_issued;
    uint64_t pending_nt_issued;
    uint64_t power_failures;
    uint64_t lost_dirty_lines;  /* last power failure: dirty scm lines lost (adr) */
    uint64_t lost_dirty_dram_lines;
    uint64_t lost_pending_wb;   /* last power failure: pending write-backs lost */
    uint64_t lost_pending_nt;   /* last power failure: pending NT stores lost */
    uint64_t eadr_flushed_lines;   /* last power failure under eadr: lines/entries saved */
    uint64_t eadr_flushed_pending;
    uint64_t failed_at_event;   /* event number that did not happen (0: none) */
};

struct cm_pend {
    uint64_t hpa;      /* line address (WB) or store address (NT) */
    uint32_t len;
    int32_t kind;      /* CM_PEND_* */
    int32_t range;
    uint32_t _pad;
    uint8_t data[64];
};

struct cm {
    struct cm_stats st;
    struct cm_chan chan[CM_MAX_CHANNELS];
    int32_t level;
    int32_t power_failed;
    int32_t nt_mark;
    int32_t nranges;
    uint64_t fail_at_event;     /* 0: never */
    void (*on_power_fail)(void *ctx);
    void *on_power_fail_ctx;
    /* At event fail_at_event, if set: asked first; 0 = go on (it moved fail_at_event on: a fork
     * server's parent), 1 = the power fails here (its child). */
    int (*at_fail_event)(void *ctx);
    void *at_fail_event_ctx;
    /* geometry */
    uint64_t size_bytes;
    uint32_t line_size;
    uint32_t line_shift;
    uint32_t ways;
    uint32_t nsets;
    uint64_t set_mask;          /* nsets - 1 if a power of two, else 0 (use modulo) */
    int32_t sets_pow2;
    int32_t last_range;
    /* arrays, [set * ways + way] */
    uint64_t *tags;             /* line number or CM_INVALID */
    uint64_t *stamps;           /* LRU: larger = more recent */
    uint8_t *meta;              /* bit 0 dirty, bits 1.. range index */
    uint64_t clock;
    uint64_t last_line;         /* MRU line (shortcut) and its slot */
    uint64_t last_idx;
    struct cm_range ranges[CM_MAX_RANGES];
    /* pending queue (clwb/clflushopt snapshots and NT stores), in issue order */
    struct cm_pend *pq;
    uint64_t pq_len;
    uint64_t pq_cap;
    uint64_t pq_live_wb;
    uint64_t pq_live_nt;
    uint64_t filter[CM_FILTER_WORDS];
};

struct cm *cm_new(uint64_t size_bytes, uint32_t ways, uint32_t line_size);
void cm_free(struct cm *cm);
int cm_add_range(struct cm *cm, uint64_t base, uint64_t size, int kind, int channel,
                 uint8_t *cpu, uint8_t *media);
void cm_set_level(struct cm *cm, int level);
void cm_set_fail_at_event(struct cm *cm, uint64_t k);
void cm_set_power_fail_callback(struct cm *cm, void (*fn)(void *), void *ctx);
void cm_set_fail_event_callback(struct cm *cm, int (*fn)(void *), void *ctx);
void cm_mark_nt(struct cm *cm);
void cm_end_nt(struct cm *cm);
void cm_access(struct cm *cm, uint64_t hpa, uint32_t size, int is_write, int is_kernel, uint64_t value);
void cm_access_range(struct cm *cm, uint64_t hpa, uint64_t len, int is_write, int is_kernel);
void cm_clflush(struct cm *cm, uint64_t hpa, int is_kernel);
void cm_clflush_range(struct cm *cm, uint64_t hpa, uint64_t len, int is_kernel);
void cm_store_flush(struct cm *cm, uint64_t hpa, uint64_t len, int is_kernel);
void cm_clflushopt(struct cm *cm, uint64_t hpa, int is_kernel);
void cm_clwb(struct cm *cm, uint64_t hpa, int is_kernel);
void cm_fence(struct cm *cm, int is_kernel, int kind);
void cm_wbinvd(struct cm *cm);
void cm_nt_store(struct cm *cm, uint64_t hpa, const uint8_t *data, uint64_t len, int is_kernel);
int cm_event(struct cm *cm);
uint64_t cm_power_fail(struct cm *cm, int eadr);
void cm_power_on(struct cm *cm);
void cm_reset(struct cm *cm);
uint64_t cm_state_size(struct cm *cm);
void cm_save(struct cm *cm, uint8_t *out);
int cm_load(struct cm *cm, const uint8_t *in, uint64_t n);
void cm_reset_stats(struct cm *cm);
int cm_line_state(struct cm *cm, uint64_t hpa);
/* Stores a program made unseen in a window the CPU writes directly (level persist's storage
   window), over [hpa, hpa+n) (n a multiple of 64): each 64-byte piece whose CPU bytes differ from
   its media and whose line the model does not hold dirty is reported as a user store, in address
   order (hw/guestmem.py, before a clflush). */
void cm_note_unobserved(struct cm *cm, uint64_t hpa, const uint8_t *cpu, const uint8_t *media, uint64_t n);
uint64_t cm_pending_count(struct cm *cm);
uint64_t cm_dirty_lines(struct cm *cm);
uint64_t cm_bench(struct cm *cm, uint64_t n, uint64_t base, uint64_t stride, uint64_t span, int is_write);
void *cm_uc_mem_hook_ptr(void);
int cm_set_interleave(struct cm *cm, int ri, int nch, const int32_t *chans, uint32_t gran_shift);

/* ---------------------------------------------------------------- persistence sites (sites.c) */

enum site_kind { SITE_CLFLUSH, SITE_CLFLUSHOPT, SITE_CLWB, SITE_SFENCE, SITE_MFENCE, SITE_WBINVD, SITE_NT };

struct site {
    struct emu_state *st;
    uint64_t gva;
    uint8_t bytes[16];
    uint32_t len;
    int kind;
    int base_reg, index_reg, seg_reg;  /* unicorn register ids, 0 = none */
    int rip_relative;
    uint32_t scale;
    int64_t disp;
    uint32_t nt_bytes;
    uint64_t hits;
};

struct site *emu_site_new(struct emu_state *st);
int emu_site_install(uc_engine *uc, struct site *s);
int emu_install_mem_hook(uc_engine *uc, struct emu_state *st, uint64_t begin, uint64_t end, int direct);
void emu_attach_cache(uc_engine *uc, struct emu_state *st, struct cm *cm);
int emu_map_scm_mmio(uc_engine *uc, struct emu_state *st, uint64_t base, uint64_t size, uint8_t *host);

#endif
