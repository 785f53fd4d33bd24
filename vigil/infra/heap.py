"""The garbage collector in a long-running serving process.

A scoring process holds a large, long-lived heap (models, Ray's and Serve's own objects, the
velocity shards' user state) and allocates many short-lived objects per request. CPython's
collector runs a young collection every 700 net container allocations, an older one every 10 of
those, a full one every 10 of those; a full collection walks every tracked object, so the
long-lived heap turns it into a pause of the whole process.

:func:`settle_heap` is called once a process has loaded what it keeps (and again after a model
reload): it collects once, then moves every object alive at that point into the permanent
generation (:func:`gc.freeze`), which later collections skip, and raises the young threshold to
:data:`YOUNG_THRESHOLD`, so the young generation is collected a few times a second instead of
dozens. Serve already freezes a replica's heap once after its start; what this adds there is the
threshold and a fresh freeze after a model reload; the velocity shard actors and the one-process
baseline (which holds the shards' state itself) get the freeze too. Frozen objects are still
freed by reference counting when dropped; only cyclic garbage among them waits for the next
call, which unfreezes first.

``vigil_gc_pause_seconds`` shows the effect: far fewer young collections and no older ones
under load (docs/serving.md).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("vigil.infra.heap")

#: Container allocations (net of deallocations) between young collections; CPython's default is 700.
YOUNG_THRESHOLD = 10_000


def raise_young_threshold() -> None:
    """Collect the young generation every :data:`YOUNG_THRESHOLD` allocations. All a Serve
    replica needs at start: Serve collects and freezes its heap itself right after."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


def settle_heap(what: str) -> int:
    """Collect once, then freeze every object alive now out of later collections (see the
    module docstring). Returns how many objects are frozen. Costs one full collection."""
    started = time.perf_counter()
    raise_young_threshold()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "%s: %d long-lived objects frozen out of the collector's way (%.0f ms)",
        what,
        frozen,
        (time.perf_counter() - started) * 1000,
    )
    return frozen


def freeze_heap(what: str) -> int:
    """Freeze every object alive now out of later collections *without* collecting first: for a
    process already serving, where :func:`settle_heap`'s full collection is a pause of the whole
    process that the requests in flight wait out (a restarted velocity shard's tail latency showed
    it; docs/serving.md). Cyclic garbage alive at this moment stays until
    the next :func:`settle_heap`, which unfreezes first. Costs no collection."""
    raise_young_threshold()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%s: %d objects frozen out of the collector's way, without a collection", what, frozen)
    return frozen
