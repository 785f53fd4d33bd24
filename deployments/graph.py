"""The scoring graph on Ray: velocity shard actors, then rules ∥ supervised ∥ anomaly.

The ingress micro-batches requests (:class:`vigil.infra.batching.MicroBatcher`) and makes one call per
batch, to :meth:`RuleScreen.screen_batch`; that replica calls the velocity shards, then both
scorers, once per batch each. Every call costs its caller CPU whatever it carries, so the calls
are made where CPU is free: the Ingress's event loop also parses
every HTTP request and writes every batch. Feature rows travel to the scorers as one float64
matrix per batch (cheap to serialise), columns in :data:`vigil.features.spec.FEATURE_NAMES` order;
events, observations and results cross as tuples of plain values (``wire()``), which Ray's
cloudpickle serialises without calling back into Python per object.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from ray import serve

from actors.velocity import get_or_create_shards
from vigil import metrics
from vigil.db.engine import create_engine, session_factory
from vigil.decision.circuit import ScorerCircuit
from vigil.decision.policy import explain_cutoff
from vigil.decision.rules import RuleHit, RuleSet
from vigil.decision.screening import Scored, ScoredWire, acted_on
from vigil.features.events import EventWire, TransactionEvent, from_ns
from vigil.features.spec import FEATURE_NAMES, FEATURE_VERSION
from vigil.infra.heap import raise_young_threshold, settle_heap
from vigil.models.registry import FeatureMismatchError, LoadedModel, champion_version, load_version
from vigil.schemas import TransactionCreate
from vigil.state.blacklists import LatestRevision, Revision, StoredCopy, rules_blacklist
from vigil.state.velocity import Observation, merge_rows, route, shard_of_user

log = logging.getLogger("vigil.graph")


#: How long a scorer's ``@serve.batch`` waits for more matrices after the first: none. Each
#: matrix is already a whole micro-batch, and with one batch inside the graph at a time (the
#: Screener's turn) nothing else is coming; matrices that are already queued (a second batch in
#: flight, from either RuleScreen replica) are still scored together. A wait only made each
#: batch's scorer stage longer (docs/serving.md).
SCORER_BATCH_WAIT_S = 0.0

#: How long RuleScreen waits for a scorer's answer before deciding the batch without it
#: (:class:`vigil.decision.circuit.ScorerCircuit`; ``scorer_deadline_s`` in its ``user_config``).
#: It is set well above a live scorer's answer time under load: the deadline is for a replica
#: that is gone, not a slow one (ray_config.yaml, docs/serving.md).
SCORER_DEADLINE_S = 0.5


def rows_to_matrix(rows: list[dict[str, float]]) -> np.ndarray:
    return np.array([[row[name] for name in FEATURE_NAMES] for row in rows], dtype=np.float64)


class _ModelHolder:
    """Loads a registry model, refusing one whose features are not this code's."""

    def __init__(self, name: str, tracking_uri: str | None) -> None:
        self.name = name
        self.tracking_uri = tracking_uri
        self.model: LoadedModel | None = None

    def load(self, version: str | None) -> None:
        """Load ``version`` (None: the champion's), unless it is the one already loaded: Serve
        calls ``reconfigure`` right after the constructor, and a second load would lengthen the
        replica's start (and every start after a crash)."""
        wanted = str(version) if version else champion_version(self.name, tracking_uri=self.tracking_uri)
        if self.model is not None and self.model.version == wanted:
            return
        model = load_version(self.name, wanted, tracking_uri=self.tracking_uri)
        if tuple(model.feature_names) != tuple(FEATURE_NAMES) or model.feature_version != FEATURE_VERSION:
            raise FeatureMismatchError(
                f"{self.name} v{model.version}: trained on feature version {model.feature_version!r} "
                f"({len(model.feature_names)} features), serving computes {FEATURE_VERSION!r} "
                f"({len(FEATURE_NAMES)}): refusing to load it"
            )
        self.model = model.for_serving()  # one assignment: in-flight batches keep the old model
        settle_heap(f"{self.name} v{model.version}")

    @property
    def version(self) -> str:
        assert self.model is not None
        return f"{self.name}:{self.model.version}"

    def frame(self, matrix: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(matrix, columns=list(FEATURE_NAMES))


@serve.deployment(name="SupervisedScorer")
class SupervisedScorer:
    """The champion supervised model: calibrated p(fraud) and top feature contributions.

    ``user_config: {model_version: "7"}`` pins a version; absent, the ``champion`` alias is
    loaded. Reconfiguring loads the new model before swapping it in, so no request is dropped.
    """

    def __init__(self, model_name: str, tracking_uri: str | None = None) -> None:
        self.holder = _ModelHolder(model_name, tracking_uri)
        self.holder.load(None)
        self.explain_above: float | None = None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``{model_version: "7", explain_above: 0.5}``: contributions are computed only for scores
        at or above ``explain_above`` (absent: the model's own review threshold, which the policy
        uses unless it pins its own; then set both to the same value)."""
        self.holder.load(config.get("model_version"))
        above = config.get("explain_above")
        self.explain_above = None if above is None else float(above)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=SCORER_BATCH_WAIT_S)
    async def score(
        self, matrices: list[np.ndarray]
    ) -> list[
        tuple[np.ndarray, list[list[tuple[str, float]] | None] | None, str, tuple[float, float] | None]
    ]:
        """Per matrix: scores, contributions, the model version and its (review, block) cut-offs
        (one snapshot of the model for the whole call: a reload mid-batch cannot mix them)."""
        model, version = self.holder.model, self.holder.version
        assert model is not None
        thresholds = model.operating_thresholds
        above = explain_cutoff(self.explain_above, thresholds)
        sizes = [len(m) for m in matrices]
        frame = self.holder.frame(np.vstack(matrices))
        scores = model.predict_proba(frame)
        contributions = model.explain_where(frame, scores, above=above, k=3)
        out = []
        start = 0
        for size in sizes:
            part = None if contributions is None else contributions[start : start + size]
            out.append((scores[start : start + size], part, version, thresholds))
            start += size
        return out


@serve.deployment(name="AnomalyScorer")
class AnomalyScorer:
    """The champion anomaly detector: a 0-1 score, higher = more anomalous."""

    def __init__(self, model_name: str, tracking_uri: str | None = None) -> None:
        self.holder = _ModelHolder(model_name, tracking_uri)
        self.holder.load(None)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.holder.load(config.get("model_version"))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=SCORER_BATCH_WAIT_S)
    async def score(self, matrices: list[np.ndarray]) -> list[tuple[np.ndarray, str]]:
        model, version = self.holder.model, self.holder.version
        assert model is not None
        sizes = [len(m) for m in matrices]
        scores = model.predict_proba(self.holder.frame(np.vstack(matrices)))
        out, start = [], 0
        for size in sizes:
            out.append((scores[start : start + size], version))
            start += size
        return out


@serve.deployment(name="RuleScreen")
class RuleScreen:
    """Versioned rules over the feature rows, and the batch's pipeline (:meth:`screen_batch`).

    The rule set is ``user_config`` (no redeploy); the blacklist is read from the database, again
    whenever a batch's revision is ahead of this replica's copy (:mod:`vigil.state.blacklists`), so every
    replica has it without being told. Per micro-batch the Ingress makes one call
    here; this replica asks the velocity shards for the features, then evaluates the rules while
    both scorers run. Making the calls from here rather than from the Ingress moves their CPU off
    the Ingress's event loop, which is what runs out first under load (docs/serving.md).
    """

    def __init__(
        self,
        database_url: str,
        supervised: Any,
        anomaly: Any,
        velocity_shards: int,
    ) -> None:
        self.rules = RuleSet.default()
        self.sessions = session_factory(create_engine(database_url))
        self.blacklist = StoredCopy(lambda: rules_blacklist(self.sessions))
        self.supervised = supervised
        self.anomaly = anomaly
        self.circuits = {name: ScorerCircuit(name, SCORER_DEADLINE_S) for name in ("supervised", "anomaly")}
        # The same named actors the Ingress holds (whichever replica starts first creates them).
        self.shards = get_or_create_shards(velocity_shards, database_url)
        raise_young_threshold()  # Serve collects and freezes the heap once this returns

    def reconfigure(self, config: dict[str, Any]) -> None:
        deadline = float(config.get("scorer_deadline_s", SCORER_DEADLINE_S))
        if not deadline > 0:
            raise ValueError(f"scorer_deadline_s must be positive, got {deadline}")
        for circuit in self.circuits.values():
            circuit.deadline_s = deadline
        if config.get("rules"):
            rules = RuleSet.from_dict(config["rules"])
            missing = rules.missing_features(FEATURE_NAMES)
            if missing:
                raise ValueError(f"rules read features that are not computed: {missing}")
            self.rules = rules

    async def _rule_hits(
        self,
        txs: list[dict[str, Any]],
        rows: list[dict[str, float]],
        at: list[datetime],
        blacklist_at: Revision | None,
    ) -> tuple[list[list[RuleHit]], str]:
        blacklist = await self.blacklist.at(blacklist_at)
        hits = self.rules.evaluate_batch(txs, rows, blacklist, at=at)
        return [acted_on(row_hits) for row_hits in hits], self.rules.version

    async def _features(
        self, keys: list[str], events: list[TransactionEvent], blacklist_at: Revision | None
    ) -> list[dict[str, float]]:
        routed = route(keys, events, len(self.shards))
        order = list(routed)
        calls = [
            self.shards[s].observe_wire.remote([obs.wire() for _, obs in routed[s]], blacklist_at)
            for s in order
        ]
        partial_rows: list[list[dict[str, float]]] = await asyncio.gather(*calls)
        partial = [([i for i, _ in routed[s]], rows) for s, rows in zip(order, partial_rows, strict=True)]
        return merge_rows(events, partial)

    async def screen_batch(
        self,
        keys: list[str],
        wires: list[EventWire],
        txs: list[dict[str, Any]],
        blacklist_at: Revision | None,
    ) -> tuple[list[ScoredWire], dict[str, float]]:
        """Features, then rules ∥ supervised ∥ anomaly, for one micro-batch, with the blacklist at
        revision ``blacklist_at`` or later; with the seconds each stage took (the Ingress records
        them: this replica's metrics are not scraped). A scorer that misses its deadline leaves
        its scores None (:mod:`vigil.decision.circuit`)."""
        started = time.perf_counter()
        events = [TransactionEvent.from_wire(w) for w in wires]
        rows = await self._features(keys, events, blacklist_at)
        features_s = time.perf_counter() - started
        started = time.perf_counter()
        matrix = rows_to_matrix(rows)
        supervised_circuit, anomaly_circuit = self.circuits["supervised"], self.circuits["anomaly"]
        supervised = supervised_circuit.send(lambda: _answer(self.supervised.score.remote(matrix)))
        anomaly = anomaly_circuit.send(lambda: _answer(self.anomaly.score.remote(matrix)))
        at = [from_ns(e.t_ns) for e in events]
        try:
            hits, rules_version = await self._rule_hits(txs, rows, at, blacklist_at)
        except BaseException:
            for sent in (supervised, anomaly):  # nobody will read them: the Ingress answers 503
                if sent is not None:
                    sent.cancel()
            raise
        supervised_out, anomaly_out = await asyncio.gather(
            supervised_circuit.result(supervised), anomaly_circuit.result(anomaly)
        )
        scores, contributions, model_version, cutoffs = supervised_out or (None, None, None, None)
        anomaly_scores = None if anomaly_out is None else anomaly_out[0]
        scored = [
            Scored(
                rule_hits=hits[i],
                fraud_score=None if scores is None else float(scores[i]),
                contributions=None if contributions is None else contributions[i],
                anomaly_score=None if anomaly_scores is None else float(anomaly_scores[i]),
                model_version=model_version,
                rules_version=rules_version,
                fraud_thresholds=cutoffs,
            )
            for i in range(len(rows))
        ]
        return [s.wire() for s in scored], {"features": features_s, "scorers": time.perf_counter() - started}


async def _answer(response: Any) -> Any:
    """Await a DeploymentResponse; cancelling the awaiting task cancels the request too."""
    try:
        return await response
    except asyncio.CancelledError:
        response.cancel()
        raise


class ServeGraph:
    """The ingress's view of the graph: one call per micro-batch, to :meth:`RuleScreen.screen_batch`."""

    def __init__(self, shards: list[Any], rules: Any) -> None:
        self.shards = shards
        self.rules = rules
        self.blacklist_revision = LatestRevision()

    def blacklist_changed(self, revision: Revision) -> None:
        self.blacklist_revision.saw(revision)

    async def set_kyc_risk(self, user_id: int, risk_level: str) -> None:
        await self.shards[shard_of_user(user_id, len(self.shards))].set_kyc_risk.remote(user_id, risk_level)

    async def score(
        self, keys: list[str], events: list[TransactionEvent], txs: list[TransactionCreate]
    ) -> list[Scored]:
        wires, stages = await self.rules.screen_batch.remote(
            keys, [e.wire() for e in events], [t.model_dump() for t in txs], self.blacklist_revision.current
        )
        for stage, seconds in stages.items():
            metrics.STAGE_SECONDS.labels(stage).observe(seconds)
        return [Scored.from_wire(w) for w in wires]


__all__ = [
    "AnomalyScorer",
    "Observation",
    "RuleScreen",
    "ServeGraph",
    "SupervisedScorer",
    "get_or_create_shards",
]
