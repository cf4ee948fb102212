/*
 * Per-site hooks for the persistence instructions, and the memory hook that feeds the cache
 * model. (Compiled after hotpath.c and cachemodel.c in one translation unit.)
 *
 * Unicorn cannot hook clflush/clwb/fences by instruction type, so the kernel finds their sites
 * when an executable mapping appears (byte scan confirmed with capstone, hw/sites.py) and adds
 * one code hook per site with a descriptor: the instruction bytes (checked at run time, since
 * another process may have other code at that address), its kind, and for the flushes the
 * memory operand to evaluate. A non-temporal store's site marks its next `nt_bytes` stored
 * bytes as non-temporal for the memory hook.
 */

#include "emu_abi.h"

struct site *emu_site_new(struct emu_state *st)
{
    struct site *s = calloc(1, sizeof *s);
    s->st = st;
    return s;
}

static uint64_t site_ea(uc_engine *uc, struct site *s)
{
    uint64_t ea = (uint64_t)s->disp, v;
    if (s->rip_relative) ea += s->gva + s->len;
    if (s->base_reg) { uc_reg_read(uc, s->base_reg, &v); ea += v; }
    if (s->index_reg) { uc_reg_read(uc, s->index_reg, &v); ea += v * s->scale; }
    if (s->seg_reg) { uc_reg_read(uc, s->seg_reg, &v); ea += v; }
    return ea;
}

static void site_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct site *s = ud;
    struct emu_state *st = s->st;
    struct cm *cm = st->cm;
    uint8_t buf[16];
    if (!cm || emu_read_virt(st, st->cr3, addr, buf, s->len) || memcmp(buf, s->bytes, s->len))
        return;  /* not this instruction in this address space */
    s->hits++;
    if (s->kind == SITE_SFENCE) { cm_fence(cm, 0, 0); return; }
    if (s->kind == SITE_MFENCE) { cm_fence(cm, 0, 1); return; }
    if (s->kind == SITE_WBINVD) { cm_wbinvd(cm); return; }
    if (s->kind == SITE_NT) { cm_mark_nt(cm); st->nt_remaining = s->nt_bytes; return; }
    uint64_t gva = site_ea(uc, s);
    uint64_t gpa = emu_translate(st, st->cr3, gva, 0);
    if (gpa == ~0ull) return;  /* the flush of an unmapped line: nothing cached there */
    uint64_t hpa = ept_map(st, gpa, 0);
    if (hpa == ~0ull) return;
    if (s->kind == SITE_CLFLUSH) cm_clflush(cm, hpa, 0);
    else if (s->kind == SITE_CLFLUSHOPT) cm_clflushopt(cm, hpa, 0);
    else cm_clwb(cm, hpa, 0);
}

int emu_site_install(uc_engine *uc, struct site *s)
{
    uc_hook h;
    return uc_hook_add(uc, &h, UC_HOOK_CODE, (void *)site_hook, s, s->gva, s->gva);
}

/* Guest loads and stores, attributed to user code; non-temporal ones as marked by their site. */
static void emu_mem_hook(uc_engine *uc, uc_mem_type type, uint64_t address, int size, int64_t value, void *ud)
{
    struct emu_state *st = ud;
    int is_write = type == UC_MEM_WRITE;
    cm_access(st->cm, address, (uint32_t)size, is_write, 0, (uint64_t)value);
    if (st->nt_remaining && is_write) {
        st->nt_remaining = st->nt_remaining > (uint32_t)size ? st->nt_remaining - (uint32_t)size : 0;
        if (!st->nt_remaining) cm_end_nt(st->cm);
    }
}

typedef uc_err (*mem_callback_set_fn)(uc_engine *uc, uc_cb_hookmem_t cb, void *ud);

/* Install the memory hook on [begin, end] (hpa); begin > end means everything. direct (and
 * everything): through the patched libunicorn's uc_mem_callback_set when it has it (looked up at
 * run time, so the stock wheel works too): the soft-MMU helpers call emu_mem_hook at the same
 * points with the same arguments, without Unicorn's hook-list walk and its PC sync per access
 * (emu_mem_hook reads no register; a power cut's uc_emu_stop takes effect at the exit test after
 * the access, as with the hook). Returns a uc_err. */
int emu_install_mem_hook(uc_engine *uc, struct emu_state *st, uint64_t begin, uint64_t end, int direct)
{
    uc_hook h;
    mem_callback_set_fn set = direct && begin > end ? (mem_callback_set_fn)dlsym(RTLD_DEFAULT, "uc_mem_callback_set") : NULL;
    if (set)
        return set(uc, (uc_cb_hookmem_t)emu_mem_hook, st);
    return uc_hook_add(uc, &h, UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, (void *)emu_mem_hook, st, begin, end);
}

static void emu_power_fail_stop(void *ctx)
{
    struct emu_state *st = ctx;
    st->power_failed = 1;
    if (st->uc) uc_emu_stop(st->uc);
}

void emu_attach_cache(uc_engine *uc, struct emu_state *st, struct cm *cm)
{
    st->cm = cm;
    st->uc = uc;
    cm_set_power_fail_callback(cm, emu_power_fail_stop, st);
}

/* ---- SCM as MMIO (model level persist) ----------------------------------------------------
 * At level persist only SCM accesses are modelled. A memory hook, even limited to the SCM
 * range, costs Unicorn a helper call on every access; mapping SCM as MMIO instead makes DRAM
 * accesses free and sends exactly the SCM ones here, where the data is moved to and from the
 * range's CPU-view buffer. */
struct scm_mmio { struct emu_state *st; uint64_t base; uint8_t *host; };

static uint64_t scm_mmio_read(uc_engine *uc, uint64_t offset, unsigned size, void *ud)
{
    struct scm_mmio *m = ud;
    uint64_t v = 0;
    cm_access(m->st->cm, m->base + offset, size, 0, 0, 0);
    memcpy(&v, m->host + offset, size > 8 ? 8 : size);
    return v;
}

static void scm_mmio_write(uc_engine *uc, uint64_t offset, unsigned size, uint64_t value, void *ud)
{
    struct scm_mmio *m = ud;
    struct emu_state *st = m->st;
    cm_access(st->cm, m->base + offset, size, 1, 0, value);
    if (st->nt_remaining) {
        st->nt_remaining = st->nt_remaining > size ? st->nt_remaining - size : 0;
        if (!st->nt_remaining) cm_end_nt(st->cm);
    }
    memcpy(m->host + offset, &value, size > 8 ? 8 : size);
}

int emu_map_scm_mmio(uc_engine *uc, struct emu_state *st, uint64_t base, uint64_t size, uint8_t *host)
{
    struct scm_mmio *m = calloc(1, sizeof *m);
    m->st = st; m->base = base; m->host = host;
    return uc_mmio_map(uc, base, size, scm_mmio_read, m, scm_mmio_write, m);
}
