"""The kernel's whole state as bytes, for machine snapshots (vmm saves the devices, the kernel
saves itself).

The kernel is a graph of Python objects: processes, address spaces, open files, pipes, the VFS,
the page-cache index, allocators, timers, and the continuations of parked syscalls (closures).
cloudpickle (the serialiser Dask and Ray use) writes such a graph whole, closures included, by
value. What belongs to the machine is written as a name and bound to the new machine's device
on load (pickle's persistent ids): the CPU, clock, guest memory, disk and console save their own
state. The C instruction-count caches of the address spaces are caches: each comes back empty.
"""
from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import cloudpickle

DEVICES = ("cpu", "clock", "memory", "blockdev", "console", "balloon")  # balloon: optional
ICACHE = "icache"


def dump(kernel: object, machine: Any) -> bytes:
    names = {id(kernel): "kernel", id(machine): "machine"}
    names.update({id(dev): d for d in DEVICES if (dev := getattr(machine, d, None)) is not None})
    ffi = machine.cpu.ffi

    class Pickler(cloudpickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:  # type: ignore[override]
            name = names.get(id(obj))
            if name is not None:
                return name
            if isinstance(obj, ffi.CData):
                if ffi.typeof(obj).cname == "struct icache *":
                    return ICACHE
                raise pickle.PicklingError(f"kernel state holds a C object of type {ffi.typeof(obj).cname}")
            return None

        def reducer_override(self, obj: object) -> Any:
            if isinstance(obj, struct.Struct):  # precompiled formats (the drivers keep some)
                return struct.Struct, (obj.format,)
            return super().reducer_override(obj)

    buf = io.BytesIO()
    Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(kernel.__dict__)
    return buf.getvalue()


def load(state: bytes, kernel: object, machine: Any) -> dict[str, Any]:
    """The saved kernel's attributes, its references to the machine bound to `machine`."""
    objects = {"kernel": kernel, "machine": machine}
    objects.update({d: dev for d in DEVICES if (dev := getattr(machine, d, None)) is not None})

    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> object:
            if pid == ICACHE:
                return machine.cpu.new_icache()
            try:
                return objects[pid]
            except (KeyError, TypeError):
                raise pickle.UnpicklingError(f"kernel state refers to an unknown device {pid!r}") from None

    return Unpickler(io.BytesIO(state)).load()
