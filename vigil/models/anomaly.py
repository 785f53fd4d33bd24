"""Unsupervised anomaly detectors behind one PyOD-style contract.

Contract (checked by ``tests/unit/training/test_models_anomaly.py`` over every detector):

* ``fit(X)`` learns from a feature DataFrame (NaN allowed; labels are not used) and returns self;
  fitted attributes end in ``_`` (``feature_names_``, ``center_``, ``scale_``, ``train_quantiles_``).
* ``decision_function(X)`` is the raw anomaly score per row: **higher = more anomalous**.
* ``predict_proba(X)`` maps that score to [0, 1] by the empirical CDF of the training scores:
  0.99 means "more anomalous than 99 % of what the detector was fitted on". Shape (n,).
* Inference is vectorised over the rows given, so serving can call it on micro-batches.

Inputs are median-imputed and robust-scaled (median / IQR) inside the detector, so the registry
bundle carries everything inference needs.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from vigil.models.base import check_columns

__all__ = [
    "DETECTORS",
    "AutoencoderDetector",
    "Detector",
    "IsolationForestDetector",
    "OneClassSVMDetector",
    "PackedIsolationForest",
    "make_detector",
]

# Quantiles of the training scores kept for the 0-1 mapping: small to store, fine enough to rank.
_N_QUANTILES = 2001


class Detector(ABC):
    """Base class: preprocessing, the 0-1 mapping and the feature check; subclasses fit the model."""

    kind: ClassVar[str] = "anomaly"
    algorithm: ClassVar[str] = "detector"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    # -- subclass hooks --------------------------------------------------------------------------
    @abstractmethod
    def _fit_scaled(self, Z: np.ndarray) -> None:
        """Fit on preprocessed float32 rows."""

    @abstractmethod
    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        """Raw anomaly scores (higher = more anomalous) for preprocessed rows."""

    # -- contract --------------------------------------------------------------------------------
    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.feature_names_

    def fit(self, X: pd.DataFrame | np.ndarray, y: object = None) -> Detector:
        """Fit on ``X`` (``y`` is ignored: these detectors never see labels)."""
        frame = _as_frame(X)
        self.feature_names_: tuple[str, ...] = tuple(str(c) for c in frame.columns)
        values = frame.to_numpy(dtype=np.float64, copy=True)
        center = np.nanmedian(values, axis=0)
        q75, q25 = np.nanpercentile(values, [75, 25], axis=0)
        scale = q75 - q25
        self.center_ = np.where(np.isfinite(center), center, 0.0).astype(np.float32)
        self.scale_ = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0).astype(np.float32)
        Z = self._transform(frame)
        self._fit_scaled(Z)
        train_scores = self._score_scaled(Z)
        self.train_quantiles_ = np.quantile(train_scores, np.linspace(0.0, 1.0, _N_QUANTILES))
        self.threshold_ = float(np.quantile(train_scores, 0.99))
        return self

    def decision_function(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Raw anomaly score per row, higher = more anomalous (scale depends on the detector)."""
        return np.asarray(self._score_scaled(self._transform(self._checked(X))), dtype=np.float64)

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Anomaly score mapped to [0, 1]: the share of training scores below it."""
        return self.to_unit(self.decision_function(X))

    def to_unit(self, raw: np.ndarray) -> np.ndarray:
        """Map raw scores to [0, 1] with the empirical CDF of the training scores."""
        q = self.train_quantiles_
        levels = np.linspace(0.0, 1.0, q.size)
        # np.interp needs increasing x; duplicate quantiles (ties) are fine for interp.
        return np.clip(np.interp(raw, q, levels, left=0.0, right=1.0), 0.0, 1.0)

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """1 where the raw score exceeds ``threshold_`` (the training 99th percentile), else 0."""
        return (self.decision_function(X) > self.threshold_).astype(np.int8)

    # -- helpers ---------------------------------------------------------------------------------
    def _checked(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        if not hasattr(self, "train_quantiles_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        if isinstance(X, pd.DataFrame):
            check_columns(X, self.feature_names_)
            return X
        return _as_frame(X, self.feature_names_)

    def _transform(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame.to_numpy(dtype=np.float32, copy=True)
        nan = np.isnan(values)
        if nan.any():
            values[nan] = np.take(self.center_, np.nonzero(nan)[1])
        values -= self.center_
        values /= self.scale_
        # Clip far tails so one absurd value cannot dominate a distance-based detector.
        np.clip(values, -50.0, 50.0, out=values)
        return values


def _as_frame(X: pd.DataFrame | np.ndarray, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError("X must be 2-D")
    cols = list(names) if names is not None else [f"x{i}" for i in range(arr.shape[1])]
    if len(cols) != arr.shape[1]:
        raise ValueError(f"expected {len(cols)} columns, got {arr.shape[1]}")
    return pd.DataFrame(arr, columns=cols)


class IsolationForestDetector(Detector):
    """PyOD ``IForest`` (isolation depth; cheap, the default anomaly scorer)."""

    algorithm: ClassVar[str] = "isolation_forest"

    def __init__(self, *, n_estimators: int = 100, max_samples: int = 256, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.n_estimators = n_estimators
        self.max_samples = max_samples

    def _fit_scaled(self, Z: np.ndarray) -> None:
        from pyod.models.iforest import IForest

        self.model_ = IForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(Z)),
            random_state=self.seed,
            n_jobs=1,
        ).fit(Z)

    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        if not np.isfinite(Z).all():  # never after _transform; PyOD refuses it with a clear error
            return np.asarray(self.model_.decision_function(Z))
        packed = self.__dict__.get("_packed")
        if packed is None:
            packed = self.__dict__["_packed"] = PackedIsolationForest(self.model_.detector_)
        return packed.decision_function(Z)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_packed", None)  # derived from model_; rebuilt on first use
        return state


class PackedIsolationForest:
    """A fitted scikit-learn ``IsolationForest`` as flat arrays, walked for all trees at once.

    scikit-learn scores tree by tree (``tree.apply`` per estimator, through joblib): a fixed cost
    per call whatever the number of rows, the largest cost of a serving micro-batch. Here every
    tree's nodes are one array and a batch descends all trees together, one numpy step per level
    (isolation trees are at most ``ceil(log2(max_samples))`` deep). Returns PyOD's ``IForest.decision_function`` (higher = more anomalous); equal to it
    up to float summation order (``tests/unit/training/test_models_anomaly.py``).
    """

    def __init__(self, forest: Any) -> None:
        from sklearn.ensemble._iforest import _average_path_length

        trees = [estimator.tree_ for estimator in forest.estimators_]
        sizes = np.array([tree.node_count for tree in trees])
        self.roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        subsample = forest._max_features != forest.n_features_in_
        left, right, feature, threshold, value = [], [], [], [], []
        for t, (tree, root) in enumerate(zip(trees, self.roots, strict=True)):
            own = np.arange(tree.node_count) + root
            leaf = tree.children_left < 0
            # A leaf points at itself, so the walk can run a fixed number of levels.
            left.append(np.where(leaf, own, tree.children_left + root))
            right.append(np.where(leaf, own, tree.children_right + root))
            used = np.where(leaf, 0, tree.feature)
            feature.append(np.asarray(forest.estimators_features_[t])[used] if subsample else used)
            threshold.append(np.where(leaf, np.inf, tree.threshold))
            # what scikit-learn adds per tree for a sample ending in this node
            value.append(forest._decision_path_lengths[t] + forest._average_path_length_per_tree[t] - 1.0)
        self.left = np.concatenate(left).astype(np.intp)
        self.right = np.concatenate(right).astype(np.intp)
        self.feature = np.concatenate(feature).astype(np.intp)
        self.threshold = np.concatenate(threshold)
        self.value = np.concatenate(value)
        self.levels = max(tree.max_depth for tree in trees)
        self.denominator = len(trees) * float(_average_path_length([forest._max_samples])[0])
        self.offset = float(forest.offset_)

    def decision_function(self, Z: np.ndarray) -> np.ndarray:
        Z = np.asarray(Z, dtype=np.float32)  # scikit-learn compares float32 features
        rows = np.arange(len(Z))[:, None]
        nodes = np.broadcast_to(self.roots, (len(Z), len(self.roots)))
        for _ in range(self.levels):
            go_left = Z[rows, self.feature[nodes]] <= self.threshold[nodes]
            nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        depths = self.value[nodes].sum(axis=1)
        if self.denominator == 0:  # fitted on one sample: scikit-learn divides into ones, 2 ** -1
            return np.full(len(Z), 0.5 + self.offset)
        # scikit-learn: decision = -2 ** (-depth / denominator) - offset_; PyOD negates it
        return np.asarray(2.0 ** (-depths / self.denominator) + self.offset, dtype=np.float64)


class OneClassSVMDetector(Detector):
    """PyOD ``OCSVM`` (RBF). Fit is O(n^2): it trains on at most ``max_fit_rows`` random rows."""

    algorithm: ClassVar[str] = "one_class_svm"

    def __init__(
        self, *, nu: float = 0.05, gamma: str | float = "scale", max_fit_rows: int = 3000, seed: int = 0
    ):
        super().__init__(seed=seed)
        self.nu = nu
        self.gamma = gamma
        self.max_fit_rows = max_fit_rows

    def _fit_scaled(self, Z: np.ndarray) -> None:
        from pyod.models.ocsvm import OCSVM

        rng = np.random.default_rng(self.seed)
        rows = rng.choice(len(Z), size=min(self.max_fit_rows, len(Z)), replace=False)
        self.n_fit_rows_ = int(rows.size)
        self.model_ = OCSVM(kernel="rbf", nu=self.nu, gamma=self.gamma).fit(Z[rows])

    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.decision_function(Z))


class AutoencoderDetector(Detector):
    """A small MLP autoencoder (PyTorch Lightning, CPU); the score is the reconstruction MSE.

    Deterministic for a given ``seed``; trains on at most ``max_fit_rows`` rows for ``epochs``.
    """

    algorithm: ClassVar[str] = "autoencoder"

    def __init__(
        self,
        *,
        hidden: int = 32,
        bottleneck: int = 8,
        epochs: int = 6,
        batch_size: int = 1024,
        learning_rate: float = 1e-3,
        max_fit_rows: int = 200_000,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.hidden = hidden
        self.bottleneck = bottleneck
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_fit_rows = max_fit_rows

    def _fit_scaled(self, Z: np.ndarray) -> None:
        import lightning as L
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        rng = np.random.default_rng(self.seed)
        if len(Z) > self.max_fit_rows:
            Z = Z[rng.choice(len(Z), size=self.max_fit_rows, replace=False)]
        torch.manual_seed(self.seed)
        net = _make_autoencoder(Z.shape[1], self.hidden, self.bottleneck)
        module = _AutoencoderModule(net, self.learning_rate)
        generator = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(
            TensorDataset(torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))),
            batch_size=self.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=0,
        )
        with warnings.catch_warnings(), _quiet_lightning():
            # Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates: not ours to fix.
            warnings.filterwarnings(
                "ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning
            )
            # In-process batches are intended (num_workers=0): the data is already in memory.
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            # Tiny fits in tests have fewer batches than the logging interval.
            warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
            trainer = L.Trainer(
                max_epochs=self.epochs,
                accelerator="cpu",
                devices=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                deterministic=True,
            )
            trainer.fit(module, loader)
        self.net_ = net.eval()

    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))
            recon = self.net_(x)
            return ((recon - x) ** 2).mean(dim=1).numpy().astype(np.float64)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info chatter (GPU/TPU banners, tips) for the duration of a fit."""
    loggers = [
        logging.getLogger(name)
        for name in ("lightning.pytorch", "lightning.fabric", "lightning", "lightning_utilities")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _make_autoencoder(n_in: int, hidden: int, bottleneck: int) -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, bottleneck),
        nn.ReLU(),
        nn.Linear(bottleneck, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_in),
    )


