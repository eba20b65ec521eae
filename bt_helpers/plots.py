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

# --- training (notebook 05) --------------------------------------------------------------------

# --- evaluation (notebook 06) ------------------------------------------------------------------
