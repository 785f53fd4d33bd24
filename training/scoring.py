"""Batch scoring of a table with a registered model, on the features the model was trained on.

What ``vigil score`` runs. The table goes through the same path as in training
(:func:`training.dataset.load_table` or :func:`training.dataset.dataset_table`), with the label
history arriving the way the model's :class:`~vigil.models.registry.TrainingInputs` records:
label-based features (merchant/device fraud rates) count only the labels known at each
transaction's time, exactly as they did when the model learnt them. A request that would compute
other features is refused (:class:`ScoringRefused`) with the reason and what to pass instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from training.dataset import (
    LabelledTable,
    MissingLabelTimes,
    dataset_table,
    label_based_features,
    load_table,
)
from vigil.models.registry import LoadedModel, TrainingInputs

__all__ = ["LabelPlan", "ScoringRefused", "format_duration", "plan_labels", "score_table"]


class ScoringRefused(ValueError):
    """Scoring would compute features other than the model's; the message says why and what to do."""


def format_duration(delay: timedelta) -> str:
    """``7d``, ``12h``, ``30m`` or seconds: how ``--label-delay`` spells it."""
    seconds = int(delay.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{delay.total_seconds():g}s"


@dataclass(frozen=True)
class LabelPlan:
    """How to set label arrival times when scoring: ``label_delay`` (event time + delay) and
    ``labeled_at`` (True: the data's own arrival times, required; False: ignore them and use the
    delay; None: the data's when present, else the delay), plus warnings to show the user."""

    label_delay: timedelta | None
    labeled_at: bool | None
    warnings: tuple[str, ...] = ()


def plan_labels(
    recorded: TrainingInputs | None, *, requested: timedelta | None, override: bool = False
) -> LabelPlan:
    """Decide the label timing for scoring from what the model recorded and what was asked.

    The model's recorded timing is the default. Another ``requested`` delay is refused unless
    ``override``: label-based features would then count labels earlier (shorter delay) or later
    (longer) than the model ever saw them. A model without a record scores with ``requested``
    (or the data's own arrival times) and a warning.
    """
    if recorded is None or recorded.label_source == "none":
        note = (
            "this model version was registered without a record of the label delay it was trained "
            "with: "
            + (
                f"computing its label-based features with --label-delay {format_duration(requested)}; "
                "if training used another delay, the scores are skewed"
                if requested is not None
                else "using the table's own label arrival times (pass the --label-delay given to vigil train "
                "if it had none)"
            )
        )
        return LabelPlan(label_delay=requested, labeled_at=None, warnings=(note,))
    trained = recorded.label_delay
    if recorded.label_source == "label_delay":
        if requested is None or requested == trained:
            return LabelPlan(label_delay=trained, labeled_at=False)
        if not override:
            raise ScoringRefused(_skew_message(trained, requested))
        return LabelPlan(
            label_delay=requested,
            labeled_at=False,
            warnings=(_skew_message(trained, requested, forced=True),),
        )
    # Trained on the data's own label arrival times.
    if requested is None:
        return LabelPlan(label_delay=None, labeled_at=True)
    if not override:
        raise ScoringRefused(
            "the model was trained with each label's own arrival time (labeled_at), not a fixed delay: "
            f"--label-delay {format_duration(requested)} would compute its label-based features from "
            "other label times than it learnt on (a train/score skew). Map the table's labeled_at column, "
            "or pass --label-delay-override to use the delay anyway."
        )
    return LabelPlan(
        label_delay=requested,
        labeled_at=False,
        warnings=(
            f"--label-delay-override: label times are event time + {format_duration(requested)} instead of "
            "the labeled_at arrival times the model was trained with; its label-based features are skewed",
        ),
    )


def _skew_message(trained: timedelta, requested: timedelta, *, forced: bool = False) -> str:
    direction = (
        "earlier than the model ever saw them, so they look more informative than in training (optimistic "
        "scores)"
        if requested < trained
        else "later than in training, so they miss frauds the model expects to see counted"
    )
    head = (
        f"--label-delay-override: using {format_duration(requested)}"
        if forced
        else f"--label-delay {format_duration(requested)} differs from the model's"
    )
    tail = "" if forced else " Drop --label-delay, or pass --label-delay-override to score anyway."
    return (
        f"{head}; the model was trained with labels known {format_duration(trained)} after each transaction. "
        f"Its label-based features (merchant/device fraud rates) would count labels {direction}: "
        f"a train/score skew.{tail}"
    )


def _needs_labels(model: LoadedModel) -> bool:
    recorded = model.training_inputs
    if recorded is not None:
        return recorded.uses_label_features
    return bool(label_based_features(model.feature_names))


def _model_name(model: LoadedModel) -> str:
    return f"{model.name or 'the model'} v{model.version}" if model.version else (model.name or "the model")


def load_for_scoring(
    model: LoadedModel,
    *,
    transactions: Path | None = None,
    data: Path | None = None,
    mapping: Mapping[str, str] | None = None,
    label_delay: timedelta | None = None,
    override: bool = False,
) -> tuple[LabelledTable, tuple[str, ...]]:
    """Read ``transactions`` (a user's table) or ``data`` (a ``vigil generate`` directory) through
    the training path, with the label timing of :func:`plan_labels`; return it and the warnings.

    Raises :class:`ScoringRefused` when the model needs label history the input lacks.
    """
    if (transactions is None) == (data is None):
        raise ValueError("pass exactly one of --transactions and --data")
    plan = plan_labels(model.training_inputs, requested=label_delay, override=override)
    needs_labels = _needs_labels(model)
    name = _model_name(model)
    try:
        if transactions is not None:
            table = load_table(
                transactions,
                mapping=mapping,
                label_delay=plan.label_delay,
                labeled_at=plan.labeled_at,
                require_label=False,
            )
        else:
            assert data is not None
            table = dataset_table(data, label_delay=plan.label_delay if plan.labeled_at is False else None)
    except MissingLabelTimes as exc:
        raise ScoringRefused(
            f"{name} uses label-based features, computed from the labels known at each transaction's "
            f"time: {exc}"
        ) from None
    if needs_labels and not table.has_labels:
        where = (
            "the table has no is_fraud column (map yours with --map is_fraud=COL)"
            if transactions is not None
            else f"{data} has no fraud_labels.parquet"
        )
        raise ScoringRefused(
            f"{name} uses label-based features (merchant/device fraud rates over the labels known at each "
            f"transaction's time) and {where}: without the label history those features differ from "
            "training and the scores are meaningless."
        )
    return table, plan.warnings


def score_table(model: LoadedModel, table: LabelledTable) -> pd.DataFrame:
    """``transaction_id`` (the table's own ids) and ``score`` (higher = riskier) for every row.

    Raises :class:`~vigil.models.base.FeatureMismatchError` when the table's feature version or
    columns are not the model's.
    """
    X = table.matrix.X
    model.check(X, table.matrix.feature_version)
    scores = model.predict_proba(X)
    return pd.DataFrame(
        {"transaction_id": table.transaction_ids, "score": np.asarray(scores, dtype=np.float64)}
    )
