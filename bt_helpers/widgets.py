"""ipywidgets explorers built on the pure functions of ``bt_helpers.plots``.

Each function returns a widget (a ``VBox`` of controls and an ``Output``) and never does work at
import time; expensive controls use ``continuous_update=False``. Sections follow the notebooks.
"""

from __future__ import annotations

import ipywidgets as widgets


def _show_figure(out, fig) -> None:
    """Show ``fig`` in the ``Output`` ``out`` as a PNG, replacing what it showed.

    Sets ``out.outputs`` directly, which a live notebook renders and a headless test can read.
    """
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    out.outputs = ()
    out.append_display_data(Image(data=buffer.getvalue(), format="png"))


# --- augmentations (notebook 01) ---------------------------------------------------------------

def augmentation_settings(recipe: str = "cifar") -> dict:
    """The explorer's slider values for a recipe of ``bt_helpers.augment.RECIPES``.

    ``jitter strength`` multiplies the standard strengths (brightness 0.4, contrast 0.4,
    saturation 0.2, hue 0.1); blur and solarize have one probability per view.
    """
    from bt_helpers import augment

    if recipe not in ("cifar", "official"):
        raise ValueError(f"The explorer starts from the 'cifar' or 'official' recipe; received "
                         f"recipe={recipe!r}.")
    views = [augment.recipe_steps(recipe, v) for v in (0, 1)]
    first = views[0]
    blur = [v.get("blur", {}) for v in views]
    solarize = [v.get("solarize", {}) for v in views]
    return {
        "crop min area": first["crop"]["scale"][0],
        "flip p": first["flip"]["p"],
        "jitter p": first["jitter"]["p"],
        "jitter strength": first["jitter"]["brightness"] / 0.4,
        "grayscale p": first["grayscale"]["p"],
        "blur p (view a)": blur[0].get("p", 0.0),
        "blur p (view b)": blur[1].get("p", 0.0),
        "blur max sigma": max(b.get("sigma", (0.1, 2.0))[1] for b in blur),
        "solarize p (view a)": solarize[0].get("p", 0.0),
        "solarize p (view b)": solarize[1].get("p", 0.0),
        "solarize threshold": solarize[1].get("threshold", 0.5),
    }


def augmentation_steps(settings: dict, view: int) -> dict:
    """Layer arguments ``{step: kwargs}`` of one view (0 or 1) from explorer settings."""
    k = settings["jitter strength"]
    ab = "ab"[view]
    return {
        "crop": dict(scale=(settings["crop min area"], 1.0), ratio=(3 / 4, 4 / 3)),
        "flip": dict(p=settings["flip p"]),
        "jitter": dict(p=settings["jitter p"], brightness=0.4 * k, contrast=0.4 * k,
                       saturation=0.2 * k, hue=min(0.1 * k, 0.5)),
        "grayscale": dict(p=settings["grayscale p"]),
        "blur": dict(p=settings[f"blur p (view {ab})"],
                     sigma=(0.1, max(0.1, settings["blur max sigma"]))),
        "solarize": dict(p=settings[f"solarize p (view {ab})"],
                         threshold=settings["solarize threshold"]),
    }


