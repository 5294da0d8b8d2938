"""Keep glibc malloc from handing large buffers back to the kernel at every training step.

glibc serves a request above its mmap threshold (128 KiB at start, raised dynamically to
at most 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` on ``free``; and
it trims the top of its heap once more than 128 KiB lie free there. A training step of
the VideoMap head allocates and frees activations of tens to hundreds of MiB (16
channels x T x 1280 floats per map), so every step maps them anew and the kernel zeroes
and faults in every 4 KiB page again: measured on ``tsmap train`` (96 maps of 64 x 1280,
5 epochs), 5.6 million minor page faults and 13 s of 41 s of CPU time in the kernel.

``tune_malloc`` sets, through ``mallopt``, the same three knobs that the
``GLIBC_TUNABLES`` environment variable would (which a pip-installed tool cannot set for
itself: glibc reads it once, before ``main``):

  * ``M_MMAP_THRESHOLD`` 1 GiB: activations come from the heap, not from fresh mappings
    (setting it also turns the dynamic threshold off);
  * ``M_TRIM_THRESHOLD`` -1 (trimming off, as ``man mallopt`` documents): freed memory at
    the top of the heap stays with the process for the next step instead of going back
    to the kernel;
  * ``M_TOP_PAD`` 64 MiB: the heap grows in steps of at least that much (fewer ``brk``
    calls; untouched pages cost nothing).

The cost: the process keeps its peak heap until it exits instead of returning it between
steps (its peak memory is unchanged; see benchmarks/allocator.py). Settings affect
allocations made after the call only, so call it first thing in the process.

It does nothing (and returns False) off glibc, when ``TSMAP_NO_MALLOC_TUNING`` is set to
anything but ``0`` or empty, when the user already tunes malloc through the environment
(``GLIBC_TUNABLES`` naming ``glibc.malloc``, or the ``MALLOC_*_`` variables), or when
another allocator is preloaded (jemalloc, tcmalloc, mimalloc). Calling it again is free
and returns the first call's answer.
"""

from __future__ import annotations

import ctypes
import os
import sys

OPT_OUT_ENV = "TSMAP_NO_MALLOC_TUNING"

# mallopt parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = -1  # never trim (glibc reads it as the largest size_t)
TOP_PAD = 64 << 20

_USER_MALLOC_ENV = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_ARENA_MAX",
)
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc", "hoard", "snmalloc")

_result: bool | None = None
_reason = "not called yet"


def _why_not() -> str | None:
    """Why the tuning must not be applied in this process (None: apply it)."""
    if os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return f"{OPT_OUT_ENV} is set"
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or any(v in os.environ for v in _USER_MALLOC_ENV):
        return "malloc is already tuned through the environment"
    preload = os.environ.get("LD_PRELOAD", "").lower()
    if any(name in preload for name in _OTHER_ALLOCATORS):
        return "another allocator is preloaded"
    return None


def _libc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (it has ``gnu_get_libc_version``), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - an AttributeError off glibc (musl, macOS)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def tune_malloc() -> bool:
    """Apply the settings above once per process; True when glibc accepted them all."""
    global _result, _reason
    if _result is not None:
        return _result
    _reason = _why_not() or ""
    libc = None if _reason else _libc()
    if not _reason and libc is None:
        _reason = "the C library is not glibc"
    if _reason:
        _result = False
        return False
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    refused = [param for param, value in settings if libc.mallopt(param, value) != 1]
    _result = not refused
    _reason = "applied" if _result else f"glibc refused mallopt parameters {refused}"
    return _result


def tuning_status() -> str:
    """What the last ``tune_malloc`` call did: "applied", or why not."""
    return _reason
