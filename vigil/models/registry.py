"""Model registry on MLflow: every training run is logged, versions are registered, and the
``champion`` alias marks what serving loads.

Store: ``sqlite:///var/mlflow.db`` with artifacts under ``var/mlruns`` unless ``MLFLOW_TRACKING_URI``
(or an explicit ``tracking_uri``) points elsewhere — e.g. an MLflow server on a cluster.

Bundle format (one for supervised and anomaly models): an artifact directory ``bundle/`` holding
``model.joblib`` (the fitted :class:`~vigil.models.base.ScoringModel`) and ``manifest.json``
(kind, algorithm, feature list + version, training window, metrics, library versions). The model
is a pickle: load bundles only from a registry you control.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vigil.models.base import FeatureMismatchError, ScoringModel, check_columns

__all__ = [
    "BUNDLE_FORMAT",
    "CHAMPION",
    "FeatureMismatchError",
    "LoadedModel",
    "ModelVersionInfo",
    "RegisteredVersion",
    "TrainingInputs",
    "champion_version",
    "default_tracking_uri",
    "list_models",
    "load_bundle",
    "load_champion",
    "load_version",
    "promote",
    "register",
    "save_bundle",
]

CHAMPION = "champion"
BUNDLE_FORMAT = "vigil-model-bundle/1"
EXPERIMENT = "vigil-fraud"
_BUNDLE_DIR = "bundle"


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite file ``var/mlflow.db`` under the working dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('var/mlflow.db').resolve()}"


def _artifact_root(tracking_uri: str) -> str | None:
    # Next to a SQLite store: var/mlflow.db -> var/mlruns. A server decides its own artifact root.
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "mlruns").resolve().as_uri()
    return None


def _client(tracking_uri: str | None) -> Any:
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


# --------------------------------------------------------------------------------------------------
# What a model was trained from

#: Where the label times that label-based features count came from ("none": no labels at all).
LABEL_SOURCES = ("label_delay", "labeled_at", "none")


@dataclass(frozen=True)
class TrainingInputs:
    """What a model's features were computed from when it was trained; scoring must use the same.

    ``label_delay`` is how late fraud labels became known (also the train/test gap).
    ``label_source`` says how each label's arrival time was set: ``"label_delay"`` (event time +
    ``label_delay``: the table had no arrival column) or ``"labeled_at"`` (the data's own arrival
    times: a ``labeled_at`` column or a generated dataset's ``fraud_labels`` table).
    ``uses_label_features`` is True when some of the model's features count labels known at the
    transaction's time (merchant/device fraud rates): such a model needs the label history to
    score, otherwise those features differ from what it learnt on.
    """

    feature_version: str
    label_delay: timedelta
    label_source: str
    uses_label_features: bool

    def __post_init__(self) -> None:
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {self.label_source!r}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature_version": self.feature_version,
            "label_delay_seconds": self.label_delay.total_seconds(),
            "label_source": self.label_source,
            "uses_label_features": self.uses_label_features,
        }

    def as_tags(self) -> dict[str, str]:
        """MLflow tags (strings), readable without downloading the bundle."""
        return {
            "vigil.label_delay_seconds": f"{self.label_delay.total_seconds():g}",
            "vigil.label_source": self.label_source,
            "vigil.uses_label_features": str(self.uses_label_features).lower(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingInputs:
        return cls(
            feature_version=str(data["feature_version"]),
            label_delay=timedelta(seconds=float(data["label_delay_seconds"])),
            label_source=str(data["label_source"]),
            uses_label_features=bool(data["uses_label_features"]),
        )


# --------------------------------------------------------------------------------------------------
# Bundles


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pandas", "scikit-learn", "xgboost", "lightgbm", "pyod", "torch"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def save_bundle(
    model: ScoringModel,
    directory: str | Path,
    *,
    feature_version: str,
    training_window: tuple[Any, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model.joblib`` + ``manifest.json`` into ``directory``; return the directory."""
    import joblib

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "model.joblib", compress=3)
    manifest = {
        "format": BUNDLE_FORMAT,
        "kind": model.kind,
        "algorithm": model.algorithm,
        "feature_names": list(model.feature_names),
        "feature_version": feature_version,
        "training_window": [str(t) for t in training_window] if training_window else None,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": _versions(),
        **dict(extra or {}),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return out


@dataclass
class LoadedModel:
    """A registry model ready to score: refuses DataFrames whose columns differ from its features.

    ``predict_proba(X)`` -> shape (n,) in [0, 1], higher = riskier (calibrated p(fraud) for
    supervised, anomaly CDF for detectors). ``explain(X, k)`` -> top-k (feature, contribution) per
    row, or None when the model has no contributions.
    """

    model: ScoringModel
    manifest: dict[str, Any]
    name: str | None = None
    version: str | None = None
    aliases: list[str] = field(default_factory=list)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["feature_names"])

    @property
    def feature_version(self) -> str:
        return str(self.manifest["feature_version"])

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def operating_thresholds(self) -> tuple[float, float] | None:
        """The (review, block) score cut-offs chosen by cost when this version was trained
        (``threshold_review`` / ``threshold_block`` in its metrics), or None if it has none."""
        metrics = self.manifest.get("metrics") or {}
        try:
            review, block = float(metrics["threshold_review"]), float(metrics["threshold_block"])
        except (KeyError, TypeError, ValueError):
            return None
        if not (0.0 <= review <= block <= 1.0):
            return None
        return review, block

    @property
    def algorithm(self) -> str:
        return str(self.manifest["algorithm"])

    @property
    def training_inputs(self) -> TrainingInputs | None:
        """What the features were computed from at training time (label delay, label source,
        whether label-based features are used); None for versions registered before it was
        recorded."""
        recorded = self.manifest.get("training_inputs")
        if not recorded:
            return None
        try:
            return TrainingInputs.from_dict(recorded)
        except (KeyError, TypeError, ValueError):
            return None

    def check(self, X: pd.DataFrame, feature_version: str | None = None) -> None:
        """Raise :class:`FeatureMismatchError` on other columns or another feature version."""
        check_columns(X, self.feature_names)
        if feature_version is not None and feature_version != self.feature_version:
            raise FeatureMismatchError(
                f"model expects feature version {self.feature_version!r}, got {feature_version!r}"
            )

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self.check(X)
        return np.asarray(self.model.predict_proba(X), dtype=np.float64)

    def explain_where(
        self, X: pd.DataFrame, scores: np.ndarray, *, above: float, k: int = 3
    ) -> list[list[tuple[str, float]] | None] | None:
        """Top-k contributions only for rows scoring at least ``above`` (None for the others).

        TreeSHAP is the largest cost of a scoring batch (even from :mod:`vigil.models.treeshap`'s
        lookup tables; ``make bench-explain`` compares them with XGBoost's own), and the decision
        policy reads contributions only for scores at its review threshold or above.
        Returns None when the model has no contributions at all.
        """
        if getattr(self.model, "explain", None) is None:
            return None
        rows = np.flatnonzero(np.asarray(scores) >= above)
        out: list[list[tuple[str, float]] | None] = [None] * len(X)
        if len(rows):
            explained = self.explain(X.iloc[rows], k) or []
            for row, contributions in zip(rows, explained, strict=True):
                out[int(row)] = contributions
        return out

    def for_serving(self) -> LoadedModel:
        """Ready to serve: predict on one thread (a serving process scores small batches, and
        XGBoost's default thread pool spends far more CPU per call than it saves when the cores
        are busy with other processes), with the TreeSHAP explainer built now rather than at the
        first flagged row."""
        estimator = getattr(self.model, "estimator", None)
        if estimator is not None and hasattr(estimator, "set_param"):  # xgboost.Booster
            estimator.set_param({"nthread": 1})
        prepare = getattr(self.model, "prepare_explainer", None)
        if prepare is not None:
            prepare()
        return self

    def explain(self, X: pd.DataFrame, k: int = 3) -> list[list[tuple[str, float]]] | None:
        self.check(X)
        explain = getattr(self.model, "explain", None)
        return explain(X, k) if explain is not None else None


