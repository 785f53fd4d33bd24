"""settle_heap: loaded state leaves the collector's generations; a later call frees what died.
freeze_heap: the same without the collection (no pause in a process already serving)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from vigil.infra.heap import YOUNG_THRESHOLD, freeze_heap, settle_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture(autouse=True)
def _restore_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.enable()
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _tracked(obj: object) -> bool:
    return any(o is obj for gen in range(3) for o in gc.get_objects(generation=gen))


def test_loaded_objects_are_frozen_out_of_every_generation() -> None:
    loaded = [{"model": i} for i in range(1000)]
    frozen = settle_heap("test")
    assert frozen == gc.get_freeze_count() >= len(loaded)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert not _tracked(loaded)  # a full collection no longer walks it
    fresh: list[int] = []
    assert _tracked(fresh)  # what is allocated later is collected as usual


def test_cyclic_garbage_among_frozen_objects_is_freed_by_the_next_settle() -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    settle_heap("before a reload")
    del a, b  # the reload drops the old model; its cycle was frozen
    gc.collect()
    assert alive() is not None  # frozen: an ordinary collection skips it
    settle_heap("after the reload")  # unfreezes, collects, freezes what is alive now
    assert alive() is None


def test_freeze_heap_freezes_without_a_collection() -> None:
    collections: list[str] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(phase)

    gc.disable()  # no automatic collection may free the cycle first (an explicit one still runs)
    loaded = [{"user": i} for i in range(1000)]
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    garbage = weakref.ref(a)
    del a, b  # cyclic garbage, not collected yet
    gc.callbacks.append(record)
    try:
        frozen = freeze_heap("restarted shard")
    finally:
        gc.callbacks.remove(record)
    assert collections == []  # no pause
    assert frozen == gc.get_freeze_count() >= len(loaded)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert not _tracked(loaded)
    gc.collect()
    assert garbage() is not None  # frozen with the rest until the next settle_heap
    settle_heap("later")
    assert garbage() is None
