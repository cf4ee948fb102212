/*
 * The machine's per-block and per-translation hot path, registered directly with libunicorn.
 *
 *  - MMU: walks the running process's x86-64 4-level page table (which lives in guest-physical
 *    frames, as on real hardware) for Unicorn's UC_TLB_VIRTUAL fill callback, setting the
 *    accessed and dirty bits. A clean page is filled read-only, so the first store to it comes
 *    back here as a write and sets D exactly. A miss records the fault for the Python kernel.
 *  - EPT: every guest-physical frame number maps to a host-physical one (`ept[gpfn]`), with
 *    accessed/dirty bits in `ept_bits[gpfn]` set by the walk, the fill and the kernel's accesses.
 *    Unicorn's "physical" addresses are host-physical: the memory map's ranges and channels.
 *  - Instruction clock: a block hook adds the block's instruction count, cached per address
 *    space in a hash table keyed by (gva, size) and decoded once with capstone on a miss. When
 *    the count passes a deadline (scheduler quantum, power cut) it stops the CPU. With the
 *    patched libunicorn (hw/native/unicorn/icount.patch, found at run time) the translated
 *    code counts instead, with no call per block: see emu_install.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicorn/unicorn.h>
#include <capstone/capstone.h>

#define PTE_P   (1ull << 0)
#define PTE_W   (1ull << 1)
#define PTE_U   (1ull << 2)
#define PTE_A   (1ull << 5)
#define PTE_D   (1ull << 6)
#define PTE_NX  (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull

#include "emu_abi.h"

#define TLB_RESIZE_FILLS (1u << 16)
#define TLB_PAGE_FLUSH_MAX 64  /* more pages than this: flush the whole TLB (emu_tlb_flush_pages) */
struct icache_entry { uint64_t key; uint32_t size; uint32_t count; };
/* The hash table holds every block seen in the address space; a small direct-mapped table in
 * front of it answers most blocks with one load and one compare (the block hook runs for every
 * translated block executed: it was a third of a fast-mode run). */
#define DM_BITS 12
struct icache { struct icache_entry *slots; uint64_t mask; uint64_t used; struct icache_entry dm[1u << DM_BITS]; };

static inline struct icache_entry *dm_slot(struct icache *ic, uint64_t gva)
{
    return &ic->dm[(gva ^ (gva >> DM_BITS)) & ((1u << DM_BITS) - 1)];
}

static inline uint8_t *hpa_to_host(struct emu_state *st, uint64_t hpa, uint64_t len)
{
    for (int i = 0; i < st->nranges; i++) {
        struct ram_range *r = &st->ranges[i];
        if (hpa >= r->hpa && hpa - r->hpa + len <= r->size)
            return r->host + (hpa - r->hpa);
    }
    return NULL;
}

/* EPT: guest-physical -> host-physical (~0 if outside the guest-physical space). */
static inline uint64_t ept_map(struct emu_state *st, uint64_t gpa, int bits)
{
    uint64_t gpfn = gpa >> 12;
    if (gpfn >= st->ept_pages || st->ept[gpfn] == 0xFFFFFFFFu) return ~0ull;
    st->ept_bits[gpfn] |= (uint8_t)bits;
    return ((uint64_t)st->ept[gpfn] << 12) | (gpa & 0xfff);
}

static inline uint8_t *gpa_to_host(struct emu_state *st, uint64_t gpa, uint64_t len, int bits)
{
    uint64_t hpa = ept_map(st, gpa, bits);
    return hpa == ~0ull ? NULL : hpa_to_host(st, hpa, len);
}

/* Walk the page table. access: 0 read, 1 write, 2 fetch. set_bits: update A/D as the hardware
 * would. Returns the leaf PTE (0 if not present) and stores the gpa of the page in *gpa. */
static uint64_t walk(struct emu_state *st, uint64_t cr3, uint64_t gva, int set_bits, int access)
{
    uint64_t table = cr3;
    if (!table) return 0;
    for (int level = 3; level >= 0; level--) {
        uint64_t idx = (gva >> (12 + 9 * level)) & 511;
        uint64_t *e = (uint64_t *)gpa_to_host(st, table + idx * 8, 8, set_bits ? EPT_A : 0);
        if (!e) return 0;
        uint64_t v = *e;
        if (!(v & PTE_P)) return 0;
        if (level == 0) {
            if (set_bits) {
                uint64_t nv = v | PTE_A;
                if (access == 1 && (v & PTE_W)) nv |= PTE_D;
                if (nv != v) { *e = nv; st->ept_bits[(table + idx * 8) >> 12] |= EPT_D; }
                v = nv;
            }
            return v;
        }
        if (set_bits && !(v & PTE_A)) { *e = v | PTE_A; st->ept_bits[(table + idx * 8) >> 12] |= EPT_D; }
        table = v & PTE_ADDR;
    }
    return 0;
}

