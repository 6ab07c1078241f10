"""Ray's own checks on the cluster launcher configs in ``cluster/`` (no cluster, no network, no boto3).

``ray up`` runs ``prepare_config`` (merge the provider's defaults.yaml; for ``provider: local``,
synthesise the single node type) and then ``validate_config`` (``ray-schema.json`` plus consistency
checks) before it contacts the cloud. These tests run exactly those two steps, then check the
project-specific choices (CPU-0 head, GPU workers, image, pins, install commands). Neither step needs
boto3 or AWS credentials; what ``ray up`` does afterwards (instance-type lookup, key pair, security
group, IAM, AMI) talks to AWS and is not tested here.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
CONFIGS = ("config.yaml", "onprem.yaml")
LOCAL_NODE_TYPE = "local.cluster.node"


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def _ray_checks(config: dict) -> dict:
    """What ``ray up`` does to a config before it contacts a provider."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _pins() -> dict[str, str]:
    """``name -> version`` for every ``==`` pin in pyproject.toml (dependencies and extras)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    pins = {}
    for spec in specs:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*([^;\s]+)\s*", spec)
        if m:
            pins[m.group(1).lower()] = m.group(3)
    return pins


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch):
    # `ray up` is run from the repository root: file_mounts' local paths are relative to it.
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("name", CONFIGS)
def test_passes_ray_validation(name):
    prepared = _ray_checks(_load(name))
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_aws_config_node_types():
    config = _load("config.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    # No tasks or actors on the head.
    assert head["resources"].get("CPU") == 0
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = [t for name, t in types.items() if name != config["head_node_type"]]
    assert len(gpu_types) == 1
    gpu = gpu_types[0]
    assert gpu["resources"]["GPU"] >= 1
    assert gpu["min_workers"] == 0 and gpu["max_workers"] == 4
    assert config["max_workers"] >= gpu["max_workers"]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))


def test_onprem_config_has_no_node_types():
    config = _load("onprem.yaml")
    assert config["provider"]["type"] == "local"
    assert "available_node_types" not in config and "head_node_type" not in config
    prepared = _ray_checks(config)
    assert set(prepared["available_node_types"]) == {LOCAL_NODE_TYPE}
    assert prepared["max_workers"] == len(config["provider"]["worker_ips"])
    # Placeholders: documentation addresses (RFC 5737 TEST-NET-1) and a marked user name.
    for ip in [config["provider"]["head_ip"], *config["provider"]["worker_ips"]]:
        assert ip.startswith("192.0.2."), ip
    assert "REPLACE" in config["auth"]["ssh_user"]


def test_validation_is_live():
    """The same checks reject broken variants: passing above means something."""
    aws = _load("config.yaml")

    bad = copy.deepcopy(aws)
    bad["not_a_launcher_key"] = 1
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        _ray_checks(bad)

    bad = copy.deepcopy(aws)
    bad["available_node_types"]["gpu_worker"]["head_setup_commands"] = []
    with pytest.raises(jsonschema.ValidationError):
        _ray_checks(bad)

    bad = copy.deepcopy(aws)
    bad["head_node_type"] = "missing"
    with pytest.raises(ValueError, match="head_node_type"):
        _ray_checks(bad)

    bad = copy.deepcopy(aws)
    bad["max_workers"] = 0
    bad["available_node_types"]["gpu_worker"]["min_workers"] = 2
    with pytest.raises(ValueError, match="min_workers"):
        _ray_checks(bad)

    onprem = copy.deepcopy(_load("onprem.yaml"))
    onprem["available_node_types"] = {"x": {"resources": {}, "node_config": {}}}
    with pytest.raises(Exception, match="not supported for on-premise"):
        _ray_checks(onprem)


@pytest.mark.parametrize("name", CONFIGS)
def test_image_matches_ray(name):
    docker = _load(name)["docker"]
    assert docker["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert _pins()["ray"] == ray.__version__
    assert "ray-ml" not in yaml.safe_dump(docker)  # unpublished since Ray 2.50 (RAY_NOTES.md §6)


@pytest.mark.parametrize("name", CONFIGS)
def test_shm_size_for_every_role(name):
    docker = _load(name)["docker"]
    for role in ("head", "worker"):
        options = docker.get("run_options", []) + docker.get(f"{role}_run_options", [])
        assert any(o.startswith("--shm-size") for o in options), (role, options)


@pytest.mark.parametrize("name", CONFIGS)
def test_install_commands_follow_the_pins(name):
    config = _load(name)
    pins = _pins()
    commands = config["setup_commands"]
    # The checkout is synced to ~/semgen_ray on every node, then installed from there.
    assert config["file_mounts"].get("~/semgen_ray") == "."

    def index(pattern: str) -> int:
        hits = [i for i, c in enumerate(commands) if re.search(pattern, c)]
        assert len(hits) == 1, (pattern, commands)
        return hits[0]

    torch = index(r"pip install .*torch==" + re.escape(pins["torch"]))
    assert "--index-url https://download.pytorch.org/whl/cu" in commands[torch]
    project = index(r"pip install .*-e ~/semgen_ray")
    deepspeed = index(r"deepspeed==" + re.escape(pins["deepspeed"]))
    assert commands[deepspeed].startswith("DS_BUILD_OPS=0 pip install")
    assert "--no-build-isolation" in commands[deepspeed]
    # torch first (the project's pin then keeps the CUDA build), deepspeed last (built against it).
    assert torch < project < deepspeed


@pytest.mark.parametrize("name", CONFIGS)
def test_start_commands_parse_with_ray_cli(name):
    """Every `ray start` line uses options that this Ray's CLI knows."""
    from ray.scripts.scripts import start

    config = _load(name)
    lines = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    starts = [line.split(";")[-1].strip() for line in lines if "ray start" in line]
    assert len(starts) == 2
    for line in starts:
        words = shlex.split(line)
        assert words[:2] == ["ray", "start"]
        start.make_context("start", words[2:])  # raises click.NoSuchOption on a typo
    head = start.make_context("start", shlex.split(starts[0])[2:]).params
    assert head["head"]
    if config["provider"]["type"] == "local":  # no node types: keep work off the head here
        assert head["num_cpus"] == 0


def test_pretrain_config_for_the_cluster_loads():
    from semgen_ray.config import load_config

    config = load_config(CLUSTER / "pretrain-luna16.yaml")
    # Shared storage: every node reads the store and writes the run directory.
    assert config.run_dir.startswith("s3://")
    assert config.store.uri.startswith("s3://")
    gpus_per_node = _load("config.yaml")["available_node_types"]["gpu_worker"]["resources"]["GPU"]
    assert config.train.num_workers % gpus_per_node == 0
