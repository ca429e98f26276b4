"""What an actor process imports on its way to its first update: only what that update needs.

Each check runs in a fresh interpreter, as a Ray actor's process is, and names the modules
that must stay out of it.  Start-up time spent importing them was measured in the speed
bench (README, "Speed"): the orchestrator package pulled scipy and the GMM into every actor
that ran one of :mod:`orchestrator.executor`'s small calls, and a meta-device network's
``to_empty`` imported sympy on the VAE's first update.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_an_executor_call_does_not_import_the_orchestrator_scipy_or_the_mixture() -> None:
    loaded = _modules_after("import orchestrator.executor")
    assert "orchestrator.executor" in loaded
    assert not {"scipy", "actors.gmm", "orchestrator.api", "orchestrator.session", "torch"} & loaded


def test_the_orchestrator_names_still_import_from_the_package() -> None:
    loaded = _modules_after("from orchestrator import Orchestrator, Session, build_graph, Graph, RunResult")
    assert {"orchestrator.api", "orchestrator.session", "orchestrator.graph"} <= loaded


def test_a_vae_update_in_a_fresh_process_never_imports_sympy() -> None:
    code = (
        "import numpy as np\n"
        "from actors.config import VAEConfig\n"
        "from actors.vae import VAEWorker\n"
        "from messages import ObservationData\n"
        "x = np.random.default_rng(0).random((64, 20), dtype=np.float32)\n"
        "w = VAEWorker(VAEConfig(epochs=1, batch_size=32, latent_dim=3, hidden=8), 'vae', 'gmm', 'obs',"
        " np.random.SeedSequence(0), num_threads=1)\n"
        "w.update(0, ObservationData(sender='obs', receiver='vae', round=0, data=x))\n"
    )
    loaded = _modules_after(code)
    assert "actors.vae" in loaded and "torch" in loaded
    assert not {"sympy", "torch.fx.experimental.symbolic_shapes", "torch._dynamo"} & loaded
