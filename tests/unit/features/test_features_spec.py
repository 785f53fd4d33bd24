"""The feature registry: names, dtypes, version contract."""

from __future__ import annotations

import re

import pytest

from vigil.features import (
    FEATURE_NAMES,
    FEATURE_SPEC,
    FEATURE_VERSION,
    FeatureVersionMismatch,
    check_feature_version,
)
from vigil.features.spec import _version

NAME = re.compile(r"^[a-z]+(_[a-z0-9]+)*$")


def test_names_are_unique_snake_case_and_keyed() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    for spec in FEATURE_SPEC:
        assert NAME.match(spec.name), spec.name
        assert spec.dtype in {"int64", "float64"}
        assert spec.description.strip()
    keyed = [n for n in FEATURE_NAMES if "_by_" in n]
    assert {n.rsplit("_by_", 1)[1] for n in keyed} == {"user", "device", "ip", "merchant"}


def test_int_features_need_no_optional_input() -> None:
    assert all(not s.requires for s in FEATURE_SPEC if s.dtype == "int64")


def test_version_is_a_stable_hash_of_the_definitions() -> None:
    assert re.fullmatch(r"features-[0-9a-f]{16}", FEATURE_VERSION)
    assert _version(FEATURE_SPEC) == FEATURE_VERSION
    assert _version(FEATURE_SPEC[:-1]) != FEATURE_VERSION
    reworded = tuple(s.__class__(s.name, s.dtype, "other words", s.requires, s.rev) for s in FEATURE_SPEC)
    assert _version(reworded) == FEATURE_VERSION


def test_check_feature_version() -> None:
    check_feature_version(FEATURE_VERSION, list(FEATURE_NAMES))
    with pytest.raises(FeatureVersionMismatch):
        check_feature_version("features-0000000000000000")
    with pytest.raises(FeatureVersionMismatch):
        check_feature_version(FEATURE_VERSION, list(FEATURE_NAMES)[::-1])
