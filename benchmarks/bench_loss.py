"""Barlow Twins loss + gradient: bt_helpers.loss against the 2021 Keras example's formulation.

For a batch of N embedding pairs of width D, times one call of a compiled (``tf.function``)
step that computes the loss and its gradient with respect to both ``z_a`` and ``z_b``:

* ``package``: :func:`bt_helpers.loss.barlow_twins_loss` (diagonal in O(N D), redundancy as
  ``sum(c^2) - sum(c_ii^2)``, 1/N folded into the (N, D) operand, eps in the variance; when
  D > N, ``sum(c^2)`` through the two (N, N) Gram matrices, without forming ``c``);
* ``package_via_c``: the same loss through ``c``, as :func:`bt_helpers.loss.barlow_twins_terms`
  computes it (what the Gram route is measured against, and the multi-replica path);
* ``example_2021``: the 2021 example's ``BarlowLoss`` written out: ``reduce_std``
  normalisation without eps, ``c = z_a^T z_b / N``, ``diag_part``, ``set_diag`` to zero the
  diagonal, ``pow(., 2)``, times lambda, two ``reduce_sum``.

The two are run on the same inputs, alternating call by call (so that a machine shared with
other work slows both alike), after warm-up calls; the medians and their ratio are reported.
Prints one JSON object.

    python benchmarks/bench_loss.py                      # N=512, D in 2048 5000 8192
    python benchmarks/bench_loss.py --dims 512 --batch 256 --repeats 20
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

from bt_helpers import loss as bt_loss  # noqa: E402


def example_2021_loss(z_a, z_b, lambda_offdiag):
    """The 2021 Keras example's loss (keras.io, "Barlow Twins for contrastive SSL"), rewritten."""
    def normalize(z):
        return (z - tf.reduce_mean(z, axis=0)) / tf.math.reduce_std(z, axis=0)

    n = tf.cast(tf.shape(z_a)[0], z_a.dtype)
    c = tf.transpose(normalize(z_a)) @ normalize(z_b) / n
    c_diff = tf.pow(tf.linalg.diag_part(c) - 1, 2)
    off_diag = tf.pow(tf.linalg.set_diag(c, tf.zeros(tf.shape(c)[-1])), 2) * lambda_offdiag
    return tf.reduce_sum(c_diff) + tf.reduce_sum(off_diag)


def make_step(loss_fn, lambda_offdiag, jit):
    @tf.function(jit_compile=jit)
    def step(z_a, z_b):
        with tf.GradientTape() as tape:
            tape.watch([z_a, z_b])
            loss = loss_fn(z_a, z_b, lambda_offdiag)
        g_a, g_b = tape.gradient(loss, [z_a, z_b])
        return loss, g_a, g_b
    return step


def timed(step, z_a, z_b):
    start = time.perf_counter()
    loss, g_a, g_b = step(z_a, z_b)
    _ = (loss.numpy(), g_a.numpy()[0, 0], g_b.numpy()[0, 0])   # wait for the result
    return time.perf_counter() - start, loss, g_a


def bench(batch, dim, repeats, warmup, lambda_offdiag, jit, seed):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((batch, dim)).astype(np.float32)
    z_a = tf.constant(base + 0.5 * rng.standard_normal((batch, dim)).astype(np.float32))
    z_b = tf.constant(base + 0.5 * rng.standard_normal((batch, dim)).astype(np.float32))
    steps = {
        "package": make_step(lambda a, b, lam: bt_loss.barlow_twins_loss(a, b, lam),
                             lambda_offdiag, jit),
        "package_via_c": make_step(lambda a, b, lam: bt_loss.barlow_twins_terms(a, b, lam).loss,
                                   lambda_offdiag, jit),
        "example_2021": make_step(example_2021_loss, lambda_offdiag, jit),
    }
    for _ in range(warmup):
        for step in steps.values():
            timed(step, z_a, z_b)
    times = {name: [] for name in steps}
    outputs = {}
    for i in range(repeats):
        k = i % len(steps)                                     # rotate who goes first
        order = list(steps)[k:] + list(steps)[:k]
        for name in order:
            seconds, loss, g_a = timed(steps[name], z_a, z_b)
            times[name].append(seconds)
            outputs[name] = (float(loss), g_a.numpy())
    med = {name: statistics.median(t) for name, t in times.items()}
    (loss_p, g_p), (loss_e, g_e) = outputs["package"], outputs["example_2021"]
    return {
        "N": batch, "D": dim,
        "route": "gram" if dim > batch else "c",
        **{f"{name}_ms": round(1e3 * med[name], 2) for name in steps},
        "speedup": round(med["example_2021"] / med["package"], 3),
        "speedup_via_c": round(med["example_2021"] / med["package_via_c"], 3),
        "all_ms": {name: [round(1e3 * t, 1) for t in times[name]] for name in steps},
        "loss_rel_diff": abs(loss_p - loss_e) / abs(loss_e),
        "grad_max_rel_diff": float(np.abs(g_p - g_e).max() / np.abs(g_e).max()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512, help="N (default 512)")
    parser.add_argument("--dims", type=int, nargs="+", default=[2048, 5000, 8192],
                        help="values of D (default 2048 5000 8192)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls of each (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each (default 2)")
    parser.add_argument("--lambda-offdiag", type=float, default=0.0051)
    parser.add_argument("--jit", action="store_true", help="compile both with XLA")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    results = [bench(args.batch, d, args.repeats, args.warmup, args.lambda_offdiag, args.jit,
                     args.seed) for d in args.dims]
    report = {
        "benchmark": "barlow_twins_loss_and_gradient",
        "command": "python benchmarks/bench_loss.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "devices": [d.name for d in tf.config.list_logical_devices()],
            "tensorflow": tf.__version__,
            "load_average_1min_before_after": [round(load_before[0], 2),
                                               round(os.getloadavg()[0], 2)],
        },
        "jit_compile": args.jit, "repeats": args.repeats, "statistic": "median",
        "results": results,
        "never_slower": all(r["speedup"] >= 1.0 for r in results),
        "via_c_never_slower": all(r["speedup_via_c"] >= 1.0 for r in results),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
