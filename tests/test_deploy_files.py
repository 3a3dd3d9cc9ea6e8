"""deploy/compose.yaml and deploy/k8s/ read as what they run (no Docker engine or
cluster here): the files parse, each Patchling container runs a real `patchling`
command with options the CLI accepts, every variable it is given is a setting,
web and workers share one queue, and the README documents the same commands."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from bot.cli import app
from bot.config import Settings, default_tiers
from tests.test_env_example import key_names, setting_names

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
README = ROOT / "README.md"
PATCHLING = "/opt/patchling/.venv/bin/patchling"
# Variables the containers name that are not settings: none today.
NOT_SETTINGS: set[str] = set()


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def k8s_documents() -> list[dict[str, Any]]:
    """Every document of every file under deploy/k8s/ (a file may hold several)."""
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(document, dict) and {"apiVersion", "kind", "metadata"} <= set(document), path
            documents.append(document)
    return documents


def k8s(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def patchling_containers() -> dict[str, dict[str, Any]]:
    """The Deployments' containers that run Patchling's image, by Deployment name."""
    containers = {}
    for deployment in (d for d in k8s_documents() if d["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("patchling"):
                containers[deployment["metadata"]["name"]] = container
    return containers


def parse_command(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """The subcommand and its parsed options, as the real CLI parses them (nothing runs)."""
    program, name, *args = argv
    assert program == PATCHLING
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    with group.make_context("patchling", [name, *args]) as context:
        command = group.get_command(context, name)
        assert command is not None, f"`patchling {name}` is not a command"
        with command.make_context(name, list(args), parent=context) as parsed:
            return name, dict(parsed.params)


def readme_mentions(argv: list[str]) -> bool:
    """The README shows the command, as `patchling ...` or with the venv's path."""
    text = README.read_text(encoding="utf-8")
    command = shlex.join(["patchling", *argv[1:]])
    return f"`{command}`" in text or f"`.venv/bin/{command}`" in text


def known_variable(name: str) -> bool:
    return name in setting_names() or name in key_names() or name in NOT_SETTINGS


# -- compose ------------------------------------------------------------------------------


def test_compose_has_the_four_services() -> None:
    assert set(compose()["services"]) == {"web", "worker", "redis", "ollama"}


@pytest.mark.parametrize(("service", "subcommand"), [("web", "serve"), ("worker", "worker")])
def test_compose_commands_are_real_and_documented(service: str, subcommand: str) -> None:
    argv = compose()["services"][service]["command"]
    name, params = parse_command(argv)
    assert name == subcommand
    if name == "serve":
        assert (params["host"], params["port"]) == ("0.0.0.0", 3000)
    assert readme_mentions(argv), f"README does not show `{shlex.join(argv)}`"


def test_compose_environment_names_only_settings() -> None:
    for name in ("web", "worker"):
        service = compose()["services"][name]
        unknown = [v for v in service["environment"] if not known_variable(v)]
        assert not unknown, f"{name}: {unknown}"
        assert service["env_file"] == ".env"  # the App's secrets come from there
        assert "patchling-data:/data" in service["volumes"]
        assert service["environment"]["PATCHLING_DATA_DIR"] == "/data"


def test_compose_web_and_worker_share_the_redis_queue() -> None:
    services = compose()["services"]
    web, worker = (services[n]["environment"]["PATCHLING_QUEUE_URL"] for n in ("web", "worker"))
    assert web == worker
    assert re.fullmatch(r"redis://redis:6379/\d+", web)
    assert "redis" in services["worker"]["depends_on"]