/* Every present 4 KiB leaf of the page table at cr3 with start <= gva < end, in address order:
 * out[3i] = gva, out[3i+1] = gpa of the PTE slot, out[3i+2] = the PTE. Sets no A/D bits.
 * Returns how many there are; only the first `max` are stored (call again with more room). */
static uint64_t pt_leaves_rec(struct emu_state *st, uint64_t table, int level, uint64_t lo, uint64_t start,
                              uint64_t end, uint64_t *out, uint64_t max, uint64_t n)
{
    uint64_t span = 1ull << (12 + 9 * level);
    uint64_t *t = (uint64_t *)gpa_to_host(st, table, 4096, 0);
    if (!t) return n;
    for (uint64_t i = 0; i < 512; i++) {
        uint64_t va = lo + i * span;
        if (va >= end) break;
        if (va + span <= start) continue;
        uint64_t e = t[i];
        if (!(e & PTE_P)) continue;
        if (level == 0) {
            if (n < max) { out[3 * n] = va; out[3 * n + 1] = table + i * 8; out[3 * n + 2] = e; }
            n++;
        } else {
            n = pt_leaves_rec(st, e & PTE_ADDR, level - 1, va, start, end, out, max, n);
        }
    }
    return n;
}

uint64_t emu_pt_leaves(struct emu_state *st, uint64_t cr3, uint64_t start, uint64_t end, uint64_t *out, uint64_t max)
{
    return cr3 ? pt_leaves_rec(st, cr3, 3, 0, start, end, out, max, 0) : 0;
}

/* Registers in one call, without the Python binding's per-register cost: from the live CPU
 * (ctx == NULL) or from a saved context. Each value lands in its own 16-byte slot of `out`
 * (zeroed first; little-endian, as wide as the register). */
int emu_read_regs(uc_engine *uc, uc_context *ctx, const int *ids, int n, uint8_t *out)
{
    void *ptrs[128];
    if (n > 128) return -1;
    memset(out, 0, (size_t)n * 16);
    for (int i = 0; i < n; i++) ptrs[i] = out + 16 * i;
    uc_err err = ctx ? uc_context_reg_read_batch(ctx, ids, ptrs, n) : uc_reg_read_batch(uc, ids, ptrs, n);
    return err == UC_ERR_OK ? 0 : -(int)err;
}

uint64_t emu_translate(struct emu_state *st, uint64_t cr3, uint64_t gva, int access)
{
    /* For the kernel: gpa of gva, or ~0 when the access would fault. Sets no bits. */
    uint64_t pte = walk(st, cr3, gva, 0, access);
    if (!(pte & PTE_P)) return ~0ull;
    if (access == 1 && !(pte & PTE_W)) return ~0ull;
    if (access == 2 && (pte & PTE_NX)) return ~0ull;
    return (pte & PTE_ADDR) | (gva & 0xfff);
}

uint64_t emu_access(struct emu_state *st, uint64_t cr3, uint64_t gva, int access)
{
    /* For the kernel's own accesses to user memory: like emu_translate, but sets the accessed
     * and dirty bits as a hardware access would. */
    uint64_t pte = walk(st, cr3, gva, 1, access);
    if (!(pte & PTE_P)) return ~0ull;
    if (access == 1 && !(pte & PTE_W)) return ~0ull;
    uint64_t gpa = (pte & PTE_ADDR) | (gva & 0xfff);
    ept_map(st, gpa, access == 1 ? EPT_A | EPT_D : EPT_A);
    return gpa;
}

