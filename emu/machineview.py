"""How `emu machine show` draws a machine configuration: rich tables of the guest-physical map,
the host memory and the settings (`show_table`), and both memory maps as ASCII art, high
addresses on top (`memory_map_ascii`). Display only: the configuration itself is vmm/config/."""
from __future__ import annotations

from rich.table import Table

from vmm.config import InterleaveConfig, MachineConfig, RangeConfig, hex_addr, human_hz, human_size


def _channels_text(r: RangeConfig, il: InterleaveConfig) -> str:
    if il.enabled and len(r.channels) > 1:
        return ",".join(map(str, r.channels)) + f" / {human_size(il.granularity_bytes)}"
    return str(r.channel)


def memory_table(cfg: MachineConfig) -> Table:
    """The host memory: one row per pool."""
    t = Table(title=f"host memory of {cfg.name!r} (hpa)", title_justify="left")
    for col, just in (("pool", "left"), ("kind", "left"), ("base hpa", "right"), ("end hpa", "right"),
                      ("size", "right"), ("channel(s)", "right"), ("persistent", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in cfg.pools:
        t.add_row(r.name, r.kind, hex_addr(r.base_hpa), hex_addr(r.end_hpa),
                  human_size(r.size_bytes), _channels_text(r, cfg.interleave),
                  "yes" if r.persistent else "no")
    return t


def guest_table(cfg: MachineConfig) -> Table:
    """The guest-physical map: one row per range, with the pool (and offset) backing it."""
    t = Table(title=f"guest-physical map (gpa; EPT {cfg.ept.initial})", title_justify="left")
    for col, just in (("range", "left"), ("use", "left"), ("base gpa", "right"), ("end gpa", "right"),
                      ("size", "right"), ("pool", "left"), ("at", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    use = {"ram": "RAM", "pmem": "/dev/{}", "checkpoint": "checkpoints"}
    for g in cfg.guest_map():
        t.add_row(g.name, use[g.kind].format(g.name), hex_addr(g.base_gpa), hex_addr(g.end_gpa),
                  human_size(g.size_bytes), g.pool, f"+{human_size(g.pool_offset_bytes) if g.pool_offset_bytes else 0}")
    return t


def settings_table(cfg: MachineConfig) -> Table:
    c = cfg.cache
    t = Table(title="machine", title_justify="left", show_header=False)
    t.add_column("key")
    t.add_column("value")
    t.add_row("cpu clock", f"{human_hz(cfg.cpu_hz)} (1 instruction / cycle)")
    t.add_row("cache", f"{human_size(c.size_bytes)}, {c.ways}-way, {c.line_bytes} B lines, {c.sets} sets")
    t.add_row("interleave", f"on, {human_size(cfg.interleave.granularity_bytes)} granules"
              if cfg.interleave.enabled else "off")
    t.add_row("persistence domain", cfg.persistence_domain)
    t.add_row("model level", cfg.model_level)
    t.add_row("storage block", human_size(cfg.storage.block_size_bytes))
    st = cfg.storage
    if st.disk_model == "hdd":
        p = st.hdd_params()
        t.add_row("disk timing", f"hdd: {p.rpm} rpm, {p.capacity_bytes / 1e9:g} GB, {p.heads} heads, "
                  f"{p.cylinders:,} cylinders of {p.sectors_per_track:,} sectors a track, seek "
                  f"{p.track_to_track_ns / 1e6:g}/{p.avg_seek_ns / 1e6:g}/{p.full_stroke_ns / 1e6:g} ms, "
                  f"overhead {p.overhead_ns / 1e3:g} us, {p.buffer_tracks} buffer tracks")
    else:
        t.add_row("disk timing", f"flat: {st.block_io_ns / 1e3:g} us a block")
    t.add_row("seed / quantum", f"{cfg.seed} / {cfg.quantum_insns:,} insns")
    t.add_row("EPT at power-on", cfg.ept.initial)
    ck = cfg.checkpoint
    t.add_row("checkpointing", f"on, tcp {ck.tcp_ns / 1e9:g} s, into {cfg.checkpoint_pool}"
              if ck.enabled else "off")
    return t


def show_table(cfg: MachineConfig) -> Table:
    """A rich Table (grid) holding the guest map, the host memory and the settings."""
    grid = Table.grid(padding=(1, 0))
    grid.add_column()
    grid.add_row(guest_table(cfg))
    grid.add_row(memory_table(cfg))
    grid.add_row(settings_table(cfg))
    return grid


def _ascii_map(title: str, ranges: list[tuple[int, int, str, str]]) -> list[str]:
    """(base, end, label, note) ranges drawn like xv6's memlayout.h: high addresses on top."""
    ranges = sorted(ranges)
    width = max([len(r[2]) for r in ranges] + [20, len(title)]) + 4
    edge = "+" + "-" * width + "+"
    addr_w = max(len(hex_addr(r[1])) for r in ranges)
    pad = " " * (addr_w + 1)
    lines = [f"{pad} {title.center(width)}"]

    def boundary(addr: int) -> None:
        lines.append(f"{hex_addr(addr):>{addr_w}} {edge}")

    for i in range(len(ranges) - 1, -1, -1):
        base, end, label, note = ranges[i]
        boundary(end)
        lines.append(f"{pad}|{label.center(width)}|{note}")
        below = ranges[i - 1][1] if i else None
        if below is not None and below < base:
            boundary(base)
            lines.append(f"{pad}:{('(unmapped, ' + human_size(base - below) + ')').center(width)}:")
    boundary(ranges[0][0] if ranges else 0)
    return lines


def memory_map_ascii(cfg: MachineConfig) -> str:
    """Both maps, guest-physical above host-physical; each guest range names its pool."""
    use = {"ram": "RAM", "pmem": "/dev/{}", "checkpoint": "checkpoints"}
    guest = [(g.base_gpa, g.end_gpa, f"{g.name}  {use[g.kind].format(g.name)}  {human_size(g.size_bytes)}",
              f"  -> pool {g.pool}" + (f" +{human_size(g.pool_offset_bytes)}" if g.pool_offset_bytes else ""))
             for g in cfg.guest_map()]
    host = [(r.base_hpa, r.end_hpa, f"{r.name}  {r.kind}  {human_size(r.size_bytes)}  ch {_channels_text(r, cfg.interleave)}",
             "  persistent" if r.persistent else "") for r in cfg.pools]
    return "\n".join(_ascii_map("guest-physical (gpa)", guest) + [""]
                     + _ascii_map(f"host-physical (hpa), EPT {cfg.ept.initial}", host)) + "\n"
