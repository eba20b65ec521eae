"""bt_helpers.loss: against a NumPy reference of the paper's pseudocode, invariances, edge cases,
input checks, dtypes, the Keras wrapper, and the multi-replica result (in a subprocess)."""

import json
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from bt_helpers import loss as L


# --- a NumPy reference, written from Algorithm 1 of Zbontar et al. (2021) -----------------------

def reference_terms(z_a, z_b, lambda_offdiag=0.0051, eps=1e-5):
    """(invariance, weighted redundancy, c) in float64, the paper's pseudocode + BN's eps."""
    z_a, z_b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
    n, d = z_a.shape
    z_a_norm = (z_a - z_a.mean(0)) / np.sqrt(z_a.var(0) + eps)   # np.var is the biased one
    z_b_norm = (z_b - z_b.mean(0)) / np.sqrt(z_b.var(0) + eps)
    c = z_a_norm.T @ z_b_norm / n
    c_diff = (c - np.eye(d)) ** 2
    mask = ~np.eye(d, dtype=bool)
    return c_diff[~mask].sum(), lambda_offdiag * c_diff[mask].sum(), c


def random_views(n, d, seed=0, noise=0.7):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(size=d)
    return ((z + noise * rng.normal(size=(n, d))).astype(np.float32),
            (z + noise * rng.normal(size=(n, d))).astype(np.float32))


# --- values ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,d", [(2, 3), (16, 8), (64, 32), (200, 5), (32, 64)])
@pytest.mark.parametrize("eps", [1e-5, 0.0])
def test_matches_numpy_reference(n, d, eps):
    z_a, z_b = random_views(n, d, seed=n * d)
    inv, red, c = reference_terms(z_a, z_b, eps=eps)
    terms = L.barlow_twins_terms(z_a, z_b, lambda_offdiag=0.0051, eps=eps)
    np.testing.assert_allclose(terms.c.numpy(), c, atol=1e-5)
    np.testing.assert_allclose(float(terms.invariance), inv, atol=1e-5, rtol=1e-6)
    np.testing.assert_allclose(float(terms.redundancy), red, atol=1e-5, rtol=1e-6)
    loss = L.barlow_twins_loss(z_a, z_b, lambda_offdiag=0.0051, eps=eps)
    np.testing.assert_allclose(float(loss), inv + red, atol=1e-5, rtol=1e-6)
    np.testing.assert_allclose(L.cross_correlation(z_a, z_b, eps=eps).numpy(), c, atol=1e-5)


def test_matches_reference_at_projector_width():
    """D larger than N, as in training; float32 sums of ~D terms: relative tolerance."""
    z_a, z_b = random_views(128, 512, seed=3)
    inv, red, _ = reference_terms(z_a, z_b, lambda_offdiag=0.02)
    got = L.barlow_twins_terms(z_a, z_b, lambda_offdiag=0.02)
    np.testing.assert_allclose([float(got.invariance), float(got.redundancy)], [inv, red],
                               rtol=1e-5)


@pytest.mark.parametrize("n,d", [(64, 32), (8, 64)])
def test_loss_routes_agree_with_terms(n, d):
    """barlow_twins_loss takes the Gram-matrix route when D > N; values and gradients agree."""
    z_a, z_b = (tf.constant(z) for z in random_views(n, d, seed=11))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([z_a, z_b])
        loss = L.barlow_twins_loss(z_a, z_b, 0.1)
        via_c = L.barlow_twins_terms(z_a, z_b, 0.1).loss
    np.testing.assert_allclose(float(loss), float(via_c), rtol=1e-5)
    for g, g_c in zip(tape.gradient(loss, [z_a, z_b]), tape.gradient(via_c, [z_a, z_b])):
        np.testing.assert_allclose(g.numpy(), g_c.numpy(), atol=1e-6, rtol=1e-4)