static bool tlb_fill(uc_engine *uc, uint64_t gva, uc_mem_type type, uc_tlb_entry *result, void *ud)
{
    struct emu_state *st = ud;
    st->tlb_fills++;
    /* Counted in translated code: the TLB-resize flush (block_hook) waits for the next block
     * start, where the callback (icount_limit) runs when the limit is 0. */
    if (st->tlb_fills - st->fills_at_flush > TLB_RESIZE_FILLS) st->limit = 0;
    int access = type == UC_MEM_WRITE ? 1 : type == UC_MEM_FETCH ? 2 : 0;
    uint64_t pte = walk(st, st->cr3, gva, 1, access);
    if (!(pte & PTE_P) || (access == 1 && !(pte & PTE_W)) || (access == 2 && (pte & PTE_NX))) {
        st->fault_gva = gva;
        st->fault_access = access;
        st->fault_pending = 1;
        return false;
    }
    int perms = UC_PROT_READ;
    /* Writable only once both dirty bits are set: the guest's (so its first store sets D) and
     * the EPT's (so a store after the hypervisor cleared the bits comes back and sets it again,
     * as hardware re-walks the EPT to set its D bit). A read never makes a page EPT-dirty. */
    uint64_t gpfn = (pte & PTE_ADDR) >> 12;
    int ept_dirty = gpfn < st->ept_pages && (st->ept_bits[gpfn] & EPT_D);
    if ((pte & PTE_W) && (pte & PTE_D) && (access == 1 || ept_dirty)) perms |= UC_PROT_WRITE;
    if (!(pte & PTE_NX)) perms |= UC_PROT_EXEC;
    uint64_t hpa = ept_map(st, pte & PTE_ADDR, (perms & UC_PROT_WRITE) ? EPT_A | EPT_D : EPT_A);
    if (hpa == ~0ull) {
        st->fault_gva = gva;
        st->fault_access = access;
        st->fault_pending = 1;
        return false;
    }
    result->paddr = hpa;
    result->perms = perms;
    return true;
}

/* ---- per address space block-count tables ---- */

struct icache *emu_icache_new(void)
{
    struct icache *ic = calloc(1, sizeof *ic);
    ic->mask = 4095;
    ic->slots = calloc(ic->mask + 1, sizeof *ic->slots);
    return ic;
}

void emu_icache_free(struct icache *ic)
{
    if (!ic) return;
    free(ic->slots);
    free(ic);
}

void emu_icache_clear(struct icache *ic)
{
    memset(ic->slots, 0, (ic->mask + 1) * sizeof *ic->slots);
    memset(ic->dm, 0, sizeof ic->dm);
    ic->used = 0;
}

static inline uint64_t hash64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33;
    return x;
}

static void icache_put(struct icache *ic, uint64_t key, uint32_t size, uint32_t count);

static void icache_grow(struct icache *ic)
{
    struct icache_entry *old = ic->slots;
    uint64_t n = ic->mask + 1;
    ic->mask = n * 2 - 1;
    ic->slots = calloc(n * 2, sizeof *ic->slots);
    ic->used = 0;
    for (uint64_t i = 0; i < n; i++)
        if (old[i].size) icache_put(ic, old[i].key, old[i].size, old[i].count);
    free(old);
}

static void icache_put(struct icache *ic, uint64_t key, uint32_t size, uint32_t count)
{
    if ((ic->used + 1) * 2 > ic->mask + 1) icache_grow(ic);
    uint64_t i = hash64(key ^ ((uint64_t)size << 48)) & ic->mask;
    while (ic->slots[i].size) {
        if (ic->slots[i].key == key && ic->slots[i].size == size) { ic->slots[i].count = count; return; }
        i = (i + 1) & ic->mask;
    }
    ic->slots[i].key = key; ic->slots[i].size = size; ic->slots[i].count = count;
    ic->used++;
}

static inline int icache_get(struct icache *ic, uint64_t key, uint32_t size)
{
    uint64_t i = hash64(key ^ ((uint64_t)size << 48)) & ic->mask;
    while (ic->slots[i].size) {
        if (ic->slots[i].key == key && ic->slots[i].size == size) return (int)ic->slots[i].count;
        i = (i + 1) & ic->mask;
    }
    return -1;
}

/* Copy n bytes of guest-virtual memory into buf; 0 on success. */
int emu_read_virt(struct emu_state *st, uint64_t cr3, uint64_t gva, uint8_t *buf, uint64_t n)
{
    while (n) {
        uint64_t gpa = emu_translate(st, cr3, gva, 0);
        if (gpa == ~0ull) return -1;
        uint64_t chunk = 4096 - (gva & 0xfff);
        if (chunk > n) chunk = n;
        uint8_t *h = gpa_to_host(st, gpa, chunk, 0);
        if (!h) return -1;
        memcpy(buf, h, chunk);
        buf += chunk; gva += chunk; n -= chunk;
    }
    return 0;
}

/* Number of instructions in the code bytes [gva, gva+size). Counts up to (not including)
 * stop_gva when stop_gva lies inside the range. */
