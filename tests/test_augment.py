"""bt_helpers.augment: rates, independence, exact effects, seeds, recipes, tf.data, XLA, configs.

Statistical tests draw >= 2,000 small random images (8x8, batches of 500) and allow +-3
points around each probability: with n = 4,000 that is at least 3.8 standard deviations.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from bt_helpers import augment

N_IMAGES = 4000
BATCH = 500


def random_images(n=N_IMAGES, size=8, seed=0, low=0.0, high=1.0):
    """Float32 noise images in [low, high]: no image is left-right symmetric or gray."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, (n, size, size, 3)).astype(np.float32)


def batches(images, size=BATCH):
    return [images[i:i + size] for i in range(0, len(images), size)]


def changed(before, after, atol=1e-6):
    """(batch,) bool: which images differ."""
    return np.abs(np.asarray(after) - np.asarray(before)).reshape(len(before), -1).max(1) > atol


def run_layer(layer, images):
    """Calls the layer batch by batch (each call draws new parameters); returns the outputs."""
    return np.concatenate([np.asarray(layer(b, training=True)) for b in batches(images)])


# ------------------------------------------------------------------------------------------------
# apply-rates and per-image independence
# ------------------------------------------------------------------------------------------------

def flipped(before, after):
    return np.abs(np.asarray(after) - before[:, :, ::-1]).reshape(len(before), -1).max(1) < 1e-6


def grayed(before, after):
    after = np.asarray(after)
    return (np.abs(after[..., 0] - after[..., 1]).reshape(len(after), -1).max(1) < 1e-6) & \
        changed(before, after)


RATE_CASES = {
    "flip": (lambda: augment.RandomHorizontalFlip(p=0.5, seed=1), 0.5, flipped),
    "flip_p0.3": (lambda: augment.RandomHorizontalFlip(p=0.3, seed=1), 0.3, flipped),
    "jitter": (lambda: augment.RandomColorJitter(p=0.8, seed=2), 0.8, changed),
    "grayscale": (lambda: augment.RandomGrayscale(p=0.2, seed=3), 0.2, grayed),
    # sigma >= 0.5 so that every blurred noise image measurably changes
    "blur": (lambda: augment.RandomGaussianBlur(p=0.5, sigma=(0.5, 2.0), seed=4), 0.5, changed),
    "blur_p0.1": (lambda: augment.RandomGaussianBlur(p=0.1, sigma=(0.5, 2.0), seed=4), 0.1,
                  changed),
    "solarize": (lambda: augment.RandomSolarize(p=0.2, seed=5), 0.2, changed),
}


@pytest.mark.parametrize("case", sorted(RATE_CASES))
def test_apply_rate_matches_p_and_decisions_are_per_image(case):
    make, p, detect = RATE_CASES[case]
    images = random_images(seed=hash(case) % 1000)
    hits = detect(images, run_layer(make(), images))
    assert abs(hits.mean() - p) <= 0.03, f"{case}: measured rate {hits.mean():.3f}, p={p}"
    for batch_hits in batches(hits):  # never all-or-nothing within a batch
        assert 0 < batch_hits.mean() < 1


@pytest.mark.parametrize("layer", [augment.RandomHorizontalFlip(p=0.0),
                                   augment.RandomColorJitter(p=0.0),
                                   augment.RandomGrayscale(p=0.0),
                                   augment.RandomGaussianBlur(p=0.0),
                                   augment.RandomSolarize(p=0.0)], ids=lambda l: type(l).__name__)
def test_p_zero_is_exactly_the_identity(layer):
    images = random_images(n=64)
    np.testing.assert_array_equal(layer(images), images)


def test_p_one_applies_to_every_image():
    images = random_images(n=500)
    assert flipped(images, augment.RandomHorizontalFlip(p=1.0)(images)).all()
    assert grayed(images, augment.RandomGrayscale(p=1.0)(images)).all()
    assert changed(images, augment.RandomColorJitter(p=1.0)(images)).all()


# ------------------------------------------------------------------------------------------------
# what each augmentation does
# ------------------------------------------------------------------------------------------------

