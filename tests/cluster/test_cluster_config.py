"""Checks on the cluster files in ``cluster/`` (no cluster, no network, no boto3, no Kubernetes); the
documented run on object storage itself is run in ``test_object_store_run.py``.

Launcher configs: ``ray up`` runs ``prepare_config`` (merge the provider's defaults.yaml; for
``provider: local``, synthesise the single node type) and then ``validate_config`` (``ray-schema.json``
plus consistency checks) before it contacts the cloud. These tests run exactly those two steps, then
check the project-specific choices (CPU-0 head, GPU node types, per-type /dev/shm, image, pins, install
commands). Neither step needs boto3 or AWS credentials; what ``ray up`` does afterwards (instance-type
lookup, key pair, security group, IAM, AMI) talks to AWS and is not tested here.

KubeRay manifest (``cluster/kuberay/rayjob.yaml``): no Kubernetes API server or CRD schema is available
here, so the tests check its structure against the KubeRay ``ray.io/v1`` field names, and its content
(CPU-only head, GPU limits, images and pins, install order, /dev/shm, credentials from a Secret, no
public Service, an entrypoint that ``semgen_ray.pretrain`` accepts). Every checker is also run on
broken variants, so a passing test means something.
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
RAYJOB = "kuberay/rayjob.yaml"
LOCAL_NODE_TYPE = "local.cluster.node"

# AWS instance sizes (vCPU, GPUs, RAM in GiB) as published at the time of writing; used to check that the
# `resources` and shm sizes stated in config.yaml agree with the instance type they name.
INSTANCES = {
    "m5.2xlarge": (8, 0, 32),
    "g5.xlarge": (4, 1, 16),
    "g5.2xlarge": (8, 1, 32),
    "g6.xlarge": (4, 1, 16),
    "g5.12xlarge": (48, 4, 192),
    "g5.48xlarge": (192, 8, 768),
    "p4d.24xlarge": (96, 8, 1152),
}
# Ray's default object store: 30% of the node's memory, at most 200 GB (ray_constants).
OBJECT_STORE_FRACTION = 0.3
OBJECT_STORE_MAX_GIB = 200e9 / 2**30


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


def _gib(quantity) -> float:
    """A Docker ``--shm-size`` or Kubernetes memory quantity in GiB ("64g", "16Gi", "500M", 1024)."""
    m = re.fullmatch(r"\s*'?(\d+(?:\.\d+)?)\s*([a-zA-Z]*)'?\s*", str(quantity))
    assert m, quantity
    value, unit = float(m.group(1)), m.group(2)
    scale = {"": 1, "b": 1, "k": 2**10, "ki": 2**10, "m": 2**20, "mi": 2**20, "g": 2**30, "gi": 2**30,
             "t": 2**40, "ti": 2**40}
    if unit in ("K", "M", "G", "T"):  # Kubernetes decimal suffixes
        return value * 10 ** {"K": 3, "M": 6, "G": 9, "T": 12}[unit] / 2**30
    return value * scale[unit.lower()] / 2**30


def _shm_sizes(options: list[str]) -> list[float]:
    sizes = []
    for option in options:
        m = re.match(r"--shm-size[= ](\S+)", option)
        if m:
            sizes.append(_gib(m.group(1)))
    return sizes


def _gpu_types(config: dict) -> dict[str, dict]:
    return {n: t for n, t in config["available_node_types"].items() if n != config["head_node_type"]}


def _enabled_gpu_type(config: dict) -> str:
    enabled = [n for n, t in _gpu_types(config).items() if t.get("max_workers", 0) > 0]
    assert len(enabled) == 1, f"exactly one GPU node type must have max_workers > 0, got {enabled}"
    return enabled[0]


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch):
    # `ray up` is run from the repository root: file_mounts' local paths are relative to it.
    monkeypatch.chdir(REPO)


# --- every YAML file ------------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".yml"))


def test_every_cluster_yaml_loads_with_the_safe_loader():
    files = _yaml_files()
    names = {p.relative_to(CLUSTER).as_posix() for p in files}
    assert {*CONFIGS, "pretrain-luna16.yaml", RAYJOB} <= names, names
    for path in files:
        text = path.read_text()
        assert "!!python" not in text and "!python" not in text, path
        assert isinstance(yaml.safe_load(text), dict), path


def test_safe_load_refuses_python_tags():
    """The loader used above (and by `ray up`) builds no Python objects from tags."""
    doc = "!!python/object/apply:builtins.len [[1, 2, 3]]"
    assert yaml.unsafe_load(doc) == 3  # what an unsafe loader would do with the tag
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(doc)
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("cluster_name: !!python/name:os.system x")


# --- launcher configs -----------------------------------------------------------------------------


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
    assert INSTANCES[head["node_config"]["InstanceType"]][1] == 0

    gpu_types = _gpu_types(config)
    by_gpus = {t["resources"]["GPU"]: n for n, t in gpu_types.items()}
    assert {1, 4, 8} <= set(by_gpus), by_gpus  # single-GPU, 4-GPU and 8-GPU nodes
    shared = []
    for name, t in gpu_types.items():
        # Autoscaling bounds; Ray's validate_config does not compare a type's own min and max.
        assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"], name
        # The stated resources are the instance type's.
        vcpus, gpus, _ = INSTANCES[t["node_config"]["InstanceType"]]
        assert t["resources"] == {"CPU": vcpus, "GPU": gpus}, name
        assert t["node_config"]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] >= 100, name
        shared.append({k: v for k, v in t["node_config"].items() if k != "InstanceType"})
    # Every GPU type has the same worker settings (disk, and IAM / AMI / spot once uncommented): one
    # anchored node_config merged into the others, so an edit cannot miss a type.
    assert all(s == shared[0] for s in shared), shared
    # One GPU type at a time: the autoscaler would otherwise choose (and mix) types by its own score.
    enabled = _enabled_gpu_type(config)
    assert gpu_types[enabled]["max_workers"] >= 1


def test_shm_size_per_node_type():
    """Each node's effective docker options, as Ray merges them, give one fitting --shm-size."""
    from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

    config = _load("config.yaml")
    merged = AutoscalingConfig(copy.deepcopy(config), skip_content_hash=True)
    for name, t in config["available_node_types"].items():
        docker = merged.get_docker_config(name)
        role = "head" if name == config["head_node_type"] else "worker"
        options = docker.get("run_options", []) + docker.get(f"{role}_run_options", [])
        sizes = _shm_sizes(options)
        # One --shm-size: a type's own worker_run_options replace the global list, not add to it.
        assert len(sizes) == 1, (name, options)
        ram = INSTANCES[t["node_config"]["InstanceType"]][2]
        object_store = min(OBJECT_STORE_FRACTION * ram, OBJECT_STORE_MAX_GIB)
        assert object_store <= sizes[0] <= 0.5 * ram, (name, sizes[0], ram)
    # Per-type sizes differ (a single global value could not fit 16 GiB and 768 GiB nodes alike).
    worker_sizes = {_shm_sizes(merged.get_docker_config(n).get("worker_run_options", []))[0]
                    for n in _gpu_types(config)}
    assert len(worker_sizes) == len(_gpu_types(config))


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
    gpu = _enabled_gpu_type(aws)

    bad = copy.deepcopy(aws)
    bad["not_a_launcher_key"] = 1
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        _ray_checks(bad)

    bad = copy.deepcopy(aws)
    bad["available_node_types"][gpu]["head_setup_commands"] = []
    with pytest.raises(jsonschema.ValidationError):
        _ray_checks(bad)

    # Per-type docker settings are limited to worker_image / worker_run_options / pull_before_run.
    bad = copy.deepcopy(aws)
    bad["available_node_types"][gpu]["docker"]["run_options"] = ["--shm-size=1g"]
    with pytest.raises(jsonschema.ValidationError, match="run_options"):
        _ray_checks(bad)

    bad = copy.deepcopy(aws)
    bad["head_node_type"] = "missing"
    with pytest.raises(ValueError, match="head_node_type"):
        _ray_checks(bad)

    bad = copy.deepcopy(aws)
    bad["max_workers"] = 0
    bad["available_node_types"][gpu]["min_workers"] = 2
    with pytest.raises(ValueError, match="min_workers"):
        _ray_checks(bad)

    bad = copy.deepcopy(aws)
    for t in _gpu_types(bad).values():
        t["max_workers"] = 2
    with pytest.raises(AssertionError, match="exactly one GPU node type"):
        _enabled_gpu_type(bad)

    onprem = copy.deepcopy(_load("onprem.yaml"))
    onprem["available_node_types"] = {"x": {"resources": {}, "node_config": {}}}
    with pytest.raises(Exception, match="not supported for on-premise"):
        _ray_checks(onprem)


