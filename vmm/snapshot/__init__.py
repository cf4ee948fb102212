"""Whole-machine snapshots on the host disk: full, touched, incremental and sonic (SonicShot).

A snapshot is a directory, written under a temporary name and renamed when complete (a crash
while saving leaves no half snapshot), holding:

    meta.json    what it is: format, mode, the machine configuration, where the run was
                 (instructions, virtual time), its parent in a chain, the pages saved by kind,
                 what the guest did for it (sonic), timings, and a CRC-32 of every other file
    state.bin    every device's state and the kernel's (vmm/machine.py save_state without
                 the bulk), pickled and zstd-compressed (metadata: mostly per-frame arrays of
                 zeros, a few MiB raw whatever the mode; the pages themselves are memory.bin's)
    memory.bin   the saved guest pages (vmm/snapshot/files.py), raw or zstd
    disk.img     the storage image as it was (a reflink where the file system can, else a copy),
                 so the run may go on writing its disk and the snapshot still resumes the same
    media/       the SCM media files, at model levels with a cache

Why this format: a JSON header anyone can read (`emu snapshot info`, `jq`), pickle for the
object graph the kernel is (it already serialises itself that way), and raw pages behind a page
index for the bulk, so the cost of a snapshot is the bytes of its pages, which is what the
paper measures. zstd is an option (`compression="zstd"`); the default is raw pages, as the
hypervisors the paper compares.

An incremental snapshot names its parent (a relative path and the parent's id); a restore
reads the chain from the base on, later pages over earlier ones.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from vmm.config import machine_to_dict
from vmm.errors import EmuError

# The modes (vmm/snapshot/pages.py selects their pages). files and pages (numpy), zstandard,
# pickle and uuid are imported where they are used: `emu run` names the modes in its arguments,
# and its start-up should not pay for them.
MODES = ("full", "touched", "incremental", "sonic")

FORMAT = "emu-snapshot/1"
META = "meta.json"

__all__ = ["MODES", "Snapshot", "SnapshotError", "config_of", "open_snapshot", "restore", "take"]


class SnapshotError(EmuError):
    """A snapshot cannot be taken or used: one line says why."""


@dataclass
class Snapshot:
    path: Path
    meta: dict[str, Any]
    chain: list["Snapshot"] = field(default_factory=list)  # base first, this one last


def take(machine: Any, where: Path, mode: str, parent: Path | None = None, compression: str = "none") -> dict[str, Any]:
    """Snapshot the paused machine into the new directory `where`; returns its meta. With mode
    sonic the guest is asked first (see guestkernel/balloon.py) and given its pages back after,
    all before any guest instruction runs again."""
    import pickle
    import uuid

    import numpy as np
    import zstandard

    from vmm.snapshot import files, pages

    if mode not in MODES:
        raise SnapshotError(f"unknown snapshot mode {mode!r} (one of {', '.join(MODES)})")
    if compression not in files.COMPRESSIONS:
        raise SnapshotError(f"unknown compression {compression!r} (one of {', '.join(files.COMPRESSIONS)})")
    if where.exists() and any(where.iterdir()):
        raise SnapshotError(f"{where} exists and is not empty: a snapshot never overwrites")
    if machine.placement is not None:
        raise SnapshotError("a machine with page placement on (placement.policy) cannot be snapshotted yet")
    if machine.blockdev.fd < 0:
        raise SnapshotError("the machine's run has ended: a snapshot is of a paused machine (resume_run(until=N))")
    if mode == "sonic" and machine.config.checkpoint.enabled:
        raise SnapshotError("a sonic snapshot does not go with checkpointing yet: the guest's sync would write "
                            "storage outside a checkpoint")
    parent_meta = None
    if mode == "incremental" and parent is not None:
        parent_meta = open_snapshot(parent).meta
        if parent_meta["id"] != machine.last_snapshot:
            # the dirty bits say what changed since the machine's last snapshot, whatever it was
            raise SnapshotError(f"{parent} is not this machine's last snapshot: an incremental snapshot "
                                "holds the pages dirtied since the last one, so its parent must be that one")
    elif parent is not None:
        raise SnapshotError("only an incremental snapshot has a parent")
    k = machine.kernel
    t0 = time.perf_counter()
    guest: dict[str, int] = {}
    if mode == "sonic":
        if not hasattr(k, "prepare_snapshot"):
            raise SnapshotError(f"kernel {getattr(k, 'name', '?')} cannot cooperate in a sonic snapshot")
        guest = k.prepare_snapshot()
    chosen = pages.select(machine, mode, first_of_chain=parent is None)
    ram = pages.window_mask(machine, "ram")
    kinds = k.page_kinds() if hasattr(k, "page_kinds") else None
    from guestkernel.interface import PAGE_KINDS

    saved_by_kind = pages.count_kinds(kinds, chosen, ram, PAGE_KINDS)
    every = pages.window_gpfns(machine)
    saved = np.zeros(len(ram), dtype=bool)
    saved[chosen] = True
    left_out = pages.count_kinds(kinds, every[~saved[every]], ram, PAGE_KINDS)
    known_zero = pages.untouched(machine, chosen) & files.fresh_dram(machine, chosen)
    pages.mark_saved(machine)
    state = zstandard.ZstdCompressor(level=3).compress(pickle.dumps(machine.save_state(contents=False), protocol=pickle.HIGHEST_PROTOCOL))
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}.", dir=where.parent))
    try:
        checks = {"state.bin": files.write_bytes(tmp / "state.bin", state),
                  "memory.bin": files.write_memory(tmp / "memory.bin", machine, chosen, compression, known_zero)}
        t_mem = time.perf_counter()
        if machine.media and machine.level:
            (tmp / "media").mkdir()
            for name, m in machine.media.items():
                checks[f"media/{name}.media"] = files.write_bytes(tmp / "media" / f"{name}.media", bytes(m))
        machine.blockdev.flush()
        disk_how = files.copy_file(Path(machine.blockdev.path), tmp / "disk.img", durable=True)
        checks["disk.img"] = files.file_crc(tmp / "disk.img")
        t_disk = time.perf_counter()
        meta = {
            "format": FORMAT, "id": uuid.uuid4().hex, "mode": mode, "compression": compression,
            "instructions": machine.cpu.icount, "virtual_ns": machine.clock.uptime_ns(),
            "model_level": machine.config.model_level,
            "config": machine_to_dict(machine.config),
            "parent": None if parent is None else os.path.relpath(parent.resolve(), where.resolve()),
            "parent_id": parent_meta["id"] if parent_meta else None,
            "ram_pages": int(ram.sum()),
            "pages_saved": int(len(chosen)), "saved_by_kind": saved_by_kind, "left_out_by_kind": left_out,
            "guest": guest, "files": checks, "disk_copy": disk_how,
        }
        files.write_bytes(tmp / META, (json.dumps(meta, indent=1) + "\n").encode())
        files.sync_dir(tmp)
        if where.exists():
            where.rmdir()  # empty (checked above)
        os.replace(tmp, where)
        files.sync_dir(where.parent)  # the snapshot is there after a host crash too
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    machine.last_snapshot = meta["id"]
    t_end = time.perf_counter()
    if mode == "sonic":
        k.after_snapshot()
    t_back = time.perf_counter()
    meta["timing"] = {"save_s": (t_mem - t0) + (t_end - t_disk) + (t_back - t_end), "disk_s": t_disk - t_mem}
    # the timing (not checksummed) replaces meta.json atomically: a crash leaves one or the other
    files.write_bytes(where / f".{META}.new", (json.dumps(meta, indent=1) + "\n").encode())
    os.replace(where / f".{META}.new", where / META)
    files.sync_dir(where)
    return meta


def open_snapshot(path: Path) -> Snapshot:
    """Read a snapshot's meta.json and its chain's (no bulk read yet); SnapshotError when it is
    not a snapshot, is of another format, or its chain is broken."""
    seen: list[Snapshot] = []
    at: Path | None = path
    child_wants: str | None = None
    while at is not None:
        meta = _read_meta(at)
        if child_wants is not None and meta["id"] != child_wants:
            raise SnapshotError(f"broken chain: {at} is not the snapshot {seen[-1].path} was taken after")
        snap = Snapshot(at, meta)
        seen.append(snap)
        if len(seen) > 10_000:
            raise SnapshotError(f"broken chain: {path} has a loop of parents")
        if meta.get("parent") is None:
            at = None
        else:
            at = (at / meta["parent"]).resolve()
            child_wants = meta.get("parent_id")
            if not (at / META).is_file():
                raise SnapshotError(f"broken chain: {path}'s parent {at} is missing")
    me = seen[0]
    me.chain = list(reversed(seen))
    return me


def _read_meta(at: Path) -> dict[str, Any]:
    try:
        meta = json.loads((at / META).read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{at} is not a snapshot (no {META}): take one with emu run --snapshot-at N --snapshot DIR") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise SnapshotError(f"{at}/{META} is damaged: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(f"{at} is not an {FORMAT} snapshot")
    for key in ("id", "mode", "config", "files", "instructions"):
        if key not in meta:
            raise SnapshotError(f"{at}/{META} is damaged: no {key!r}")
    return meta


def config_of(snap: Snapshot) -> Any:
    from vmm.config import ConfigError, machine_from_dict

    try:
        return machine_from_dict(snap.meta["config"], f"{snap.path}/{META}")
    except ConfigError as e:
        raise SnapshotError(f"{snap.path}: its machine configuration is damaged: {e}") from None


def restore(snap: Snapshot, image: Path, config: Any = None, **machine_kw: Any) -> tuple[Any, dict[str, float]]:
    """A fresh machine in the state `snap` holds, its disk a copy of the snapshot's at `image`
    (which must not exist); returns it (ready for resume_run) and timings. `config`: the
    machine the caller expects; another configuration than the snapshot's is refused."""
    from vmm.machine import Machine
    from vmm.snapshot import files

    cfg = config_of(snap)
    if config is not None and machine_to_dict(config) != snap.meta["config"]:
        diff = _config_diff(machine_to_dict(config), snap.meta["config"])
        raise SnapshotError(f"{snap.path} is a snapshot of another machine configuration ({diff})")
    t0 = time.perf_counter()
    try:
        files.check_file(snap.path / "disk.img", snap.meta["files"]["disk.img"])
        t_check = time.perf_counter() - t0  # the disk's: timed apart, with its copy
        state_bytes = files.read_bytes(snap.path / "state.bin", snap.meta["files"]["state.bin"])
        for link in snap.chain:  # cheap checks first: every file there, of its size
            for name, expect in link.meta["files"].items():
                p = link.path / name
                if not p.is_file() or p.stat().st_size != expect["bytes"]:
                    raise files.CorruptFile(f"{link.path.name}/{name} is missing or truncated")
    except files.CorruptFile as e:
        raise SnapshotError(f"{snap.path}: {e}") from None
    try:
        import pickle

        import zstandard

        state = pickle.loads(zstandard.ZstdDecompressor().decompress(state_bytes))
    except Exception as e:  # a checksum-correct but unloadable state: another emu version
        raise SnapshotError(f"{snap.path}/state.bin cannot be loaded ({type(e).__name__}): made by another emu version?") from None
    if image.exists():
        raise SnapshotError(f"{image} exists: a restore never overwrites")
    t_disk0 = time.perf_counter()
    files.copy_file(snap.path / "disk.img", image)
    t_disk = time.perf_counter() - t_disk0 + t_check
    try:
        m = Machine(image, cfg, **machine_kw)

        def contents() -> None:
            written = bytearray(m.ept.pages)
            for link in snap.chain:
                files.read_memory(link.path / "memory.bin", m, link.meta["files"]["memory.bin"], written)
            for name in m.media:
                key = f"media/{name}.media"
                if key in snap.meta["files"]:
                    m.media[name][:] = files.read_bytes(snap.path / key, snap.meta["files"][key])

        try:
            m.load_state(state, contents)
        except files.CorruptFile as e:
            raise SnapshotError(f"{snap.path}: {e}") from None
        if hasattr(m.kernel, "after_snapshot"):
            m.kernel.after_snapshot()
        m.last_snapshot = snap.meta["id"]  # a chain may go on from the restored machine
    except BaseException:
        image.unlink(missing_ok=True)
        raise
    total = time.perf_counter() - t0
    return m, {"restore_s": total - t_disk, "disk_s": t_disk}


def _config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> str:
    """The first setting that differs, as `key: A here, B in the snapshot`."""
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if va != vb:
            if isinstance(va, dict) and isinstance(vb, dict):
                return _config_diff(va, vb, f"{prefix}{key}.")
            return f"{prefix}{key}: {va!r} here, {vb!r} in the snapshot"
    return "same"