def test_solarize_inverts_exactly_the_pixels_at_or_above_the_threshold():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2000, 8, 8, 3)).astype(np.float32) / 255.0
    images[:, 0, 0, 0] = 0.5  # the threshold itself
    layer = augment.RandomSolarize(p=0.5, threshold=0.5, seed=0)
    transformation = layer.get_random_transformation(images, seed=7)
    out = np.asarray(layer.transform_images(images, transformation))
    apply = np.asarray(transformation["apply"])
    expected = np.where(images >= 0.5, 1.0 - images, images)
    np.testing.assert_allclose(out[apply], expected[apply], atol=1e-6)
    np.testing.assert_array_equal(out[~apply], images[~apply])
    assert abs(apply.mean() - 0.5) < 0.05


def test_grayscale_matches_keras_random_grayscale():
    images = random_images(n=64)
    ours = np.asarray(augment.RandomGrayscale(p=1.0)(images))
    theirs = np.asarray(keras.layers.RandomGrayscale(factor=1.0)(images))
    np.testing.assert_allclose(ours, theirs, atol=2e-3)  # luma weights 0.299 vs 0.2989


def test_flip_matches_keras_random_flip_horizontal():
    images = random_images(n=64)
    theirs = np.asarray(keras.layers.RandomFlip("horizontal", seed=0)(images))
    assert flipped(images, theirs).any()
    np.testing.assert_array_equal(augment.RandomHorizontalFlip(p=1.0)(images)[:, :, ::-1],
                                  images)


def numpy_jitter(x, b, c, s, h, order):
    """Reference colour jitter without clipping: each step written out in NumPy (float64)."""
    luma = np.array(augment.LUMA)
    yiq = augment._YIQ
    ops = {
        "b": lambda x: x * b,
        "c": lambda x: c * x + (1 - c) * (x @ luma).mean(),
        "s": lambda x: s * x + (1 - s) * (x @ luma)[..., None],
        "h": lambda x: x @ (np.linalg.inv(yiq) @ np.array(
            [[1, 0, 0],
             [0, math.cos(2 * math.pi * h), math.sin(2 * math.pi * h)],
             [0, -math.sin(2 * math.pi * h), math.cos(2 * math.pi * h)]]) @ yiq).T,
    }
    for name in order:
        x = ops[name](x)
    return x


def test_color_jitter_equals_stepwise_reference_in_any_order():
    # Mid-range images and mild factors: nothing leaves [0, 1], so no clipping happens.
    x = random_images(n=4, low=0.35, high=0.65).astype(np.float64)
    factors = dict(b=np.array([1.1, 0.9, 1.0, 1.05]), c=np.array([0.8, 1.2, 1.0, 0.9]),
                   s=np.array([1.1, 0.8, 1.2, 1.0]), h=np.array([0.05, -0.1, 0.0, 0.02]))
    transformation = {"apply": tf.constant([True] * 4),
                      "brightness": tf.constant(factors["b"], tf.float32),
                      "contrast": tf.constant(factors["c"], tf.float32),
                      "saturation": tf.constant(factors["s"], tf.float32),
                      "hue": tf.constant(factors["h"], tf.float32)}
    ours = np.asarray(augment.RandomColorJitter.jitter(tf.constant(x, tf.float32),
                                                       transformation))
    for order in ("bcsh", "hscb", "shbc", "cbhs"):
        reference = np.stack([numpy_jitter(x[i], *(factors[k][i] for k in "bcsh"), order)
                              for i in range(4)])
        assert reference.min() > 0 and reference.max() < 1
        np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_hue_turns_colours_the_way_hsv_hue_does():
    images = random_images(n=200)
    t = {"apply": tf.ones(200, tf.bool), "brightness": tf.ones(200), "contrast": tf.ones(200),
         "saturation": tf.ones(200), "hue": tf.fill([200], 0.05)}
    out = augment.RandomColorJitter.jitter(tf.constant(images), t)
    before, after = tf.image.rgb_to_hsv(images), tf.image.rgb_to_hsv(out)
    shift = (after[..., 0] - before[..., 0] + 0.5) % 1.0 - 0.5
    saturated = before[..., 1] > 0.3
    assert 0.02 < float(tf.reduce_mean(tf.boolean_mask(shift, saturated))) < 0.07


def test_jitter_value_range_255_equals_scaled_unit_range():
    images = random_images(n=32)
    unit = augment.RandomColorJitter(p=1.0)
    wide = augment.RandomColorJitter(p=1.0, value_range=(0, 255))
    t = unit.get_random_transformation(images, seed=3)
    np.testing.assert_allclose(np.asarray(wide.transform_images(images * 255, t)) / 255,
                               unit.transform_images(images, t), atol=1e-5)


