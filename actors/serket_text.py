"""Serket's text files for people: one writer for learning's checkpoints and recognition's outputs.

Each value goes to the file Serket names it by (``class_learn.txt``,
``Pdz_recog.txt``, ...), byte for byte as ``numpy.savetxt`` writes them (one
``%`` formatting of the whole array instead of one per row: several times faster
on the (N, K) and (N, d) files every round writes).  They are exports: nothing
ever reads them back as state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: What a value is -> (file name, with ``{mode}`` for "learn" or "recog"; ``numpy.savetxt`` format).
SERKET_FILES: dict[str, tuple[str, str]] = {
    "loss": ("loss.txt", "%.18e"),  # the VAE's loss per epoch (E,)
    "z": ("z_{mode}.txt", "%.18e"),  # the VAE's latents (N, d)
    "classes": ("class_{mode}.txt", "%d"),  # the GMM's class of each point (N,)
    "probs": ("Pdz_{mode}.txt", "%.18e"),  # the GMM's class posteriors (N, K)
    "class_means": ("mu_{mode}.txt", "%.18e"),  # the GMM's class means (K, d)
    "accuracy": ("acc_{mode}.txt", "%.18e"),  # the GMM's accuracy against labels (one number)
    "message": ("msg_{mode}.txt", "%.18e"),  # the MM's message to the GMM (N, K)
    "transitions": ("trans_prob_{mode}.txt", "%.18e"),  # the MM's transitions (K, K)
    "initial": ("init_prob_{mode}.txt", "%.18e"),  # the MM's initial distribution (K,)
}


def export_text(directory: Path, mode: str, **values: Any) -> None:
    """Write each of ``values`` (a key of :data:`SERKET_FILES`) to its Serket text file in ``directory``.

    Parameters
    ----------
    directory : Path
    mode : {"learn", "recog"}
    **values
        Arrays (or, for ``accuracy``, one number); a value of None is skipped.

    Raises
    ------
    KeyError
        A value whose name is not one of :data:`SERKET_FILES`.
    OSError
        A file could not be written.
    """
    for key, value in values.items():
        if value is None:
            continue
        name, fmt = SERKET_FILES[key]
        write_text(Path(directory) / name.format(mode=mode), np.atleast_1d(value), fmt)


def write_text(path: Path, values: np.ndarray, fmt: str) -> None:
    """``numpy.savetxt(path, values, fmt=fmt)``'s bytes for a 1-D (one value a line) or 2-D real array.

    Parameters
    ----------
    path : Path
    values : numpy.ndarray, shape (N,) or (N, M)
    fmt : str
        One ``%`` format for every value; a row's values are joined by a space.

    Raises
    ------
    ValueError
        ``values`` is neither 1-D nor 2-D.
    """
    if values.ndim not in (1, 2):
        raise ValueError(f"values should be a 1-D or 2-D array, got shape {values.shape}")
    rows = values.reshape(len(values), 1) if values.ndim == 1 else values
    line = " ".join([fmt] * rows.shape[1]) + "\n"
    text = (line * rows.shape[0]) % tuple(rows.ravel().tolist()) if rows.size else ""
    with open(path, "wb") as fh:
        fh.write(text.encode("latin1"))
