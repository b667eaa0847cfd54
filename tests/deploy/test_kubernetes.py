"""deploy/kubernetes/base (one pod on SQLite): manifests parse, point at each other, and run the config they mount.

No cluster here: the checks are structural, plus `remediator check` on the ConfigMap
projected the way the pod sees it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from support.deployfiles import DEFAULT_PORT, K8S, check_config, dockerfile_user

from remediator.config.models import Config
from remediator.daemon import parse_listen

Manifests = dict[str, dict[str, Any]]
API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "Secret": "v1",
    "ConfigMap": "v1",
    "PersistentVolumeClaim": "v1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
}


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    """Every document under deploy/kubernetes/base, by kind (one of each)."""
    docs = [d for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one document per kind"
    return by_kind


def pod_spec(manifests: Manifests) -> dict[str, Any]:
    """The Deployment's pod template spec."""
    spec: dict[str, Any] = manifests["Deployment"]["spec"]["template"]["spec"]
    return spec


def container(manifests: Manifests) -> dict[str, Any]:
    """The one container."""
    [c] = pod_spec(manifests)["containers"]
    assert isinstance(c, dict)
    return c


def projected_sources(manifests: Manifests) -> list[dict[str, Any]]:
    """The sources of the projected volume mounted at /etc/remediator."""
    [mount] = [
        m for m in container(manifests)["volumeMounts"] if m["mountPath"] == "/etc/remediator"
    ]
    [volume] = [v for v in pod_spec(manifests)["volumes"] if v["name"] == mount["name"]]
    sources: list[dict[str, Any]] = volume["projected"]["sources"]
    return sources


def env_names(config: Config) -> set[str]:
    """The environment variables a config reads secrets from."""
    f = config.file
    names = {f.server.webhook_auth.bearer_token_env, f.server.admin_token_env}
    if f.slack is not None:
        names |= {f.slack.token_env, f.slack.signing_secret_env}
    if f.email is not None:
        names |= {f.email.username_env, f.email.password_env}
    return {n for n in names if n is not None}


def test_kinds_and_api_versions(manifests: Manifests) -> None:
    """Each kind once, under the API version clusters serve it; every object named."""
    assert {k: d["apiVersion"] for k, d in manifests.items()} == API_VERSIONS
    for kind, doc in manifests.items():
        assert kind == "Kustomization" or doc["metadata"]["name"], kind


def test_kustomization_lists_everything_but_the_example_secret(manifests: Manifests) -> None:
    """`kubectl apply -k` creates all but the Secret, whose placeholders must never win."""
    listed = set(manifests["Kustomization"]["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}


def test_deployment_is_single_replica_and_locked_down(manifests: Manifests) -> None:
    """One writer for SQLite; non-root (the image's UID), no privilege, read-only root."""
    spec = manifests["Deployment"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"  # never two pods on the store
    pod = pod_spec(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(dockerfile_user())
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(manifests)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container(manifests)["resources"]["limits"]["memory"]


def test_probes_and_service_use_the_container_port(manifests: Manifests) -> None:
    """liveness /healthz and readiness /readyz on the port remediator listens on."""
    c = container(manifests)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert list(ports.values()) == [DEFAULT_PORT]

    def resolve(port: str | int) -> int:
        return ports[port] if isinstance(port, str) else port

    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert resolve(c[probe]["httpGet"]["port"]) == DEFAULT_PORT
    service = manifests["Service"]["spec"]
    [svc_port] = service["ports"]
    assert resolve(svc_port["targetPort"]) == DEFAULT_PORT
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()


def test_every_secret_and_configmap_reference_resolves(manifests: Manifests) -> None:
    """Each secretKeyRef and projected item names an object and a key that exist."""
    secret, configmap = manifests["Secret"], manifests["ConfigMap"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in container(manifests)["env"] if "valueFrom" in e]
    assert refs
    for source in projected_sources(manifests):
        [(kind, ref)] = source.items()
        refs += [{"name": ref["name"], "key": i["key"], "kind": kind} for i in ref["items"]]
    for ref in refs:
        target = configmap if ref.get("kind") == "configMap" else secret
        assert ref["name"] == target["metadata"]["name"], ref
        assert ref["key"] in target.get("stringData", target.get("data", {})), ref
    assert all("CHANGE-ME" in v for v in secret["stringData"].values())  # placeholders only


def test_configmap_passes_check_and_gets_its_secrets(manifests: Manifests, tmp_path: Path) -> None:
    """The ConfigMap, projected as the pod sees it, loads; every *_env it names is set."""
    data = manifests["ConfigMap"]["data"]
    files = {}
    for source in projected_sources(manifests):
        if "configMap" in source:
            files.update({i["path"]: data[i["key"]] for i in source["configMap"]["items"]})
    config = check_config(files.pop("remediator.yml"), files, tmp_path)
    assert parse_listen(config.file.server.listen) == ("0.0.0.0", DEFAULT_PORT)
    c = container(manifests)
    store = Path(config.file.store.url.removeprefix("sqlite:///"))
    assert [str(store.parent)] == [
        m["mountPath"] for m in c["volumeMounts"] if m["name"] == "state"
    ]
    assert env_names(config) <= {e["name"] for e in c["env"]}