def numpy_blur(image, sigma, radius):
    """Reference separable Gaussian blur, mirrored borders (np.pad 'reflect')."""
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(k * padded[radius + o: radius + o + image.shape[0]] for o, k in zip(offsets, kernel))
    return sum(k * rows[:, radius + o: radius + o + image.shape[1]]
               for o, k in zip(offsets, kernel))


def test_blur_uses_one_sigma_per_image_and_matches_a_reference():
    images = random_images(n=6, size=16).astype(np.float64)
    layer = augment.RandomGaussianBlur(p=1.0, sigma=(0.1, 2.0))
    t = layer.get_random_transformation(images, seed=1)
    sigmas = np.asarray(t["sigma"])
    assert len(np.unique(sigmas)) == 6 and sigmas.min() >= 0.1 and sigmas.max() <= 2.0
    out = np.asarray(layer.transform_images(images, t))
    for i in range(6):
        np.testing.assert_allclose(out[i], numpy_blur(images[i], sigmas[i], layer.radius),
                                   atol=1e-5)


def test_blur_keeps_a_constant_image_and_is_identity_when_not_applied():
    layer = augment.RandomGaussianBlur(p=0.5)
    constant = np.full((50, 8, 8, 3), 0.3, np.float32)
    np.testing.assert_allclose(layer(constant), constant, atol=1e-6)
    images = random_images(n=200)
    t = layer.get_random_transformation(images, seed=2)
    out = np.asarray(layer.transform_images(images, t))
    skipped = ~np.asarray(t["apply"])
    np.testing.assert_array_equal(out[skipped], images[skipped])


def test_crop_matmul_equals_crop_and_resize_including_mirrored_boxes():
    images = random_images(n=16, size=12)
    boxes = augment.RandomResizedCrop().get_random_transformation(images, seed=0)["boxes"]
    boxes = tf.concat([boxes[:8], tf.gather(boxes[8:], [0, 3, 2, 1], axis=1)], axis=0)
    reference = tf.image.crop_and_resize(images, boxes, tf.range(16), (12, 12))
    np.testing.assert_allclose(augment.crop_and_resize_matmul(images, boxes, (12, 12)),
                               reference, atol=1e-5)
    np.testing.assert_allclose(reference[8:], tf.image.crop_and_resize(
        images, boxes[8:], tf.range(8, 16), (12, 12)), atol=1e-6)


def reference_crop_areas(n, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts=10):
    """torchvision's RandomResizedCrop.get_params on a square image, without pixel rounding."""
    areas = np.ones(n)
    for i in range(n):
        for _ in range(attempts):
            area = rng.uniform(*scale)
            r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            if math.sqrt(area * r) <= 1 and math.sqrt(area / r) <= 1:
                areas[i] = area
                break
    return areas


def ks_distance(a, b):
    values = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), values, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), values, side="right") / len(b)
    return np.abs(cdf_a - cdf_b).max()


def test_crop_areas_follow_the_scale_range_like_torchvision():
    images = np.zeros((5000, 8, 8, 3), np.float32)
    boxes = np.asarray(augment.RandomResizedCrop().get_random_transformation(images, seed=0)[
        "boxes"])
    heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    areas = heights * widths
    assert areas.min() >= 0.08 - 1e-6 and areas.max() <= 1 + 1e-6
    assert (boxes >= -1e-6).all() and (boxes <= 1 + 1e-6).all()
    assert np.all((widths / heights >= 3 / 4 - 1e-4) & (widths / heights <= 4 / 3 + 1e-4))
    reference = reference_crop_areas(5000, np.random.default_rng(1))
    assert ks_distance(areas, reference) < 0.05
    # Uniform on [0.08, 0.75] (every ratio fits there): a quarter of that range, a quarter of it.
    low = areas[areas <= 0.75]
    assert abs(np.mean(low <= 0.08 + (0.75 - 0.08) / 4) - 0.25) < 0.03
    assert 0.45 < areas.mean() < 0.55


def test_crop_ratio_on_non_square_images_is_in_pixels():
    images = np.zeros((2000, 16, 32, 3), np.float32)  # height 16, width 32
    boxes = np.asarray(augment.RandomResizedCrop().get_random_transformation(images, seed=0)[
        "boxes"])
    pixel_ratio = (boxes[:, 3] - boxes[:, 1]) * 32 / ((boxes[:, 2] - boxes[:, 0]) * 16)
    assert pixel_ratio.min() >= 3 / 4 - 1e-4 and pixel_ratio.max() <= 4 / 3 + 1e-4


