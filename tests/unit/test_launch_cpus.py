"""``vigil up`` refuses a Serve config whose replicas ask for more CPUs than the local Ray has
(Serve would wait for the last replica forever, silently), and says which deployments ask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.launch import ServeConfigError, check_cpus, cpu_requests, load_serve_config
from vigil.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Serve's pydantic fields

SHIPPED = Path(__file__).resolve().parents[2] / "ray_config.yaml"


def _config(tmp_path: Path, change: Any = None) -> Any:
    raw = yaml.safe_load(SHIPPED.read_text())
    if change is not None:
        change({d["name"]: d for d in raw["applications"][0]["deployments"]})
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_serve_config(path, Settings(home=tmp_path))


def test_the_shipped_config_fits_two_cpus_and_not_fewer(tmp_path: Path) -> None:
    config = _config(tmp_path)
    check_cpus(config, 2.0)
    with pytest.raises(ServeConfigError, match=r"ask for 2 CPUs .*vigil/Ingress 1 x 0.5"):
        check_cpus(config, 1.5)


def test_one_more_replica_than_fits_is_refused_with_the_deployments_named(tmp_path: Path) -> None:
    def second_rule_screen(deployments: dict[str, Any]) -> None:
        deployments["RuleScreen"]["num_replicas"] += 1

    config = _config(tmp_path, second_rule_screen)
    with pytest.raises(ServeConfigError) as refused:
        check_cpus(config, 2.0)
    replicas, cpus = cpu_requests(config)["vigil/RuleScreen"]
    assert replicas == cpu_requests(_config(tmp_path))["vigil/RuleScreen"][0] + 1
    assert f"vigil/RuleScreen {replicas} x {cpus:g}" in str(refused.value)
    assert "VIGIL_RAY_NUM_CPUS" in str(refused.value)


def test_autoscaling_counts_its_initial_replicas_and_an_unset_num_cpus_counts_one(tmp_path: Path) -> None:
    def change(deployments: dict[str, Any]) -> None:
        scorer = deployments["AnomalyScorer"]
        del scorer["num_replicas"]
        scorer["autoscaling_config"] = {"min_replicas": 1, "initial_replicas": 3, "max_replicas": 4}
        del deployments["KycVerifier"]["ray_actor_options"]

    wanted = cpu_requests(_config(tmp_path, change))
    assert wanted["vigil/AnomalyScorer"][0] == 3
    assert wanted["vigil/KycVerifier"] == (1, 1.0)