@pytest.mark.parametrize("name", CONFIGS)
def test_image_matches_ray(name):
    docker = _load(name)["docker"]
    assert docker["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert _pins()["ray"] == ray.__version__
    assert "ray-ml" not in yaml.safe_dump(docker)  # unpublished since Ray 2.50 (docs/operations.md §6)


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
    # Shared storage: every node reads the store and writes the run directory (a run with both on s3://
    # is run for real in test_object_store_run.py; here only that this config uses that scheme).
    assert config.run_dir.startswith("s3://")
    assert config.store.uri.startswith("s3://")
    aws = _load("config.yaml")
    gpus_per_node = aws["available_node_types"][_enabled_gpu_type(aws)]["resources"]["GPU"]
    assert config.train.num_workers % gpus_per_node == 0


# --- KubeRay RayJob -------------------------------------------------------------------------------

# Field names of the KubeRay ray.io/v1 types this manifest may use (RayJobSpec, RayClusterSpec,
# HeadGroupSpec, WorkerGroupSpec). A misspelt field would otherwise be dropped by the API server.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
    "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
    "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend"}
RAYCLUSTER_SPEC_FIELDS = {
    "headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
    "headServiceAnnotations", "suspend", "authOptions"}
HEAD_GROUP_FIELDS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP_FIELDS = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
                       "template", "scaleStrategy", "suspend"}
