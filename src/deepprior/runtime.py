"""Process-wide settings that make CPU fits faster.

:func:`tune_allocator` keeps the C library's allocator from handing the large blocks of a training
step back to the kernel after each use.  glibc serves every block above its mmap threshold (128 KiB
to 32 MiB, adaptive) with a fresh ``mmap`` and returns it with ``munmap`` when it is freed, so each
step's activations and gradients (tens to hundreds of MiB) are mapped anew, and the kernel zeroes
and faults in every page of them again.  With ``mmap`` off for the heap and trimming raised, the
freed blocks are reused instead.

Measured on a 2-core CPU (``python -m benchmarks.speed --variants eager channels_last
channels_last_tuned``, the paper's network): see BENCHMARKS.md "Speed"; the peak resident memory
grows (freed blocks stay in the process; ``benchmarks.memory``).

The CLI, the batch workers and the web app call it before a fit; the Python API leaves the host
process alone unless you call it (a notebook's memory then stays at its peak until it exits).
"""

from __future__ import annotations

import ctypes
import sys

# glibc's mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of free heap top before trimming

#: Peak memory of a CPU fit with the allocator tuned, over :func:`deepprior.cost.estimate` (freed
#: blocks stay in the process).  Measured (``python -m benchmarks.memory``, peak RSS less ~0.4 GiB
#: of Python and torch): 1.04-1.18x for ``denoise-small`` at 512-2048 px, 1.34-1.36x for
#: ``denoise-paper`` at 512 and 1024 (untuned: 0.93-0.99x).  The memory check scales by it.
TUNED_MEMORY_FACTOR = 1.4

_tuned = [False]  # whether tune_allocator took effect in this process (malloc has no getter)


def tune_allocator() -> bool:
    """Make glibc's malloc reuse large freed blocks (see the module's doc).  Idempotent.

    Returns True where it took effect (Linux with glibc), False elsewhere (macOS, Windows, musl),
    where it changes nothing.
    """
    if _tuned[0]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs with
        if not hasattr(libc, "gnu_get_libc_version"):  # musl's mallopt is a stub
            return False
        _tuned[0] = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM))
    except (OSError, AttributeError):
        return False
    return _tuned[0]


def memory_factor() -> float:
    """:data:`TUNED_MEMORY_FACTOR` once :func:`tune_allocator` took effect in this process, else 1."""
    return TUNED_MEMORY_FACTOR if _tuned[0] else 1.0
