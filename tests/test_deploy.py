"""Deployment files, checked without a cluster or a container engine (neither exists here):
every Kubernetes manifest parses and is wired together (replicas == shard.count, mounts match
the config's paths, probes hit the metrics port, non-root + read-only root fs), the compose file
parses and the Dockerfile only references paths that exist."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import pytest
import yaml

from streamwatch.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
DOCKER = REPO / "deploy" / "docker"


def _docs() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict) and doc.get("kind"), f"{path.name}: not a manifest"
            doc["_file"] = path.name
            docs.append(doc)
    return docs


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def k8s():
    docs = _docs()
    sts = _one(docs, "StatefulSet", "streamwatch")
    cm = _one(docs, "ConfigMap", "streamwatch-config")
    (key,) = cm["data"]
    config = Config.model_validate(yaml.safe_load(cm["data"][key]))  # paths exist only in the pod
    return docs, sts, cm, key, config


def test_every_manifest_parses_and_kustomization_lists_them(k8s):
    docs = k8s[0]
    kustomization = _one(docs, "Kustomization")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for doc in docs:
        if doc["kind"] not in ("Kustomization", "Namespace"):
            assert doc["metadata"].get("namespace") == kustomization["namespace"], doc["_file"]


def test_replicas_equal_shard_count_and_index_comes_from_the_ordinal(k8s):
    _, sts, _, _, config = k8s
    assert sts["spec"]["replicas"] == config.shard.count > 1
    assert config.shard.index is None, "shard.index must come from HOSTNAME (the pod ordinal)"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    # HOSTNAME is the pod name "<statefulset>-<ordinal>"; nothing may override it.
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert all(e["name"] != "HOSTNAME" for e in container.get("env", []))
    from streamwatch.sharding import ordinal_from_hostname

    assert [ordinal_from_hostname(f"{sts['metadata']['name']}-{i}") for i in range(3)] == [0, 1, 2]


def test_statefulset_mounts_match_the_config(k8s):
    docs, sts, cm, key, config = k8s
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"]: c for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes or mount["name"] in claims, mount

    # The config file the container is told to read is the ConfigMap's key.
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    mount = mounts[config_path] if config_path in mounts else mounts[posixpath.dirname(config_path)]
    assert volumes[mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    assert mount.get("subPath", posixpath.basename(config_path)) == key and mount["readOnly"]

    # MQTT password: a Secret mounted as the file named by mqtt.password_file.
    password_file = str(config.mqtt.password_file)
    mount = mounts[posixpath.dirname(password_file)]
    secret_volume = volumes[mount["name"]]["secret"]
    items = {i["path"]: i["key"] for i in secret_volume.get("items", [])}
    secret_key = items.get(posixpath.basename(password_file), posixpath.basename(password_file))
    secret = _one(docs, "Secret", secret_volume["secretName"])
    assert secret_key in secret.get("stringData", {}) | secret.get("data", {})
    assert config.mqtt.username and config.mqtt.password is None

    # The state dir is the volumeClaimTemplate (per pod); /tmp is writable; nothing else is.
    assert mounts[str(config.state_dir)]["name"] in claims
    assert volumes[mounts["/tmp"]["name"]].get("emptyDir") is not None


def test_probes_resources_and_security(k8s):
    docs, sts, _, _, config = k8s
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == config.metrics_port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = container[probe]["httpGet"]["port"]
        assert ports.get(port, port) == config.metrics_port, probe
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["terminationGracePeriodSeconds"] >= 10  # the daemon stops within 5 s

    # The headless Service governs the StatefulSet and selects its pods on the metrics port.
    service = _one(docs, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert sts["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["ports"][0]["targetPort"] in ("metrics", config.metrics_port)


def test_mosquitto_is_where_the_config_points(k8s):
    docs, _, _, _, config = k8s
    service = _one(docs, "Service", config.mqtt.host)
    assert service["spec"]["ports"][0]["port"] == config.mqtt.port
    deployment = _one(docs, "Deployment", "mosquitto")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pod = deployment["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {_one(docs, "Secret")["metadata"]["name"]}
    conf = _one(docs, "ConfigMap", "mosquitto-config")["data"]["mosquitto.conf"]
    assert "allow_anonymous false" in conf and "password_file /mosquitto/auth/passwd" in conf
    assert "mosquitto_passwd" in " ".join(pod["initContainers"][0]["command"])
    assert f"{config.mqtt.username} " in pod["initContainers"][0]["command"][-1]


# -- docker ------------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_references_existing_paths_and_core_deps_only():
    instructions = _dockerfile()
    assert [r for w, r in instructions if w == "FROM"][0].startswith("python:3.11-slim")
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the build context (repo root)"
    runs = " ".join(r for w, r in instructions if w == "RUN")
    assert "apt-get install" in runs and "ffmpeg" in runs
    assert re.search(r"pip install \.(\s|$)", runs), "install the project without extras"
    assert "torch" not in runs.replace('import torch"', "")
    user = [r for w, r in instructions if w == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    assert ("STOPSIGNAL", "SIGTERM") in instructions
    assert any(w == "HEALTHCHECK" and "/metrics" in r for w, r in instructions)
    assert any(w == "VOLUME" and "/var/lib/streamwatch" in r for w, r in instructions)
    # The image's extras-free install must not need torch anywhere at import time of the daemon.
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(dep.lower().startswith("torch") for dep in project["dependencies"])


def test_compose_parses_and_runs_the_bundled_demo():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"mosquitto", "streamwatch"}
    sw = services["streamwatch"]
    build = sw["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (DOCKER / "Dockerfile").resolve()
    mounts = {}
    for volume in sw["volumes"] + services["mosquitto"]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            assert (DOCKER / source).exists(), f"compose mounts missing {source}"
        else:
            assert source in compose["volumes"], source
        mounts[target] = source
    config_path = sw["command"][sw["command"].index("--config") + 1]
    demo = yaml.safe_load((DOCKER / mounts[config_path]).read_text())
    config = Config.model_validate(demo)
    assert config.mqtt.host == "mosquitto" and str(config.state_dir) in mounts
    assert mounts[str(config.state_dir)] == "state"
    # Same cameras and clips as the bundled demo.
    bundled = load_config(REPO / "config" / "demo" / "demo.yaml")
    assert [c.id for c in config.cameras] == [c.id for c in bundled.cameras]
    clip_dir = DOCKER / mounts["/demo"]
    for camera in config.cameras:
        if camera.is_file:
            assert camera.url.startswith("/demo/") and (clip_dir / camera.url[len("/demo/"):]).is_file()
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./mosquitto.conf"
    ports = services["mosquitto"]["ports"][0]
    assert ports.endswith(f":{config.mqtt.port}")
    assert sw["read_only"] is True and sw["stop_signal"] == "SIGTERM"


def test_configmap_config_loads_in_each_pod(k8s, tmp_path, monkeypatch):
    """The full loader (paths, sharding) as each pod would run it; pod N+1 is refused."""
    from streamwatch.config import ConfigError, config_from_data

    _, sts, cm, key, _ = k8s
    data = yaml.safe_load(cm["data"][key])
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    data["mqtt"]["password_file"] = str(secret)
    data["state_dir"] = str(tmp_path / "state")
    replicas = sts["spec"]["replicas"]
    owned = []
    for ordinal in range(replicas):
        monkeypatch.setenv("HOSTNAME", f"{sts['metadata']['name']}-{ordinal}")
        config = config_from_data(data, "configmap", tmp_path)
        assert config.shard.index == ordinal and config.state_dir.name == f"shard-{ordinal}"
        owned += [c.id for c in config.enabled_cameras()]
    assert sorted(owned) == sorted(c["id"] for c in data["cameras"])
    monkeypatch.setenv("HOSTNAME", f"{sts['metadata']['name']}-{replicas}")
    with pytest.raises(ConfigError, match="shard.index"):
        config_from_data(data, "configmap", tmp_path)
