"""What each encoder costs: images/s forward and forward+backward on this CPU, and FLOPs per image.

    python benchmarks/bench_models.py                 # teaching width, plus width 64 for reference
    python benchmarks/bench_models.py --widths 16 --repeats 7

For ResNet-18 and ResNet-34 with each stem, the whole Barlow Twins network (encoder + the preset's
projector, as built by ``bt_helpers.models.build_from_preset``) is timed on a batch of the
teaching preset's size (random images, 32x32):

* ``forward``: ``model(images, training=False)``, what feature extraction for evaluation costs;
* ``forward_backward``: the forward pass in training mode plus the gradients of every trainable
  weight (no optimiser update), what one view of a training step costs; a Barlow Twins step
  forwards two views, so it processes ``2 * batch_size`` images.

Both run inside ``tf.function``; each is warmed up, then timed ``--repeats`` times and the
median is reported. FLOPs count 2 per multiply-add of the convolutions and dense layers
(``bt_helpers.models.count_flops``). The machine's load average is printed before and after:
numbers measured on a busy machine are lower bounds of what it can do.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bt_helpers import config, models  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one tf.function per variant: retracing warnings are expected


def _median_seconds(step, images, warmup: int, repeats: int) -> list:
    for _ in range(warmup):
        step(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(images)
        times.append(time.perf_counter() - start)
    return times


def bench_variant(preset, depth: int, stem: str, width: int, warmup: int, repeats: int,
                  seed: int = 0) -> dict:
    """Time one encoder (with the preset's projector) and count its FLOPs."""
    net = models.build_from_preset(preset.replace(depth=depth, stem=stem, width=width), seed=seed)
    size = preset.image_size
    images = tf.constant(np.random.default_rng(seed).uniform(
        size=(preset.batch_size, size, size, 3)).astype("float32"))
    weights = net.model.trainable_weights

    @tf.function
    def forward(x):
        return net.model(x, training=False)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            z = net.model(x, training=True)  # (N, D)
            loss = tf.reduce_mean(tf.square(z))
        return tape.gradient(loss, weights)

    result = {
        "depth": depth, "stem": stem, "width": width,
        "encoder_params": int(sum(np.prod(w.shape) for w in net.encoder.trainable_weights)),
        "encoder_gflops_per_image": round(models.count_flops(net.encoder) / 1e9, 4),
        "total_gflops_per_image": round(models.count_flops(net.model) / 1e9, 4),
    }
    for name, step in [("forward", forward), ("forward_backward", forward_backward)]:
        times = _median_seconds(step, images, warmup, repeats)
        median = statistics.median(times)
        result[f"{name}_images_per_s"] = round(preset.batch_size / median, 1)
        result[f"{name}_s_per_batch"] = round(median, 3)
        result[f"{name}_s_per_batch_all"] = [round(t, 3) for t in times]
    return result


def main() -> int:
    teaching = config.get_preset("teaching")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="teaching",
                        help="preset giving batch size, image size and projector (default teaching)")
    parser.add_argument("--widths", type=int, nargs="+", default=[teaching.width, 64],
                        help=f"encoder widths (default: the teaching width {teaching.width}, and 64)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed batches per measurement at the preset's width (default 5)")
    parser.add_argument("--reference-repeats", type=int, default=2,
                        help="timed batches for the other widths (slow on a CPU; default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first (default 1)")
    args = parser.parse_args()
    preset = config.get_preset(args.preset)

    load_before = os.getloadavg()
    start = time.perf_counter()
    results = []
    for width in args.widths:
        repeats = args.repeats if width == preset.width else args.reference_repeats
        for depth in (18, 34):
            for stem in models.STEMS:
                row = bench_variant(preset, depth, stem, width, args.warmup, repeats)
                row["repeats"] = repeats
                results.append(row)
                print(f"ResNet-{depth} {stem:8s} width {width:3d}: "
                      f"{row['forward_images_per_s']:8.1f} img/s forward, "
                      f"{row['forward_backward_images_per_s']:8.1f} img/s forward+backward",
                      file=sys.stderr)
    print(json.dumps({
        "benchmark": "bench_models",
        "preset": preset.name,
        "batch_size": preset.batch_size,
        "image_size": preset.image_size,
        "proj_dims": list(preset.proj_dims),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "tensorflow": tf.__version__,
        "date": datetime.date.today().isoformat(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "flops_convention": "2 per multiply-add, Conv2D and Dense layers only",
        "results": results,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
