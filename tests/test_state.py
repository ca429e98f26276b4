"""A worker's state as a typed record: validated, and the same through a checkpoint and back."""

from __future__ import annotations

import numpy as np
import pytest

from actors.config import GMMConfig, MMConfig
from actors.gmm import GMMWorker
from actors.mm import MMWorker
from actors.state import WorkerState
from messages import Latents
from messages.errors import CheckpointError
from orchestrator import checkpoint
from orchestrator.run_dir import load_state


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"arrays": {"labels": [0, 1]}}, "worker state array 'labels' should be a numpy array, got list"),
        ({"arrays": {1: np.zeros(2)}}, "worker state arrays should be a dict with str keys"),
        ({"meta": ["rng"]}, "worker state meta should be a dict with str keys, got ['rng']"),
        ({"blobs": {"../weights.pt": b""}}, "plain file name ending in .pt, got '../weights.pt'"),
        ({"blobs": {"state.arrow": b""}}, "plain file name ending in .pt, got 'state.arrow'"),
        ({"blobs": {"weights.pt": "text"}}, "worker state blob 'weights.pt' should be bytes, got str"),
    ],
)
def test_a_malformed_state_is_refused_naming_the_field(kwargs, message) -> None:
    with pytest.raises(CheckpointError) as err:
        WorkerState(**kwargs)
    assert message in str(err.value)


def test_a_state_without_what_the_worker_restores_is_refused() -> None:
    worker = MMWorker(MMConfig(), "module003_mm", "g", np.random.SeedSequence(0))
    with pytest.raises(CheckpointError) as err:
        worker.set_state(WorkerState(arrays={"transitions": np.eye(2)}))
    assert str(err.value) == ("module003_mm's saved state should hold meta ['rng'], got only [] (not its checkpoint?)")


def test_the_record_keeps_its_own_dicts() -> None:
    arrays = {"a": np.zeros(2)}
    state = WorkerState(arrays=arrays)
    arrays["b"] = np.ones(1)
    assert list(state.arrays) == ["a"]


def _mixture_data(rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.normal(-3, 1, size=(30, 2)), rng.normal(3, 1, size=(30, 2))])


def test_worker_states_survive_a_checkpoint_and_continue_identically(tmp_path) -> None:
    """get_state -> state.arrow -> load_state -> set_state: the next update equals the undisturbed worker's."""
    rng = np.random.default_rng(0)
    z = Latents(sender="v", receiver="g", round=0, z=_mixture_data(rng))
    gmm = GMMWorker(GMMConfig(n_components=2, n_sweeps=5), "g", "m", "v", np.random.SeedSequence(1), sequence=True)
    mm = MMWorker(MMConfig(), "m", "g", np.random.SeedSequence(2))
    post, _, _ = gmm.update(0, z)
    prior, _ = mm.update(0, post)
    for worker, name in ((gmm, "g"), (mm, "m")):
        state = worker.get_state()
        checkpoint.write_update(tmp_path / name, 0, {}, {}, state, {"module": name}, lambda d: {})
        back = load_state(tmp_path / name / "000")
        assert back.meta == state.meta and back.blobs == {}
        assert sorted(back.arrays) == sorted(state.arrays)
        for key, arr in state.arrays.items():
            assert back.arrays[key].dtype == arr.dtype
            np.testing.assert_array_equal(back.arrays[key], arr)
    gmm2 = GMMWorker(GMMConfig(n_components=2, n_sweeps=5), "g", "m", "v", np.random.SeedSequence(99), sequence=True)
    mm2 = MMWorker(MMConfig(), "m", "g", np.random.SeedSequence(99))
    gmm2.set_state(load_state(tmp_path / "g" / "000"))
    mm2.set_state(load_state(tmp_path / "m" / "000"))
    a, _, _ = gmm.update(1, z, prior)
    b, _, _ = gmm2.update(1, z, prior)
    np.testing.assert_array_equal(a.probs, b.probs)
    pa_, _ = mm.update(1, a)
    pb_, _ = mm2.update(1, b)
    np.testing.assert_array_equal(pa_.probs, pb_.probs)