# ------------------------------------------------------------------------------------------------
# two views, recipes, seeds
# ------------------------------------------------------------------------------------------------

def test_recipes_are_one_table_with_the_documented_asymmetry():
    official_a, official_b = (augment.recipe_steps("official", v) for v in (0, 1))
    assert official_a["blur"]["p"] == 1.0 and official_b["blur"]["p"] == 0.1
    assert "solarize" not in official_a and official_b["solarize"]["p"] == 0.2
    cifar_a, cifar_b = (augment.recipe_steps("cifar", v) for v in (0, 1))
    assert "blur" not in cifar_a and "blur" not in cifar_b
    assert "solarize" not in cifar_a and cifar_b["solarize"] == dict(p=0.2, threshold=0.5,
                                                                    per_batch=False)
    assert cifar_a["crop"]["scale"] == (0.08, 1.0) and cifar_a["jitter"]["p"] == 0.8
    assert cifar_a["grayscale"]["p"] == 0.2 and cifar_a["flip"]["p"] == 0.5
    assert all(params["per_batch"] for params in augment.recipe_steps("original_2021", 0).values())
    layer = augment.TwoViews("cifar")
    assert list(layer.layers_a) == ["crop", "flip", "jitter", "grayscale"]
    assert list(layer.layers_b) == ["crop", "flip", "jitter", "grayscale", "solarize"]
    with pytest.raises(ValueError, match="Unknown recipe 'imagenet'.*cifar"):
        augment.TwoViews("imagenet")


@pytest.mark.parametrize("recipe", ["official", "cifar"])
def test_recipe_draws_match_the_table_per_image(recipe):
    layer = augment.TwoViews(recipe, seed=0)
    draws = layer.get_random_transformation(np.zeros((N_IMAGES, 8, 8, 3), np.uint8))
    for view in (0, 1):
        for step, params in augment.recipe_steps(recipe, view).items():
            if step == "crop":
                continue
            apply = np.asarray(draws[view][step]["apply"])
            assert abs(apply.mean() - params["p"]) <= 0.03, (recipe, view, step, apply.mean())
            if params["p"] < 1:
                assert all(0 < chunk.mean() < 1 for chunk in batches(apply))


def test_original_2021_draws_are_one_decision_per_batch():
    layer = augment.TwoViews("original_2021", seed=0)
    for call in range(5):
        draws = layer.get_random_transformation(np.zeros((64, 8, 8, 3), np.uint8), seed=call)
        for step in ("jitter", "grayscale", "blur", "solarize"):
            apply = np.asarray(draws[0][step]["apply"])
            assert apply.all() or not apply.any()
        boxes = np.asarray(draws[0]["crop"]["boxes"])
        np.testing.assert_array_equal(boxes, np.broadcast_to(boxes[:1], boxes.shape))


@pytest.mark.parametrize("recipe", sorted(augment.RECIPES))
def test_two_views_from_uint8_and_float_are_float32_in_unit_range(recipe):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    view_a, view_b = augment.two_views(images, recipe=recipe, seed=3)
    view_af, view_bf = augment.two_views(images / np.float32(255), recipe=recipe, seed=3)
    for view in (view_a, view_b, view_af, view_bf):
        assert view.dtype == tf.float32 and view.shape == images.shape
        assert 0.0 <= float(tf.reduce_min(view)) and float(tf.reduce_max(view)) <= 1.0
    np.testing.assert_allclose(view_a, view_af, atol=1e-5)  # uint8 and float agree
    single_a, _ = augment.two_views(images[0], recipe=recipe, seed=3)
    assert single_a.shape == (32, 32, 3)