int emu_count_insns(struct emu_state *st, uint64_t gva, uint32_t size, uint64_t stop_gva)
{
    uint8_t buf[4096 + 32];
    if (size > 4096) size = 4096;
    if (emu_read_virt(st, st->cr3, gva, buf, size)) return -1;
    const uint8_t *code = buf;
    size_t left = size;
    uint64_t addr = gva;
    cs_insn *insn = cs_malloc(st->cs);
    int n = 0;
    while (left && addr != stop_gva && cs_disasm_iter(st->cs, &code, &left, &addr, insn)) n++;
    cs_free(insn, 1);
    return n;
}

static void block_hook(uc_engine *uc, uint64_t gva, uint32_t size, void *ud)
{
    struct emu_state *st = ud;
    struct icache_entry *d = dm_slot(st->icache, gva);
    int n;
    if (d->key == gva && d->size == size) {
        n = (int)d->count;
    } else {
        n = icache_get(st->icache, gva, size);
        if (n < 0) {
            n = emu_count_insns(st, gva, size, ~0ull);
            if (n <= 0) n = 1;
            icache_put(st->icache, gva, size, (uint32_t)n);
            st->blocks_decoded++;
        }
        d->key = gva; d->size = size; d->count = (uint32_t)n;
    }
    /* Stopping from this hook keeps the block from executing: stop before a block that would
     * run past the deadline, so the CPU halts on a block boundary with icount <= deadline. */
    if (st->icount + (uint64_t)n > st->deadline) {
        if (!st->deadline_hit) {
            st->deadline_hit = 1;
            uc_emu_stop(uc);
        }
        return;
    }
    st->icount += (uint64_t)n;
    /* QEMU resizes its (direct-mapped) TLB only when it is flushed, so a loop over more pages
     * than the TLB holds, with no flush (one process, no syscalls), would miss on every access
     * for ever. After many fills since the last such flush, flush: the TLB doubles each time
     * it was full. Like an invlpg from a helper, a flush between two blocks is safe. */
    if (st->tlb_fills - st->fills_at_flush > TLB_RESIZE_FILLS) {
        st->fills_at_flush = st->tlb_fills;
        uc_ctl(uc, UC_CTL_WRITE(UC_CTL_TLB_FLUSH, 0));
    }
    st->last_block_gva = gva;
    st->last_block_size = size;
    st->last_block_count = (uint32_t)n;
}

/* ---- counting in translated code (the patched libunicorn's uc_icount_enable) ---- */

/* The patch's struct uc_icount is the run of emu_state fields from icount on. */
_Static_assert(offsetof(struct emu_state, limit) == offsetof(struct emu_state, icount) + 8, "uc_icount.limit");
_Static_assert(offsetof(struct emu_state, last_block_gva) == offsetof(struct emu_state, icount) + 16, "uc_icount.last_pc");
_Static_assert(offsetof(struct emu_state, last_block_size) == offsetof(struct emu_state, icount) + 24, "uc_icount.last_size");
_Static_assert(offsetof(struct emu_state, last_block_count) == offsetof(struct emu_state, icount) + 28, "uc_icount.last_insns");

typedef bool (*icount_limit_cb)(uc_engine *uc, uint64_t pc, uint32_t size, uint32_t insns, void *ud);
typedef uc_err (*icount_enable_fn)(uc_engine *uc, void *state, icount_limit_cb cb, void *ud, uint32_t flags);
#define ICOUNT_NO_ACCESS_CHECKS 1  /* the patch's UC_ICOUNT_NO_ACCESS_CHECKS */

/* A block would take icount past limit (the deadline, or 0 when a TLB-resize flush is due).
 * icount does not include the block. true: run it (the translated code counts it); false: the
 * CPU stops before it, as the block hook does. */
static bool icount_limit(uc_engine *uc, uint64_t pc, uint32_t size, uint32_t insns, void *ud)
{
    struct emu_state *st = ud;
    if (st->tlb_fills - st->fills_at_flush > TLB_RESIZE_FILLS) {  /* see block_hook */
        st->fills_at_flush = st->tlb_fills;
        uc_ctl(uc, UC_CTL_WRITE(UC_CTL_TLB_FLUSH, 0));
    }
    st->limit = st->deadline;
    if (st->icount + insns > st->deadline) {
        st->deadline_hit = 1;
        return false;
    }
    return true;
}

struct emu_state *emu_state_new(void)
{
    struct emu_state *st = calloc(1, sizeof *st);
    st->deadline = ~0ull;
    st->limit = ~0ull;
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &st->cs) != CS_ERR_OK) { free(st); return NULL; }
    return st;
}

int emu_add_range(struct emu_state *st, uint64_t hpa, uint64_t size, uint8_t *host)
{
    if (st->nranges >= MAX_RANGES) return -1;
    st->ranges[st->nranges++] = (struct ram_range){ hpa, size, host };
    return 0;
}

