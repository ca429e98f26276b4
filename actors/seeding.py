"""Per-module random generators and their (JSON-able) state."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a torch generator is made: the GMM's and MM's processes never load it
    import torch


def numpy_generator(seed: np.random.SeedSequence) -> np.random.Generator:
    """A PCG64 generator owned by one module."""
    return np.random.Generator(np.random.PCG64(seed))


def torch_generator(seed: np.random.SeedSequence) -> torch.Generator:
    """A CPU torch generator owned by one module, seeded from its SeedSequence."""
    import torch

    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return gen


def module_seeds(seed: int, n_modules: int) -> list[np.random.SeedSequence]:
    """One child SeedSequence per module, in graph order."""
    return np.random.SeedSequence(seed).spawn(n_modules)


def generator_state_json(rng: np.random.Generator) -> str:
    """The bit generator's state as JSON (Python ints are exact in JSON)."""
    return json.dumps(rng.bit_generator.state)


def set_generator_state(rng: np.random.Generator, state: str) -> None:
    """Restore a state written by :func:`generator_state_json`."""
    rng.bit_generator.state = json.loads(state)