def test_two_views_differ_and_seeds_are_reproducible():
    images = (random_images(n=200, size=16) * 255).astype(np.uint8)
    view_a, view_b = augment.two_views(images, recipe="cifar", seed=1)
    assert changed(np.asarray(view_a), view_b).all()
    again_a, again_b = augment.two_views(images, recipe="cifar", seed=1)
    np.testing.assert_array_equal(view_a, again_a)
    np.testing.assert_array_equal(view_b, again_b)
    other_a, _ = augment.two_views(images, recipe="cifar", seed=2)
    assert changed(np.asarray(view_a), other_a).mean() > 0.99
    # A layer built with a seed replays the same sequence; its calls differ from each other.
    first, second = augment.TwoViews("cifar", seed=5), augment.TwoViews("cifar", seed=5)
    out_1, out_2 = first(images), first(images)
    np.testing.assert_array_equal(out_1[0], second(images)[0])
    assert changed(np.asarray(out_1[0]), out_2[0]).mean() > 0.99


def test_fused_two_views_equal_the_layers_applied_one_by_one():
    images = (random_images(n=64, size=16) * 255).astype(np.uint8)
    layer = augment.TwoViews("official", seed=0)
    draws = layer.get_random_transformation(images, seed=11)
    fused = layer.transform_views(images, draws)
    for view, (layers, view_draws) in enumerate(zip(layer.views, draws)):
        x = tf.constant(images / np.float32(255))
        for step, step_layer in layers.items():
            x = step_layer.transform_images(x, view_draws[step])
        np.testing.assert_allclose(fused[view], x, atol=2e-5, err_msg=f"view {view}")


def test_solarize_only_in_the_second_view_of_the_cifar_recipe():
    images = random_images(n=2000, size=8, low=0.55, high=1.0)  # bright: solarize shows
    layer = augment.TwoViews("cifar", seed=0)
    draws = layer.get_random_transformation(images, seed=1)
    for view in draws:  # switch off everything but solarize
        for step in ("jitter", "grayscale"):
            view[step]["apply"] = tf.zeros_like(view[step]["apply"])
        view["crop"]["boxes"] = tf.tile([[0.0, 0.0, 1.0, 1.0]], [2000, 1])
        view["flip"]["apply"] = tf.zeros_like(view["flip"]["apply"])
    view_a, view_b = layer.transform_views(images, draws)
    np.testing.assert_allclose(view_a, images, atol=1e-6)
    assert abs(changed(images, view_b).mean() - 0.2) <= 0.03


# ------------------------------------------------------------------------------------------------
# the 2021 recipe's defects, measurably
# ------------------------------------------------------------------------------------------------

def test_original_2021_defects_are_measurable():
    layer = augment.TwoViews("original_2021", seed=0)
    steps = layer.layers_a
    images = random_images(n=4000, size=8)
    # Solarize never fires on [0, 1] images.
    assert not changed(images, run_layer(steps["solarize"], images)).any()
    # Flip: 25% of the images overall; per batch either none or about half.
    batch_rates = []
    for batch in batches(images, 100):
        batch_rates.append(flipped(batch, steps["flip"](batch)).mean())
    batch_rates = np.array(batch_rates)
    assert abs(batch_rates.mean() - 0.25) <= 0.1  # 40 batch-level coins: wide tolerance
    assert np.all((batch_rates == 0) | ((batch_rates > 0.25) & (batch_rates < 0.75)))
    # One decision per batch: a batch is all gray or not gray at all.
    gray_rates = [grayed(b, steps["grayscale"](b)).mean() for b in batches(images, 100)]
    assert set(np.round(gray_rates, 6)) <= {0.0, 1.0} and 0 < np.mean(gray_rates) < 1
    # Blur sigma frozen: the same in every call and for every image.
    sigmas = [np.asarray(steps["blur"].get_random_transformation(images[:50])["sigma"])
              for _ in range(3)]
    assert len(np.unique(np.concatenate(sigmas))) == 1


def test_original_2021_flip_rate_over_many_images_is_a_quarter():
    # The 2021 pipeline mapped one image per call, so each call is its own "batch": a
    # per-image coin inside a per-call gate. 4,000 single-image calls, each with its own seed.
    flip = augment.TwoViews("original_2021").layers_a["flip"]
    one = tf.zeros((1, 8, 8, 3))

    @tf.function
    def flips(seeds):
        return tf.map_fn(lambda s: flip.get_random_transformation(one, seed=s)["apply"][0],
                         seeds, fn_output_signature=tf.bool)

    seeds = tf.stack([tf.range(4000), tf.zeros(4000, tf.int32)], axis=1)
    assert abs(float(tf.reduce_mean(tf.cast(flips(seeds), tf.float32))) - 0.25) <= 0.03


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------

