"""Loading a weights folder for serving: the model, its tokenizer, its metadata and the
out-of-distribution guard, and handing the loader's freed memory back to the OS."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.model.checkpoint import load_weights
from core.serving.gc_pause import collector_paused


def load_served(weights_dir: Path, make: Callable, *, release_memory: bool = True):
    """``make(model, tokenizer, metadata, guard tensors or None)`` on a weights folder's parts
    (core.model.checkpoint.load_weights), the collector paused across both: ~0.75 s less of a cold
    load (core.serving.gc_pause). ``release_memory=False`` leaves ``release_freed_memory()``
    (~0.2 s) to the caller."""
    with collector_paused():
        served = make(*load_weights(Path(weights_dir)))
    if release_memory:
        release_freed_memory()  # loading leaves a few hundred MB of freed fp16/fp32 copies
    return served


def ood_detector(ood_tensors: dict | None):
    """The weights' out-of-distribution guard (core.model.guard), or None when they ship none."""
    if not ood_tensors:
        return None
    from core.model.guard import OODDetector
    return OODDetector.from_tensors(ood_tensors)


def release_freed_memory() -> None:
    """Hand memory freed by the loader back to the OS (glibc keeps it otherwise)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
