"""Figures for the notebooks: pure functions that return a matplotlib ``Figure``.

Nothing here calls ``plt.show()``; the notebooks display the returned figure, and
``bt_helpers.widgets`` re-draws them when a control moves. Sections follow the notebooks.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

# --- augmentations (notebook 01) ---------------------------------------------------------------

# --- cross-correlation and loss (notebooks 02, 03) ---------------------------------------------

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
        panels.append(("ms_per_batch", "forward ms per batch (this CPU)", 1.0))
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

# --- evaluation (notebook 06) ------------------------------------------------------------------