BAD_INPUTS = {
    "float_above_1": (np.full((2, 8, 8, 3), 254.0, np.float32), r"max=254.*Divide 0-255"),
    "negative": (np.full((2, 8, 8, 3), -1.0, np.float32), r"min=-1.*\[-1, 1\]"),
    "one_channel": (np.zeros((2, 8, 8, 1), np.uint8), r"3 \(RGB\).*received 1.*grayscale_to_rgb"),
    "four_channels": (np.zeros((2, 8, 8, 4), np.uint8), r"received 4 channels.*alpha"),
    "rank_2": (np.zeros((8, 8), np.uint8), r"received rank 2.*channel axis"),
    "rank_5": (np.zeros((2, 2, 8, 8, 3), np.uint8), r"received rank 5.*batch axis"),
    "nan": (np.full((2, 8, 8, 3), np.nan, np.float32), r"NaN"),
    "int32": (np.zeros((2, 8, 8, 3), np.int32), r"received int32.*uint8"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_errors_that_name_the_value_and_the_fix(case):
    images, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        augment.two_views(images, recipe="cifar", seed=0)


def test_float_range_is_checked_inside_a_graph_too():
    layer = augment.TwoViews("cifar", seed=0)
    graph_call = tf.function(lambda x: layer(x))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Expected float images in"):
        graph_call(tf.fill((2, 8, 8, 3), 3.0))


def test_layer_arguments_are_validated():
    with pytest.raises(ValueError, match=r"Received: p=1.5"):
        augment.RandomGrayscale(p=1.5)
    with pytest.raises(ValueError, match=r"Received: scale=\(0.5, 0.1\)"):
        augment.RandomResizedCrop(scale=(0.5, 0.1))
    with pytest.raises(ValueError, match=r"kernel_size=4"):
        augment.RandomGaussianBlur(kernel_size=4)
    with pytest.raises(ValueError, match=r"hue=0.7"):
        augment.RandomColorJitter(hue=0.7)


# ------------------------------------------------------------------------------------------------
# Keras integration: training=False, configs, tf.data, tf.function, XLA
# ------------------------------------------------------------------------------------------------

ALL_LAYERS = [augment.RandomResizedCrop(seed=1), augment.RandomHorizontalFlip(seed=1),
              augment.RandomColorJitter(seed=1), augment.RandomGrayscale(seed=1),
              augment.RandomGaussianBlur(seed=1), augment.RandomSolarize(seed=1),
              augment.RandomGaussianBlur(kernel_size=3, freeze_sigma=True, per_batch=True,
                                         seed=2),
              augment.RandomHorizontalFlip(p=0.5, nested_p=0.5, per_batch=True, seed=3)]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda l: type(l).__name__)
def test_training_false_is_identity_and_config_round_trips(layer):
    images = random_images(n=8, size=8)
    np.testing.assert_array_equal(layer(images, training=False), images)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(
        clone.transform_images(images, clone.get_random_transformation(images, seed=4)),
        layer.transform_images(images, layer.get_random_transformation(images, seed=4)))
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer)


def test_two_views_training_false_and_config_round_trip():
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    layer = augment.TwoViews("official", seed=7)
    view_a, view_b = layer(images, training=False)
    np.testing.assert_allclose(view_a, images / 255, atol=1e-7)
    np.testing.assert_allclose(view_b, images / 255, atol=1e-7)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(clone(images, seed=1)[1], layer(images, seed=1)[1])


def test_layers_work_in_tf_data_on_whole_batches():
    images = (random_images(n=64, size=8) * 255).astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(16)
    two = augment.make_two_views("cifar", seed=0)
    crop = augment.RandomResizedCrop(seed=0)
    for view_a, view_b in dataset.map(two, num_parallel_calls=2):
        assert view_a.shape == (16, 8, 8, 3) and view_a.dtype == tf.float32
    for out in dataset.map(lambda x: crop(tf.cast(x, tf.float32) / 255)):
        assert out.shape == (16, 8, 8, 3)
    # The pure function, seeded per batch with (seed, batch index).
    pure = dataset.enumerate().map(lambda i, x: augment.two_views(x, "cifar", seed=[0, i]))
    first = [v[0].numpy() for v in pure]
    second = [v[0].numpy() for v in pure]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_two_views_inside_a_compiled_step_equal_eager(jit_compile):
    images = tf.constant((random_images(n=32, size=16) * 255).astype(np.uint8))
    layer = augment.TwoViews("official", seed=0)
    step = tf.function(lambda x, s: layer(x, seed=s), jit_compile=jit_compile)
    seed = tf.constant([3, 4])
    compiled = step(images, seed)
    eager = layer(images, seed=seed)
    for got, want in zip(compiled, eager):
        np.testing.assert_allclose(got, want, atol=1e-4)
    if not jit_compile:  # (one XLA compilation is enough for the test time)
        # Without a seed the layer's generator advances: two calls, two different draws.
        advancing = tf.function(lambda x: layer(x))
        assert changed(np.asarray(advancing(images)[0]), advancing(images)[0]).mean() > 0.9


