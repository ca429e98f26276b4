"""Start-up: what a fresh process imports and which OpenMP wait policy it gets (real subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys


def _fresh(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=full
    ).stdout.strip()


def test_mixture_and_markov_actors_do_not_import_torch() -> None:
    code = (
        "import sys, actors.gmm, actors.mm, orchestrator.progress; "
        "from actors import GMMWorker, MMWorker; print('torch' in sys.modules)"
    )
    assert _fresh(code) == "False"
    assert _fresh("import sys; from actors import VAE; print('torch' in sys.modules, VAE.kind)") == "True vae"


def test_openmp_keeps_its_default_wait_policy_unless_the_user_chose() -> None:
    code = "import os, actors; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    assert _fresh(code) == "unset"  # spinning waits; the VAE's ThreadGovernor handles a busy neighbour
    assert _fresh(code, OMP_WAIT_POLICY="PASSIVE") == "PASSIVE"