CONTAINER_FIELDS = {"name", "image", "command", "args", "env", "envFrom", "resources", "ports",
                    "volumeMounts", "imagePullPolicy", "workingDir", "securityContext", "lifecycle"}
EXPOSED = ("LoadBalancer", "NodePort")


def _groups(doc: dict) -> list[tuple[str, dict]]:
    spec = doc["spec"]["rayClusterSpec"]
    return [("head", spec["headGroupSpec"])] + [(g.get("groupName", "?"), g)
                                               for g in spec.get("workerGroupSpecs", [])]


def _walk(node, path=""):
    """Yield ``(path, key, value)`` for every mapping entry of a parsed YAML tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def _script_lines(container: dict) -> list[str]:
    text = "\n".join(map(str, container.get("command", []) + container.get("args", [])))
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _field_problems(doc: dict) -> list[str]:
    problems = []
    spec = doc["spec"]

    def check(where, mapping, allowed):
        for key in set(mapping) - allowed:
            problems.append(f"{where}: unknown field {key!r}")

    check("spec", spec, RAYJOB_SPEC_FIELDS)
    check("rayClusterSpec", spec["rayClusterSpec"], RAYCLUSTER_SPEC_FIELDS)
    for name, group in _groups(doc):
        check(f"group {name}", group, HEAD_GROUP_FIELDS if name == "head" else WORKER_GROUP_FIELDS)
        pod = group["template"]["spec"]
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            check(f"group {name} container {c.get('name')}", c, CONTAINER_FIELDS)
    return problems


def _exposure_problems(doc: dict) -> list[str]:
    """The dashboard and the other head ports must not leave the Kubernetes cluster."""
    problems = []
    head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]
    if head.get("serviceType", "ClusterIP") != "ClusterIP":
        problems.append(f"head exposed: serviceType {head['serviceType']}")
    if head.get("enableIngress"):
        problems.append("head exposed: enableIngress")
    for path, key, value in _walk(doc):
        if key in ("serviceType", "type") and value in EXPOSED:
            problems.append(f"exposed: {path}.{key} = {value}")
    return problems


def _pod_problems(name: str, pod: dict, pins: dict, head: bool) -> list[str]:
    problems = []
    where = f"group {name}"
    containers = pod.get("containers", [])
    if not containers:
        return [f"{where}: no containers"]
    ray_c = containers[0]  # KubeRay: the Ray container is the first one
    limits = ray_c.get("resources", {}).get("limits", {})
    requests = ray_c.get("resources", {}).get("requests", {})
    for key in ("cpu", "memory"):
        if key not in limits:
            problems.append(f"{where}: no {key} limit")
    gpus = limits.get("nvidia.com/gpu")
    if head and ("nvidia.com/gpu" in limits or "nvidia.com/gpu" in requests):
        problems.append(f"{where}: the head asks for nvidia.com/gpu")
    if not head:
        if not isinstance(gpus, int) or gpus < 1:
            problems.append(f"{where}: nvidia.com/gpu limit must be a positive integer, got {gpus!r}")
        elif requests.get("nvidia.com/gpu", gpus) != gpus:
            problems.append(f"{where}: nvidia.com/gpu request differs from the limit")
        if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
            problems.append(f"{where}: no toleration for the nvidia.com/gpu taint")

    # /dev/shm: a memory-backed emptyDir mounted in the Ray container.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in ray_c.get("volumeMounts", [])}
    shm = volumes.get(mounts.get("/dev/shm"), {})
    if shm.get("emptyDir", {}).get("medium") != "Memory":
        problems.append(f"{where}: /dev/shm is not an emptyDir with medium Memory")
    elif "memory" in limits and _gib(shm["emptyDir"].get("sizeLimit", "0")) > 0.5 * _gib(limits["memory"]):
        problems.append(f"{where}: /dev/shm sizeLimit over half the memory limit")

    # Object-storage credentials from a Secret, never literal values.
    from_secret = any("secretRef" in e for e in ray_c.get("envFrom", [])) or any(
        "secretKeyRef" in e.get("valueFrom", {}) for e in ray_c.get("env", []))
    if not from_secret:
        problems.append(f"{where}: no credential Secret reference (envFrom secretRef / secretKeyRef)")
    for e in ray_c.get("env", []):
        if re.search(r"SECRET|TOKEN|PASSWORD|ACCESS_KEY", e["name"]) and "value" in e:
            problems.append(f"{where}: literal credential value in env {e['name']}")

    # The install: torch (CUDA build), the project, DeepSpeed, in that order, into a prefix on a
    # volume that the Ray container mounts and imports from (PYTHONPATH).
    lines = [ln for c in pod.get("initContainers", []) for ln in _script_lines(c)]
    pip = [ln for ln in lines if re.search(r"\bpip install\b", ln)]

    def find(pattern: str, what: str) -> int | None:
        hits = [i for i, ln in enumerate(pip) if re.search(pattern, ln)]
        if len(hits) != 1:
            problems.append(f"{where}: {what}: expected one pip install matching {pattern!r}, got {len(hits)}")
            return None
        return hits[0]

    torch = find(r"\btorch==" + re.escape(pins["torch"]) + r"\b", "torch")
    if torch is not None and "--index-url https://download.pytorch.org/whl/cu" not in pip[torch]:
        problems.append(f"{where}: torch: not from the PyTorch CUDA wheel index")
    project = find(r"semgen_ray @ git\+https://|pip install .*-e \S*semgen_ray", "project")
    deepspeed = find(r"\bdeepspeed==" + re.escape(pins["deepspeed"]) + r"\b", "deepspeed")
    if deepspeed is not None and not (pip[deepspeed].startswith("DS_BUILD_OPS=0 pip install")
                                      and "--no-build-isolation" in pip[deepspeed]):
        problems.append(f"{where}: deepspeed: not installed with DS_BUILD_OPS=0 and --no-build-isolation")
    if None not in (torch, project, deepspeed) and not torch < project < deepspeed:
        problems.append(f"{where}: install order must be torch, project, deepspeed")
    prefixes = {m.group(1) for ln in pip for m in [re.search(r"--prefix[= ](\S+)", ln)] if m}
    if len(prefixes) != 1 or not all("--prefix" in ln for ln in pip):
        problems.append(f"{where}: every pip install must use one --prefix, got {prefixes}")
    else:
        prefix = prefixes.pop()
        image_py = re.search(r"-py(\d)(\d+)", ray_c.get("image", ""))
        site = f"{prefix}/lib/python{image_py.group(1)}.{image_py.group(2)}/site-packages" if image_py else "?"
        env = {e["name"]: e.get("value", "") for e in ray_c.get("env", [])}
        if site not in env.get("PYTHONPATH", "").split(":"):
            problems.append(f"{where}: PYTHONPATH of the Ray container does not hold {site}")
        if not any(ln == f"export PYTHONPATH={site}" for ln in lines):
            problems.append(f"{where}: the install does not export PYTHONPATH={site} for its later steps")
        init_mounts = {m["mountPath"]: m["name"] for c in pod.get("initContainers", [])
                       for m in c.get("volumeMounts", [])}
        if not (prefix in mounts and init_mounts.get(prefix) == mounts[prefix] and mounts[prefix] in volumes):
            problems.append(f"{where}: {prefix} is not one volume shared by the install and the Ray container")
    return problems


def _rayjob_problems(doc: dict) -> list[str]:
    """Everything that is wrong with a parsed RayJob manifest (empty: nothing found)."""
    pins = _pins()
    problems = []
    if doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") != "RayJob":
        problems.append(f"not a ray.io/v1 RayJob: {doc.get('apiVersion')} {doc.get('kind')}")
    spec = doc["spec"]
    if spec.get("shutdownAfterJobFinishes") is not True:
        problems.append("shutdownAfterJobFinishes must be true")
    if not str(spec.get("entrypoint", "")).startswith("python -m semgen_ray.pretrain --config "):
        problems.append("entrypoint is not `python -m semgen_ray.pretrain --config ...`")
    cluster = spec["rayClusterSpec"]
    if cluster.get("rayVersion") != pins["ray"]:
        problems.append(f"rayVersion {cluster.get('rayVersion')} is not the ray pin {pins['ray']}")
    images = [v for _, k, v in _walk(doc) if k == "image"]
    for image in images:
        if image != f"rayproject/ray:{pins['ray']}-py311-gpu":
            problems.append(f"image {image} does not match the ray pin {pins['ray']}")
    if len(images) < 4:
        problems.append(f"expected images for the head, the workers and their installs, found {images}")
    head = cluster["headGroupSpec"]
    if head.get("rayStartParams", {}).get("num-cpus") != "0":
        problems.append("head rayStartParams num-cpus must be the string \"0\"")
    if not cluster.get("workerGroupSpecs"):
        problems.append("no worker group")
    for name, group in _groups(doc):
        problems += _pod_problems(name, group["template"]["spec"], pins, head=name == "head")
        if name != "head" and not (group.get("minReplicas", 0) <= group.get("replicas", 0)
                                   <= group.get("maxReplicas", 0)):
            problems.append(f"group {name}: replicas outside [minReplicas, maxReplicas]")
    return problems + _field_problems(doc) + _exposure_problems(doc)


def test_rayjob_manifest():
    doc = _load(RAYJOB)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    assert doc["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    workers = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert all(w["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
               for w in workers)
    assert _rayjob_problems(doc) == []


def _set_script(doc, old, new):
    # The head and the workers share one install (a YAML alias): changing it once changes both.
    args = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["initContainers"][0]["args"]
    assert old in args[0], old
    args[0] = args[0].replace(old, new)


def _worker(doc):
    return doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]


def _head(doc):
    return doc["spec"]["rayClusterSpec"]["headGroupSpec"]


MUTATIONS = {
    "head runs work": (lambda d: _head(d)["rayStartParams"].update({"num-cpus": "1"}), "num-cpus"),
    "num-cpus not a string": (lambda d: _head(d)["rayStartParams"].update({"num-cpus": 0}), "num-cpus"),
    "no GPU limit": (lambda d: _worker(d)["template"]["spec"]["containers"][0]["resources"]["limits"]
                     .pop("nvidia.com/gpu"), "nvidia.com/gpu"),
    "GPU on the head": (lambda d: _head(d)["template"]["spec"]["containers"][0]["resources"]["limits"]
                        .update({"nvidia.com/gpu": 1}), "head asks for nvidia.com/gpu"),
    "old image": (lambda d: _worker(d)["template"]["spec"]["containers"][0].update(
        image="rayproject/ray:2.59.0-py311-gpu"), "does not match the ray pin"),
    "old rayVersion": (lambda d: d["spec"]["rayClusterSpec"].update(rayVersion="2.59.0"), "rayVersion"),
    "other torch": (lambda d: _set_script(d, '"torch==', '"torch==0.'), "torch"),
    "cpu torch": (lambda d: _set_script(d, "whl/cu128", "whl/cpu"), "CUDA wheel index"),
    "deepspeed with ops": (lambda d: _set_script(d, "DS_BUILD_OPS=0 ", ""), "DS_BUILD_OPS=0"),
    "deepspeed pin": (lambda d: _set_script(d, '"deepspeed==', '"deepspeed>='), "deepspeed"),
    "no project": (lambda d: _set_script(d, '"semgen_ray @ git+https://', '"other @ git+https://'), "project"),
    "no shared prefix": (lambda d: _set_script(d, "--prefix /opt/semgen --no-build", "--no-build"), "--prefix"),
    "no PYTHONPATH": (lambda d: _worker(d)["template"]["spec"]["containers"][0].update(env=[]), "PYTHONPATH"),
    "shm on disk": (lambda d: _worker(d)["template"]["spec"]["volumes"][1]["emptyDir"].pop("medium"), "/dev/shm"),
    "no secret": (lambda d: _worker(d)["template"]["spec"]["containers"][0].update(envFrom=[]), "Secret"),
    "literal key": (lambda d: _head(d)["template"]["spec"]["containers"][0]["env"].append(
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}), "literal credential"),
    "LoadBalancer": (lambda d: _head(d).update(serviceType="LoadBalancer"), "exposed"),
    "NodePort": (lambda d: _head(d).update(serviceType="NodePort"), "exposed"),
    "ingress": (lambda d: _head(d).update(enableIngress=True), "exposed"),
    "LB head service": (lambda d: _head(d).update(headService={"spec": {"type": "LoadBalancer"}}), "exposed"),
    "cluster kept": (lambda d: d["spec"].update(shutdownAfterJobFinishes=False), "shutdownAfterJobFinishes"),
    "typo field": (lambda d: d["spec"].update(shutdownAfterJobFinish=True), "unknown field"),
    "other entrypoint": (lambda d: d["spec"].update(entrypoint="python train.py"), "entrypoint"),
    "bad replicas": (lambda d: _worker(d).update(replicas=3), "replicas"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_rayjob_checks_are_live(mutation):
    change, expected = MUTATIONS[mutation]
    doc = copy.deepcopy(_load(RAYJOB))
    change(doc)
    problems = _rayjob_problems(doc)
    assert any(expected in p for p in problems), problems


def test_rayjob_entrypoint_is_a_pretrain_command():
    """The entrypoint parses with semgen_ray.pretrain's own parser and config loader."""
    from semgen_ray.config import load_config
    from semgen_ray.pretrain import build_parser

    doc = _load(RAYJOB)
    words = shlex.split(doc["spec"]["entrypoint"])
    assert words[:3] == ["python", "-m", "semgen_ray.pretrain"]
    args = build_parser().parse_args(words[3:])
    overrides = list(args.set)
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    if args.store:
        overrides.append(f"store.uri={args.store}")
    config = load_config(args.config, overrides)
    # Shared storage (the scheme that test_object_store_run.py runs), and one Train worker per GPU.
    assert config.run_dir.startswith("s3://") and config.store.uri.startswith("s3://")
    gpus = sum(w["replicas"] * w["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
               for w in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"])
    assert config.train.num_workers == gpus
