"""Command line: ``python -m bt_helpers <command>`` (the README shows each command).

Subcommands are registered in :data:`SUBCOMMANDS`: each is a function
``add_<command>_parser(subparsers)`` that adds its parser and sets ``run=<function(args) -> int>``
with ``parser.set_defaults``. To add one (``train``, ``eval``), write those two functions and
append the first to :data:`SUBCOMMANDS`; ``--help`` then lists it, and the ``bt-train`` /
``bt-eval`` console scripts declared in ``pyproject.toml`` run it.

Bad input (a ``ValueError`` or ``OSError`` such as a missing data folder or an unknown preset)
prints a one-line ``error: ...`` and exits with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, List, Optional


def add_data_parser(subparsers) -> None:
    """``data``: load a dataset the way the notebooks do and print its per-class summary."""
    from bt_helpers.config import PRESETS
    from bt_helpers.data import DATA_DIR_ENV, SOURCES

    parser = subparsers.add_parser(
        "data", help="load the images and print how many there are per class and split",
        description="Load images as the notebooks do (bt_helpers.data.load_data) and print "
                    "where they came from and a per-class count of the train / val / test splits.")
    parser.add_argument("--source", choices=SOURCES, default=None,
                        help="where the images come from (default: 'folder' when --data-dir is "
                             "given, else the preset's data_source, else 'auto')")
    parser.add_argument("--data-dir", default=None, metavar="PATH",
                        help=f"folder or .tar.gz laid out as train/<class>/*.jpg "
                             f"(default: ${DATA_DIR_ENV})")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                        help="take data_source, n_train and n_val from this preset")
    parser.add_argument("--n-train", type=int, default=None, metavar="N",
                        help="training images to keep (default: the preset's, else all)")
    parser.add_argument("--n-val", type=int, default=None, metavar="N",
                        help="validation images to hold out (default: the preset's, else 5000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    parser.set_defaults(run=run_data)


def run_data(args: argparse.Namespace) -> int:
    """Run ``data``: print the data's one-line description and its per-class table."""
    from bt_helpers.data import load_data

    preset = None
    if args.preset is not None:
        from bt_helpers.config import get_preset

        preset = get_preset(args.preset)
    source = args.source
    if source is None and args.data_dir is not None:
        source = "folder"
    images = load_data(source=source, data_dir=args.data_dir, n_train=args.n_train,
                       n_val=args.n_val, seed=args.seed, preset=preset)
    print(images.describe())
    print(images.summary())
    return 0


#: One ``add_<command>_parser(subparsers)`` per subcommand, in the order ``--help`` lists them.
SUBCOMMANDS: List[Callable] = [add_data_parser]


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m bt_helpers`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m bt_helpers",
        description="Barlow Twins course helpers. Each command has its own --help.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when a command fails")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def available_commands() -> List[str]:
    """Names of the registered subcommands."""
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, OSError) as err:
        if args.debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


def _console_script(command: str, argv: Optional[List[str]]) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if command not in available_commands():
        print(f"error: bt-{command}: the '{command}' command is not part of bt_helpers yet "
              f"(available: {', '.join(available_commands())}).", file=sys.stderr)
        return 2
    return main([command, *argv])


def train_main(argv: Optional[List[str]] = None) -> int:
    """The ``bt-train`` console script: ``python -m bt_helpers train ...``."""
    return _console_script("train", argv)


def eval_main(argv: Optional[List[str]] = None) -> int:
    """The ``bt-eval`` console script: ``python -m bt_helpers eval ...``."""
    return _console_script("eval", argv)
