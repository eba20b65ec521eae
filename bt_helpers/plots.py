"""Figures for the notebooks: pure functions that return a matplotlib ``Figure``.

Nothing here calls ``plt.show()``; the notebooks display the returned figure, and
``bt_helpers.widgets`` re-draws them when a control moves. Sections follow the notebooks.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

# --- augmentations (notebook 01) ---------------------------------------------------------------

def _as_display_image(image) -> np.ndarray:
    """An image for ``imshow``: ``uint8`` 0-255 or float 0-1, ``(height, width, 3)``."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def plot_image_grid(rows: dict, col_labels=None, title: str = None, cell: float = 1.3):
    """A grid of images: one row per entry of ``rows``, labelled on the left.

    Args:
        rows: ``{row label: images}``, each ``images`` a sequence or array of
            ``(height, width, 3)`` images (``uint8`` 0-255 or float 0-1). Rows may differ in
            length; missing cells stay empty.
        col_labels: optional labels above the columns.
        title: optional figure title.
        cell: size of one image in inches. Defaults to 1.3.

    Returns:
        A matplotlib ``Figure``.

    Raises:
        ValueError: when ``rows`` is empty.
    """
    if not rows:
        raise ValueError("plot_image_grid needs at least one row of images; received none.")
    labels = list(rows)
    n_cols = max(len(rows[label]) for label in labels)
    fig, axes = plt.subplots(len(labels), n_cols, squeeze=False,
                             figsize=(cell * n_cols + 1.2, cell * len(labels) + (0.5 if title else 0.2)))
    for r, label in enumerate(labels):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(rows[label]):
                ax.imshow(_as_display_image(rows[label][c]), interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
            if r == 0 and col_labels is not None and c < len(col_labels):
                ax.set_title(str(col_labels[c]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_view_pairs(images, view_a, view_b, title: str = None, max_images: int = 8,
                    col_labels=None):
    """Originals above their two augmented views: what the network is asked to match.

    Args:
        images: the originals, ``(batch, height, width, 3)``, ``uint8`` or float in [0, 1].
        view_a: the first views, same shape, float in [0, 1].
        view_b: the second views.
        title: optional figure title.
        max_images: at most this many columns. Defaults to 8.
        col_labels: optional labels above the columns (e.g. class names).

    Returns:
        A matplotlib ``Figure`` with three rows: original, view a, view b.
    """
    n = min(len(images), max_images)
    return plot_image_grid({"original": list(images[:n]), "view a": list(np.asarray(view_a)[:n]),
                            "view b": list(np.asarray(view_b)[:n])},
                           col_labels=None if col_labels is None else list(col_labels)[:n],
                           title=title)


def plot_crop_areas(areas, scale=(0.08, 1.0), reference=None, bins: int = 25,
                    title: str = "Realised crop areas"):
    """Histogram of crop areas (fraction of the image) against the ``scale`` range.

    Args:
        areas: realised area fractions, e.g. ``(y2 - y1) * (x2 - x1)`` of the crop boxes.
        scale: the requested ``(min, max)`` area, shaded. Defaults to ``(0.08, 1.0)``.
        reference: optional second sample to overlay (e.g. another recipe's areas), as
            ``(label, areas)``.
        bins: histogram bins over [0, 1]. Defaults to 25 (an edge at 0.08).
        title: figure title.

    Returns:
        A matplotlib ``Figure``; the legend gives each sample's mean area.
    """
    areas = np.asarray(areas, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    edges = np.linspace(0.0, 1.0, bins + 1)
    ax.axvspan(scale[0], scale[1], color="tab:green", alpha=0.08, label=f"scale range {scale[0]:g}-{scale[1]:g}")
    ax.hist(areas, bins=edges, density=True, alpha=0.7, color="tab:blue",
            label=f"areas (mean {areas.mean():.2f})")
    if reference is not None:
        label, other = reference
        other = np.asarray(other, dtype=np.float64)
        ax.hist(other, bins=edges, density=True, histtype="step", lw=2, color="tab:red",
                label=f"{label} (mean {other.mean():.2f})")
    ax.set_xlabel("crop area / image area")
    ax.set_ylabel("density")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8, loc="upper center")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_apply_rates(rows: dict, title: str = "Measured apply-rates"):
    """Grouped bars: each augmentation's intended probability next to measured rates.

    Args:
        rows: ``{augmentation: {series label: rate}}``, e.g. ``{"flip": {"intended": 0.5,
            "2021 example": 0.25, "this course": 0.5}}``. Series are drawn in the order of
            their first appearance.
        title: figure title.

    Returns:
        A matplotlib ``Figure``, rates printed in percent above the bars.
    """
    names = list(rows)
    series = []
    for values in rows.values():
        series += [s for s in values if s not in series]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) * max(1, len(series) / 2) + 2, 3.4))
    width = 0.8 / len(series)
    x = np.arange(len(names))
    for k, label in enumerate(series):
        values = [rows[name].get(label, np.nan) for name in names]
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label)
        for bar, v in zip(bars, values):
            if np.isfinite(v):
                ax.text(bar.get_x() + bar.get_width() / 2, v, f"{100 * v:.0f}%", ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylabel("fraction of images")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_batch_rates(series: dict, p: float = None, title: str = "Fraction augmented, batch by batch"):
    """Per-batch rates: per-image decisions hover around ``p``; per-batch ones are 0 or 1.

    Args:
        series: ``{label: rates}``, each ``rates`` one value per batch.
        p: optional intended probability, drawn as a dashed line.
        title: figure title.

    Returns:
        A matplotlib ``Figure``.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    markers = "os^Dv"
    for k, (label, rates) in enumerate(series.items()):
        rates = np.asarray(rates, dtype=np.float64)
        ax.plot(np.arange(1, len(rates) + 1), rates, marker=markers[k % len(markers)], ms=4,
                lw=0.8, label=f"{label} (mean {rates.mean():.2f})")
    if p is not None:
        ax.axhline(p, color="0.4", ls="--", lw=1, label=f"intended p = {p:g}")
    ax.set_xlabel("batch")
    ax.set_ylabel("fraction of the batch")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# --- cross-correlation and loss (notebooks 02, 03) ---------------------------------------------

#: Diverging colour map for correlations: blue -1, white 0, red +1.
CORRELATION_CMAP = "RdBu_r"


def _square_matrix(c, name: str = "c") -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 1:
        raise ValueError(f"Expected a square (D, D) matrix such as the cross-correlation "
                         f"matrix; received {name}.shape={c.shape}.")
    return c


def correlation_stats(c, lambda_offdiag: float = 0.0051) -> dict:
    """Summary numbers of a cross-correlation matrix, in NumPy (no TensorFlow needed).

    Args:
        c: the cross-correlation matrix, shape ``(D, D)``.
        lambda_offdiag: weight of the redundancy term. Defaults to ``0.0051``.

    Returns:
        A dict with ``D``, ``mean_diagonal``, ``mean_abs_off_diagonal``, ``rms_off_diagonal``,
        ``invariance`` (``sum_i (1 - c_ii)^2``), ``off_diagonal_sq_sum``
        (``sum_{i != j} c_ij^2``, unweighted), ``redundancy`` (weighted) and ``loss``.
    """
    c = _square_matrix(c)
    d = c.shape[0]
    diag = np.diag(c)
    off_sq = float(np.sum(c ** 2) - np.sum(diag ** 2))
    n_off = max(d * (d - 1), 1)
    invariance = float(np.sum((1.0 - diag) ** 2))
    return {
        "D": d,
        "mean_diagonal": float(diag.mean()),
        "mean_abs_off_diagonal": float((np.abs(c).sum() - np.abs(diag).sum()) / n_off),
        "rms_off_diagonal": float(np.sqrt(max(off_sq, 0.0) / n_off)),
        "invariance": invariance,
        "off_diagonal_sq_sum": off_sq,
        "redundancy": lambda_offdiag * off_sq,
        "loss": invariance + lambda_offdiag * off_sq,
    }


def _draw_correlation(ax, c, title=None, colorbar=True):
    d = c.shape[0]
    im = ax.imshow(c, cmap=CORRELATION_CMAP, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_xlabel("feature j of z_b")
    ax.set_ylabel("feature i of z_a")
    if d <= 12:
        ax.set_xticks(range(d))
        ax.set_yticks(range(d))
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="c_ij")
    return im


def plot_cross_correlation(c, title: str = None, ax=None, max_features: int = None):
    """Heatmap of a cross-correlation matrix, with -1 blue, 0 white and +1 red.

    Args:
        c: the cross-correlation matrix, shape ``(D, D)`` (NumPy array or tensor).
        title: axes title. Defaults to ``"c, D x D"`` with the size.
        ax: draw into these axes instead of a new figure. Defaults to None.
        max_features: draw only the top-left ``max_features x max_features`` block when ``D``
            is larger (a 512-wide matrix is a grey speckle on screen). Defaults to None (all).

    Returns:
        The matplotlib ``Figure``.
    """
    c = _square_matrix(c)
    d = c.shape[0]
    if max_features is not None and d > max_features:
        c = c[:max_features, :max_features]
        title = title or f"c, first {max_features} of {d} features"
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4))
    _draw_correlation(ax, c, title or f"c, {d} x {d}")
    return ax.figure


def plot_cross_correlations(matrices: dict, ncols: int = None, suptitle: str = None):
    """Several cross-correlation heatmaps side by side, one shared colour bar.

    Each panel is titled with its name, the mean diagonal entry and the root-mean-square
    off-diagonal entry.

    Args:
        matrices: ``{name: c}`` with ``c`` of shape ``(D, D)`` (sizes may differ).
        ncols: panels per row. Defaults to all in one row (at most 4).
        suptitle: figure title. Defaults to None.

    Returns:
        The matplotlib ``Figure``.
    """
    if not matrices:
        raise ValueError("Expected at least one matrix; received an empty dict.")
    items = [(name, _square_matrix(c, name)) for name, c in matrices.items()]
    ncols = ncols or min(len(items), 4)
    nrows = int(np.ceil(len(items) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + 0.8, 3.5 * nrows),
                             squeeze=False, constrained_layout=True)
    im = None
    for ax, (name, c) in zip(axes.flat, items):
        s = correlation_stats(c)
        im = _draw_correlation(ax, c, colorbar=False,
                               title=f"{name}\nmean c_ii={s['mean_diagonal']:.2f}, "
                                     f"rms c_ij={s['rms_off_diagonal']:.2f}")
        ax.title.set_fontsize(10)
    for ax in axes.flat[len(items):]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02, label="c_ij")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_correlation_histograms(c, ax=None, bins: int = 60, title: str = None):
    """Histograms of the diagonal and the off-diagonal entries of ``c`` on [-1, 1].

    Both are drawn as densities, so the ``D`` diagonal entries stay visible next to the
    ``D (D - 1)`` off-diagonal ones. Barlow Twins wants the first at 1, the second at 0.

    Args:
        c: the cross-correlation matrix, shape ``(D, D)``.
        ax: draw into these axes instead of a new figure. Defaults to None.
        bins: histogram bins over [-1, 1]. Defaults to 60.
        title: axes title. Defaults to ``"entries of c"``.

    Returns:
        The matplotlib ``Figure``.
    """
    c = _square_matrix(c)
    d = c.shape[0]
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.4))
    edges = np.linspace(-1.0, 1.0, bins + 1)
    off = c[~np.eye(d, dtype=bool)]
    if off.size:
        ax.hist(np.clip(off, -1, 1), bins=edges, density=True, alpha=0.6, color="tab:blue",
                label=f"off-diagonal c_ij ({off.size:,}), target 0")
    ax.hist(np.clip(np.diag(c), -1, 1), bins=edges, density=True, alpha=0.6, color="tab:red",
            label=f"diagonal c_ii ({d:,}), target 1")
    ax.axvline(0.0, color="tab:blue", lw=1, ls="--")
    ax.axvline(1.0, color="tab:red", lw=1, ls="--")
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("value")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "entries of c")
    return ax.figure


def plot_loss_terms(invariance: float, redundancy: float, ax=None, title: str = None):
    """Horizontal bars of the two loss terms and their sum.

    Args:
        invariance: ``sum_i (1 - c_ii)^2``.
        redundancy: the weighted redundancy term ``lambda * sum_{i != j} c_ij^2``.
        ax: draw into these axes instead of a new figure. Defaults to None.
        title: axes title. Defaults to ``"loss terms"``.

    Returns:
        The matplotlib ``Figure``.
    """
    values = [float(invariance), float(redundancy), float(invariance) + float(redundancy)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 2.4))
    labels = ["invariance\nsum (1 - c_ii)^2", "redundancy\nlambda sum c_ij^2", "loss"]
    bars = ax.barh(labels, values, color=["tab:red", "tab:blue", "0.4"])
    ax.invert_yaxis()
    top = max(values + [1e-12])
    for bar, value in zip(bars, values):
        ax.text(bar.get_width() + 0.01 * top, bar.get_y() + bar.get_height() / 2, f"{value:.3g}",
                va="center", fontsize=9)
    ax.set_xlim(0, 1.2 * top)
    ax.set_title(title or "loss terms")
    return ax.figure


def plot_correlation_summary(c, lambda_offdiag: float = 0.0051, title: str = None,
                             max_features: int = 128):
    """Heatmap of ``c``, histograms of its entries and the two loss terms, in one figure.

    Args:
        c: the cross-correlation matrix, shape ``(D, D)``.
        lambda_offdiag: weight of the redundancy term in the bar chart. Defaults to ``0.0051``.
        title: figure title. Defaults to None.
        max_features: the heatmap shows at most this many features (the top-left block); the
            histograms and the terms always use all of ``c``. Defaults to 128.

    Returns:
        The matplotlib ``Figure`` (what :func:`bt_helpers.widgets.correlation_explorer` shows).
    """
    c = _square_matrix(c)
    s = correlation_stats(c, lambda_offdiag)
    fig = plt.figure(figsize=(13, 3.9), constrained_layout=True)
    grid = fig.add_gridspec(1, 3, width_ratios=[1.0, 1.25, 1.0])
    plot_cross_correlation(c, ax=fig.add_subplot(grid[0]), max_features=max_features)
    plot_correlation_histograms(c, ax=fig.add_subplot(grid[1]))
    plot_loss_terms(s["invariance"], s["redundancy"], ax=fig.add_subplot(grid[2]),
                    title=f"loss terms (lambda = {lambda_offdiag:g})")
    if title:
        fig.suptitle(title)
    return fig


def plot_lambda_balance(c, lambda_offdiag: float = 0.0051, lambdas=None, title: str = None):
    """How lambda weighs ``D (D - 1)`` off-diagonal entries against ``D`` diagonal ones.

    Left: the invariance term (flat) and the weighted redundancy term ``lambda * S`` (a line
    on log-log axes, ``S = sum_{i != j} c_ij^2``) against lambda, with the current lambda, the
    value ``1 / D`` and the balance point ``invariance / S`` marked. Right: the share of each
    term in the loss at the current lambda.

    Args:
        c: a cross-correlation matrix, shape ``(D, D)``.
        lambda_offdiag: the lambda to mark. Defaults to ``0.0051``.
        lambdas: the lambda grid of the left panel. Defaults to 200 values from ``1e-5`` to 1.
        title: figure title. Defaults to None.

    Returns:
        The matplotlib ``Figure``.
    """
    c = _square_matrix(c)
    s = correlation_stats(c, lambda_offdiag)
    d, inv, off = s["D"], s["invariance"], s["off_diagonal_sq_sum"]
    lambdas = np.logspace(-5, 0, 200) if lambdas is None else np.asarray(lambdas, float)
    fig, (ax, ax_bar) = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True,
                                     gridspec_kw={"width_ratios": [1.6, 1.0]})
    floor = 1e-6
    ax.loglog(lambdas, np.full_like(lambdas, max(inv, floor)), color="tab:red",
              label="invariance  sum_i (1 - c_ii)^2")
    ax.loglog(lambdas, np.maximum(lambdas * off, floor), color="tab:blue",
              label="redundancy  lambda * sum_{i!=j} c_ij^2")
    ax.axvline(lambda_offdiag, color="k", lw=1.2, label=f"lambda = {lambda_offdiag:.3g}")
    ax.axvline(1.0 / d, color="0.5", lw=1, ls="--", label=f"1 / D = {1.0 / d:.3g}")
    if off > 0 and inv > 0:
        ax.axvline(inv / off, color="tab:purple", lw=1, ls=":",
                   label=f"equal terms at lambda = {inv / off:.3g}")
    ax.set_xlabel("lambda_offdiag")
    ax.set_ylabel("term value")
    ax.legend(fontsize=8)
    ax.set_title(f"D = {d}: {d} diagonal vs {d * (d - 1):,} off-diagonal entries")
    total = s["loss"]
    shares = [inv / total, s["redundancy"] / total] if total > 0 else [0.5, 0.5]
    bars = ax_bar.bar(["invariance", "redundancy"], shares, color=["tab:red", "tab:blue"])
    for bar, value, share in zip(bars, [inv, s["redundancy"]], shares):
        ax_bar.text(bar.get_x() + bar.get_width() / 2, share + 0.02, f"{value:.3g}",
                    ha="center", fontsize=9)
    ax_bar.set_ylim(0, 1.12)
    ax_bar.set_ylabel("share of the loss")
    ax_bar.set_title(f"at lambda = {lambda_offdiag:.3g}: loss {total:.3g}")
    if title:
        fig.suptitle(title)
    return fig


def plot_correlation_frames(frames, history: dict = None, title: str = None):
    """Snapshots of ``c`` during training, and optionally the loss terms against the step.

    Args:
        frames: a sequence of ``(step, c)`` pairs, ``c`` of shape ``(D, D)``.
        history: ``{name: sequence of values per step}``, e.g. ``{"invariance": [...],
            "redundancy": [...]}``, drawn on a log scale in a last panel. Defaults to None.
        title: figure title. Defaults to None.

    Returns:
        The matplotlib ``Figure``.
    """
    frames = [(step, _square_matrix(c)) for step, c in frames]
    if not frames:
        raise ValueError("Expected at least one (step, c) frame; received none.")
    n = len(frames) + (1 if history else 0)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n + 0.8, 3.3), constrained_layout=True,
                             squeeze=False)
    axes = axes[0]
    im = None
    for ax, (step, c) in zip(axes, frames):
        s = correlation_stats(c)
        im = _draw_correlation(ax, c, colorbar=False,
                               title=f"step {step}\nmean c_ii={s['mean_diagonal']:.2f}, "
                                     f"rms c_ij={s['rms_off_diagonal']:.2f}")
        ax.title.set_fontsize(9)
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.colorbar(im, ax=list(axes[:len(frames)]), fraction=0.02, pad=0.02)
    if history:
        ax = axes[-1]
        for name, values in history.items():
            values = np.asarray(values, float)
            ax.semilogy(np.arange(len(values)), np.maximum(values, 1e-8), label=name)
        for step, _ in frames:
            ax.axvline(step, color="0.8", lw=0.8, zorder=0)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.set_title("loss terms")
    if title:
        fig.suptitle(title)
    return fig


def plot_lambda_sweep(lambdas, invariance, off_diagonal_sq_sum, proj_dim: int,
                      title: str = None):
    """What training converged to for each lambda: the two unweighted sums against lambda.

    Args:
        lambdas: the lambda of each run, shape ``(R,)``.
        invariance: ``sum_i (1 - c_ii)^2`` at the end of each run, shape ``(R,)``.
        off_diagonal_sq_sum: ``sum_{i != j} c_ij^2`` (unweighted) at the end of each run.
        proj_dim: ``D``, to mark ``lambda = 1 / D``.
        title: axes title. Defaults to a description.

    Returns:
        The matplotlib ``Figure``.
    """
    lambdas = np.asarray(lambdas, float)
    fig, ax = plt.subplots(figsize=(6.2, 3.8), constrained_layout=True)
    ax.loglog(lambdas, np.maximum(np.asarray(invariance, float), 1e-8), "o-", color="tab:red",
              label="invariance  sum_i (1 - c_ii)^2")
    ax.loglog(lambdas, np.maximum(np.asarray(off_diagonal_sq_sum, float), 1e-8), "s-",
              color="tab:blue", label="off-diagonal  sum_{i!=j} c_ij^2 (unweighted)")
    ax.axvline(1.0 / proj_dim, color="0.5", ls="--", lw=1, label=f"1 / D = {1 / proj_dim:.3g}")
    ax.set_xlabel("lambda_offdiag used for training")
    ax.set_ylabel("value after training")
    ax.legend(fontsize=8)
    ax.set_title(title or "small lambda: invariant but redundant; large: decorrelated but noisy")
    return fig

# --- models (notebook 04) ----------------------------------------------------------------------

def plot_feature_map_sizes(tables: dict, title: str = "Feature-map size after each part of the encoder"):
    """Each stem's feature maps drawn as squares to scale, one row per stem.

    Args:
        tables: ``{label: rows}`` where ``rows`` is what
            ``bt_helpers.models.feature_map_sizes`` returns: ``(name, size, channels)`` tuples
            from ``"input"`` to ``"stage4"``.
        title: figure title. Defaults to a description of the figure.

    Returns:
        A matplotlib ``Figure``: one row per entry of ``tables``, one column per part of the
        network; each square's side is proportional to the map's side, labelled with
        ``size x size x channels``. The cell of the first residual block is highlighted.
    """
    from matplotlib.patches import Rectangle

    labels = list(tables)
    names = []  # every part, in network order (a part only one stem has goes after its predecessor)
    for rows in tables.values():
        previous = None
        for row in rows:
            if row[0] not in names:
                names.insert(names.index(previous) + 1 if previous in names else len(names), row[0])
            previous = row[0]
    biggest = max(row[1] for rows in tables.values() for row in rows)
    fig, axes = plt.subplots(len(labels), len(names), squeeze=False,
                             figsize=(1.55 * len(names), 1.9 * len(labels) + 0.4))
    for r, label in enumerate(labels):
        by_name = {row[0]: row for row in tables[label]}
        for c, name in enumerate(names):
            ax = axes[r, c]
            ax.set_xlim(-0.05, 1.05)
            ax.set_ylim(-0.05, 1.05)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
            if name not in by_name:
                ax.text(0.5, 0.5, "(none)", ha="center", va="center", color="0.5", fontsize=8)
                continue
            _, size, channels = by_name[name]
            side = size / biggest
            low = (1 - side) / 2
            shrunk = name == "stage1" and size < biggest / 2  # first block on a shrunken map
            colour = "tab:red" if shrunk else "tab:blue"
            ax.add_patch(Rectangle((low, low), side, side, facecolor=colour, alpha=0.35,
                                   edgecolor=colour))
            if size <= 16:  # draw the pixels of small maps
                for k in range(1, size):
                    ax.plot([low + k * side / size] * 2, [low, low + side], color=colour, lw=0.4)
                    ax.plot([low, low + side], [low + k * side / size] * 2, color=colour, lw=0.4)
            ax.text(0.5, -0.02, f"{size}x{size}x{channels}", ha="center", va="top", fontsize=8,
                    transform=ax.transAxes)
    fig.suptitle(title + "\n(squares to scale; red: the first residual block already works on a "
                 "map less than half the input's side)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_model_costs(rows: list, title: str = "What each encoder costs"):
    """Bar charts comparing encoder variants: parameters, FLOPs per image and measured time.

    Args:
        rows: one dict per variant with ``"name"`` (bar label), ``"params"`` (count),
            ``"gflops"`` (per image) and optionally ``"ms_per_batch"`` (measured forward time).
        title: figure title. Defaults to ``"What each encoder costs"``.

    Returns:
        A matplotlib ``Figure`` with one horizontal bar chart per quantity, values printed on
        the bars.
    """
    panels = [("params", "parameters (millions)", 1e-6), ("gflops", "GFLOPs per image", 1.0)]
    if all("ms_per_batch" in row for row in rows):
        panels.append(("ms_per_batch", "forward ms per batch (measured)", 1.0))
    names = [row["name"] for row in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.45 * len(rows) + 1.4),
                             sharey=True, squeeze=False)
    y = np.arange(len(rows))
    for ax, (key, label, scale) in zip(axes[0], panels):
        values = np.array([row[key] * scale for row in rows], dtype=float)
        ax.barh(y, values, color=["tab:blue" if "cifar" in n else "tab:orange" for n in names])
        for yi, v in zip(y, values):
            ax.text(v, yi, f" {v:.3g}", va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.set_xlim(0, values.max() * 1.3 if values.max() > 0 else 1)
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_yticks(y, names)
    axes[0, 0].invert_yaxis()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


# --- training (notebook 05) --------------------------------------------------------------------

def _rows_to_columns(rows, keys) -> dict:
    """``[{k: v}, ...]`` (a history or step log of ``bt_helpers.train``) -> ``{k: array}``."""
    if isinstance(rows, dict):
        return {k: np.asarray(rows[k], dtype=float) for k in keys if k in rows}
    rows = list(rows)
    return {k: np.array([np.nan if r.get(k) is None else r[k] for r in rows], dtype=float)
            for k in keys}


def plot_training_curves(steps, smooth: int = 1, epoch_steps: int = None,
                         title: str = "Barlow Twins loss during training"):
    """The loss and its two terms over optimizer steps, and the learning rate below.

    Args:
        steps: the per-step log of ``bt_helpers.train`` (``TrainResult.steps``, or rows of
            ``steps.csv``): dicts with ``step``, ``loss``, ``invariance``, ``redundancy`` and
            ``lr``; or a dict of arrays with those keys.
        smooth: also draw a running mean over this many steps (1: raw values only).
            Defaults to 1.
        epoch_steps: steps per epoch, to mark epoch boundaries. Defaults to None.
        title: figure title.

    Returns:
        The matplotlib ``Figure`` (two rows: loss terms, log scale; learning rate).
    """
    cols = _rows_to_columns(steps, ("step", "loss", "invariance", "redundancy", "lr"))
    if "step" not in cols or len(cols["step"]) == 0:
        raise ValueError("Expected a non-empty step log with a 'step' field (TrainResult.steps "
                         "or the rows of steps.csv); received none.")
    x = cols["step"]
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7.5, 5.2), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]},
                                    constrained_layout=True)
    styles = {"loss": ("black", "loss = invariance + redundancy"),
              "invariance": ("tab:blue", "invariance  sum (1 - c_ii)^2"),
              "redundancy": ("tab:orange", "redundancy  lambda sum c_ij^2")}
    window = max(1, int(smooth))
    for key, (color, label) in styles.items():
        if key not in cols:
            continue
        y = cols[key]
        if window > 1 and len(y) >= window:
            ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
            kernel = np.ones(window) / window
            ax.plot(x[window - 1:], np.convolve(y, kernel, mode="valid"), color=color,
                    label=f"{label} (mean of {window})")
        else:
            ax.plot(x, y, color=color, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("value (log scale)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, which="both")
    if "lr" in cols and np.isfinite(cols["lr"]).any():
        ax_lr.plot(x, cols["lr"], color="tab:green")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.grid(alpha=0.3)
    if epoch_steps:
        for boundary in np.arange(epoch_steps, x.max() + 1, epoch_steps):
            for a in (ax, ax_lr):
                a.axvline(boundary + 0.5, color="grey", linewidth=0.6, linestyle=":")
    return fig


def plot_knn_accuracy(history, baseline: float = None, chance: float = None,
                      title: str = "kNN accuracy on the held-out images"):
    """kNN accuracy of the encoder's features after each monitored epoch.

    Args:
        history: ``TrainResult.history`` (or rows of ``history.csv``): dicts with ``epoch`` and
            ``knn_accuracy`` (``None`` for unmonitored epochs); or a dict of arrays.
        baseline: accuracy of the same architecture at random initialisation, drawn as a
            dashed line. Defaults to None.
        chance: accuracy of guessing (``1 / num_classes``), a dotted line. Defaults to None.
        title: axes title.

    Returns:
        The matplotlib ``Figure``.
    """
    cols = _rows_to_columns(history, ("epoch", "knn_accuracy"))
    keep = np.isfinite(cols.get("knn_accuracy", np.array([])))
    if not keep.any():
        raise ValueError("The history has no kNN accuracy: train with knn_every >= 1 "
                         "(preset.knn_every or knn_every=...).")
    epochs, acc = cols["epoch"][keep], cols["knn_accuracy"][keep]
    fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    ax.plot(epochs, 100 * acc, marker="o", color="tab:purple", label="after pretraining epoch")
    for e, a in zip(epochs, acc):
        ax.annotate(f"{100 * a:.1f}", (e, 100 * a), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize=8)
    if baseline is not None:
        ax.axhline(100 * baseline, color="grey", linestyle="--",
                   label=f"random initialisation ({100 * baseline:.1f}%)")
    if chance is not None:
        ax.axhline(100 * chance, color="grey", linestyle=":", label=f"chance ({100 * chance:.0f}%)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("kNN accuracy (%)")
    ax.set_xticks(epochs if len(epochs) <= 20 else np.linspace(epochs[0], epochs[-1], 11))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_lr_schedule(schedule, total_steps: int, steps_per_epoch: int = None,
                     title: str = "Learning rate: linear warm-up, then cosine decay"):
    """The learning rate of a schedule (e.g. ``bt_helpers.optim.WarmupCosine``) over a run.

    Args:
        schedule: a callable ``step -> learning rate``.
        total_steps: steps to draw, >= 1.
        steps_per_epoch: draw the x axis in epochs instead of steps. Defaults to None.
        title: axes title.

    Returns:
        The matplotlib ``Figure``.
    """
    if int(total_steps) < 1:
        raise ValueError(f"`total_steps` must be >= 1. Received: total_steps={total_steps}")
    steps = np.arange(int(total_steps) + 1)
    lr = np.array([float(schedule(int(s))) for s in steps])
    x = steps / steps_per_epoch if steps_per_epoch else steps
    fig, ax = plt.subplots(figsize=(6, 3), constrained_layout=True)
    ax.plot(x, lr, color="tab:green")
    peak = int(np.argmax(lr))
    ax.annotate(f"peak {lr[peak]:.3g}", (x[peak], lr[peak]), textcoords="offset points",
                xytext=(8, -4), fontsize=8)
    ax.set_xlabel("epoch" if steps_per_epoch else "optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


# --- evaluation (notebook 06) ------------------------------------------------------------------

def _class_name_list(class_names, num_classes: int) -> list:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) < num_classes:
        raise ValueError(f"Need {num_classes} class names; received {len(names)}: {names}.")
    return names


def plot_confusion_matrix(confusion, class_names=None, normalize: bool = True,
                          title: str = "Confusion matrix", ax=None):
    """A confusion matrix as a heat map, each cell labelled.

    Args:
        confusion: ``(num_classes, num_classes)`` counts, rows = true class, columns =
            predicted class (``ProbeResult.confusion``).
        class_names: one name per class. Defaults to the class ids.
        normalize: show each row as percentages of the true class (its recall on the
            diagonal) instead of counts. Defaults to True.
        title: axes title; the overall accuracy is appended. Defaults to "Confusion matrix".
        ax: axes to draw on. Defaults to a new figure.

    Returns:
        The matplotlib ``Figure``.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"`confusion` must be a square (num_classes, num_classes) matrix; "
                         f"received shape {confusion.shape}.")
    c = confusion.shape[0]
    names = _class_name_list(class_names, c)
    totals = confusion.sum(axis=1, keepdims=True)
    values = 100 * confusion / np.maximum(totals, 1) if normalize else confusion
    if ax is None:
        size = max(4.0, 0.55 * c + 1.5)
        fig, ax = plt.subplots(figsize=(size + 1, size))
    else:
        fig = ax.figure
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=100 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="% of the true class" if normalize else "images")
    threshold = (100 if normalize else values.max()) / 2
    if c <= 20:
        for i in range(c):
            for j in range(c):
                text = f"{values[i, j]:.0f}" if normalize else f"{int(values[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if values[i, j] > threshold else "black")
    ax.set_xticks(range(c), names, rotation=45, ha="right")
    ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(confusion) / max(confusion.sum(), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.1%})" if title else "", fontsize=10)
    fig.tight_layout()
    return fig


