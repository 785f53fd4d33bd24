"""The scoring graph in one process: the same velocity shard logic, rules and models as the Ray
graph, called directly. Used by the uvicorn baseline of the serving benchmark and by the unit
tests.

A graph built without models is the degraded mode the policy is designed for: scores are None,
rules still run, and amounts above the policy's cut-off go to review (FRAUD_SCORE_UNAVAILABLE).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from vigil.decision.policy import explain_cutoff
from vigil.decision.rules import RuleSet
from vigil.decision.screening import Scored, acted_on
from vigil.features.events import TransactionEvent
from vigil.features.spec import FEATURE_NAMES, FEATURE_VERSION
from vigil.models.base import FeatureMismatchError
from vigil.models.registry import LoadedModel
from vigil.schemas import TransactionCreate
from vigil.state.blacklists import LatestRevision, Revision, StoredCopy, rules_blacklist
from vigil.state.velocity import VelocityShard, merge_rows, route


def check_model(model: LoadedModel) -> None:
    """Refuse a model trained on other features than the ones this code computes."""
    if tuple(model.feature_names) != tuple(FEATURE_NAMES) or model.feature_version != FEATURE_VERSION:
        raise FeatureMismatchError(
            f"model {model.name} v{model.version}: feature version {model.feature_version!r} "
            f"({len(model.feature_names)} features); this code computes {FEATURE_VERSION!r} "
            f"({len(FEATURE_NAMES)}): refusing to load it"
        )


def model_version(model: LoadedModel) -> str:
    return f"{model.name}:{model.version}"


class LocalGraph:
    def __init__(
        self,
        database_url: str,
        *,
        supervised: LoadedModel | None,
        anomaly: LoadedModel | None,
        rules: RuleSet | None = None,
        explain_above: float | None = None,
    ) -> None:
        for model in (supervised, anomaly):
            if model is not None:
                check_model(model)
        # In-process: no earlier incarnation can have answers still committing, so no settling.
        self.shard = VelocityShard(0, 1, database_url, settle_s=0.0)
        self.supervised = supervised.for_serving() if supervised else None
        self.anomaly = anomaly
        self.explain_above = explain_above
        self.rules = rules or RuleSet.default()
        # the stored blacklist, for the rules (the shard keeps its own for the features)
        self.blacklist = StoredCopy(lambda: rules_blacklist(self.shard.sessions))
        self.blacklist_revision = LatestRevision()

    async def close(self) -> None:
        await self.shard.close()

    async def set_kyc_risk(self, user_id: int, risk_level: str) -> None:
        await self.shard.set_kyc_risk(user_id, risk_level)

    def blacklist_changed(self, revision: Revision) -> None:
        self.blacklist_revision.saw(revision)

    async def score(
        self, keys: list[str], events: list[TransactionEvent], txs: list[TransactionCreate]
    ) -> list[Scored]:
        revision = self.blacklist_revision.current
        ((_, observations),) = route(keys, events, 1).items()
        observed = await self.shard.observe([o for _, o in observations], revision)
        rows = merge_rows(events, [([i for i, _ in observations], observed)])
        frame = pd.DataFrame(
            np.array([[r[n] for n in FEATURE_NAMES] for r in rows]), columns=list(FEATURE_NAMES)
        )
        hits = self.rules.evaluate_batch(
            [t.model_dump() for t in txs],
            rows,
            await self.blacklist.at(revision),
            at=[e.created_at for e in events],  # type: ignore[misc]
        )
        fraud: Any = self.supervised.predict_proba(frame) if self.supervised else [None] * len(rows)
        thresholds = self.supervised.operating_thresholds if self.supervised else None
        contributions = (
            self.supervised.explain_where(
                frame, fraud, above=explain_cutoff(self.explain_above, thresholds), k=3
            )
            if self.supervised
            else None
        )
        anomaly: Any = self.anomaly.predict_proba(frame) if self.anomaly else [None] * len(rows)
        return [
            Scored(
                rule_hits=acted_on(hits[i]),
                fraud_score=None if fraud[i] is None else float(fraud[i]),
                contributions=None if contributions is None else contributions[i],
                anomaly_score=None if anomaly[i] is None else float(anomaly[i]),
                model_version=model_version(self.supervised) if self.supervised else None,
                rules_version=self.rules.version,
                fraud_thresholds=thresholds,
            )
            for i in range(len(rows))
        ]
