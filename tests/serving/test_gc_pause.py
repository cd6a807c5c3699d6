"""core.serving.gc_pause: the cyclic collector is off inside the block, back on after (only the outermost
block turns it back on), and ``freeze`` moves what is alive out of later full collections."""
from __future__ import annotations

import gc

import pytest

from core.serving.gc_pause import collector_paused


@pytest.fixture(autouse=True)
def collector_restored():
    was = gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable() if was else gc.disable()


def test_paused_inside_and_enabled_after_even_on_an_error():
    gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a failed load")
    assert gc.isenabled()


def test_a_nested_pause_leaves_the_collector_off_until_the_outer_block_ends():
    gc.enable()
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_freeze_moves_the_live_objects_out_of_later_collections():
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with collector_paused(freeze=True):
        loaded = [{"tensor": i} for i in range(1000)]  # noqa: F841 — alive at the freeze
    assert gc.get_freeze_count() >= 1000
