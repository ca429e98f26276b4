"""Reading a run back for its report: the run directory and the observed data and labels it used.

The observed data are not saved in a run; they are reloaded from the command line
``run.json`` recorded (or recognised as the embedded digits by their SHA-256), and
used only when their SHA-256 matches the one the run recorded.  Labels come from the
same place, or from a file given with ``--labels``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from messages.errors import CheckpointError, SerketRayError
from orchestrator import checkpoint
from orchestrator.fingerprints import array_sha256, labels_sha256
from orchestrator.run_dir import last_updates, load_manifest, records_of, saved_message
from orchestrator.storage import RunPath


@dataclasses.dataclass
class ReportRun:
    """A run directory read back: its manifest and the last round of each module kind."""

    out: RunPath  # local or remote (orchestrator.storage)
    manifest: dict[str, Any]
    module_of: dict[str, str]  # kind ("vae", "gmm", "mm") -> module directory name
    last_round: dict[str, int]  # module directory name -> last completed round

    def round_dir(self, kind: str, round_index: int | None = None) -> RunPath | None:
        """``<out>/<module>/<round:03d>`` of a kind's module (its last round by default)."""
        name = self.module_of.get(kind)
        if name is None or name not in self.last_round:
            return None
        return self.out / name / f"{self.last_round[name] if round_index is None else round_index:03d}"

    def arrays(self, kind: str, file: str, round_index: int | None = None) -> dict[str, np.ndarray] | None:
        """The arrays of ``report.arrow`` (or another arrays table) of a kind's module."""
        directory = self.round_dir(kind, round_index)
        if directory is None:
            return None
        path = directory / file
        try:
            return checkpoint.table_arrays(checkpoint.read_table(path))[0]
        except (OSError, ValueError, KeyError) as exc:  # pyarrow's errors are OSError / ValueError subclasses
            raise CheckpointError(f"{path} should be a readable checkpoint table, got: {exc}") from None

    def message(self, kind: str, file: str) -> Any:
        """A message checkpoint of a kind's module's last round."""
        directory = self.round_dir(kind)
        if directory is None:
            return None
        path = directory / file
        try:
            return saved_message(directory, path.stem)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} should be a readable message checkpoint, got: {exc}") from None


# --------------------------------------------------------------------------- reading the run


def open_run(out_dir: RunPath) -> tuple[ReportRun, list[str]]:
    """Read ``run.json`` and find the modules to report on.

    Raises
    ------
    CheckpointError
        Not a run, a run without a completed update, or one with no VAE, GMM or MM.
    """
    if not out_dir.is_dir():
        raise CheckpointError(
            f"{out_dir} should be a serket-ray run directory, got {'a file' if out_dir.exists() else 'nothing'} there"
        )
    manifest = load_manifest(out_dir)
    notes: list[str] = []
    if not isinstance(manifest.get("modules"), dict) or not isinstance(manifest.get("updates"), list):
        raise CheckpointError(
            f"{out_dir / 'run.json'} should hold 'modules' (a mapping) and 'updates' (a list), got something else"
        )
    module_of: dict[str, str] = {}
    for kind in ("vae", "gmm", "mm"):
        names = sorted(n for n, m in manifest["modules"].items() if isinstance(m, dict) and m.get("kind") == kind)
        if names:
            module_of[kind] = names[0]
        if len(names) > 1:
            notes.append(f"The run has {len(names)} {kind.upper()} modules; the report shows the first, {names[0]}.")
    if not module_of:
        raise CheckpointError(
            f"{out_dir} should hold a VAE, GMM or MM module, got modules {sorted(manifest['modules'])}"
        )
    last_round = {
        name: rec.round for name, rec in last_updates(records_of(manifest, str(out_dir / "run.json"))).items()
    }
    if not last_round:
        raise CheckpointError(f"{out_dir} holds no completed update yet; nothing to report")
    for name, rnd in last_round.items():
        if not (out_dir / name / f"{rnd:03d}").is_dir():
            raise CheckpointError(
                f"{out_dir / name / f'{rnd:03d}'} should hold the checkpoint run.json records, got no such directory"
            )
    return ReportRun(out_dir, manifest, module_of, last_round), notes