def augmentation_explorer(images, recipe: str = "cifar", n_images: int = 6, seed: int = 0,
                          class_names=None, labels=None):
    """Explore the augmentations: pick images, set each probability and strength, see pairs.

    Every control redraws :func:`bt_helpers.plots.plot_view_pairs` (originals above their two
    views) from :func:`bt_helpers.augment.apply_steps`, which seeds each augmentation on its
    own: moving one slider changes that augmentation only, the other random draws stay. A line
    of text counts, per view, on how many of the shown images each augmentation fired.

    Args:
        images: ``uint8`` 0-255 or float 0-1 images, ``(N, height, width, 3)``, e.g.
            ``images.x_val`` of ``bt_helpers.start()``.
        recipe: starting values: ``"cifar"`` or ``"official"``. Defaults to ``"cifar"``.
        n_images: initial number of images shown (1 to 12). Defaults to 6.
        seed: initial seed of the draws. Defaults to 0.
        class_names: optional names of the classes, shown above the images with ``labels``.
        labels: optional ``(N,)`` integer labels of ``images``.

    Returns:
        An ``ipywidgets.VBox`` with CSS class ``bt-augmentation-explorer``: the image and seed
        sliders, one slider per probability and strength (all ``continuous_update=False``), a
        line of counts (``HTML``) and the figure (``Output``).
    """
    import numpy as np

    from bt_helpers import augment, plots

    images = np.asarray(images)
    augment.check_image_shape_and_dtype(images)
    if images.ndim != 4 or len(images) < 1:
        raise ValueError(f"augmentation_explorer needs a batch of images (N, height, width, 3); "
                         f"received shape {images.shape}.")
    settings = augmentation_settings(recipe)
    style = {"description_width": "130px"}
    layout = widgets.Layout(width="330px")

    def slider(description, value, low, high, step, integer=False):
        make = widgets.IntSlider if integer else widgets.FloatSlider
        return make(value=value, min=low, max=high, step=step, description=description,
                    style=style, layout=layout, continuous_update=False)

    n_images = int(min(max(n_images, 1), 12, len(images)))
    picker = {
        "first image": slider("first image", 0, 0, max(len(images) - n_images, 0), 1, True),
        "images shown": slider("images shown", n_images, 1, min(12, len(images)), 1, True),
        "seed": slider("seed", seed, 0, 99, 1, True),
    }
    ranges = {"crop min area": (0.02, 1.0, 0.02), "jitter strength": (0.0, 2.5, 0.1),
              "blur max sigma": (0.1, 3.0, 0.1), "solarize threshold": (0.0, 1.0, 0.05)}
    controls = {name: slider(name, value, *ranges.get(name, (0.0, 1.0, 0.05)))
                for name, value in settings.items()}
    counts = widgets.HTML()
    out = widgets.Output()

    def update(_=None):
        picker["first image"].max = max(len(images) - picker["images shown"].value, 0)
        start = picker["first image"].value
        shown = images[start:start + picker["images shown"].value]
        values = {name: control.value for name, control in controls.items()}
        views, fired = [], []
        for view in (0, 1):
            x, transformations = augment.apply_steps(
                shown, augmentation_steps(values, view), seed=picker["seed"].value * 2 + view)
            views.append(x.numpy())
            fired.append(", ".join(f"{step} {int(np.sum(t['apply']))}"
                                   for step, t in transformations.items() if step != "crop"))
        counts.value = (f"images {start} to {start + len(shown) - 1} &nbsp;|&nbsp; fired on the "
                        f"{len(shown)} images shown: view a: {fired[0]} &nbsp;|&nbsp; view b: "
                        f"{fired[1]}")
        col_labels = None
        if labels is not None and class_names is not None:
            col_labels = [class_names[int(y)] for y in labels[start:start + len(shown)]]
        _show_figure(out, plots.plot_view_pairs(shown, views[0], views[1],
                                                    max_images=len(shown),
                                                    col_labels=col_labels))

    for control in [*picker.values(), *controls.values()]:
        control.observe(update, names="value")
    update()
    names = list(controls)
    rows = [widgets.HBox(list(picker.values()))]
    rows += [widgets.HBox([controls[n] for n in names[i:i + 3]]) for i in range(0, len(names), 3)]
    box = widgets.VBox([*rows, counts, out])
    box.add_class("bt-augmentation-explorer")
    return box


# --- cross-correlation and loss (notebooks 02, 03) ---------------------------------------------

_TOY = "toy views (sliders)"