def load_bundle(directory: str | Path) -> LoadedModel:
    """Read a bundle directory written by :func:`save_bundle`."""
    import joblib

    path = Path(directory)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"unknown bundle format {manifest.get('format')!r} in {path}")
    model = joblib.load(path / "model.joblib")
    if tuple(model.feature_names) != tuple(manifest["feature_names"]):
        raise FeatureMismatchError("bundle manifest and model disagree on the feature list")
    return LoadedModel(model=model, manifest=manifest)


# --------------------------------------------------------------------------------------------------
# Registry operations


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    aliases: tuple[str, ...]
    kind: str
    algorithm: str
    feature_version: str
    run_id: str
    created_at_ms: int


def _experiment_id(client: Any, uri: str, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(experiment, artifact_location=_artifact_root(uri)))


def register(
    model: ScoringModel,
    *,
    name: str,
    feature_version: str,
    training_window: tuple[Any, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    report_dir: str | Path | None = None,
    tags: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
    run_name: str | None = None,
    training_inputs: TrainingInputs | None = None,
) -> RegisteredVersion:
    """Log one training run (params, metrics, report, bundle) and register it as a new version.

    ``training_inputs`` goes into the bundle manifest (:attr:`LoadedModel.training_inputs`) and
    the run and version tags, so that scoring can compute the features the way training did.
    The new version is not promoted: call :func:`promote` once it has been reviewed.
    """
    from mlflow.entities import Metric, Param

    client, uri = _client(tracking_uri)
    exp_id = _experiment_id(client, uri, experiment)
    run_tags = {
        "vigil.kind": model.kind,
        "vigil.algorithm": model.algorithm,
        "vigil.feature_version": feature_version,
        **(training_inputs.as_tags() if training_inputs is not None else {}),
        **dict(tags or {}),
    }
    if training_window:
        run_tags["vigil.training_window"] = f"{training_window[0]}/{training_window[1]}"
    run = client.create_run(exp_id, run_name=run_name or f"{name}-{model.algorithm}", tags=run_tags)
    run_id = run.info.run_id
    status = "FAILED"
    try:
        now = int(time.time() * 1000)
        flat_params = {
            k: json.dumps(v, default=str) if not isinstance(v, str) else v for k, v in (params or {}).items()
        }
        flat_params.update({"feature_version": feature_version, "n_features": str(len(model.feature_names))})
        finite = {k: float(v) for k, v in (metrics or {}).items() if v is not None and np.isfinite(v)}
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in finite.items()],
            params=[Param(k, v[:6000]) for k, v in flat_params.items()],
        )
        with tempfile.TemporaryDirectory() as tmp:
            bundle = save_bundle(
                model,
                Path(tmp) / _BUNDLE_DIR,
                feature_version=feature_version,
                training_window=training_window,
                metrics=finite,
                extra={
                    "mlflow_run_id": run_id,
                    "registered_model_name": name,
                    **({"training_inputs": training_inputs.as_dict()} if training_inputs is not None else {}),
                },
            )
            client.log_artifacts(run_id, str(bundle), _BUNDLE_DIR)
            (Path(tmp) / "features.json").write_text(
                json.dumps({"feature_version": feature_version, "feature_names": list(model.feature_names)}),
                encoding="utf-8",
            )
            client.log_artifact(run_id, str(Path(tmp) / "features.json"))
        if report_dir is not None:
            client.log_artifacts(run_id, str(report_dir), "report")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)

    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, tags={"vigil.kind": model.kind})
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{_BUNDLE_DIR}"
    mv = client.create_model_version(name, source=source, run_id=run_id, tags=run_tags)
    return RegisteredVersion(name=name, version=str(mv.version), run_id=run_id)


