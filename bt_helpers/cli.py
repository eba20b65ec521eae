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


def add_eval_parser(subparsers) -> None:
    """``eval``: linear probe and/or kNN on the encoder of a training run; JSON beside it."""
    from bt_helpers.data import DATA_DIR_ENV, SOURCES
    from bt_helpers.evaluate import EVAL_JSON, PROBES

    parser = subparsers.add_parser(
        "eval", help="score a trained encoder: linear probe and kNN on frozen features",
        description="Load the last checkpoint of a training run, extract frozen features of "
                    "the training images and of the held-out images (the test split when the "
                    "data has one, else the validation split), train the linear probe and/or "
                    "run the kNN classifier, print a table and write the results to "
                    f"RUN/{EVAL_JSON}.")
    parser.add_argument("--checkpoint", required=True, metavar="RUN",
                        help="run folder written by `train` (or its checkpoint.npz)")
    parser.add_argument("--probe", choices=PROBES, default="all",
                        help="which evaluation to run (default: all)")
    parser.add_argument("--features", choices=("backbone", "projector"), default="backbone",
                        help="probe the encoder's features (default) or the projector's output")
    parser.add_argument("--source", choices=SOURCES, default=None,
                        help="where the images come from (default: the run's preset)")
    parser.add_argument("--data-dir", default=None, metavar="PATH",
                        help=f"image folder or .tar.gz (default: ${DATA_DIR_ENV})")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="seed of the train/val split (default: the run's --seed, as "
                             "`train` splits with it)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe (default: 0)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="images per forward pass (default: 256)")
    parser.add_argument("--k", type=int, default=200, help="kNN neighbours (default: 200)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {EVAL_JSON}")
    parser.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``eval``: ``bt_helpers.evaluate.evaluate_run``, then print its table."""
    from bt_helpers.evaluate import evaluate_run, format_results

    source = args.source
    if source is None and args.data_dir is not None:
        source = "folder"
    results = evaluate_run(args.checkpoint, probe=args.probe, data_dir=args.data_dir,
                           source=source, data_seed=args.data_seed, features=args.features,
                           batch_size=args.batch_size, k=args.k, seed=args.seed,
                           write=not args.no_write, verbose=sys.stderr.isatty())
    print(format_results(results))
    return 0


def add_train_parser(subparsers) -> None:
    """``train``: Barlow Twins pretraining of a preset, resumable (``bt_helpers.train.train``)."""
    from bt_helpers.config import PRESET_ENV, PRESETS
    from bt_helpers.data import DATA_DIR_ENV

    parser = subparsers.add_parser(
        "train", help="pretrain a Barlow Twins encoder; re-run the same command to resume",
        description="Pretrain the encoder + projector of a preset with the Barlow Twins loss. "
                    "A checkpoint is written atomically after every epoch into --out; running "
                    "the same command again (after Ctrl-C, kill -9 or a crash) resumes from the "
                    "last complete epoch. Several GPUs are used automatically; several "
                    "machines via TF_CONFIG (see the README).")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                        help=f"configuration (default: ${PRESET_ENV}, else 'full' with a GPU "
                             "and 'teaching' without)")
    parser.add_argument("--epochs", type=int, default=None, metavar="N",
                        help="pretraining epochs (default: the preset's)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="run folder for checkpoint and logs (default: runs/<preset>)")
    parser.add_argument("--data-dir", default=None, metavar="PATH",
                        help=f"image folder or .tar.gz of CIFAR-10 (default: ${DATA_DIR_ENV}, "
                             "else the Keras cache or a download)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the data split, the weights and the augmentations "
                             "(default: 0)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start from scratch even if --out holds a checkpoint (it is "
                             "overwritten at the end of the first epoch)")
    parser.add_argument("--knn-every", type=int, default=None, metavar="K",
                        help="kNN monitor every K epochs, 0 for never (default: the preset's)")
    parser.add_argument("--strategy", default="auto",
                        choices=("auto", "default", "mirrored", "multi_worker"),
                        help="tf.distribute strategy (default: auto = multi_worker when "
                             "TF_CONFIG is set, mirrored with several GPUs, else default)")
    parser.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Run ``train``: load the preset's data, train (or resume), say where everything is."""
    from pathlib import Path

    from bt_helpers import train
    from bt_helpers.config import get_preset

    # A multi-worker strategy must exist before any other TensorFlow operation.
    strategy = train.make_strategy(args.strategy)
    preset = get_preset(args.preset)
    if args.epochs is not None:
        preset = preset.replace(epochs=args.epochs,
                                warmup_epochs=min(preset.warmup_epochs, args.epochs))
    out = Path(args.out) if args.out else Path("runs") / preset.name
    from bt_helpers.data import load_data

    print(preset.describe(), flush=True)
    images = load_data(source="folder" if args.data_dir else None, data_dir=args.data_dir,
                       preset=preset, seed=args.seed)
    print(images.describe(), flush=True)
    result = train.train(preset, images, out, seed=args.seed, resume=not args.no_resume,
                         strategy=strategy, knn_every=args.knn_every)
    if train.is_chief(strategy):
        last = result.history[-1] if result.history else {}
        knn = last.get("knn_accuracy")
        print(f"Done: {len(result.history)} of {preset.epochs} epochs in {out}"
              + (f", last kNN accuracy {knn:.1%}" if knn is not None else "") + ".")
        print(f"Evaluate the encoder with: python -m bt_helpers eval --checkpoint {out}")
    return 0


#: One ``add_<command>_parser(subparsers)`` per subcommand, in the order ``--help`` lists them.
SUBCOMMANDS: List[Callable] = [add_data_parser, add_train_parser, add_eval_parser]


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