def correlation_explorer(batch_size: int = 128, proj_dim: int = 32, noise: float = 0.5,
                         redundancy: float = 0.0, lambda_offdiag: float = 0.0051,
                         seed: int = 0, views: dict = None):
    """Explore the cross-correlation matrix: batch size, width, noise and redundancy sliders.

    Draws two synthetic views with :func:`bt_helpers.loss.toy_views` (shared features with
    pairwise correlation ``redundancy``, plus independent noise of standard deviation ``noise``
    per view), computes ``c`` and the loss terms with :func:`bt_helpers.loss.barlow_twins_terms`
    and shows :func:`bt_helpers.plots.plot_correlation_summary`, with the measured mean entries
    next to the expected ``1 / (1 + noise^2)`` and ``redundancy / (1 + noise^2)``.

    Args:
        batch_size: initial ``N`` (4 to 1024). Defaults to 128.
        proj_dim: initial ``D`` (2 to 256). Defaults to 32.
        noise: initial noise standard deviation (0 to 3). Defaults to 0.5.
        redundancy: initial feature correlation (0 to 1). Defaults to 0.
        lambda_offdiag: weight of the redundancy term. Defaults to ``0.0051``.
        seed: seed of the toy views. Defaults to 0.
        views: optional ``{name: (z_a, z_b)}`` of real embeddings (e.g. a network on two
            augmented views of images); a drop-down then switches to them, and the batch size
            and width sliders take their first ``N`` rows and ``D`` columns. Defaults to None.

    Returns:
        An ``ipywidgets.VBox``: the controls, a line of numbers (``HTML``) and the figure
        (``Output``). All sliders use ``continuous_update=False``.
    """
    from bt_helpers import loss as bt_loss
    from bt_helpers import plots

    import numpy as np

    views = {name: tuple(np.asarray(z, dtype=np.float32) for z in pair)
             for name, pair in (views or {}).items()}
    for name, pair in views.items():
        if len(pair) != 2 or pair[0].shape != pair[1].shape or pair[0].ndim != 2:
            raise ValueError(f"views[{name!r}] must be a pair (z_a, z_b) of equal (N, D) shapes; "
                             f"received shapes {[z.shape for z in pair]}.")
    style = {"description_width": "110px"}
    layout = widgets.Layout(width="340px")
    controls = {
        "batch_size": widgets.IntSlider(value=batch_size, min=4, max=1024, step=4,
                                        description="batch size N", style=style, layout=layout,
                                        continuous_update=False),
        "proj_dim": widgets.IntSlider(value=proj_dim, min=2, max=256, step=1,
                                      description="embedding dim D", style=style, layout=layout,
                                      continuous_update=False),
        "noise": widgets.FloatSlider(value=noise, min=0.0, max=3.0, step=0.05,
                                     description="noise", style=style, layout=layout,
                                     continuous_update=False),
        "redundancy": widgets.FloatSlider(value=redundancy, min=0.0, max=1.0, step=0.05,
                                          description="redundancy", style=style, layout=layout,
                                          continuous_update=False),
    }
    source = widgets.Dropdown(options=[_TOY, *views], value=_TOY, description="embeddings",
                              style=style, layout=layout)
    numbers = widgets.HTML()
    out = widgets.Output()

    def update(_=None):
        n, d = controls["batch_size"].value, controls["proj_dim"].value
        toy = source.value == _TOY
        controls["noise"].disabled = controls["redundancy"].disabled = not toy
        if toy:
            s2 = controls["noise"].value ** 2
            z_a, z_b = bt_loss.toy_views(n, d, controls["noise"].value,
                                         controls["redundancy"].value, seed)
            expected = (f" (expected {1 / (1 + s2):.3f})",
                        f" (expected {controls['redundancy'].value / (1 + s2):.3f})")
        else:
            z_a, z_b = views[source.value]
            z_a, z_b = z_a[:n, :d], z_b[:n, :d]
            expected = ("", "")
        n, d = z_a.shape
        terms = bt_loss.barlow_twins_terms(z_a, z_b, lambda_offdiag)
        c = terms.c.numpy()
        off = c[~np.eye(d, dtype=bool)]
        numbers.value = (
            f"N = {n}, D = {d} &nbsp;|&nbsp; mean c<sub>ii</sub> = {c.diagonal().mean():.3f}"
            f"{expected[0]} &nbsp;|&nbsp; mean c<sub>ij</sub> = {off.mean() if off.size else 0:.3f}"
            f"{expected[1]}, spread {off.std() if off.size else 0:.3f} (sampling noise "
            f"1/sqrt(N) = {n ** -0.5:.3f}) &nbsp;|&nbsp; invariance = "
            f"{float(terms.invariance):.3f}, redundancy = {float(terms.redundancy):.3f} "
            f"(lambda = {lambda_offdiag:g})")
        _show_figure(out, plots.plot_correlation_summary(c, lambda_offdiag))

    for control in [*controls.values(), source]:
        control.observe(update, names="value")
    update()
    rows = [widgets.HBox([controls["batch_size"], controls["proj_dim"]]),
            widgets.HBox([controls["noise"], controls["redundancy"]])]
    if views:
        rows.insert(0, source)
    box = widgets.VBox([*rows, numbers, out])
    box.add_class("bt-correlation-explorer")
    return box


def lambda_explorer(c, lambda_offdiag: float = 0.0051):
    """A lambda slider showing how it balances the two terms of the loss for a given ``c``.

    Shows :func:`bt_helpers.plots.plot_lambda_balance` for the slider's lambda (log scale, from
    ``1e-5`` to 1) and the values of both terms.

    Args:
        c: a cross-correlation matrix, shape ``(D, D)``, e.g. ``barlow_twins_terms(z_a, z_b).c``.
        lambda_offdiag: initial lambda. Defaults to ``0.0051``.

    Returns:
        An ``ipywidgets.VBox`` of the slider, a line of numbers (``HTML``) and the figure
        (``Output``).
    """
    import numpy as np

    from bt_helpers import plots

    c = np.asarray(c, dtype=np.float64)
    stats = plots.correlation_stats(c)
    slider = widgets.FloatLogSlider(value=lambda_offdiag, base=10, min=-5, max=0, step=0.05,
                                    description="lambda", readout_format=".2e",
                                    continuous_update=False,
                                    layout=widgets.Layout(width="420px"))
    numbers = widgets.HTML()
    out = widgets.Output()

    def update(_=None):
        lam = slider.value
        red = lam * stats["off_diagonal_sq_sum"]
        numbers.value = (
            f"D = {stats['D']} &nbsp;|&nbsp; lambda * D = {lam * stats['D']:.3g} &nbsp;|&nbsp; "
            f"invariance = {stats['invariance']:.4g}, redundancy = {red:.4g} "
            f"({red / max(stats['invariance'] + red, 1e-12):.0%} of the loss)")
        _show_figure(out, plots.plot_lambda_balance(c, lam))

    slider.observe(update, names="value")
    update()
    return widgets.VBox([slider, numbers, out])