def plot_embedding_2d(points, labels, class_names=None, title: str = "2-D map of the features",
                      ax=None, point_size: float = None):
    """A scatter plot of 2-D embeddings (t-SNE, PCA), coloured by class.

    Args:
        points: ``(N, 2)`` coordinates, e.g. from ``bt_helpers.evaluate.tsne``.
        labels: ``(N,)`` integer class ids (used for colour only: the map never saw them).
        class_names: one name per class. Defaults to the class ids.
        title: axes title. Defaults to "2-D map of the features".
        ax: axes to draw on. Defaults to a new figure.
        point_size: marker area. Defaults to larger markers for fewer points (6 at 2,000).

    Returns:
        The matplotlib ``Figure``.
    """
    points, labels = np.asarray(points), np.asarray(labels).astype(int)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"Expected points of shape (N, 2) and labels of shape (N,); received "
                         f"{points.shape} and {labels.shape}.")
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    names = _class_name_list(class_names, num_classes)
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    if point_size is None:
        point_size = float(np.clip(12_000 / max(len(points), 1), 3, 30))
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
    else:
        fig = ax.figure
    for k in range(num_classes):
        mask = labels == k
        ax.scatter(points[mask, 0], points[mask, 1], s=point_size, color=cmap(k % cmap.N),
                   label=names[k], alpha=0.8, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2.5,
              frameon=False)
    fig.tight_layout()
    return fig