def data_sha256(data: np.ndarray) -> str:
    """SHA-256 of an observation's array as :func:`orchestrator.fingerprints.data_fingerprint` computes it."""
    from actors.module import as_data_matrix

    return array_sha256(as_data_matrix(data, "data"))


def _reload_recorded(cli: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The data and labels of a CLI run, from the arguments run.json recorded (never downloading)."""
    if cli.get("dataset") == "mnist" and not cli.get("data"):
        from orchestrator.data import scale_data
        from orchestrator.mnist import tutorial_mnist

        data, labels = tutorial_mnist(cli.get("cache_dir"), download=False)
        return scale_data(data, cli.get("scale") or "none"), labels, "MNIST, the tutorial's 3000 images"
    from orchestrator.inputs import load_run_inputs
    from orchestrator.recipe import TutorialRecipe

    got = load_run_inputs(dataclasses.replace(TutorialRecipe.from_recorded(cli).source, lengths=None))
    return got.data, got.labels, got.source


def recover_inputs(
    run: ReportRun, data: np.ndarray | None, labels: Any, labels_key: str | None
) -> tuple[np.ndarray | None, np.ndarray | None, str, list[str]]:
    """The run's observed data and labels, when they can be found and match the run.

    Returns
    -------
    data : numpy.ndarray, shape (N, D), or None
    labels : numpy.ndarray, shape (N,), int64, or None
    source : str
        Where the data came from, for the page.
    notes : list of str
    """
    from actors.module import as_labels
    from orchestrator.data import load_labels

    manifest = run.manifest
    notes: list[str] = []
    fingerprint = manifest.get("data") or {}
    obs = [k for k, v in fingerprint.items() if isinstance(v, dict) and "sha256" in v]
    n_points = int(manifest.get("n_points") or 0)
    data, recorded_labels, source = _find_data(manifest.get("cli"), data, fingerprint, obs, notes)
    if data is not None:
        data, recorded_labels, source = _matching_data(data, recorded_labels, source, fingerprint, obs, notes)
    if data is not None:
        n_points = data.shape[0]
    if (
        recorded_labels is not None
        and "labels_sha256" in fingerprint
        and labels_sha256(recorded_labels) != fingerprint["labels_sha256"]
    ):
        notes.append("The recorded labels differ from those the run used (SHA-256 mismatch); they are not used.")
        recorded_labels = None
    if labels is None:
        labels = recorded_labels
    elif isinstance(labels, (str, os.PathLike)):
        labels = load_labels(labels, n_points, labels_key)
    else:
        labels = as_labels(labels, n_points, "labels")
    return data, labels, source, notes


def _find_data(
    cli: Any, data: np.ndarray | None, fingerprint: dict[str, Any], obs: list[str], notes: list[str]
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The caller's data (N, D), else those the recorded command line names, else the digits if the run used them.

    Returns the data, the labels (N,) found with them (or None) and where they came from.
    """
    from orchestrator.data import default_digits

    if data is not None:
        return data, None, "given by the caller"
    if isinstance(cli, dict):
        try:
            return _reload_recorded(cli)
        except (SerketRayError, OSError) as exc:
            notes.append(
                f"The data could not be reloaded from the recorded command line ({exc}); original images are not shown."
            )
            return None, None, "not available"
    digits, digit_labels = default_digits()  # started from Python: the embedded digits are recognised by their SHA-256
    if len(obs) == 1 and fingerprint[obs[0]]["sha256"] == data_sha256(digits):
        return digits, digit_labels, "scikit-learn digits (embedded default)"
    notes.append("The run was started from Python, so its data are not known; original images are not shown.")
    return None, None, "not available"


def _matching_data(
    data: np.ndarray,
    labels: np.ndarray | None,
    source: str,
    fingerprint: dict[str, Any],
    obs: list[str],
    notes: list[str],
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The data and labels found, or None for both when the run had several observations or other data."""
    if len(obs) != 1:
        notes.append(f"The run has {len(obs)} observation modules; original images are not shown.")
        return None, None, source
    if fingerprint[obs[0]]["sha256"] != data_sha256(data):
        notes.append(
            f"The data found ({source}) differ from the data the run used (SHA-256 mismatch); original "
            "images are not shown."
        )
        return None, None, "not available"
    return data, labels, source
