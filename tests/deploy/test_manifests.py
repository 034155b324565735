"""deploy/: the Kubernetes manifests against Kubernetes' own schemas (kubernetes-validate,
strict, offline), as kustomize builds them; the Compose file against the Compose
specification's schema (check-jsonschema); the alert rules with promtool; and the shape a
deployment relies on (replicas, probes, limits, non-root, migrations before the servers)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
VARIANTS = {"http": KUBERNETES, "socket-mode": KUBERNETES / "socket-mode"}
BIN = Path(sys.executable).parent
KUBECTL = shutil.which("kubectl")
PROMTOOL = shutil.which("promtool")


def load_all(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def manifest_files() -> list[Path]:
    return sorted(path for path in KUBERNETES.rglob("*.yaml")
                  if path.name != "kustomization.yaml")


def built(variant: str) -> list[dict[str, Any]]:
    """What `kubectl apply -k` would apply for a variant (kustomize, built into kubectl)."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the kustomizations cannot be built")
    result = subprocess.run([KUBECTL, "kustomize", str(VARIANTS[variant])], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return load_all(result.stdout)


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [resource for resource in resources if resource["kind"] == kind]
    return found


@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_every_manifest_file_is_valid_kubernetes(path: Path) -> None:
    documents = load_all(path.read_text())
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, latest_version(), strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_kustomization_builds_valid_kubernetes(variant: str) -> None:
    resources = built(variant)
    assert sorted(resource["kind"] for resource in resources) == [
        "ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service"]
    for resource in resources:
        kubernetes_validate.validate(resource, latest_version(), strict=True)


def test_the_validator_refuses_what_kubernetes_would() -> None:
    deployment = by_kind(load_all((KUBERNETES / "base" / "deployment.yaml").read_text()),
                         "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"][
        "pathh"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, latest_version(), strict=True)


def test_the_http_deployment_is_what_an_sre_expects() -> None:
    resources = built("http")
    deployment = by_kind(resources, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's user
    [server] = spec["containers"]
    assert server["args"] == ["quorum", "serve", "--no-migrate"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    [waiting] = spec["initContainers"]
    assert "quorum db check" in " ".join(waiting["command"])
    for container in [*spec["containers"], *spec["initContainers"]]:
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    job = by_kind(resources, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "quorum", "db", "upgrade"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    for kind in ("Service", "PodDisruptionBudget"):
        resource = by_kind(resources, kind)
        chosen = resource["spec"]["selector"]
        chosen = chosen.get("matchLabels", chosen)
        assert chosen.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert chosen == selector
    assert by_kind(resources, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    env_sources = {source.get("secretRef", source.get("configMapRef"))["name"]
                   for source in server["envFrom"]}
    assert env_sources == {"quorum"}


def test_the_socket_mode_variant_runs_quorum_socket_with_the_same_probes() -> None:
    http, socket = built("http"), built("socket-mode")
    deployment = by_kind(socket, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["quorum", "socket", "--no-migrate"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # Everything else is the HTTP variant's.
    by_kind(http, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"] = \
        container["args"]
    assert http == socket


def test_the_secret_example_names_what_quorum_reads() -> None:
    [secret] = load_all((KUBERNETES / "secret.example.yaml").read_text())
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL",
            "QUORUM_WEBHOOK_TOKEN"} <= set(secret["stringData"])
    for variant in VARIANTS:  # never applied with the kustomization
        assert "Secret" not in {resource["kind"] for resource in built(variant)}


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "vendor.compose-spec", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_the_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    result = check_compose(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text((DEPLOY / "compose.yaml").read_text().replace(
        "    restart: \"no\"", "    restart: \"no\"\n    restart_policy: never", 1))
    assert check_compose(broken).returncode != 0  # the schema does refuse unknown keys


def test_the_compose_topology_migrates_first_then_serves_two_replicas() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["migrate"]["command"] == ["quorum", "db", "upgrade"]
    replicas = [name for name, service in services.items()
                if service.get("command", [])[:2] == ["quorum", "serve"]]
    assert replicas == ["quorum-1", "quorum-2"]
    for name in replicas:
        service = services[name]
        assert service["command"] == ["quorum", "serve", "--no-migrate"]
        assert service["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "bot.healthcheck"]
        assert service["env_file"] == "quorum.env"
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    proxy = services["proxy"]
    assert proxy["ports"] == ["3000:3000"]
    assert [proxy["command"][i + 1] for i, word in enumerate(proxy["command"])
            if word == "--to"] == ["quorum-1:3000", "quorum-2:3000"]
    example = (DEPLOY / "quorum.env.example").read_text()
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "DATABASE_URL",
                 "POSTGRES_PASSWORD"):
        assert f"\n{name}=" in example


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed "
                    "(scripts/ensure_promtool.sh installs it; `make test` runs that)")
def test_the_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    rules = DEPLOY / "prometheus"
    checked = subprocess.run([PROMTOOL, "check", "rules", "quorum.rules.yaml"], cwd=rules,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout
    tested = subprocess.run([PROMTOOL, "test", "rules", "quorum.rules.test.yaml"], cwd=rules,
                            capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_alert_rules_aggregate_shared_gauges_with_max() -> None:
    """Every replica reports the shared outbox gauges: a sum() would count them twice."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "quorum.rules.yaml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    shared = [expr for expr in expressions if "quorum_outbox_oldest_pending" in expr
              or "quorum_outbox_pending" in expr]
    assert shared and all("max by" in expr and "sum" not in expr for expr in shared)
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"QuorumOutboxBacklog", "QuorumOutboxDeliveryFailures", "QuorumSchedulerStalled",
            "QuorumHTTP5xxRate"} <= alerts
