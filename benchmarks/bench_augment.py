"""Two-view augmentation throughput: the batched pipeline against the 2021 example's style.

Image pairs per second (two augmented views of one image = one pair) through ``tf.data``:

* ``package`` (a): ``bt_helpers.augment.TwoViews(recipe)`` mapped over shuffled batches of
  256 ``uint8`` images gathered from memory (``num_parallel_calls=AUTOTUNE``, one thread per
  op: ``max_intra_op_parallelism=1``, batches run in parallel instead), ``float32`` views out;
* ``example_2021`` (b): the 2021 Keras example's style, transcribed: one image per ``map``
  call, scalar random decisions (``tf.random.uniform([]) < p`` around ``tf.image.random_*``),
  two mapped datasets zipped, ``num_parallel_calls=AUTOTUNE``, then batched by 256 (its
  ``shuffle(1000)`` left out, which only flatters it); its blur
  is ``tfa.image.gaussian_filter2d``'s 3x3 reflect-padded filter with the sigma frozen at
  trace time. The example fed float64 images (``x / 255.0`` in NumPy); here it gets the same
  ``uint8`` images and casts them to float32 first (``--float64`` restores the original);
* ``package_per_image`` (c, with ``--per-image``): the package's layers mapped one image at a
  time, to separate the gain from batching and the gain from the operations chosen.

The pipelines run in alternating rounds over the same images (a machine shared with other
work slows both alike); the medians and the ratio a/b are reported. ``--profile`` adds where
the time of one view goes (milliseconds per batch of 256, each step alone in a
``tf.function``). ``--device`` times the layer inside a ``tf.function(jit_compile=True)`` on
the default device (the GPU when there is one): augmentation inside the compiled train step.
Prints one JSON object.

    python benchmarks/bench_augment.py --rounds 7             # the README's figure
    python benchmarks/bench_augment.py --profile --per-image
    python benchmarks/bench_augment.py --recipe official --rounds 3
    python benchmarks/bench_augment.py --device --device-batch 1024
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bt_helpers import augment  # noqa: E402

IMAGE_SIZE = 32


# ------------------------------------------------------------------------------------------------
# (b) the 2021 example's augmentor, transcribed (tf.image ops, one image per call)
# ------------------------------------------------------------------------------------------------

def make_example_2021_augment(seed: int):
    """The 2021 ``RandomAugmentor``: crop, flip, jitter, blur, grayscale, solarize, clip."""
    sigma = np.random.default_rng(seed).random()  # np.random.random() at trace time
    offsets = np.arange(-1, 2)
    kernel = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).astype(np.float32)
    kernel_2d = tf.constant(np.outer(kernel, kernel)[:, :, None, None] * np.ones((1, 1, 3, 1),
                                                                                 np.float32))

    def execute(p):
        return tf.random.uniform([], minval=0, maxval=1) < p

    def blur(x):  # tfa.image.gaussian_filter2d(x, sigma): 3x3, REFLECT padding
        padded = tf.pad(x[None], [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        return tf.nn.depthwise_conv2d(padded, kernel_2d, [1, 1, 1, 1], "VALID")[0]

    def jitter(x):
        x = tf.image.random_brightness(x, 0.8)
        x = tf.image.random_contrast(x, 0.4, 1.6)
        x = tf.image.random_saturation(x, 0.4, 1.6)
        return tf.image.random_hue(x, 0.2)

    def gray(x):
        return tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 3])

    def augment_image(x):
        size = tf.random.uniform([], int(0.75 * IMAGE_SIZE), IMAGE_SIZE, dtype=tf.int32)
        x = tf.image.random_crop(x, (size, size, 3))
        x = tf.image.resize(x, (IMAGE_SIZE, IMAGE_SIZE))
        x = tf.cond(execute(0.5), lambda: tf.image.random_flip_left_right(x), lambda: x)
        x = tf.cond(execute(0.8), lambda: jitter(x), lambda: x)
        x = tf.cond(execute(0.2), lambda: blur(x), lambda: x)
        x = tf.cond(execute(0.2), lambda: gray(x), lambda: x)
        x = tf.cond(execute(0.2), lambda: tf.where(x < 10, x, 255 - x), lambda: x)
        return tf.clip_by_value(x, 0, 1)

    return augment_image


def example_2021_dataset(images, batch_size, seed, float64):
    tf.random.set_seed(seed)
    augment_image = make_example_2021_augment(seed)
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1  # as in the example

    def to_float(x):
        return tf.cast(x, tf.float64) / 255.0 if float64 else tf.cast(x, tf.float32) / 255.0

    def one_view():
        return (tf.data.Dataset.from_tensor_slices(images)
                .map(lambda x: augment_image(to_float(x)), num_parallel_calls=tf.data.AUTOTUNE)
                .batch(batch_size)
                .prefetch(tf.data.AUTOTUNE)
                .with_options(options))

    return tf.data.Dataset.zip((one_view(), one_view())).with_options(options)


# ------------------------------------------------------------------------------------------------
# (a) and (c): the package
# ------------------------------------------------------------------------------------------------

def package_dataset(images, batch_size, recipe, seed, intra_op=1):
    """Shuffled batches of indices, gathered from the images in memory (as
    ``bt_helpers.train`` builds its pipeline), then the two views of each batch."""
    layer = augment.make_two_views(recipe, seed=seed)
    stored = tf.constant(images)
    steps = len(images) // batch_size
    order = tf.random.experimental.stateless_shuffle(tf.range(len(images)), seed=[seed, 0])
    dataset = (tf.data.Dataset.from_tensor_slices(tf.reshape(order[:steps * batch_size],
                                                             (steps, batch_size)))
               .map(lambda index: layer(tf.gather(stored, index)),
                    num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))
    if intra_op:  # one thread per op, batches in parallel (as the 2021 example also set)
        options = tf.data.Options()
        options.threading.max_intra_op_parallelism = intra_op
        dataset = dataset.with_options(options)
    return dataset


def package_per_image_dataset(images, batch_size, recipe, seed):
    layer = augment.make_two_views(recipe, seed=seed)
    return (tf.data.Dataset.from_tensor_slices(images)
            .map(layer, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def pairs_per_second(dataset):
    """(pairs per wall-clock second, CPU microseconds per pair) over one pass of ``dataset``.

    CPU time (all threads of this process) per pair measures the work done, whatever else
    the machine is running; wall-clock throughput is what training sees.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    pairs = 0
    for view_a, view_b in dataset:
        pairs += int(view_a.shape[0])
    _ = float(view_b[0, 0, 0, 0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return pairs / wall, 1e6 * cpu / pairs


# ------------------------------------------------------------------------------------------------
# profile: where one view's time goes
# ------------------------------------------------------------------------------------------------

def profile_steps(images, recipe, seed, repeats=30):
    """Milliseconds per batch for each step of view b (the one with solarize), alone."""
    x = tf.constant(images)
    layer = augment.make_two_views(recipe, seed=seed)
    steps = layer.layers_b
    xf = augment.to_unit_float(x)
    draws = {step: lay.get_random_transformation(x, seed=i)
             for i, (step, lay) in enumerate(steps.items())}
    candidates = {
        "cast_uint8_to_float": lambda: tf.cast(x, tf.float32) * (1.0 / 255.0),
        "two_views_total": lambda: layer(x, seed=1),
        "draw_all_parameters": lambda: [lay.get_random_transformation(x, seed=i)
                                        for i, lay in enumerate(steps.values())],
    }
    if "crop" in steps:
        candidates["crop_resize"] = lambda: augment.RandomResizedCrop.crop(xf,
                                                                           draws["crop"]["boxes"])
    if "flip" in steps:
        candidates["flip_alone_unfused"] = lambda: steps["flip"].transform_images(xf, draws["flip"])
    if "jitter" in steps:
        candidates["jitter"] = lambda: augment.RandomColorJitter.jitter(xf, draws["jitter"])
        candidates["jitter_reference_hsv_unfused"] = lambda: _hsv_jitter(xf, draws["jitter"])
    for step in ("grayscale", "blur", "solarize"):
        if step in steps:
            candidates[step] = (lambda s=step: steps[s].transform_images(xf, draws[s]))
    candidates["clip"] = lambda: tf.clip_by_value(xf, 0.0, 1.0)
    functions = {name: tf.function(fn) for name, fn in candidates.items()}
    for fn in functions.values():
        fn()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            out = fn()
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
            times[name].append(time.perf_counter() - start)
    return {name: round(1e3 * statistics.median(t), 2) for name, t in times.items()}


def _hsv_jitter(x, t):
    """Per-image torchvision-order jitter with a clip per step and an HSV hue shift, written
    with plain ops: what the fused 3x3 colour matrix replaces (profiled for comparison)."""
    b = t["brightness"][:, None, None, None]
    c = t["contrast"][:, None, None, None]
    s = t["saturation"][:, None, None, None]
    luma = tf.constant(augment.LUMA)
    x = tf.clip_by_value(x * b, 0, 1)
    mean = tf.reduce_mean(tf.tensordot(x, luma, 1), axis=[1, 2])[:, None, None, None]
    x = tf.clip_by_value(c * x + (1 - c) * mean, 0, 1)
    gray = tf.tensordot(x, luma, 1)[..., None]
    x = tf.clip_by_value(s * x + (1 - s) * gray, 0, 1)
    hsv = tf.image.rgb_to_hsv(x)
    hue = tf.math.floormod(hsv[..., :1] + t["hue"][:, None, None, None], 1.0)
    x = tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1))
    return tf.where(t["apply"][:, None, None, None], x, x)


