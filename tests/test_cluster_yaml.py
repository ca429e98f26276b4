"""The shipped cluster-launcher configs pass Ray's own validator, offline.

``ray up`` runs ``prepare_config`` (fills the provider's defaults from the
``defaults.yaml`` shipped with Ray, merges setup commands) and then
``validate_config`` (Ray's JSON schema plus its own checks).  Both run here
with the network blocked: no cloud call is made.
"""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")
ray_util = pytest.importorskip("ray.autoscaler._private.util")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(ROOT.glob("cluster*.yaml"))
COMMAND_LISTS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"config validation tried to use the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` does before it talks to the provider; returns the prepared config."""
    prepared = ray_util.prepare_config(copy.deepcopy(config))
    ray_util.validate_config(prepared)
    return prepared


def commands_of(config: dict[str, Any]) -> list[str]:
    out = [c for key in COMMAND_LISTS for c in config.get(key) or []]
    for node_type in (config.get("available_node_types") or {}).values():
        out += [c for key in ("initialization_commands", "worker_setup_commands") for c in node_type.get(key) or []]
    return out


def test_both_configs_are_shipped():
    assert {p.name for p in SHIPPED} >= {"cluster.yaml", "cluster-onprem.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_passes_rays_validator(path):
    prepared = ray_validate(load(path))
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_command_is_a_string_and_valid_bash(path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    config = load(path)
    commands = commands_of(config)
    assert commands
    for command in commands:
        assert isinstance(command, str), command
        check = subprocess.run([bash, "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, f"{command!r}: {check.stderr}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_project_is_mounted_and_installed_after_torch(path):
    config = load(path)
    mounts = config["file_mounts"]
    assert "~/serket-ray" in mounts
    # ray up runs from the repository root, so "." must be this project.
    assert (ROOT / mounts["~/serket-ray"] / "pyproject.toml").is_file()
    lists = [config["setup_commands"]]
    lists += [
        t["worker_setup_commands"]
        for t in (config.get("available_node_types") or {}).values()
        if "worker_setup_commands" in t
    ]
    for commands in lists:
        torch = next(i for i, c in enumerate(commands) if '"torch' in c)
        project = next(i for i, c in enumerate(commands) if "-e ~/serket-ray" in c)
        assert torch < project, commands


def test_aws_config_has_head_gpu_vae_worker_and_cpu_workers():
    prepared = ray_validate(load(ROOT / "cluster.yaml"))
    assert prepared["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert len(gpu) == 1 and gpu[0]["resources"].get("vae_node") == 1
    cpu = [t for t in types.values() if t["resources"].get("gmm_node") and t["resources"].get("mm_node")]
    assert len(cpu) == 1 and not cpu[0]["resources"].get("GPU")
    for node_type in types.values():
        assert {"InstanceType", "ImageId"} <= set(node_type["node_config"])
    # The GPU node gets the CUDA torch wheel, the others the CPU one.
    assert not any("whl/cpu" in c for c in gpu[0]["worker_setup_commands"])
    assert any("whl/cpu" in c for c in prepared["setup_commands"])


def test_onprem_config_uses_the_local_provider_with_placeholders():
    config = load(ROOT / "cluster-onprem.yaml")
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    prepared = ray_validate(config)
    assert list(prepared["available_node_types"]) == ["local.cluster.node"]
    starts = " ".join(prepared["worker_start_ray_commands"])
    assert "vae_node" in starts and "gmm_node" in starts and "mm_node" in starts


# -- a broken config must be rejected ---------------------------------------------


@pytest.fixture
def aws_config() -> dict[str, Any]:
    return load(ROOT / "cluster.yaml")


def test_unknown_top_level_key_is_rejected(aws_config):
    aws_config["setup_comands"] = ["echo typo"]
    with pytest.raises(jsonschema.ValidationError, match="setup_comands"):
        ray_validate(aws_config)


def test_unknown_node_type_key_is_rejected(aws_config):
    aws_config["available_node_types"]["ray.worker.gpu"]["gpus"] = 1
    with pytest.raises(jsonschema.ValidationError, match="gpus"):
        ray_validate(aws_config)


def test_fractional_custom_resource_is_rejected(aws_config):
    aws_config["available_node_types"]["ray.worker.gpu"]["resources"]["vae_node"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(aws_config)


def test_head_node_type_must_exist(aws_config):
    aws_config["head_node_type"] = "ray.head.missing"
    with pytest.raises(ValueError, match="head_node_type"):
        ray_validate(aws_config)


def test_min_workers_above_max_workers_is_rejected(aws_config):
    aws_config["max_workers"] = 1
    with pytest.raises(ValueError, match="max_workers"):
        ray_validate(aws_config)


def test_unquoted_colon_in_a_command_is_rejected():
    # A classic YAML slip: `--resources='{"head_role": 1}'` unquoted parses as a mapping.
    config = load(ROOT / "cluster-onprem.yaml")
    config["head_setup_commands"] = yaml.safe_load("- ray start --resources='{\"head_role\": 1}'")
    assert isinstance(config["head_setup_commands"][0], dict)
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'string'"):
        ray_validate(config)


def test_onprem_config_rejects_node_types():
    config = load(ROOT / "cluster-onprem.yaml")
    config["available_node_types"] = {"gpu": {"resources": {"GPU": 1}, "node_config": {}}}
    with pytest.raises(Exception, match="not supported for on-premise"):
        ray_validate(config)


# -- authentication and exposure ------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_node_starts_ray_with_token_auth_and_the_dashboard_on_localhost(path):
    prepared = ray_validate(load(path))
    heads, workers = prepared["head_start_ray_commands"], prepared["worker_start_ray_commands"]
    for commands in (heads, workers):
        starts = [c for c in commands if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token ray start" in c for c in starts), starts
    head = " ".join(heads)
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in yaml.safe_dump(prepared)  # nothing listens on every interface


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_token_is_shipped_from_outside_the_repository_and_drivers_use_it(path):
    config = load(path)
    local = config["file_mounts"]["~/.ray/auth_token"]  # Ray's default token path on every node
    where = Path(local).expanduser().resolve()
    assert ROOT not in where.parents, f"the token {local} would be inside the repository"
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True).stdout.split()
    assert not [f for f in tracked if "token" in Path(f).name and not f.endswith((".sh", ".py", ".md"))], tracked
    lists = [config["setup_commands"]]
    lists += [
        t["worker_setup_commands"]
        for t in (config.get("available_node_types") or {}).values()
        if "worker_setup_commands" in t
    ]
    for commands in lists:  # ray attach / ray submit shells read ~/.bashrc
        assert any("export RAY_AUTH_MODE=token" in c and "~/.bashrc" in c for c in commands), commands
        assert "chmod 600 ~/.ray/auth_token" in commands


def test_the_token_script_makes_one_private_token_and_keeps_it(tmp_path):
    token = tmp_path / "dir" / "cluster-token"
    script = ROOT / "scripts" / "cluster_token.sh"
    subprocess.run(["bash", str(script), str(token)], check=True, capture_output=True)
    first = token.read_text()
    assert len(first.strip()) == 64 and (token.stat().st_mode & 0o777) == 0o600
    subprocess.run(["bash", str(script), str(token)], check=True, capture_output=True)
    assert token.read_text() == first  # made once: a second call keeps it
