"""ipywidgets explorers built on the pure functions of ``bt_helpers.plots``.

Each function returns a widget (a ``VBox`` of controls and an ``Output``) and never does work at
import time; expensive controls use ``continuous_update=False``. Sections follow the notebooks.
"""

from __future__ import annotations

import ipywidgets as widgets

# --- augmentations (notebook 01) ---------------------------------------------------------------

# --- cross-correlation and loss (notebooks 02, 03) ---------------------------------------------

def _cc_show_figure(out, fig) -> None:
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
        _cc_show_figure(out, plots.plot_correlation_summary(c, lambda_offdiag))

    for control in [*controls.values(), source]:
        control.observe(update, names="value")
    update()
    rows = [widgets.HBox([controls["batch_size"], controls["proj_dim"]]),
            widgets.HBox([controls["noise"], controls["redundancy"]])]
    if views:
        rows.insert(0, source)
    return widgets.VBox([*rows, numbers, out])


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
        _cc_show_figure(out, plots.plot_lambda_balance(c, lam))

    slider.observe(update, names="value")
    update()
    return widgets.VBox([slider, numbers, out])