# ------------------------------------------------------------------------------------------------
# on the device, inside a compiled step
# ------------------------------------------------------------------------------------------------

def device_pairs_per_second(recipe, batch_size, seed, repeats=50, jit=True):
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.integers(0, 256, (batch_size, IMAGE_SIZE, IMAGE_SIZE, 3),
                                      dtype=np.uint8))
    layer = augment.make_two_views(recipe, seed=seed)

    @tf.function(jit_compile=jit)
    def step(x):
        view_a, view_b = layer(x)
        return tf.reduce_sum(view_a[:, 0, 0, 0]) + tf.reduce_sum(view_b[:, 0, 0, 0])

    float(step(images))  # compile
    float(step(images))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        float(step(images))
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times), statistics.median(times)


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cifar", choices=sorted(augment.RECIPES))
    # Rounds of 40,960 images (160 batches): with 10,240 the start of AUTOTUNE's ramp-up weighed
    # on each round and the package's rate swung between 13,000 and 22,000 pairs/s.
    parser.add_argument("--images", type=int, default=40960, help="images per round")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float64", action="store_true",
                        help="feed the 2021 pipeline float64 images, as the example did")
    parser.add_argument("--per-image", action="store_true",
                        help="also time the package's layers mapped one image at a time")
    parser.add_argument("--profile", action="store_true", help="add a per-step profile")
    parser.add_argument("--intra-op", type=int, default=1,
                        help="max_intra_op_parallelism of the package pipeline (0: TF default)")
    parser.add_argument("--device", action="store_true",
                        help="only time the layer inside a jit-compiled step on the device")
    parser.add_argument("--device-batch", type=int, default=1024)
    args = parser.parse_args(argv)

    gpus = tf.config.list_physical_devices("GPU")
    result = {
        "benchmark": "bench_augment",
        "recipe": args.recipe,
        "tensorflow": tf.__version__,
        "device": "GPU: " + gpus[0].name if gpus else "CPU",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_before": load_average(),
    }
    if args.device:
        for jit in (True, False):
            rate, seconds = device_pairs_per_second(args.recipe, args.device_batch, args.seed,
                                                    jit=jit)
            key = "jit" if jit else "no_jit"
            result[f"device_pairs_per_s_{key}"] = round(rate)
            result[f"device_ms_per_batch_{key}"] = round(1e3 * seconds, 3)
        result["device_batch"] = args.device_batch
        result["load_average_after"] = load_average()
        print(json.dumps(result, indent=2))
        return result

    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, (args.images, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    pipelines = {
        "package": lambda: package_dataset(images, args.batch_size, args.recipe, args.seed,
                                           args.intra_op),
        "example_2021": lambda: example_2021_dataset(images, args.batch_size, args.seed,
                                                     args.float64),
    }
    if args.per_image:
        pipelines["package_per_image"] = lambda: package_per_image_dataset(
            images, args.batch_size, args.recipe, args.seed)
    datasets = {name: build() for name, build in pipelines.items()}
    for dataset in datasets.values():  # warm-up: tracing, thread pools
        pairs_per_second(dataset.take(4))
    rates = {name: [] for name in datasets}
    cpu = {name: [] for name in datasets}
    for _ in range(args.rounds):
        for name, dataset in datasets.items():
            rate, cpu_us = pairs_per_second(dataset)
            rates[name].append(rate)
            cpu[name].append(cpu_us)
    result.update({
        "images_per_round": args.images,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "example_2021_input": "float64" if args.float64 else "uint8 cast to float32",
        "package_max_intra_op_parallelism": args.intra_op or "default",
        "pairs_per_s": {name: round(statistics.median(r)) for name, r in rates.items()},
        "pairs_per_s_all_rounds": {name: [round(v) for v in r] for name, r in rates.items()},
    })
    result["ratio_package_over_example_2021"] = round(
        statistics.median(rates["package"]) / statistics.median(rates["example_2021"]), 2)
    result["cpu_us_per_pair"] = {name: round(statistics.median(c), 1) for name, c in cpu.items()}
    result["cpu_ratio_example_2021_over_package"] = round(
        statistics.median(cpu["example_2021"]) / statistics.median(cpu["package"]), 2)
    if args.profile:
        result["profile_ms_per_batch_of_256"] = profile_steps(images[:256], args.recipe,
                                                              args.seed)
    result["load_average_after"] = load_average()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
