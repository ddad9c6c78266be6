"""Peak memory of a benchmark's child process, measured so that a parent's size cannot
leak in, and the child's one result line read back.

Only the standard library: benchmarks import this in child processes whose own memory
they measure, so it must not pull anything heavy in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


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


def run_child(module: str, args: list[str], marker: str, what: str) -> dict[str, Any]:
    """Run `python -m module args` in a fresh interpreter and return the JSON of the last
    line it printed starting with `marker`; RuntimeError (naming `what`, with the end of
    its stderr) if it failed or printed none."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=False
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(marker)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix(marker))
