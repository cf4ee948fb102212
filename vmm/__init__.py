"""The host side: the machine (its memory maps, devices and run loop), power cuts, and the epoch
listeners where host-side policies live (stats sampling, placement, balloon, snapshots). The
CLI and tools (`emu`) build on it; it drives a kernel through `guestkernel.interface` only."""
