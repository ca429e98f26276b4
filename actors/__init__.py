"""serket-ray modules: Serket-style objects whose updates run as Ray actors.

>>> from actors import Observation, VAE, GMM, MarkovModel

OpenMP keeps its default wait policy (threads spin briefly before they sleep): on a quiet
machine that trains the VAE about twice as fast as ``OMP_WAIT_POLICY=PASSIVE``, and the VAE's
:class:`actors.cpu_share.ThreadGovernor` drops torch to fewer threads while other processes
keep this process's CPUs busy, where spinning threads would fight them for time slices
(measured in bench/bench.py --only speed; set ``OMP_WAIT_POLICY`` yourself to override).
"""

from typing import TYPE_CHECKING

from actors.lazy import lazy_names

if TYPE_CHECKING:
    from actors.config import GMMConfig, MMConfig, VAEConfig
    from actors.gmm import GMM, GMMWorker
    from actors.mm import MarkovModel, MMWorker
    from actors.module import Module, Observation
    from actors.vae import VAE, VAEWorker

# Loaded on first use (PEP 562), so that a process that needs only the mixture or the
# Markov model (their Ray actors) does not import torch (~1.5 s of CPU at start-up).
_WHERE = {
    "GMMConfig": "actors.config",
    "MMConfig": "actors.config",
    "VAEConfig": "actors.config",
    "GMM": "actors.gmm",
    "GMMWorker": "actors.gmm",
    "MarkovModel": "actors.mm",
    "MMWorker": "actors.mm",
    "Module": "actors.module",
    "Observation": "actors.module",
    "VAE": "actors.vae",
    "VAEWorker": "actors.vae",
}


__getattr__ = lazy_names("actors", _WHERE, globals())


__all__ = [
    "GMM",
    "GMMConfig",
    "GMMWorker",
    "MMConfig",
    "MMWorker",
    "MarkovModel",
    "Module",
    "Observation",
    "VAE",
    "VAEConfig",
    "VAEWorker",
]
