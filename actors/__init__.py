"""serket-ray modules: Serket-style objects whose updates run as Ray actors.

>>> from actors import Observation, VAE, GMM, MarkovModel
"""

from actors.config import GMMConfig, MMConfig, VAEConfig
from actors.gmm import GMM, GMMWorker
from actors.mm import MarkovModel, MMWorker
from actors.module import Module, Observation
from actors.vae import VAE, VAEWorker

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
