"""The shard workers of a sharded run: a GMM shard and an MM shard as actors that load, save and restore themselves.

:class:`GMMShardWorker` and :class:`MMShardWorker` are the numerical shards of
:mod:`actors.gmm_shards` and :mod:`actors.mm_shards` plus what a run needs of
them: take their rows of the VAE's whole ``Latents`` message (resolved by Ray
inside the actor, never on the driver), hand their posteriors and message on
as object references, count their points per (class, label) for accuracy,
write their own checkpoint part (:mod:`orchestrator.shard_checkpoint`) and
restore from it.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np

from actors.gmm_shards import GMMShard
from actors.mm_core import sequence_starts
from actors.mm_shards import GROUP, MMShard
from orchestrator.shard_checkpoint import read_part, write_part
from orchestrator.storage import RunPath

log = logging.getLogger(__name__)


def _fault(spec: str | None, round: int, sweep: int) -> None:
    """Fault injection for the shard-failure tests: ``spec`` "round:sweep:flagfile" SIGKILLs this process once.

    The flag file is made before the kill, so the replacement shard runs on.
    """
    if not spec:
        return
    r, s, flag = spec.split(":", 2)
    if int(r) == round and int(s) == sweep and not os.path.exists(flag):
        Path(flag).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


class GMMShardWorker(GMMShard):
    """One GMM shard of a run: global points [start, stop).

    Parameters
    ----------
    index : int
        The shard's number i.
    start, stop : int
    n_classes : int
    key : numpy.ndarray, shape (2,), uint64
        The module's Philox key.
    block : int
    labels : numpy.ndarray, shape (stop - start,), int, optional
        True label ids 0..L-1 of this shard's points (only to count accuracy).
    n_labels : int
    fault : str, optional
        Fault injection (tests): "round:sweep:flagfile".
    lengths : numpy.ndarray, shape (S_seq,), optional
        The data's sequence lengths (where the sequence-guided moves' chains restart).
    n : int, optional
        Total points N (with ``lengths``).
    """

    def __init__(
        self,
        index: int,
        start: int,
        stop: int,
        n_classes: int,
        key: np.ndarray,
        block: int,
        labels: np.ndarray | None = None,
        n_labels: int = 0,
        fault: str | None = None,
        lengths: np.ndarray | None = None,
        n: int | None = None,
    ) -> None:
        starts = sequence_starts(None if lengths is None else np.asarray(lengths), stop if n is None else n)
        super().__init__(np.zeros((0, 1)), start, n_classes, key, block, starts[start:stop])
        self.index, self.stop = int(index), int(stop)
        self.true = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.n_labels = int(n_labels)
        self.fault = fault
        self.assigned: np.ndarray | None = None

    def ready(self) -> bool:
        return True

    def load_latents(self, message: Any) -> None:
        """This shard's rows of the whole ``Latents`` (or ``ObservationData``) message."""
        x = message.z if hasattr(message, "z") else message.data
        self.set_data(x[self.start : self.stop])

    def set_prior_message(self, probs: np.ndarray | None) -> None:
        """The MM shard's message for these points (n, K), or None."""
        self.set_prior(probs)

    def sweep(self, round: int, sweep: int, *args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[override]
        _fault(self.fault, round, sweep)
        return super().sweep(round, sweep, *args)

    def sampler_labels(self) -> np.ndarray:
        """The last sweep's labels of this shard's points (n,) (gathered for small runs only)."""
        assert self.labels is not None
        return self.labels.copy()

    def prior_means_part(self, class_means: np.ndarray) -> np.ndarray:
        """Each point's class mean (n, d): this shard's rows of the message to the VAE."""
        assert self.assigned is not None
        return class_means[self.assigned]

    def confusion(self) -> np.ndarray | None:
        """Points per (class, label), (K, L) int64; None without labels."""
        if self.true is None or self.assigned is None:
            return None
        out = np.zeros((self.k, self.n_labels), dtype=np.int64)
        np.add.at(out, (self.assigned, self.true), 1)
        return out

    def write_part(self, directory: RunPath, meta: dict[str, Any], mode: str = "learn") -> dict[str, str]:
        """Save labels, assigned classes, probs and log-likelihoods (and class_/Pdz_ text); name -> SHA-256."""
        assert self.labels is not None and self.probs is not None and self.log_likelihood is not None
        assert self.assigned is not None
        arrays = {
            "labels": self.labels,
            "assigned": self.assigned,
            "probs": self.probs,
            "log_likelihood": self.log_likelihood,
        }
        part_meta = {**meta, "shard": self.index, "start": self.start, "stop": self.stop}
        return write_part(directory, arrays, part_meta, {"classes": self.assigned, "probs": self.probs}, mode)

    def restore_part(self, directory: RunPath | None) -> None:
        """Back to the state a part saved (None: to a fresh shard, before any update)."""
        if directory is None:
            self.labels, self.probs, self.log_likelihood, self.assigned = None, None, None, None
            return
        arrays, meta = read_part(directory)
        if (meta.get("start"), meta.get("stop")) != (self.start, self.stop):
            raise ValueError(f"part {directory} holds points {meta.get('start')}..{meta.get('stop')}, not this shard's")
        self.labels, self.assigned = arrays["labels"], arrays["assigned"]
        self.probs, self.log_likelihood = arrays["probs"], arrays["log_likelihood"]


class MMShardWorker(MMShard):
    """One MM shard of a run: global points [start, stop), in the sequences of ``lengths``.

    Parameters
    ----------
    index, start, stop : int
    lengths : numpy.ndarray, shape (S_seq,), optional
    n : int
        Total points N.
    block : int
        The GMM's block; the forward-backward block is ``block / GROUP``.
    fault : str, optional
        Fault injection (tests): "round:pass:flagfile", the round counted by this process's loads.
    """

    def __init__(
        self,
        index: int,
        start: int,
        stop: int,
        lengths: np.ndarray | None,
        n: int,
        block: int,
        fault: str | None = None,
    ) -> None:
        starts = sequence_starts(None if lengths is None else np.asarray(lengths), n)[start:stop]
        super().__init__(start, starts, block // GROUP)
        self.index, self.stop = int(index), int(stop)
        self.prior: np.ndarray | None = None
        self.fault = fault
        self.loads = -1  # updates this process has loaded (its round when it started with the run)
        self.passes = 0  # forward-backward passes in this update

    def load(self, posteriors: tuple[np.ndarray, np.ndarray | None]) -> None:  # type: ignore[override]
        self.loads, self.passes = self.loads + 1, 0
        super().load(posteriors)

    def smooth(self, trans: np.ndarray, pi0: np.ndarray, exponent: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        _fault(self.fault, self.loads, self.passes)
        self.passes += 1
        return super().smooth(trans, pi0, exponent)

    def ready(self) -> bool:
        return True

    def has_message(self) -> bool:
        return self.prior is not None

    def write_part(self, directory: RunPath, meta: dict[str, Any], mode: str = "learn") -> dict[str, str]:
        """Save the message (n, K) and its msg_ text; name -> SHA-256."""
        assert self.prior is not None
        part_meta = {**meta, "shard": self.index, "start": self.start, "stop": self.stop}
        return write_part(directory, {"message": self.prior}, part_meta, {"message": self.prior}, mode)

    def restore_part(self, directory: RunPath | None) -> None:
        """The message a part saved (None: none yet)."""
        if directory is None:
            self.prior = None
            return
        arrays, _ = read_part(directory)
        self.prior = arrays["message"]
