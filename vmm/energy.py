"""An estimate of the memory's energy from the traffic the channels counted: per pool, bits read
times its read energy, bits written times its write energy, and its background power (DRAM's
refresh) over the virtual time. Page copies of the placement (vmm/placement) are added to the
pools they read and wrote.

A model, not a measurement: the per-bit energies and powers are machine parameters
(`read_pj_per_bit`, `write_pj_per_bit`, `static_mw_per_gib` of each `[[pool]]`), and the machine
file states where its values come from. Only pools with at least one of them set take part; each
such pool must have its channels to itself, since the counters are per channel."""
from __future__ import annotations

from typing import Any

from hw.stats import Stat, StatsRegistry

GiB = 1 << 30


def pool_channels(pool: Any, interleave: Any) -> tuple[int, ...]:
    """The channels a pool's traffic goes to."""
    if interleave.enabled and len(pool.channels) > 1:
        return tuple(pool.channels)
    return (pool.channel,)


def shared_channel(cfg: Any) -> tuple[str, str, int] | None:
    """(pool with energy parameters, other pool, channel) when the two share a channel."""
    for a in cfg.pools:
        if not a.has_energy:
            continue
        mine = set(pool_channels(a, cfg.interleave))
        for b in cfg.pools:
            if b is not a and mine & set(pool_channels(b, cfg.interleave)):
                return a.name, b.name, min(mine & set(pool_channels(b, cfg.interleave)))
    return None


def energy_uj(read_bytes: int, write_bytes: int, virtual_ns: int, pool: Any) -> dict[str, float]:
    """Read, write and background energy of one pool, in microjoules."""
    return {
        "read": read_bytes * 8 * pool.read_pj_per_bit / 1e6,
        "write": write_bytes * 8 * pool.write_pj_per_bit / 1e6,
        "static": pool.static_mw_per_gib * (pool.size_bytes / GiB) * virtual_ns / 1e6,  # mW x ns = pJ
    }


def register_stats(reg: StatsRegistry, machine: Any) -> None:
    """`energy.<pool>.{read,write,static}_uj` and `energy.total_uj`, when a pool has parameters."""
    cfg = machine.config
    pools = [p for p in cfg.pools if p.has_energy]
    if not pools or machine.cache is None:
        return
    stats = [Stat(f"energy.{p.name}.{k}_uj", "uJ", f"{what} of {p.name} (model: vmm/energy.py)")
             for p in pools for k, what in (("read", "read energy"), ("write", "write energy"),
                                            ("static", "background and refresh energy"))]
    stats.append(Stat("energy.total_uj", "uJ", "memory energy of the pools with parameters (model)"))

    def values() -> dict[str, float]:
        cache, placement = machine.cache, getattr(machine, "placement", None)
        copied = placement.copied if placement is not None else {}
        ns = machine.clock.uptime_ns()
        out: dict[str, float] = {}
        for p in pools:
            rd = wr = copied.get(p.name, 0)
            for ch in pool_channels(p, cfg.interleave):
                c = cache.channel(ch)
                rd += c["read_bytes.user"] + c["read_bytes.kernel"]
                wr += c["write_bytes.user"] + c["write_bytes.kernel"]
            for k, e in energy_uj(rd, wr, ns, p).items():
                out[f"energy.{p.name}.{k}_uj"] = round(e, 3)
        out["energy.total_uj"] = round(sum(out.values()), 3)
        return out

    reg.register(values, stats)
