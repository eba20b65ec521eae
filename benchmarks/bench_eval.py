"""How fast and how good the evaluation is: linear probe, kNN, and untrained baselines.

    python benchmarks/bench_eval.py                      # synthetic features only (~1-2 min)
    python benchmarks/bench_eval.py --folder /work/shared/data/cifar10-train-jpeg.tar.gz

* ``linear_probe``: ``bt_helpers.evaluate.linear_probe`` on 50,000 x 512 training features and
  10,000 test features (target: <= 60 s on 2 cores). The features are random but structured
  like a network's: ten Gaussian classes in a 64-dimensional latent space, mapped to 512
  dimensions by a fixed random matrix and a ReLU, so they are non-negative and strongly
  correlated. The same fit without preconditioning is timed too (``precondition=False``).
* ``knn``: ``knn_accuracy`` (k=200, temperature 0.1) of 10,000 queries against those 50,000
  training features (target: <= 30 s on 2 cores).
* ``cifar10`` (with ``--folder``): the baseline a trained encoder must beat. A *randomly
  initialised* encoder with the ``teaching`` preset's architecture (``--preset``) turns 45,000
  CIFAR-10 training images into features (5,000 more, stratified, are held out); the linear
  probe and kNN are scored on the held-out 5,000; so is a linear probe on the raw pixels.

Prints one JSON object. TensorFlow is imported before any clock starts. Wall and CPU time are
both given with the load average before and after: on a busy machine wall times are upper
bounds.
"""

import argparse
import datetime
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)


def structured_features(n: int, num_features: int = 512, num_classes: int = 10,
                        latent_dim: int = 64, separation: float = 0.4, seed: int = 0):
    """ReLU of a fixed random projection of Gaussian class clusters: ``(n, F)`` float32, labels."""
    fixed = np.random.default_rng(1234)
    means = fixed.normal(size=(num_classes, latent_dim)) * separation / np.sqrt(2)
    mixing = fixed.normal(size=(latent_dim, num_features)) / np.sqrt(latent_dim)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    latent = means[labels] + rng.normal(size=(n, latent_dim))
    features = np.maximum(latent @ mixing + 0.1 * rng.normal(size=(n, num_features)), 0)
    return features.astype(np.float32), labels


def _probe_summary(result, wall, cpu) -> dict:
    return {"accuracy": round(result.accuracy, 4), "val_accuracy": round(result.val_accuracy, 4),
            "l2": result.l2, "epochs": result.epochs, "wall_s": wall, "cpu_s": cpu}


def bench_synthetic(n_train: int, n_test: int, num_features: int, seed: int) -> dict:
    from bt_helpers import evaluate

    x_train, y_train = structured_features(n_train, num_features, seed=seed)
    x_test, y_test = structured_features(n_test, num_features, seed=seed + 1)
    probe = {}
    for precondition in (True, False):
        result, wall, cpu = _timed(lambda: evaluate.linear_probe(
            x_train, y_train, x_test, y_test, precondition=precondition, seed=seed))
        probe["preconditioned" if precondition else "plain"] = _probe_summary(result, wall, cpu)
    knn, wall, cpu = _timed(lambda: evaluate.knn_accuracy(x_train, y_train, x_test, y_test,
                                                          k=200, temperature=0.1))
    return {
        "features": f"{n_train:,} train / {n_test:,} test x {num_features} (structured synthetic)",
        "linear_probe": probe, "linear_probe_target_s": 60,
        "knn": {"queries": n_test, "bank": n_train, "k": 200, "temperature": 0.1,
                "accuracy": round(knn, 4), "wall_s": wall, "cpu_s": cpu},
        "knn_target_s": 30,
    }


def bench_cifar10(path: str, preset_name: str, seed: int) -> dict:
    from bt_helpers import evaluate, models
    from bt_helpers.config import get_preset
    from bt_helpers.data import load_data

    preset = get_preset(preset_name)
    images = load_data(source="folder", data_dir=path, n_train=None, n_val=5000, seed=seed)
    size = preset.image_size
    encoder = models.resnet(preset.depth, preset.stem, preset.width,
                            input_shape=(size, size, 3), seed=seed)
    (f_train, f_val), wall, cpu = _timed(lambda: (
        evaluate.extract_features(encoder, images.x_train, verbose=False),
        evaluate.extract_features(encoder, images.x_val, verbose=False)))
    out = {
        "data": images.describe(),
        "encoder": f"random-init ResNet-{preset.depth} ({preset.stem} stem, width "
                   f"{preset.width}), {f_train.shape[1]} features, seed {seed}",
        "extract_features": {"images": len(f_train) + len(f_val), "wall_s": wall, "cpu_s": cpu},
    }
    for precondition in (True, False):
        result, wall, cpu = _timed(lambda: evaluate.linear_probe(
            f_train, images.y_train, f_val, images.y_val, precondition=precondition, seed=seed))
        key = "random_encoder_probe" + ("" if precondition else "_plain")
        out[key] = _probe_summary(result, wall, cpu)
    knn, wall, cpu = _timed(lambda: evaluate.knn_accuracy(f_train, images.y_train, f_val,
                                                          images.y_val))
    out["random_encoder_knn"] = {"accuracy": round(knn, 4), "wall_s": wall, "cpu_s": cpu}
    pixels = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255  # noqa: E731
    result, wall, cpu = _timed(lambda: evaluate.linear_probe(
        pixels(images.x_train), images.y_train, pixels(images.x_val), images.y_val, seed=seed))
    out["raw_pixel_probe"] = dict(_probe_summary(result, wall, cpu),
                                  features=int(np.prod(images.image_shape)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--folder", default=None,
                        help="CIFAR-10 image folder or .tar.gz for the untrained baselines")
    parser.add_argument("--preset", default="teaching",
                        help="preset whose architecture the random encoder has")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import tensorflow as tf  # imported before any clock starts

    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "tensorflow": tf.__version__,
              "load_average_before": [round(v, 2) for v in os.getloadavg()],
              "synthetic": bench_synthetic(args.n_train, args.n_test, args.features, args.seed)}
    if args.folder:
        result["cifar10"] = bench_cifar10(args.folder, args.preset, args.seed)
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
