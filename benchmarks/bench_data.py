"""How long the data takes: synthetic generation, and decoding an image folder cold and cached.

    python benchmarks/bench_data.py                                      # synthetic only
    python benchmarks/bench_data.py --folder /work/shared/data/cifar10-train-jpeg.tar.gz

* ``synthetic``: ``make_synthetic(n_train, n_test)`` (default 5,000 + 1,000), wall and CPU time,
  and the held-out accuracy of two untrained baselines on it: ridge regression on the mean
  colour (what a model gets without looking at shape; chance is 0.1) and on random
  convolutional features (64 random zero-mean 5x5 filters, absolute value, 4x4 pooling), which
  shows the classes are learnable from shape.
* ``folder`` (with ``--folder``): ``load_data(source="folder")`` with an empty cache (decoding
  every file; single-threaded), then again from the decoded-array cache; the per-class counts
  of the split. The cache of the cold run lives in a temporary folder, deleted at the end.

Prints one JSON object. The load average before and after is included: on a busy machine the
wall times are upper bounds; the CPU times are what the work costs.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)


def bench_synthetic(n_train: int, n_test: int) -> dict:
    from bt_helpers.data import make_synthetic
    from test_data import _random_conv_features, _ridge_accuracy

    (x, y, xt, yt, _), wall, cpu = _timed(lambda: make_synthetic(n_train, n_test, seed=0))
    colour = lambda a: a.reshape(len(a), -1, 3).mean(axis=1)  # noqa: E731
    return {
        "n_train": n_train, "n_test": n_test, "wall_s": wall, "cpu_s": cpu,
        "mean_colour_ridge_accuracy": _ridge_accuracy(colour(x), y, colour(xt), yt, lam=1e-3),
        "raw_pixel_ridge_accuracy": _ridge_accuracy(x.reshape(len(x), -1) / 255.0, y,
                                                    xt.reshape(len(xt), -1) / 255.0, yt),
        "random_conv_ridge_accuracy": _ridge_accuracy(_random_conv_features(x), y,
                                                      _random_conv_features(xt), yt),
    }


def bench_folder(path: str) -> dict:
    from bt_helpers.data import load_data

    with tempfile.TemporaryDirectory() as cache:
        os.environ["BT_CACHE_DIR"] = cache
        images, cold_wall, cold_cpu = _timed(lambda: load_data(source="folder", data_dir=path))
        again, warm_wall, warm_cpu = _timed(lambda: load_data(source="folder", data_dir=path))
        assert np.array_equal(images.x_train, again.x_train)
    return {
        "path": path, "cold_wall_s": cold_wall, "cold_cpu_s": cold_cpu,
        "cached_wall_s": warm_wall, "cached_cpu_s": warm_cpu, "describe": images.describe(),
        "per_class_train_val_test": {
            name: [int(images.class_counts(split)[i]) for split in ("train", "val", "test")]
            for i, name in enumerate(images.class_names)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--folder", default=None, help="image folder or .tar.gz to time")
    args = parser.parse_args()
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_average_before": os.getloadavg(),
              "synthetic": bench_synthetic(args.n_train, args.n_test)}
    if args.folder:
        result["folder"] = bench_folder(args.folder)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
