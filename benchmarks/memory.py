"""Peak memory of the current process, measured so that a parent's size cannot leak in.

Only the standard library: benchmarks import this in child processes whose own memory
they measure, so it must not pull anything heavy in.
"""

from __future__ import annotations

from pathlib import Path


def peak_rss_kb() -> int:
    """This process's peak resident set since it started (VmHWM, Linux).

    Not ru_maxrss: Python starts a child with vfork + exec, and at exec Linux folds the
    peak of the address space being left, which under vfork is the parent's, into the
    child's ru_maxrss. A benchmark child whose parent held a large corpus
    would report the parent's peak (checked: an empty child of a 775 MB parent reports
    775 MB in ru_maxrss, 11 MB in VmHWM). VmHWM belongs to the child's own memory map."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")
