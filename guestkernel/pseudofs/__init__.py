"""The kernel's pseudo file systems, on the VFS's generic pseudo-file-system layer
(guestkernel/vfs/pseudo.py):

    sysfs.py    /sys: the CPU topology (fixed contents)
    procfs.py   /proc: the tree, /proc/sys, the per-process directories
    procmem.py  /proc's memory and machine files (meminfo, vmstat, buddyinfo, ...), Linux's formats
    procpid.py  /proc/PID's files (stat, status, statm, maps, cmdline, environ, comm)
"""
