"""deploy/kubernetes/ha: the two-replica overlay renders to two pods on two nodes, on one
PostgreSQL whose password comes from a Secret, with a PodDisruptionBudget and no PVC.

Rendered with `kubectl kustomize` when kubectl is installed (it is not a Debian package
`make test` installs); otherwise the overlay's patches are applied here the way kustomize
applies these ones, so the structure is still checked.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.deployfiles import K8S, K8S_HA, check_config, run

Docs = dict[str, dict[str, Any]]
LABELS = {"app.kubernetes.io/name": "remediator"}


def _by_kind(docs: list[dict[str, Any]]) -> Docs:
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one document per kind"
    return by_kind


def _render_here() -> Docs:
    """The base, minus the PVC, with the ConfigMap key and the Deployment patched."""
    kust = yaml.safe_load((K8S_HA / "kustomization.yaml").read_text())
    docs = [
        d
        for name in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
        for d in yaml.safe_load_all((K8S / name).read_text())
    ]
    docs += [yaml.safe_load((K8S_HA / name).read_text()) for name in kust["resources"][1:]]
    out = _by_kind([d for d in docs if d["kind"] != "PersistentVolumeClaim"])
    [gen] = kust["configMapGenerator"]
    for name in gen["files"]:
        out["ConfigMap"]["data"][name] = (K8S_HA / name).read_text()
    patch = yaml.safe_load((K8S_HA / "deployment-patch.yaml").read_text())["spec"]
    spec = out["Deployment"]["spec"]
    spec["replicas"], spec["strategy"] = patch["replicas"], patch["strategy"]
    pod, pod_patch = spec["template"]["spec"], patch["template"]["spec"]
    pod["affinity"] = pod_patch["affinity"]
    [c], [c_patch] = pod["containers"], pod_patch["containers"]
    c["env"] = c_patch["env"] + c["env"]
    gone = {m["mountPath"] for m in c_patch["volumeMounts"]}
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] not in gone]
    gone = {v["name"] for v in pod_patch["volumes"]}
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in gone]
    return out


@pytest.fixture(scope="module")
def rendered() -> Docs:
    """The overlay as `kubectl apply -k deploy/kubernetes/ha/` would create it."""
    if shutil.which("kubectl") is None:
        return _render_here()
    result = run("kubectl", "kustomize", K8S_HA)
    assert result.returncode == 0, result.stderr
    return _by_kind(list(yaml.safe_load_all(result.stdout)))


def container(docs: Docs) -> dict[str, Any]:
    [c] = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def test_the_overlay_renders_and_matches_its_structure() -> None:
    """kubectl's rendering (when kubectl is there) and the structural one agree on what
    matters: kinds, replicas, strategy, env, volumes."""
    here = _render_here()
    assert sorted(here) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    if shutil.which("kubectl") is not None:
        result = run("kubectl", "kustomize", K8S_HA)
        assert result.returncode == 0, result.stderr
        kube = _by_kind(list(yaml.safe_load_all(result.stdout)))
        assert sorted(kube) == sorted(here)
        for key in ("replicas", "strategy"):
            assert kube["Deployment"]["spec"][key] == here["Deployment"]["spec"][key]
        for key in ("env", "volumeMounts"):
            assert container(kube)[key] == container(here)[key]
        assert kube["ConfigMap"]["data"] == here["ConfigMap"]["data"]


def test_two_replicas_on_two_nodes_and_a_disruption_budget(rendered: Docs) -> None:
    """replicas: 2, replaced one at a time, never two on one node; the PDB keeps one of
    these pods up through drains; no PVC (nothing is stored in the pod)."""
    spec = rendered["Deployment"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    [term] = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    pod_labels = spec["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    pdb = rendered["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert "PersistentVolumeClaim" not in rendered
    volumes = spec["template"]["spec"]["volumes"]
    assert all("persistentVolumeClaim" not in v for v in volumes)


def test_the_store_is_postgresql_with_the_password_from_a_secret(
    rendered: Docs, tmp_path: Path
) -> None:
    """remediator.yml passes `remediator check` with a postgresql:// store without a
    password, whose store_password_env the container gets from the example Secret's key;
    apart from the store it is the single pod's remediator.yml."""
    data = rendered["ConfigMap"]["data"]
    files = {
        "rules/10-rules.yml": data["rules.yml"],
        "policies/10-policies.yml": data["policies.yml"],
    }
    config = check_config(data["remediator.yml"], files, tmp_path)
    url = config.file.store.url
    assert url.startswith("postgresql://")
    assert ":" not in url.removeprefix("postgresql://").split("@")[0]  # no password in it
    [env] = [e for e in container(rendered)["env"] if e["name"] == config.file.store_password_env]
    ref = env["valueFrom"]["secretKeyRef"]
    example = yaml.safe_load((K8S_HA / "store-secret.example.yaml").read_text())
    assert ref["name"] == example["metadata"]["name"]
    assert ref["key"] in example["stringData"]
    assert "CHANGE-ME" in example["stringData"][ref["key"]]
    assert not any("store-secret" in r for r in _kustomization()["resources"])
    base = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]["remediator.yml"]
    assert _without_store(data["remediator.yml"]) == _without_store(base)


def _kustomization() -> dict[str, Any]:
    kust: dict[str, Any] = yaml.safe_load((K8S_HA / "kustomization.yaml").read_text())
    return kust


def _without_store(text: str) -> list[str]:
    lines = [line.split("#")[0].rstrip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("store")]