def plot_retrieval_grid(query_images, neighbour_images, query_labels=None,
                        neighbour_labels=None, class_names=None, similarities=None,
                        title: str = "Nearest neighbours in feature space"):
    """Query images (first column) and their nearest neighbours, one row per query.

    With labels, each neighbour's frame is green when its class matches the query's and red
    otherwise, and the row says how many match.

    Args:
        query_images: ``(Q, height, width, channels)`` uint8 or float in [0, 1].
        neighbour_images: ``(Q, K, height, width, channels)``, most similar first.
        query_labels: ``(Q,)`` class ids. Defaults to None (no frames).
        neighbour_labels: ``(Q, K)`` class ids. Defaults to None.
        class_names: one name per class. Defaults to the class ids.
        similarities: ``(Q, K)`` cosine similarities printed under each neighbour.
            Defaults to None.
        title: figure title.

    Returns:
        The matplotlib ``Figure``.
    """
    queries, neighbours = np.asarray(query_images), np.asarray(neighbour_images)
    if neighbours.ndim != 5 or queries.ndim != 4 or len(queries) != len(neighbours):
        raise ValueError(f"Expected query_images (Q, H, W, C) and neighbour_images "
                         f"(Q, K, H, W, C); received {queries.shape} and {neighbours.shape}.")
    q, k = neighbours.shape[:2]
    labelled = query_labels is not None and neighbour_labels is not None
    if labelled:
        query_labels = np.asarray(query_labels)
        neighbour_labels = np.asarray(neighbour_labels)
        names = _class_name_list(class_names, int(max(query_labels.max(),
                                                      neighbour_labels.max())) + 1)
    fig, axes = plt.subplots(q, k + 1, figsize=(1.1 * (k + 1) + 0.6, 1.25 * q + 0.6),
                             squeeze=False)
    for i in range(q):
        row = [queries[i]] + list(neighbours[i])
        for j, image in enumerate(row):
            ax = axes[i, j]
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                for spine in ax.spines.values():
                    spine.set_edgecolor("black")
                    spine.set_linewidth(2.5)
                if labelled:
                    hits = int(np.sum(neighbour_labels[i] == query_labels[i]))
                    ax.set_ylabel(f"{names[query_labels[i]]}\n{hits}/{k} same", fontsize=8)
                continue
            if labelled:
                same = neighbour_labels[i, j - 1] == query_labels[i]
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:green" if same else "tab:red")
                    spine.set_linewidth(2.5)
            if similarities is not None:
                ax.set_xlabel(f"{np.asarray(similarities)[i, j - 1]:.3f}", fontsize=7,
                              labelpad=1)
    axes[0, 0].set_title("query", fontsize=9)
    for j in range(1, k + 1):
        axes[0, j].set_title(f"#{j}", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_label_efficiency(curves: dict, chance: float = None,
                          title: str = "Accuracy with fewer labels"):
    """Held-out accuracy against the fraction of training labels, one line per feature set.

    Args:
        curves: ``{name: {fraction: accuracy}}``, fractions in (0, 1], accuracies in [0, 1]
            (e.g. ``{name: {f: r.accuracy for f, r in label_efficiency(...).items()}}``).
        chance: accuracy of guessing, drawn as a dashed line. Defaults to None.
        title: axes title.

    Returns:
        The matplotlib ``Figure`` (logarithmic fraction axis; each curve's values, in
        percent, are listed in the legend).
    """
    if not curves:
        raise ValueError("`curves` is empty; pass {name: {fraction: accuracy}}.")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    all_fractions = sorted({float(f) for curve in curves.values() for f in curve})
    for name, curve in curves.items():
        fractions = sorted(curve)
        accuracy = [100 * curve[f] for f in fractions]
        ax.plot(fractions, accuracy, marker="o",
                label=f"{name}: " + " / ".join(f"{a:.1f}" for a in accuracy))
    if chance is not None:
        ax.axhline(100 * chance, color="0.5", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(all_fractions, [f"{100 * f:g}%" for f in all_fractions])
    ax.minorticks_off()
    ax.set_xlabel("labelled training images used by the linear probe")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_probe_comparison(accuracies: dict, chance: float = None,
                          title: str = "Linear probe accuracy, same probe and split"):
    """Horizontal bars: one accuracy per feature set (or per evaluation).

    Args:
        accuracies: ``{name: accuracy in [0, 1]}``, drawn top to bottom in this order.
        chance: accuracy of guessing, drawn as a dashed line. Defaults to None.
        title: axes title.

    Returns:
        The matplotlib ``Figure``.
    """
    if not accuracies:
        raise ValueError("`accuracies` is empty; pass {name: accuracy}.")
    names = list(accuracies)
    values = np.array([100 * accuracies[n] for n in names], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.3))
    y = np.arange(len(names))
    ax.barh(y, values, color=plt.get_cmap("tab10")(np.arange(len(names)) % 10))
    for yi, v in zip(y, values):
        ax.text(v + 1, yi, f"{v:.1f}%", va="center", fontsize=9)
    if chance is not None:
        ax.axvline(100 * chance, color="0.4", linestyle="--", linewidth=1)
        ax.text(100 * chance, len(names) - 0.45, " chance", fontsize=8, color="0.4")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("held-out accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