def test_compose_web_health_is_healthz_and_the_worker_has_none() -> None:
    services = compose()["services"]
    test = " ".join(services["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:3000/healthz" in test
    assert services["worker"]["healthcheck"] == {"disable": True}


def test_compose_key_is_the_file_the_app_reads() -> None:
    config = compose()
    environment = config["services"]["web"]["environment"]
    (secret,) = config["services"]["web"]["secrets"]
    assert environment["GITHUB_PRIVATE_KEY_PATH"] == f"/run/secrets/{secret}"
    assert secret in config["secrets"]


def compose_tiers() -> list[dict[str, Any]]:
    tiers = json.loads(compose()["services"]["worker"]["environment"]["PATCHLING_TIERS"])
    assert isinstance(tiers, list)
    return tiers


def test_compose_tiers_are_the_defaults_served_by_ollama() -> None:
    settings = Settings(_env_file=None, tiers=compose_tiers())
    defaults = default_tiers()
    assert [t.model_dump(exclude={"base_url"}) for t in settings.tiers] == [
        t.model_dump(exclude={"base_url"}) for t in defaults
    ]
    for tier, default in zip(settings.tiers, defaults, strict=True):
        assert (tier.base_url is None) == (default.base_url is None)
        if tier.base_url:
            assert tier.base_url == "http://ollama:11434/v1"


def test_ollama_pulls_the_models_of_its_tiers() -> None:
    script = compose()["services"]["ollama"]["entrypoint"][-1]
    loop = re.search(r"for model in ([^;]+); do", script)
    assert loop is not None
    pulled = set(loop[1].split())
    served = {t["model"] for t in compose_tiers() if "ollama:11434" in t.get("base_url", "")}
    assert pulled == served == {"qwen2.5-coder:1.5b", "qwen2.5-coder:7b"}
    assert "ollama-models:/root/.ollama" in compose()["services"]["ollama"]["volumes"]


# -- Kubernetes ---------------------------------------------------------------------------


def test_k8s_has_what_a_deployment_needs() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in k8s_documents()}
    assert {
        ("Deployment", "patchling-web"),
        ("Deployment", "patchling-worker"),
        ("Deployment", "redis"),
        ("Service", "patchling-web"),
        ("Service", "redis"),
        ("Secret", "patchling-env"),
        ("Secret", "patchling-github-key"),
        ("PersistentVolumeClaim", "patchling-data"),
        ("ConfigMap", "patchling-config"),
    } <= kinds


@pytest.mark.parametrize(
    ("deployment", "subcommand"), [("patchling-web", "serve"), ("patchling-worker", "worker")]
)
def test_k8s_commands_are_real_and_documented(deployment: str, subcommand: str) -> None:
    argv = patchling_containers()[deployment]["command"]
    name, _ = parse_command(argv)
    assert name == subcommand
    assert readme_mentions(argv)


def test_k8s_variables_are_settings_and_the_queue_is_shared() -> None:
    config = k8s("ConfigMap", "patchling-config")["data"]
    env = k8s("Secret", "patchling-env")["stringData"]
    unknown = [v for v in [*config, *env] if not known_variable(v)]
    assert not unknown
    # Both read the same ConfigMap and Secret, and name no variable of their own.
    for container in patchling_containers().values():
        assert container["envFrom"] == [
            {"configMapRef": {"name": "patchling-config"}},
            {"secretRef": {"name": "patchling-env"}},
        ]
        assert all(known_variable(e["name"]) for e in container.get("env", []))
    assert config["PATCHLING_QUEUE_URL"] == "redis://redis:6379/0"
    assert k8s("Service", "redis")["spec"]["ports"][0]["port"] == 6379
    assert Settings(_env_file=None, tiers=json.loads(config["PATCHLING_TIERS"])).tiers


def test_k8s_key_and_data_are_mounted_where_the_settings_say() -> None:
    config = k8s("ConfigMap", "patchling-config")["data"]
    key_dir, key_file = config["GITHUB_PRIVATE_KEY_PATH"].rsplit("/", 1)
    assert key_file in k8s("Secret", "patchling-github-key")["stringData"]
    for name, container in patchling_containers().items():
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert config["PATCHLING_DATA_DIR"] in mounts and key_dir in mounts, name
        pod = k8s("Deployment", name)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[mounts[key_dir]]["secret"]["secretName"] == "patchling-github-key"
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    worker = k8s("Deployment", "patchling-worker")["spec"]["template"]["spec"]
    data = {v["name"]: v for v in worker["volumes"]}["data"]
    assert data["persistentVolumeClaim"]["claimName"] == "patchling-data"


def test_k8s_web_probes_healthz_on_its_service_port() -> None:
    web = patchling_containers()["patchling-web"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (port,) = web["ports"]
    assert port["containerPort"] == parse_command(web["command"])[1]["port"]
    service_port = k8s("Service", "patchling-web")["spec"]["ports"][0]
    assert service_port["targetPort"] == port["name"]


def test_the_image_user_is_the_uid_the_files_name() -> None:
    assert "--uid 10001" in (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "command", ["docker compose -f deploy/compose.yaml up -d", "kubectl apply -f deploy/k8s/"]
)
def test_the_readme_shows_how_to_start_them(command: str) -> None:
    assert f"`{command}`" in README.read_text(encoding="utf-8")
