"""Python's cyclic garbage collector, paused while the model loads.

Loading creates ~550,000 long-lived objects (torch, transformers and their imports). Each full
collection walks all of them: seven ran during one load here, ~0.75 s of a 4.7 s load, and
found 360 objects to free. Torch-free, so the app can pause it before importing torch.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """No automatic collection inside the block (reference counting still frees what it can).
    ``freeze``: afterwards move every object alive into the permanent generation, so later full
    collections (Python's own, and ``gc.collect``) skip the loaded model's ~550,000 objects."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:  # a nested pause leaves re-enabling to the outermost one
            gc.enable()
