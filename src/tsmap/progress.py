"""Progress that suits where the output goes: a tqdm bar on a terminal, plain lines elsewhere.

A tqdm bar redraws itself with carriage returns on every update: fine on a terminal, but a
log file or a pipe receives every redraw (the demo wrote 158 KB of them). ``progress``
takes tqdm's arguments and returns a tqdm bar when the output is a terminal; otherwise a
``PlainProgress`` with the same API (iteration, ``update``, ``set_postfix``,
``set_postfix_str``, ``set_description``, ``write``, ``close``, context manager, ``n``,
``total``, ``initial``, ``desc``, ``disable``) that prints one line every ~10 % of the
total or every 30 s, and a last line when it closes::

    train videomap: 40/100 epoch (40%), 0:12 elapsed, loss=0.532, train=0.81

Code written for tqdm switches with ``from tsmap.progress import progress as tqdm``
(``tqdm.write(...)`` works too).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

LINE_EVERY_FRACTION = 0.1  # a line every 10 % of the total...
LINE_EVERY_SECONDS = 30.0  # ... or every 30 s, whichever comes first


def _is_terminal(file: IO[str] | None) -> bool:
    try:
        return bool(file is not None and file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm | PlainProgress:
    """A tqdm bar on a terminal, else a ``PlainProgress``; takes tqdm's arguments.

    ``disable=None`` means what it means to tqdm: nothing shown off a terminal.
    """
    file = kwargs.get("file") or sys.stderr
    if _is_terminal(file):
        kwargs.pop("every_seconds", None)  # PlainProgress's own
        return tqdm(iterable, **kwargs)
    if kwargs.get("disable", False) is None:
        kwargs["disable"] = True
    return PlainProgress(iterable, **kwargs)


def write(text: str, file: IO[str] | None = None, end: str = "\n", nolock: bool = False) -> None:
    """tqdm.write: print a message (to stdout by default) without breaking a bar."""
    tqdm.write(text, file=file, end=end, nolock=nolock)


progress.write = write  # so that `progress as tqdm` keeps `tqdm.write(...)` working


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


class PlainProgress:
    """tqdm's API, printing a plain line now and then instead of redrawing a bar."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        desc: str | None = None,
        total: float | None = None,
        disable: bool = False,
        unit: str = "it",
        initial: float = 0,
        file: IO[str] | None = None,
        postfix: Any = None,
        every_seconds: float = LINE_EVERY_SECONDS,
        **_ignored: Any,  # tqdm's display options (dynamic_ncols, leave, ncols, ...)
    ):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self.iterable = iterable
        self.desc = desc or ""
        self.total = total
        self.disable = bool(disable)
        self.unit = unit
        self.initial = initial
        self.n = initial
        self.file = file if file is not None else sys.stderr
        self.postfix = ""
        self.every_seconds = every_seconds
        self.start_t = time.monotonic()
        self.last_print_t = self.start_t
        self.last_print_n = initial
        self._next_mark = self._mark_after(initial)
        self.closed = False
        self._printed = False
        if isinstance(postfix, dict):
            self.set_postfix(postfix)
        elif postfix is not None:
            self.set_postfix_str(str(postfix))

    # -- when to print ---------------------------------------------------------
    def _mark_after(self, n: float) -> float:
        """The next multiple of 10 % of the total above ``n`` (inf without a total)."""
        if not self.total:
            return math.inf
        step = self.total * LINE_EVERY_FRACTION
        return (math.floor(n / step + 1e-9) + 1) * step

    def _maybe_print(self) -> None:
        if self.disable or self.closed:
            return
        now = time.monotonic()
        if self.n >= self._next_mark - 1e-9 or now - self.last_print_t >= self.every_seconds:
            self._print(now)

    def _print(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.file.write(self.line(now) + "\n")
        self.file.flush()
        self.last_print_t, self.last_print_n = now, self.n
        self._printed = True
        self._next_mark = self._mark_after(self.n)

    def line(self, now: float | None = None) -> str:
        """desc: n/total unit (pct%), elapsed, postfix."""
        now = time.monotonic() if now is None else now
        n = _format_value(self.n) if isinstance(self.n, float) and not self.n.is_integer() else str(int(self.n))
        if self.total:
            total = int(self.total) if float(self.total).is_integer() else self.total
            count = f"{n}/{total} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            count = f"{n} {self.unit}"
        parts = [f"{self.desc}: {count}" if self.desc else count, f"{_clock(now - self.start_t)} elapsed"]
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    # -- tqdm's API ------------------------------------------------------------
    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress has no iterable")
        if self.disable:
            yield from self.iterable
            return
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is not None:
            return int(self.total)
        return len(self.iterable)  # type: ignore[arg-type]

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> bool | None:
        self.n += n
        self._maybe_print()
        return None

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={_format_value(v).strip()}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = (desc or "").removesuffix(": ")

    set_description_str = set_description

    def refresh(self, *args: Any, **kwargs: Any) -> None:
        """tqdm redraws; a plain log gets no extra line."""

    def clear(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to clear in a plain log."""

    def reset(self, total: float | None = None) -> None:
        self.n = self.initial = self.last_print_n = 0
        if total is not None:
            self.total = total
        self.start_t = self.last_print_t = time.monotonic()
        self._next_mark = self._mark_after(0)

    def write(self, text: str, file: IO[str] | None = None, end: str = "\n", nolock: bool = False) -> None:
        write(text, file=file, end=end, nolock=nolock)

    def close(self) -> None:
        """A last line, unless the last one printed already says the same count."""
        if self.closed:
            return
        self.closed = True
        if self.disable:
            return
        if self.n != self.last_print_n or not self._printed:
            self._print()

    @property
    def format_dict(self) -> dict:
        return {
            "n": self.n,
            "total": self.total,
            "elapsed": time.monotonic() - self.start_t,
            "unit": self.unit,
            "prefix": self.desc,
            "postfix": self.postfix,
            "initial": self.initial,
        }
