"""Matplotlib for files, never a window: every plot in rs_trl goes through `pyplot()`."""

import matplotlib


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (PNG files; works without a display, in CI and on clusters)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
