"""Placement groups: a run reserves all its actors at once, or says what is missing."""

from __future__ import annotations

import json
import time

import pytest
from conftest import digits_graph

from messages.errors import ConfigError
from orchestrator import Orchestrator
from orchestrator.placement import actor_options, bundle_of, plain_resources, shortfall

pytestmark = pytest.mark.ray


def _modules(n: int = 600, epochs: int = 3) -> list:
    return digits_graph(n, epochs, batch_size=200, sweeps=10)


def _alive_actors(ray) -> int:
    from ray._private import state

    return sum(1 for a in state.actors().values() if a["State"] != "DEAD")


def _live_groups(ray) -> list[str]:
    return [pg_id for pg_id, pg in ray.util.placement_group_table().items() if pg["state"] != "REMOVED"]


def test_bundle_of_maps_actor_options_to_resources() -> None:
    assert bundle_of({"num_cpus": 1.5, "num_gpus": 0}) == {"CPU": 1.5}
    assert bundle_of({"num_gpus": 1}) == {"CPU": 1.0, "GPU": 1.0}  # Ray schedules an actor on 1 CPU unless told
    assert bundle_of({"num_cpus": 0.25, "resources": {"head_role": 0.25}}) == {"CPU": 0.25, "head_role": 0.25}
    assert bundle_of({"num_cpus": 0}) == {}  # left out of the group
    with pytest.raises(ConfigError, match="non-negative"):
        bundle_of({"num_cpus": -1})


def test_actor_options_make_num_cpus_explicit_and_refuse_bad_amounts() -> None:
    assert actor_options({"num_gpus": 1}) == {"num_gpus": 1, "num_cpus": 1}
    assert actor_options({"num_cpus": 0.5, "max_restarts": 2}) == {"num_cpus": 0.5, "max_restarts": 2}
    for bad in ({"num_gpus": True}, {"memory": float("nan")}, {"resources": {"tpu": -1}}):
        with pytest.raises(ConfigError, match="should be a non-negative number"):
            actor_options(bad)
    with pytest.raises(ConfigError, match="actor resources should be a dict"):
        actor_options([1])  # type: ignore[arg-type]
    assert plain_resources({"CPU": 2.0, "node:1.2.3.4": 1.0, "CPU_group_ab": 1.0, "bundle_group_0": 1.0}) == {
        "CPU": 2.0
    }


def test_shortfall_names_each_missing_resource() -> None:
    lines = shortfall([{"CPU": 64.0}, {"CPU": 0.25, "tpu": 1.0}], {"CPU": 2.0}, {"CPU": 2.0}, {"CPU": 2.0})
    assert lines == ["'CPU': asked 64.25 in all, the cluster has 2", "'tpu': asked 1, the cluster has none"]
    assert shortfall([{"CPU": 1.5}, {"CPU": 1.5}], {"CPU": 4.0}, {"CPU": 4.0}, {"CPU": 1.0}) == [
        "'CPU': one actor asks 1.5, the largest node has 1",
    ]
    assert "free now" in shortfall([{"CPU": 1.0}], {"CPU": 2.0}, {"CPU": 0.5}, {"CPU": 2.0})[0]


@pytest.mark.parametrize(
    "resources, missing",
    [
        ({"vae": {"num_cpus": 64}}, "'CPU': asked 64.5 in all, the cluster has 2"),
        (
            {"gmm": {"num_cpus": 0.25, "resources": {"no_such_accelerator": 1}}},
            "'no_such_accelerator': asked 1, the cluster has none",
        ),
    ],
    ids=["too-many-cpus", "unknown-custom-resource"],
)
def test_unsatisfiable_run_fails_fast_naming_what_is_missing(ray_session, tmp_path, resources, missing) -> None:
    actors_before, groups_before = _alive_actors(ray_session), _live_groups(ray_session)
    orch = Orchestrator(_modules(), tmp_path, seed=0, resources=resources, reserve_timeout=3)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        orch.run(1)
    assert time.monotonic() - t0 < 20
    message = str(err.value)
    assert "could not be reserved within 3 s" in message and missing in message, message
    assert "the cluster has {'CPU': 2.0" in message
    assert orch.session.executor is None and not orch.session.workers
    orch.close()
    assert _alive_actors(ray_session) == actors_before
    assert _live_groups(ray_session) == groups_before


def test_unknown_resources_key_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="'vea' names no module"):
        Orchestrator(_modules(), tmp_path, resources={"vea": {"num_cpus": 1}}, backend="local")


def test_run_records_its_bundles_and_a_restarted_actor_keeps_its_bundle(ray_session, tmp_path) -> None:
    resources = {"vae": {"num_cpus": 1}, "gmm": {"num_cpus": 0.5}, "mm": {"num_cpus": 0}}
    modules = _modules()
    orch = Orchestrator(modules, tmp_path, seed=0, resources=resources)
    try:
        orch.run(1)
        run = json.loads((tmp_path / "run.json").read_text())
        mods = run["modules"]
        pg_id = mods["module001_vae"]["placement_group"]["id"]
        for name, bundle, index in (("module001_vae", {"CPU": 1.0}, 0), ("module002_gmm", {"CPU": 0.5}, 1)):
            entry = mods[name]
            assert entry["node_id"] and entry["node_ip"]
            assert entry["resources"] == bundle  # what Ray assigned the actor: its whole bundle
            assert entry["placement_group"] == {
                "id": pg_id,
                "strategy": "PACK",
                "bundle_index": index,
                "bundle": bundle,
            }
        assert mods["module003_mm"]["placement_group"] is None  # needs nothing: left out of the group
        assert pg_id in _live_groups(ray_session)

        # A dead actor is restarted into the same bundle.
        session = orch.session
        vae = modules[1]
        old = session.workers[vae]
        ray_session.kill(old, no_restart=True)
        record = session.update(vae)
        assert record.attempts == 2 and session.workers[vae] is not old
        entry = session.manifest()["modules"]["module001_vae"]
        assert entry["placement_group"]["id"] == pg_id and entry["placement_group"]["bundle_index"] == 0
        assert entry["resources"] == {"CPU": 1.0}
    finally:
        orch.close()
    assert pg_id not in _live_groups(ray_session)
