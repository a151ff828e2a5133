"""Keeping large temporary buffers out of the C heap, where freeing them returns nothing.

Loading and applying a large manifest set, and listing it on the admin API, allocate and free
buffers from about 128 KiB to a few MiB (a manifest file's text, dict tables that grow while
they fill, encoded listings). glibc's malloc maps such a buffer on its own and unmaps it when
freed, until the first one is freed: it then raises its mapping threshold to that size and
serves later ones from the heap, which it shrinks only from the top. The freed middle stays
resident: with 10,000 Triggers, about 4 MiB after the load and more after each listing.

:func:`pin_mmap_threshold` fixes the threshold at glibc's own starting value, so every such
buffer is mapped and given back when freed. Steady-state work (events of at most a few KiB
each) allocates nothing that large, so it costs no extra system calls there. Elsewhere (musl,
macOS) it does nothing.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number (``<malloc.h>``)."""
MMAP_THRESHOLD = 128 * 1024
"""glibc's default starting threshold, in bytes."""


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make allocations of ``threshold`` bytes or more always mapped (glibc ``mallopt``), which
    also stops glibc from raising the threshold later. Whether the C library supports it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols include the C library's
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
