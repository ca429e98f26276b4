"""Typed, frozen, validated messages exchanged between serket-ray modules."""

from messages.base import SCHEMA_VERSION, Message, as_lengths
from messages.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GraphError,
    MessageError,
    SerketRayError,
)
from messages.kinds import (
    ClassPosteriors,
    ClassPrior,
    Latents,
    ObservationData,
    PriorMeans,
    Reconstruction,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "GraphError",
    "SerketRayError",
    "SCHEMA_VERSION",
    "as_lengths",
    "ClassPosteriors",
    "ClassPrior",
    "Latents",
    "Message",
    "MessageError",
    "ObservationData",
    "PriorMeans",
    "Reconstruction",
]