void emu_set_ept(struct emu_state *st, uint32_t *ept, uint8_t *bits, uint64_t pages)
{
    st->ept = ept;
    st->ept_bits = bits;
    st->ept_pages = pages;
}

void emu_tlb_flush(uc_engine *uc)
{
    uc_ctl(uc, UC_CTL_WRITE(UC_CTL_TLB_FLUSH, 0));
}

/* tlb.patch's one-page flush (NULL: the stock wheel, or EMU_UNICORN=hook). */
typedef uc_err (*tlb_flush_page_fn)(uc_engine *uc, uint64_t address);
typedef uc_err (*fill_no_restore_fn)(uc_engine *uc, bool no_restore);
typedef uint64_t (*fault_address_fn)(uc_engine *uc);
static tlb_flush_page_fn flush_page;
static fault_address_fn fault_address;

/* The address of the last failed fill: the exact one with tlb.patch (a fill callback only sees
 * the page, a page fault reports the byte: CR2, si_addr), else the page's. */
uint64_t emu_fault_gva(uc_engine *uc, struct emu_state *st)
{
    if (fault_address) {
        uint64_t exact = fault_address(uc);
        if ((exact & ~0xfffull) == (st->fault_gva & ~0xfffull)) return exact;
    }
    return st->fault_gva;
}

/* The mapping of one page of the loaded address space changed (a copy on write): its entries go,
 * the others stay (the stock wheel: the whole TLB). */
void emu_tlb_flush_page(uc_engine *uc, uint64_t gva)
{
    if (flush_page) flush_page(uc, gva);
    else emu_tlb_flush(uc);
}

/* A checkpoint pass cleared the dirty bits of the loaded address space's pages; `leaves` are
 * its emu_pt_leaves rows from before the pass. Only a page whose PTE had D set can have a
 * writable TLB entry (tlb_fill grants write once D is set): drop those, one by one with the
 * patch while that is cheaper than losing every entry (each lost entry costs a refill), else the
 * whole TLB. */
void emu_tlb_flush_dirty(uc_engine *uc, const uint64_t *leaves, uint64_t n)
{
    uint64_t nd = 0;
    for (uint64_t i = 0; i < n; i++) nd += (leaves[3 * i + 2] & PTE_D) != 0;
    if (!nd) return;
    if (!flush_page || nd > TLB_PAGE_FLUSH_MAX) {
        emu_tlb_flush(uc);
        return;
    }
    for (uint64_t i = 0; i < n; i++)
        if (leaves[3 * i + 2] & PTE_D) flush_page(uc, leaves[3 * i]);
}

/* Register the TLB-fill hook with Unicorn, and count instructions: in the translated code when
 * the loaded libunicorn has the patch's uc_icount_enable (looked up at run time, so the stock
 * wheel works too), else with the block hook. use_patch 0 forces the hook. access_stops 0: no
 * memory hook or MMIO callback will stop the CPU (level fast: there are none), so the patched
 * Unicorn leaves out its exit test after every guest memory access. Returns a uc_err. */
int emu_install(uc_engine *uc, struct emu_state *st, int use_patch, int access_stops)
{
    uc_hook h1, h2;
    uc_err err = uc_hook_add(uc, &h1, UC_HOOK_TLB_FILL, (void *)tlb_fill, st, 1, 0);
    if (err) return err;
    icount_enable_fn enable = use_patch ? (icount_enable_fn)dlsym(RTLD_DEFAULT, "uc_icount_enable") : NULL;
    /* tlb.patch: fills without a PC sync (tlb_fill reads no register), one-page flushes */
    fill_no_restore_fn no_restore = use_patch ? (fill_no_restore_fn)dlsym(RTLD_DEFAULT, "uc_tlb_fill_no_restore") : NULL;
    flush_page = use_patch ? (tlb_flush_page_fn)dlsym(RTLD_DEFAULT, "uc_tlb_flush_page") : NULL;
    fault_address = use_patch ? (fault_address_fn)dlsym(RTLD_DEFAULT, "uc_tlb_fault_address") : NULL;
    if (no_restore && (err = no_restore(uc, true)) != UC_ERR_OK) return err;
    if (enable) {
        err = enable(uc, &st->icount, icount_limit, st, access_stops ? 0 : ICOUNT_NO_ACCESS_CHECKS);
        st->icount_in_tb = err == UC_ERR_OK;
        return err;
    }
    return uc_hook_add(uc, &h2, UC_HOOK_BLOCK, (void *)block_hook, st, 1, 0);
}
