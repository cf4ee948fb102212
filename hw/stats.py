"""Statistics registry, in the style of gem5's `stats.txt`.

Every statistic is declared once (`Stat(name, unit, description)`); a model registers a
*provider*, a callable returning ``{name: value}`` for the statistics it owns, read only when the
registry is dumped (the hot path never touches Python). The registry renders:

- `render_text()`: ``name   value   # description (unit)`` lines, gem5 `stats.txt` style;
- `to_json()`: ``{name: {"value", "unit", "description"}}``;

A statistic declared with ``host=True`` depends on the host's speed, not only on the guest's run
(Unicorn resizes its TLB on wall-clock windows, so TLB fills and translated blocks vary between
two identical runs on a loaded machine; host time is host time). `to_json()` and `Epochs` leave
them out: they go to a separate, clearly named host section (`to_json(host=True)`), so that
everything else is deterministic: same image, command and configuration, same bytes.
- `Epochs`: a per-epoch time series of selected statistics, one CSV row per `sample()`.

`pcm_memory_table` lays out per-channel traffic like Intel's ``pcm-memory``, and
`wear_histogram` buckets the per-page write counts of an SCM range.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

Number = Union[int, float]
Provider = Callable[[], Mapping[str, Number]]


@dataclass(frozen=True)
class Stat:
    """One declared statistic."""

    name: str
    unit: str
    description: str
    host: bool = False  # depends on the host's speed (see the module docstring)


class StatsRegistry:
    """Declared statistics and the providers that give their values."""

    def __init__(self) -> None:
        self._stats: dict[str, Stat] = {}
        self._providers: list[Provider] = []

    # -- declaration
    def declare(self, stat: Stat) -> Stat:
        old = self._stats.get(stat.name)
        if old is not None and old != stat:
            raise ValueError(f"statistic {stat.name!r} declared twice with different meaning")
        self._stats[stat.name] = stat
        return stat

    def register(self, provider: Provider, stats: Iterable[Stat] = ()) -> None:
        """Register a provider and declare the statistics it reports."""
        for s in stats:
            self.declare(s)
        self._providers.append(provider)

    @property
    def declared(self) -> dict[str, Stat]:
        return dict(self._stats)

    def stat(self, name: str) -> Stat:
        return self._stats[name]

    # -- values
    def snapshot(self) -> dict[str, Number]:
        """Current values of every statistic, in declaration order (undeclared names raise)."""
        values: dict[str, Number] = {}
        for p in self._providers:
            for name, v in p().items():
                if name not in self._stats:
                    raise KeyError(f"provider reported undeclared statistic {name!r}")
                values[name] = v
        return {n: values[n] for n in self._stats if n in values}

    # -- rendering
    def render_text(self, values: Mapping[str, Number] | None = None) -> str:
        values = self.snapshot() if values is None else values
        width = max((len(n) for n in values), default=0)
        lines = ["---------- Begin Simulation Statistics ----------"]
        for name, v in values.items():
            s = self._stats[name]
            lines.append(f"{name:<{width}}  {_fmt(v):>20}  # {s.description} ({s.unit})")
        lines.append("---------- End Simulation Statistics   ----------")
        return "\n".join(lines) + "\n"

    def to_json(self, values: Mapping[str, Number] | None = None, *, host: bool = False) -> dict[str, dict[str, Any]]:
        """The deterministic statistics, or with host=True only those that depend on the host."""
        values = self.snapshot() if values is None else values
        return {
            name: {"value": v, "unit": self._stats[name].unit, "description": self._stats[name].description}
            for name, v in values.items() if self._stats[name].host == host
        }

    def write_text(self, path: str | Path) -> None:
        Path(path).write_text(self.render_text())

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1, sort_keys=False) + "\n")


def _fmt(v: Number) -> str:
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


class Epochs:
    """Per-epoch time series: `sample(instructions)` appends one row of the selected statistics
    (by default every deterministic one)."""

    def __init__(self, registry: StatsRegistry, names: Sequence[str] | None = None) -> None:
        self.registry = registry
        self.names = list(names) if names is not None else None
        self.rows: list[list[Number]] = []

    def sample(self, instructions: int) -> None:
        values = self.registry.snapshot()
        if self.names is None:
            self.names = [n for n in values if not self.registry.stat(n).host]
        self.rows.append([instructions] + [values.get(n, 0) for n in self.names])

    @property
    def header(self) -> list[str]:
        return ["instructions"] + list(self.names or [])

    def write_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.header)
            w.writerows(self.rows)


def _range_kind_channel(r: Any) -> tuple[str, int]:
    """(kind, channel) of a range given as a RangeSpec-like object, a MemoryRange (`.spec`),
    a mapping, or a (name, kind, base, size, channel) tuple."""
    if isinstance(r, Mapping):
        return str(r["kind"]), int(r.get("channel", 0))
    if isinstance(r, tuple):
        return str(r[1]), int(r[4]) if len(r) > 4 else 0
    spec = getattr(r, "spec", r)
    return str(spec.kind), int(getattr(spec, "channel", 0))


def pcm_memory_table(stats: Mapping[str, Number], ranges: Iterable[Any], title: str = "Memory traffic"):
    """A `rich.table.Table` laid out like ``pcm-memory``: one row per channel, DRAM and SCM (PMM)
    read/write traffic in MB (10^6 bytes, user + kernel), and a total row. A channel's kind is
    the kind of the ranges on it (scm wins if mixed)."""
    from rich.table import Table

    kinds: dict[int, str] = {}
    for r in ranges:
        kind, ch = _range_kind_channel(r)
        if kinds.get(ch) != "scm":
            kinds[ch] = kind

    def mb(ch: int, what: str) -> float:
        return sum(float(stats.get(f"channel{ch}.{what}.{who}", 0)) for who in ("user", "kernel")) / 1e6

    t = Table(title=title)
    for col in ("Channel", "DRAM Read (MB)", "DRAM Write (MB)", "PMM Read (MB)", "PMM Write (MB)", "Memory (MB)"):
        t.add_column(col, justify="left" if col == "Channel" else "right")
    tot = [0.0, 0.0, 0.0, 0.0]
    for ch in sorted(kinds):
        rd, wr = mb(ch, "read_bytes"), mb(ch, "write_bytes")
        row = [rd, wr, 0.0, 0.0] if kinds[ch] != "scm" else [0.0, 0.0, rd, wr]
        tot = [a + b for a, b in zip(tot, row)]
        t.add_row(f"Ch{ch} ({kinds[ch]})", *(f"{x:.2f}" for x in row), f"{rd + wr:.2f}")
    t.add_row("Total", *(f"{x:.2f}" for x in tot), f"{sum(tot):.2f}", style="bold")
    return t


def wear_histogram(counts: Iterable[int]) -> list[tuple[str, int]]:
    """Pages per power-of-two bucket of write count: "0", "1", "2-3", "4-7", ... (empty buckets
    between the first and the last non-empty one included)."""
    c = Counter(int(x).bit_length() for x in counts)
    if not c:
        return []
    out = []
    for b in range(0, max(c) + 1):
        label = "0" if b == 0 else ("1" if b == 1 else f"{1 << (b - 1)}-{(1 << b) - 1}")
        out.append((label, c.get(b, 0)))
    return out
