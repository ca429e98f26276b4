"""The module graph: named edges between modules, checked when the graph is built."""

from __future__ import annotations

import numpy as np
import pytest

from actors.gmm import GMM
from actors.mm import MarkovModel
from actors.module import Observation
from actors.vae import VAE
from messages.errors import GraphError
from orchestrator.graph import build_graph


def _tutorial() -> tuple[Observation, VAE, GMM, MarkovModel]:
    obs = Observation(np.zeros((6, 4)))
    vae, gmm, mm = VAE(2, epochs=1), GMM(2), MarkovModel()
    vae.connect(obs)
    gmm.connect(vae)
    mm.connect(gmm)
    return obs, vae, gmm, mm


def test_inputs_name_the_output_they_read_not_its_position() -> None:
    obs, vae, gmm, mm = _tutorial()
    build_graph(obs)
    assert vae.inputs() == {"data": (obs, "data"), "prior_means": (gmm, "prior_means")}
    assert gmm.inputs() == {"latents": (vae, "latents"), "class_prior": (mm, "class_prior")}
    assert mm.inputs() == {"posteriors": (gmm, "posteriors")}
    # every edge names a message its source sends
    for module in (vae, gmm, mm):
        for source, output in module.inputs().values():
            assert output in source.message_names()
    assert gmm.message_names() == ("posteriors", "prior_means")


def test_a_gmm_on_the_observation_reads_its_data() -> None:
    obs, gmm = Observation(np.zeros((6, 4))), GMM(2)
    gmm.connect(obs)
    build_graph(gmm)
    assert gmm.inputs() == {"latents": (obs, "data")}


def test_an_edge_naming_an_output_its_source_lacks_is_refused_when_the_graph_is_built() -> None:
    class Misnamed(VAE):
        def inputs(self):
            return {**super().inputs(), "prior_means": (self.above[0], "prior_mean")}

    obs, vae, gmm = Observation(np.zeros((6, 4))), Misnamed(2, epochs=1), GMM(2)
    vae.connect(obs)
    gmm.connect(vae)
    with pytest.raises(GraphError) as err:
        build_graph(obs)
    assert str(err.value) == (
        "Misnamed(name='vae') input 'prior_means' should name one of GMM(name='gmm')'s outputs "
        "['posteriors', 'prior_means'], got 'prior_mean'"
    )


def test_an_edge_from_a_module_outside_the_graph_is_refused() -> None:
    stray = GMM(2, name="stray")

    class Stray(MarkovModel):
        def inputs(self):
            return {"posteriors": (stray, "posteriors")}

    obs, gmm, mm = Observation(np.zeros((6, 4))), GMM(2), Stray()
    gmm.connect(obs)
    mm.connect(gmm)
    with pytest.raises(
        GraphError, match=r"input 'posteriors' should come from a module of the graph, got GMM\(name='stray'\)"
    ):
        build_graph(obs)