# ------------------------------------------------------------------------------------------------
# plots and the explorer (notebook 01)
# ------------------------------------------------------------------------------------------------

def test_apply_steps_seeds_each_step_on_its_own():
    images = (random_images(n=32, size=8) * 255).astype(np.uint8)
    steps = {"crop": dict(scale=(0.08, 1.0)), "flip": dict(p=0.5), "jitter": dict(p=0.8)}
    view, draws = augment.apply_steps(images, steps, seed=3)
    changed_steps = {**steps, "jitter": dict(p=0.0)}
    view_2, draws_2 = augment.apply_steps(images, changed_steps, seed=3)
    np.testing.assert_array_equal(draws["flip"]["apply"], draws_2["flip"]["apply"])
    np.testing.assert_array_equal(draws["crop"]["boxes"], draws_2["crop"]["boxes"])
    assert not np.asarray(draws_2["jitter"]["apply"]).any()
    assert view.dtype == tf.float32 and changed(np.asarray(view), view_2).any()


def test_plots_return_figures_with_the_expected_panels():
    import matplotlib.figure
    import matplotlib.pyplot as plt

    from bt_helpers import plots

    images = random_images(n=5, size=8)
    fig = plots.plot_image_grid({"a": images, "b": images[:3]}, col_labels=list("vwxyz"))
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 10
    assert len(fig.axes[5].images) == 1 and len(fig.axes[9].images) == 0  # short row: empty
    fig = plots.plot_view_pairs((images * 255).astype(np.uint8), images, images, max_images=4)
    assert len(fig.axes) == 12
    fig = plots.plot_crop_areas(np.random.default_rng(0).uniform(0.08, 1, 500),
                                reference=("other", np.full(10, 0.7)))
    assert "mean 0.70" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    fig = plots.plot_apply_rates({"flip": {"intended": 0.5, "2021": 0.25}, "solarize": {"2021": 0}})
    assert len(fig.axes[0].patches) == 4  # (missing intended for solarize: NaN bar)
    fig = plots.plot_batch_rates({"per image": [0.2, 0.25], "per batch": [0, 1]}, p=0.2)
    assert len(fig.axes[0].lines) == 3
    with pytest.raises(ValueError, match="at least one row"):
        plots.plot_image_grid({})
    plt.close("all")


def _explorer_png(box):
    (item,) = box.children[-1].outputs
    return item["data"]["image/png"]


def test_augmentation_explorer_reacts_to_its_sliders(synthetic_images):
    import matplotlib.pyplot as plt

    from bt_helpers import widgets

    box = widgets.augmentation_explorer(synthetic_images.x_val, recipe="cifar", n_images=3,
                                        class_names=synthetic_images.class_names,
                                        labels=synthetic_images.y_val)
    assert "bt-augmentation-explorer" in box._dom_classes
    sliders = {w.description: w for row in box.children[:-2] for w in row.children}
    assert all(not s.continuous_update for s in sliders.values())
    assert sliders["jitter p"].value == 0.8 and sliders["solarize p (view b)"].value == 0.2
    counts = box.children[-2]
    before_png, before_text = _explorer_png(box), counts.value
    sliders["jitter strength"].value = 2.0
    assert _explorer_png(box) != before_png
    sliders["jitter p"].value = 0.0
    assert "jitter 0" in counts.value
    png = _explorer_png(box)
    sliders["first image"].value = 5
    assert _explorer_png(box) != png and counts.value != before_text
    assert "images 5 to 7" in counts.value
    with pytest.raises(ValueError, match="'cifar' or 'official'"):
        widgets.augmentation_explorer(synthetic_images.x_val, recipe="original_2021")
    plt.close("all")
