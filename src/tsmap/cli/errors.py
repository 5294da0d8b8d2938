"""Exit statuses, and mistakes a user can make reported in one line without a traceback.

- 0: all done;
- 1: done, but some videos could not be used (the summary names them);
- 2: a user error: a bad option value, a missing or unusable file or folder, a store or
  checkpoint that does not fit: one line on stderr, ``tsmap: error: <what and what to do>``,
  and nothing written before is changed;
- 130: interrupted (Ctrl-C); finished work is kept.
"""

from __future__ import annotations

import argparse
import re
import sys

OK, SOME_FAILED, USER_ERROR, INTERRUPTED = 0, 1, 2, 130

EXIT_CODES = "exit status: 0 all done; 1 some videos failed (the summary names them); 2 user error; 130 interrupted"
EXIT_CODES_NO_FAILURES = "exit status: 0 done; 2 user error; 130 interrupted"


class UsageError(Exception):
    """A command used in a way it does not support."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that are the user's mistakes (or the machine's: disk full, read-only).

    Imported when a command runs, not when the parser is built.
    """
    from tsmap.data.datasets import DatasetError
    from tsmap.data.video import VideoError
    from tsmap.evaluation.fusion import FusionError
    from tsmap.fileio import FolderBusy, WriteError
    from tsmap.frames.backbones import BackboneError
    from tsmap.frames.onnx_runtime import OnnxEngineError
    from tsmap.heads.checkpoint import CheckpointError
    from tsmap.train_config import ConfigError
    from tsmap.videomap.extract import ExtractionAborted
    from tsmap.videomap.store import StoreError

    return (
        UsageError,
        DatasetError,
        StoreError,
        VideoError,
        ExtractionAborted,
        FusionError,
        BackboneError,
        CheckpointError,
        ConfigError,
        OnnxEngineError,
        FolderBusy,
        WriteError,
        FileNotFoundError,
        FloatingPointError,  # training diverged: the message says to lower --lr
        OSError,  # permission denied, disk full, a file where a folder should be: named by the system
    )


def one_line(exc: BaseException) -> str:
    """The error's message on one line; an OSError as '<file>: <reason>'."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None and str(exc.filename) not in text:
            text = f"{exc.filename}: {text}"
    else:
        text = str(exc)
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(exc).__name__


def print_error(message: str) -> None:
    print(f"tsmap: error: {message}", file=sys.stderr)


# argparse reads "-1" and "-0.5" as values, but "-1e-3" or "-inf" as unknown options ("expected
# one argument"): every negative number is a value here, so that its check can name the problem.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block): `tsmap train: error: argument --lr: ...`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if hasattr(self, "_negative_number_matcher"):  # argparse's private pattern (Python 3.11-3.13)
            self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(USER_ERROR)
