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


def test_the_driver_builds_the_vae_and_its_worker_spec_without_torch_and_the_worker_imports_it() -> None:
    code = (
        "import sys, numpy as np; from actors import VAE; m = VAE(18); "
        "cls, args = m.worker_spec('vae', 'gmm', 'obs', np.random.SeedSequence(0), 1); "
        "before = 'torch' in sys.modules; w = cls(*args); "
        "print(before, 'torch' in sys.modules, type(w.device).__module__)"
    )
    assert _fresh(code) == "False True torch"


def test_openmp_keeps_its_default_wait_policy_unless_the_user_chose() -> None:
    code = "import os, actors; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    assert _fresh(code) == "unset"  # spinning waits; the VAE's ThreadGovernor handles a busy neighbour
    assert _fresh(code, OMP_WAIT_POLICY="PASSIVE") == "PASSIVE"


def test_a_local_ray_stops_with_its_monitor_killed_first_and_nothing_left_running() -> None:
    """stop_local_monitor kills the monitor of the Ray this process started, and only that Ray's."""
    code = """
import logging, os, ray
from ray._private import ray_constants, worker
from orchestrator.executor import disconnect_ray, stop_local_monitor
print(stop_local_monitor())  # no Ray yet: nothing to stop
ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING)
node = worker._global_node
procs = {kind: [i.process for i in infos] for kind, infos in node.all_processes.items()}
monitor = procs[ray_constants.PROCESS_TYPE_MONITOR][0]
others = [p for kind, ps in procs.items() if kind != ray_constants.PROCESS_TYPE_MONITOR for p in ps]
print(stop_local_monitor(), monitor.poll() is not None, all(p.poll() is None for p in others))
print(stop_local_monitor())  # already gone
disconnect_ray()
print(ray.is_initialized(), all(p.poll() is not None for p in others))
"""
    lines = _fresh(code, RAY_AUTH_MODE="token").splitlines()[-4:]
    assert lines == ["False", "True True True", "False", "False True"]


def test_a_lazy_module_is_imported_on_first_attribute_access_and_is_then_the_module() -> None:
    code = (
        "import sys; from actors.lazy import LazyModule; m = LazyModule('colorsys'); "
        "a = 'colorsys' in sys.modules; l0 = m.loaded; v = m.rgb_to_hsv(1.0, 0.0, 0.0); "
        "import colorsys; same = m.rgb_to_hsv is colorsys.rgb_to_hsv; "
        "print(a, l0, m.loaded, v == colorsys.rgb_to_hsv(1.0, 0.0, 0.0), same)"
    )
    assert _fresh(code) == "False False True True True"
    missing = "from actors.lazy import LazyModule; m = LazyModule('colorsys'); print(hasattr(m, 'no_such_name'))"
    assert _fresh(missing) == "False"
