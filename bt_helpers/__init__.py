"""bt_helpers: the tested library behind the Barlow Twins course notebooks.

One concept per module, each taught by a notebook:

* ``config``   -- presets (``ci``, ``teaching``, ``full``): every size in one place;
* ``data``     -- CIFAR-10 (Keras cache, image folder or tarball) and a synthetic dataset;
* ``augment``  -- per-image augmentation layers and the two-view recipes (notebook 01);
* ``loss``     -- cross-correlation matrix and the Barlow Twins loss (notebooks 02, 03);
* ``models``   -- ResNet-10/18/34 encoders and the projector (notebook 04);
* ``optim``    -- LARS and the warm-up + cosine schedule (notebook 05);
* ``train``    -- the Barlow Twins model, callbacks and resumable training (notebook 05);
* ``evaluate`` -- feature extraction, linear probe and kNN (notebook 06);
* ``plots`` / ``widgets`` -- figures and ipywidgets explorers built on them;
* ``cli``      -- ``python -m bt_helpers train|eval|data``.

Modules are imported on demand (``from bt_helpers import loss``), so that importing the
package itself stays cheap.
"""

__version__ = "0.1.0"

#: Where Colab's first cell installs the package from (the one place that names it).
REPO_URL = "https://github.com/barlow-twins-course/barlow-twins-course"


def __getattr__(name):
    # `bt_helpers.start()` opens every notebook; importing it lazily keeps `import bt_helpers`
    # free of TensorFlow until it is needed.
    if name == "start":
        from .data import start

        return start
    raise AttributeError(f"module 'bt_helpers' has no attribute {name!r}")