def test_normalize_is_batchnorm_without_affine():
    z_a, _ = random_views(50, 6)
    z_a[:, 2] = 0.01 * z_a[:, 2]  # a small-variance feature, where eps shows
    got = L.normalize(z_a, eps=1e-3).numpy()
    z64 = z_a.astype(np.float64)
    np.testing.assert_allclose(got, (z64 - z64.mean(0)) / np.sqrt(z64.var(0) + 1e-3), atol=1e-5)
    bn = keras.layers.BatchNormalization(epsilon=1e-3, center=False, scale=False)
    np.testing.assert_allclose(got, bn(z_a, training=True).numpy(), atol=1e-5)


def test_off_diagonal_is_row_major():
    for d in (1, 2, 5):
        c = np.arange(d * d, dtype=np.float32).reshape(d, d)
        got = L.off_diagonal(c).numpy()
        assert got.shape == (d * (d - 1),)
        np.testing.assert_array_equal(got, [c[i, j] for i in range(d) for j in range(d) if i != j])
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        L.off_diagonal(np.zeros((3, 4)))


def test_invariant_to_positive_affine_maps_of_either_view():
    z_a, z_b = random_views(64, 16, seed=1)
    rng = np.random.default_rng(2)
    scale = rng.uniform(0.5, 2.0, size=16).astype(np.float32)
    shift = rng.normal(scale=10.0, size=16).astype(np.float32)
    base = float(L.barlow_twins_loss(z_a, z_b))
    assert base > 0.3
    np.testing.assert_allclose(float(L.barlow_twins_loss(z_a * scale + shift, z_b)), base,
                               rtol=1e-4)
    np.testing.assert_allclose(float(L.barlow_twins_loss(z_a, z_b * scale - shift)), base,
                               rtol=1e-4)
    # eps = 0: exactly invariant (up to float32)
    np.testing.assert_allclose(float(L.barlow_twins_loss(z_a * scale + shift, z_b, eps=0)),
                               float(L.barlow_twins_loss(z_a, z_b, eps=0)), rtol=1e-5)
    # ...but not to a sign flip: the diagonal term sees it
    flipped = float(L.barlow_twins_loss(z_a * np.where(np.arange(16) < 8, -1, 1), z_b))
    assert flipped > base + 1.0
    # and the loss is symmetric in the two views
    np.testing.assert_allclose(float(L.barlow_twins_loss(z_b, z_a)), base, rtol=1e-6)


def test_near_zero_for_identical_whitened_views():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(256, 32)) @ rng.normal(size=(32, 32))   # correlated features
    z = z - z.mean(0)
    cov = z.T @ z / len(z)
    evals, evecs = np.linalg.eigh(cov)
    white = (z @ evecs @ np.diag(evals ** -0.5) @ evecs.T).astype(np.float32)
    terms = L.barlow_twins_terms(white, white)
    np.testing.assert_allclose(terms.c.numpy(), np.eye(32), atol=1e-4)
    assert abs(float(terms.loss)) < 1e-6
    # the correlated (unwhitened) version is penalised by the redundancy term only
    raw = L.barlow_twins_terms(z.astype(np.float32), z.astype(np.float32))
    assert float(raw.invariance) < 1e-6 and float(raw.redundancy) > 0.05


def test_toy_views_match_closed_form():
    z_a, z_b = L.toy_views(4000, 6, noise=0.5, redundancy=0.4, seed=0)
    c = L.cross_correlation(z_a, z_b).numpy()
    mask = ~np.eye(6, dtype=bool)
    np.testing.assert_allclose(np.diag(c), 1 / 1.25, atol=0.03)
    np.testing.assert_allclose(c[mask], 0.4 / 1.25, atol=0.05)
    with pytest.raises(ValueError, match="redundancy=1.5"):
        L.toy_views(8, 4, redundancy=1.5)