def _autoencoder_module_class() -> type:
    import lightning as L
    import torch

    class AutoencoderModule(L.LightningModule):
        def __init__(self, net: torch.nn.Module, learning_rate: float) -> None:
            super().__init__()
            self.net = net
            self.learning_rate = learning_rate

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            (x,) = batch
            loss = torch.nn.functional.mse_loss(self.net(x), x)
            self.log("train_mse", loss, prog_bar=False, on_epoch=True, on_step=False)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=self.learning_rate)

    return AutoencoderModule


def _AutoencoderModule(net: Any, learning_rate: float) -> Any:
    # Built lazily so importing this module does not import torch/lightning (serving imports it).
    return _autoencoder_module_class()(net, learning_rate)


DETECTORS: dict[str, type[Detector]] = {
    IsolationForestDetector.algorithm: IsolationForestDetector,
    OneClassSVMDetector.algorithm: OneClassSVMDetector,
    AutoencoderDetector.algorithm: AutoencoderDetector,
}


def make_detector(algorithm: str, **params: Any) -> Detector:
    """A fresh, unfitted detector by name (``isolation_forest``, ``one_class_svm``, ``autoencoder``)."""
    try:
        cls = DETECTORS[algorithm]
    except KeyError:
        raise ValueError(f"unknown detector {algorithm!r}; choose from {sorted(DETECTORS)}") from None
    return cls(**params)
