"""The ``tsmap`` command line: one module per command, each ``add_parser(sub)`` + ``run(args)``.

``options`` holds the option groups and value checks the commands share, ``errors`` the
exit statuses and the one-line reports of user errors. The work itself is done by the
library (``tsmap.steps``, ``tsmap.demo``, ``tsmap.report``, ...); these modules only
read options, call it and print.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys

from tsmap import __version__
from tsmap.cli import demo, errors, evaluate, explain, extract, finetune, fuse, join, predict, report, train
from tsmap.cli.errors import INTERRUPTED, USER_ERROR, UsageError

COMMANDS = {
    module.__name__.rsplit(".", 1)[1]: module
    for module in (demo, extract, finetune, train, evaluate, predict, fuse, join, report, explain)
}
TORCHRUN_COMMANDS = ("extract", "train")

DESCRIPTION = """\
Video action recognition with Temporal-Spatial Mapping (Song et al., TCSVT 2019):
every frame goes through a 2D ConvNet, the pooled frame features are stacked in time
order into a T x L VideoMap, and a small head ConvNet with hierarchical temporal
attention classifies it. Not to be confused with the Temporal Shift Module.

Typical use:
  tsmap demo                                   # everything, on built-in data, offline
  tsmap extract --videos DATA --store MAPS     # DATA/<class>/<video>
  tsmap train --store MAPS --run RUN
  tsmap evaluate --store MAPS --run RUN
  tsmap predict VIDEO --run RUN
  tsmap extract --stream flow --videos DATA --store FLOWMAPS   # the motion stream, then train/evaluate
  tsmap fuse --runs RGB_RUN FLOW_RUN           # two-stream fusion of evaluated runs
  tsmap join --stores RGBMAPS FLOWMAPS --store BOTH   # or one head on both streams' maps side by side
  tsmap finetune --videos DATA --out FT        # stage 1: fine-tune the frame ConvNet (then extract --weights)
  tsmap report --store MAPS                    # the paper's tables and figures on your data
  tsmap explain VIDEO --run RUN                # attention and Grad-CAM over time for one video
"""

EPILOG = """\
exit status:
  0    all done
  1    done, but some videos could not be used (extract, predict, explain, demo: the summary names them)
  2    user error: a bad option value, a missing or unusable file or folder, a store or checkpoint that
       does not fit; one line on stderr says which and what to do, and nothing written before is changed
  130  interrupted (Ctrl-C); finished VideoMaps and checkpoints are kept

`tsmap COMMAND --help` explains every option of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = errors.ArgumentParser(
        prog="tsmap", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"tsmap {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run the command; under torchrun (extract and train only) every rank runs it, rank 0 prints."""
    from tsmap import distributed

    command = COMMANDS[args.command]
    if not distributed.launched_by_torchrun():
        return command.run(args)
    if args.command not in TORCHRUN_COMMANDS:
        raise UsageError(f"`tsmap {args.command}` runs in one process; only extract and train run under torchrun")
    from tsmap.steps import resolve_device

    _, args.device = distributed.setup(resolve_device(args.device))
    try:
        if distributed.current().is_main:
            return command.run(args)
        # The other ranks work silently; rank 0 prints the progress and the summary.
        args.quiet = True
        with contextlib.redirect_stdout(io.StringIO()):
            return command.run(args)
    finally:
        distributed.teardown()


def main(argv: list[str] | None = None) -> int:
    """Run ``tsmap`` with ``argv`` (default: the process's); returns the exit status.

    A bad option value exits through argparse (SystemExit 2, one line on stderr).
    """
    args = build_parser().parse_args(argv)
    # Before PyTorch allocates anything: large training buffers stay mapped between steps
    # (BENCHMARKS.md, "Allocator"); TSMAP_NO_MALLOC_TUNING=1 turns it off.
    from tsmap.malloc import tune_malloc

    tune_malloc()
    try:
        return run_command(args)
    except KeyboardInterrupt:
        print("tsmap: interrupted; finished VideoMaps and checkpoints are kept", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        if not isinstance(exc, errors.user_errors()):
            raise
        errors.print_error(errors.one_line(exc))
        return USER_ERROR


__all__ = ["COMMANDS", "build_parser", "main", "run_command"]
