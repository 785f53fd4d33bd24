from __future__ import annotations

import pytest


def test_the_unit_tier_refuses_to_start_ray() -> None:
    import ray

    with pytest.raises(RuntimeError, match="must not start Ray"):
        ray.init()
    assert not ray.is_initialized()
