"""ipywidgets explorers built on the pure functions of ``bt_helpers.plots``.

Each function returns a widget (a ``VBox`` of controls and an ``Output``) and never does work at
import time; expensive controls use ``continuous_update=False``. Sections follow the notebooks.
"""

from __future__ import annotations

import ipywidgets as widgets

# --- augmentations (notebook 01) ---------------------------------------------------------------

# --- cross-correlation and loss (notebooks 02, 03) ---------------------------------------------