def test_constant_feature_gives_finite_loss_and_gradients():
    z_a, z_b = random_views(32, 8)
    z_a[:, 3] = 2.0                       # a dead unit: constant over the batch
    z_a, z_b = tf.constant(z_a), tf.constant(z_b)
    with tf.GradientTape() as tape:
        tape.watch([z_a, z_b])
        terms = L.barlow_twins_terms(z_a, z_b)
    grads = tape.gradient(terms.loss, [z_a, z_b])
    invariance, redundancy, c = terms                      # unpacks as the triple
    assert c is terms.c and float(invariance + redundancy) == float(terms.loss)
    from_graph = tf.function(L.barlow_twins_terms)(z_a, z_b)   # and leaves a tf.function whole
    assert isinstance(from_graph, L.BarlowTwinsTerms)
    np.testing.assert_allclose(from_graph.c.numpy(), terms.c.numpy(), atol=1e-6)
    assert np.isfinite(float(terms.loss))
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    assert float(terms.c[3, 3]) == pytest.approx(0.0, abs=1e-6)   # it correlates with nothing
    # without eps, the 2021 example's normalisation: 0 / 0
    assert np.isnan(float(L.barlow_twins_loss(z_a, z_b, eps=0.0)))


def test_gradient_descent_lowers_the_loss():
    z_a0, z_b0 = random_views(32, 8, seed=5)
    z_a, z_b = tf.Variable(z_a0), tf.Variable(z_b0)
    opt = keras.optimizers.SGD(learning_rate=5.0)
    losses = []
    for _ in range(6):
        with tf.GradientTape() as tape:
            loss = L.barlow_twins_loss(z_a, z_b, lambda_offdiag=0.05)
        losses.append(float(loss))
        opt.apply_gradients(zip(tape.gradient(loss, [z_a, z_b]), [z_a, z_b]))
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("n,d", [(12, 4), (6, 10)])   # through c, through the Gram matrices
def test_gradient_matches_finite_differences(n, d):
    z_a, z_b = random_views(n, d, seed=7)
    z_a64, z_b64 = tf.constant(z_a), tf.constant(z_b)
    with tf.GradientTape() as tape:
        tape.watch(z_a64)
        loss = L.barlow_twins_loss(z_a64, z_b64, lambda_offdiag=0.3)
    grad = tape.gradient(loss, z_a64).numpy()
    h = 1e-4
    for (i, j) in [(0, 0), (n // 2, d // 2), (n - 1, d - 1)]:
        up, down = z_a.astype(np.float64).copy(), z_a.astype(np.float64).copy()
        up[i, j] += h
        down[i, j] -= h
        fd = (sum(reference_terms(up, z_b, 0.3)[:2])
              - sum(reference_terms(down, z_b, 0.3)[:2])) / (2 * h)
        np.testing.assert_allclose(grad[i, j], fd, rtol=2e-3, atol=1e-4)


# --- dtypes and the Keras wrapper --------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_low_and_high_precision_inputs_give_float32(dtype):
    z_a, z_b = random_views(64, 16)
    terms = L.barlow_twins_terms(tf.cast(z_a, dtype), tf.cast(z_b, dtype))
    assert terms.invariance.dtype == tf.float32 and terms.c.dtype == tf.float32
    assert L.normalize(tf.cast(z_a, dtype)).dtype == tf.float32
    np.testing.assert_allclose(float(terms.loss), float(L.barlow_twins_loss(z_a, z_b)),
                               rtol=0.05 if dtype == "bfloat16" else 5e-3)


def test_keras_loss_wrapper():
    z_a, z_b = random_views(32, 8)
    fn = L.BarlowTwinsLoss(lambda_offdiag=0.01, eps=1e-4)
    np.testing.assert_allclose(float(fn(z_a, z_b)),
                               float(L.barlow_twins_loss(z_a, z_b, 0.01, 1e-4)), rtol=1e-6)
    config = fn.get_config()
    assert config["lambda_offdiag"] == 0.01 and config["eps"] == 1e-4
    again = L.BarlowTwinsLoss.from_config(config)
    assert (again.lambda_offdiag, again.eps, again.name) == (0.01, 1e-4, fn.name)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fn))
    assert isinstance(restored, L.BarlowTwinsLoss) and restored.lambda_offdiag == 0.01
    fn_bf16 = L.BarlowTwinsLoss()
    assert fn_bf16(tf.cast(z_a, "bfloat16"), tf.cast(z_b, "bfloat16")).dtype == tf.float32
    with pytest.raises(ValueError, match="lambda_offdiag=-1"):
        L.BarlowTwinsLoss(lambda_offdiag=-1)


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("z_a_shape,z_b_shape,match", [
    ((8, 4), (8, 5), r"z_a.shape=\(8, 4\), z_b.shape=\(8, 5\)"),
    ((8, 4), (6, 4), r"z_a.shape=\(8, 4\), z_b.shape=\(6, 4\)"),
    ((8,), (8,), r"rank 2.*z_a.shape=\(8,\)"),
    ((2, 4, 4), (2, 4, 4), r"rank 2.*\(2, 4, 4\)"),
    ((1, 4), (1, 4), r"N >= 2.*\(1, 4\)"),
])
def test_bad_shapes_raise_clear_errors(z_a_shape, z_b_shape, match):
    with pytest.raises(ValueError, match=match):
        L.barlow_twins_loss(np.ones(z_a_shape, np.float32), np.ones(z_b_shape, np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_raise_in_eager_mode(bad):
    z_a, z_b = random_views(8, 4)
    z_b[3, 1] = bad
    with pytest.raises(ValueError, match=r"z_b.*1 NaN or inf.*\(8, 4\)"):
        L.barlow_twins_loss(z_a, z_b)
    with pytest.raises(ValueError, match=r"z.*NaN or inf"):
        L.normalize(z_b)
    with pytest.raises(TypeError, match="string"):
        L.normalize(tf.constant([["a", "b"], ["c", "d"]]))


def test_graph_mode_keeps_at_most_one_cheap_check():
    dynamic = tf.function(L.barlow_twins_loss, input_signature=[tf.TensorSpec([None, 8])] * 2)
    graph = dynamic.get_concrete_function().graph
    asserts = [op for op in graph.get_operations() if op.type == "Assert"]
    assert len(asserts) == 1                                  # N >= 2, on a scalar
    assert not [op for op in graph.get_operations() if op.type in ("IsFinite", "CheckNumerics")]
    z_a, z_b = random_views(8, 8)
    np.testing.assert_allclose(float(dynamic(z_a, z_b)), float(L.barlow_twins_loss(z_a, z_b)),
                               rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="N >= 2"):
        dynamic(z_a[:1], z_b[:1])
    static = tf.function(L.barlow_twins_loss, input_signature=[tf.TensorSpec([8, 8])] * 2)
    graph = static.get_concrete_function().graph
    assert not [op for op in graph.get_operations() if op.type == "Assert"]
    with pytest.raises(ValueError, match=r"\(8, 8\).*\(8, 5\)"):  # shape checks at trace time
        tf.function(L.barlow_twins_loss).get_concrete_function(
            tf.TensorSpec([8, 8]), tf.TensorSpec([8, 5]))


def test_bad_hyper_parameters():
    z_a, z_b = random_views(8, 4)
    with pytest.raises(ValueError, match="lambda_offdiag=-0.1"):
        L.barlow_twins_terms(z_a, z_b, lambda_offdiag=-0.1)
    with pytest.raises(ValueError, match="eps=-1"):
        L.normalize(z_a, eps=-1)


def test_replica_helpers_are_identity_without_strategy():
    x = tf.constant([1.0, 2.0])
    assert L.num_replicas() == 1
    assert L.cross_replica_sum(x) is x
    assert float(L.scale_for_replicas(tf.constant(3.0))) == 3.0


# --- several replicas: the global batch --------------------------------------------------------

_DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from bt_helpers import loss as L

    N, IN, D, LAM = 16, 6, 12, 0.05   # D > N / R: the multi-replica path must not use Gram matrices
    rng = np.random.default_rng(0)
    x_a = rng.normal(size=(N, IN)).astype("float32")
    x_b = (x_a + 0.3 * rng.normal(size=(N, IN))).astype("float32")
    # the second half of the batch is shifted and scaled: per-replica statistics would differ
    x_a[N // 2:] = 2.0 * x_a[N // 2:] + 1.0
    x_b[N // 2:] = 2.0 * x_b[N // 2:] + 1.0
    w0 = rng.normal(size=(IN, D)).astype("float32")
    b0 = rng.normal(size=(D,)).astype("float32")

    def make_layer():
        layer = keras.layers.Dense(D)
        layer.build((None, IN))
        layer.set_weights([w0, b0])
        return layer

    # one device, the whole batch
    single = make_layer()
    with tf.GradientTape() as tape:
        loss_1 = L.barlow_twins_loss(single(x_a), single(x_b), LAM)
    grads_1 = tape.gradient(loss_1, single.trainable_variables)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads_1, single.trainable_variables))

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        layer = make_layer()
        opt = keras.optimizers.SGD(0.1)

    def halves(x):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(x[ctx.replica_id_in_sync_group * (N // 2):
                                      (ctx.replica_id_in_sync_group + 1) * (N // 2)]))

    @tf.function
    def step(xa, xb, use_wrapper):
        def replica_fn(xa, xb):
            with tf.GradientTape() as tape:
                z_a, z_b = layer(xa), layer(xb)
                if use_wrapper:
                    share = L.BarlowTwinsLoss(LAM)(z_a, z_b)     # already loss / R
                    loss = share * 2.0
                else:
                    loss = L.barlow_twins_loss(z_a, z_b, LAM)
                    share = L.scale_for_replicas(loss)
            grads = tape.gradient(share, layer.trainable_variables)
            return loss, grads, tf.constant(L.num_replicas()) + 0 * tf.shape(xa)[0]
        losses, grads, r = strategy.run(replica_fn, args=(xa, xb))
        return (strategy.experimental_local_results(losses),
                [strategy.reduce("SUM", g, axis=None) for g in grads],
                strategy.experimental_local_results(r))

    out = {"loss_single": float(loss_1)}
    xa, xb = halves(x_a), halves(x_b)
    for use_wrapper in (False, True):
        losses, grads, r = step(xa, xb, use_wrapper)
        key = "wrapper" if use_wrapper else "function"
        out[key] = {
            "replicas": [int(v) for v in r],
            "losses": [float(v) for v in losses],
            "grad_err": max(float(np.abs(g.numpy() - g1.numpy()).max())
                            for g, g1 in zip(grads, grads_1)),
        }

    # end to end: a Keras optimizer step under the strategy equals the single-device step
    @tf.function
    def train(xa, xb):
        def replica_fn(xa, xb):
            with tf.GradientTape() as tape:
                share = L.scale_for_replicas(L.barlow_twins_loss(layer(xa), layer(xb), LAM))
            opt.apply_gradients(zip(tape.gradient(share, layer.trainable_variables),
                                    layer.trainable_variables))
        strategy.run(replica_fn, args=(xa, xb))
    train(xa, xb)
    out["weights_err"] = max(float(np.abs(v.numpy() - v1.numpy()).max()) for v, v1
                             in zip(layer.trainable_variables, single.trainable_variables))
    fresh = make_layer()
    out["local_stats_loss"] = float(sum(L.barlow_twins_loss(fresh(x_a[s]), fresh(x_b[s]), LAM)
                                        for s in (slice(0, N // 2), slice(N // 2, N))) / 2)
    print("RESULT " + json.dumps(out))
""")


def test_two_replicas_equal_one_device_on_the_global_batch():
    """MirroredStrategy on 2 logical CPUs (a subprocess: logical devices must be set before TF
    initialises its devices). Loss, summed gradients and an SGD step equal the one-device ones."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", _DISTRIBUTED_SCRIPT], capture_output=True,
                          text=True, env=env, timeout=300, cwd=root)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = json.loads(lines[-1][len("RESULT "):])
    for key in ("function", "wrapper"):
        assert out[key]["replicas"] == [2, 2]
        np.testing.assert_allclose(out[key]["losses"], [out["loss_single"]] * 2, atol=1e-5)
        assert out[key]["grad_err"] < 1e-5, out
    assert out["weights_err"] < 1e-5, out
    # the check has teeth: per-replica statistics give another loss
    assert abs(out["local_stats_loss"] - out["loss_single"]) > 0.1, out


# --- plots and widgets (notebooks 02, 03) ------------------------------------------------------

def test_correlation_stats_match_the_loss_terms():
    from bt_helpers import plots

    z_a, z_b = L.toy_views(64, 10, noise=0.4, redundancy=0.3, seed=1)
    terms = L.barlow_twins_terms(z_a, z_b, lambda_offdiag=0.02)
    stats = plots.correlation_stats(terms.c.numpy(), lambda_offdiag=0.02)
    np.testing.assert_allclose([stats["invariance"], stats["redundancy"], stats["loss"]],
                               [float(terms.invariance), float(terms.redundancy),
                                float(terms.loss)],
                               rtol=1e-5)
    assert stats["D"] == 10 and 0.6 < stats["mean_diagonal"] < 1.0


def test_plots_draw_the_matrix_they_are_given():
    import matplotlib.figure
    from bt_helpers import plots

    c = L.cross_correlation(*L.toy_views(32, 6, seed=2)).numpy()
    fig = plots.plot_cross_correlation(c)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), c)
    assert fig.axes[0].images[0].get_clim() == (-1.0, 1.0)
    figures = [
        fig,
        plots.plot_cross_correlations({"a": c, "b": np.eye(4)}),
        plots.plot_correlation_histograms(c),
        plots.plot_loss_terms(1.0, 2.0),
        plots.plot_correlation_summary(c),
        plots.plot_lambda_balance(c, 0.01),
        plots.plot_correlation_frames([(0, c), (10, np.eye(6))],
                                      history={"invariance": [3, 2, 1], "redundancy": [1, 1, 0.5]}),
        plots.plot_lambda_sweep([1e-3, 1e-2], [0.1, 0.5], [5.0, 1.0], proj_dim=6),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures)
    hist = figures[2].axes[0]
    assert sum(p.get_height() > 0 for p in hist.patches) > 0
    with pytest.raises(ValueError, match=r"c.shape=\(3, 4\)"):
        plots.plot_cross_correlation(np.zeros((3, 4)))
    import matplotlib.pyplot as plt
    plt.close("all")


def _png(widget):
    out = widget.children[-1]
    (item,) = out.outputs
    return item["data"]["image/png"]


def test_correlation_explorer_reacts_to_its_sliders():
    from bt_helpers import widgets

    box = widgets.correlation_explorer(batch_size=64, proj_dim=8, noise=0.5, redundancy=0.0)
    sliders = {w.description: w for row in box.children[:-2] for w in row.children}
    numbers = box.children[-2]
    before_png, before_text = _png(box), numbers.value
    assert "expected 0.800" in before_text and "N = 64, D = 8" in before_text
    sliders["redundancy"].value = 0.6
    assert _png(box) != before_png and numbers.value != before_text
    assert "expected 0.480" in numbers.value
    sliders["embedding dim D"].value = 12
    assert "D = 12" in numbers.value
    # a real-embeddings source: noise and redundancy no longer apply
    z = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    box = widgets.correlation_explorer(batch_size=64, proj_dim=8, views={"network": (z, z)})
    source = box.children[0]
    source.value = "network"
    assert "N = 40, D = 8" in box.children[-2].value
    import matplotlib.pyplot as plt
    plt.close("all")


def test_lambda_explorer_reacts_to_its_slider():
    from bt_helpers import widgets

    c = L.cross_correlation(*L.toy_views(64, 16, redundancy=0.4, seed=3)).numpy()
    box = widgets.lambda_explorer(c, lambda_offdiag=0.0051)
    slider, numbers = box.children[0], box.children[1]
    before_png, before_text = _png(box), numbers.value
    slider.value = 0.1
    assert _png(box) != before_png and numbers.value != before_text
    assert "lambda * D = 1.6" in numbers.value