def list_models(name: str | None = None, *, tracking_uri: str | None = None) -> list[ModelVersionInfo]:
    """Every registered version (of ``name``, or of all models), newest first per model."""
    client, _ = _client(tracking_uri)
    names = [name] if name else [rm.name for rm in client.search_registered_models()]
    out: list[ModelVersionInfo] = []
    for model_name in names:
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in (client.get_registered_model(model_name).aliases or {}).items():
            aliases_by_version.setdefault(str(version), []).append(alias)
        versions = client.search_model_versions(f"name = '{model_name}'")
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            tags = mv.tags or {}
            out.append(
                ModelVersionInfo(
                    name=model_name,
                    version=str(mv.version),
                    aliases=tuple(sorted(aliases_by_version.get(str(mv.version), []))),
                    kind=tags.get("vigil.kind", ""),
                    algorithm=tags.get("vigil.algorithm", ""),
                    feature_version=tags.get("vigil.feature_version", ""),
                    run_id=str(mv.run_id),
                    created_at_ms=int(mv.creation_timestamp or 0),
                )
            )
    return out


def promote(name: str, version: str | int, *, alias: str = CHAMPION, tracking_uri: str | None = None) -> None:
    """Point ``alias`` (default ``champion``) at ``version``; serving picks it up on reload."""
    client, _ = _client(tracking_uri)
    client.get_model_version(name, str(version))  # fail loudly on an unknown version
    client.set_registered_model_alias(name, alias, str(version))


def _load(client: Any, uri: str, mv: Any) -> LoadedModel:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=tmp, tracking_uri=uri)
        loaded = load_bundle(local)
    loaded.name = mv.name
    loaded.version = str(mv.version)
    loaded.aliases = list(getattr(mv, "aliases", []) or [])
    return loaded


def load_version(name: str, version: str | int, *, tracking_uri: str | None = None) -> LoadedModel:
    """Load one registered version."""
    client, uri = _client(tracking_uri)
    return _load(client, uri, client.get_model_version(name, str(version)))


def champion_version(name: str, *, alias: str = CHAMPION, tracking_uri: str | None = None) -> str:
    """The version ``alias`` points at, without loading it (one registry query)."""
    client, _ = _client(tracking_uri)
    return str(client.get_model_version_by_alias(name, alias).version)


def load_champion(name: str, *, alias: str = CHAMPION, tracking_uri: str | None = None) -> LoadedModel:
    """Load the version the ``champion`` alias points at (what serving scores with)."""
    client, uri = _client(tracking_uri)
    return _load(client, uri, client.get_model_version_by_alias(name, alias))
