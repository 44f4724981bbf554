"""Security (issue 6): hostile inputs and secrets, against the real daemon process and a real
Mosquitto with a TLS listener, a password file and an ACL. No mocks.

* Password files: empty / not UTF-8 / unreadable are config errors at load time.
* Camera credentials (``rtsp://user:pass@``, ``?password=``) never appear in logs, MQTT
  payloads, ``check-config`` output, Prometheus metrics or error messages; broken URLs that
  hold credentials are refused without echoing them.
* Hostile model files (truncated, a JPEG, a pickle, a zip / torch checkpoint, wrong metadata)
  make ``streamwatch run`` exit 3 with a clear error and no traceback; the pickle is never
  unpickled. A registry model whose checksum changed is refused at start-up and at hot swap.
* The daemon user's least-privilege ACL (docs/security.md): TLS + client certificate +
  password from a file or an environment variable; password never on argv nor in logs;
  wrong CA refused and logged once; an ACL that denies its events means retries, not loss.
* The daemon runs as an unprivileged user with only its state directory writable.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from streamwatch.config import ConfigError, load_config, mask_url
from tests.support.broker import TLS_PASSWORD_CONF, free_port, make_password_file, make_tls_files, wait_until
from tests.support.daemon import DaemonProcess, write_config

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "streamwatch" / "assets"
CAM_USER, CAM_PASS = "camadmin", "Cam-S3cret-91"
MQTT_PASS = "Mqtt-S3cret-77"
shipped = pytest.mark.skipif(not (ASSETS / "model.onnx").exists(), reason="no shipped model")


def cli(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamwatch.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def base_config(tmp_path: Path, cameras: list[dict], mqtt: dict | None = None, **extra) -> dict:
    config = {
        "mqtt": mqtt if mqtt is not None else {"enabled": False},
        "state_dir": str(tmp_path / "state"),
        "log": {"format": "json"},
        "model": {"enabled": False},
        "reservoir": {"enabled": False},
        "cameras": cameras,
    }
    config.update(extra)
    return config


@pytest.fixture
def daemons():
    made: list[DaemonProcess] = []

    def make(config_path: Path, **kwargs) -> DaemonProcess:
        d = DaemonProcess(config_path)
        made.append(d)
        return _start(d, **kwargs)

    yield make
    for d in made:
        if d.alive():
            d.stop()


def _start(d: DaemonProcess, env: dict | None = None, preexec_fn=None) -> DaemonProcess:
    """DaemonProcess.start with an extra environment and an optional preexec_fn."""
    d._log = open(d.log_path, "wb")
    d.proc = subprocess.Popen(
        [sys.executable, "-m", "streamwatch.cli", "run", "--config", str(d.config_path)],
        stdout=d._log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
        preexec_fn=preexec_fn, cwd=str(d.config_path.parent),
    )
    return d


def public_dir(tmp_path: Path) -> Path:
    """A folder other users can reach (pytest's tmp_path is under a 0700 /tmp/pytest-of-root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"sw-{tmp_path.name[:20]}-"))
    path.chmod(0o755)
    _PUBLIC.append(path)
    return path


_PUBLIC: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_public_dirs():
    yield
    while _PUBLIC:
        shutil.rmtree(_PUBLIC.pop(), ignore_errors=True)


# -- password files ---------------------------------------------------------------------------


@pytest.mark.parametrize("content,problem", [
    (b"", "file is empty"),
    (b"\n\n", "file is empty"),
    (b"   \nsecond-line\n", "file is empty"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
])
def test_bad_password_file_is_a_config_error_at_load_time(tmp_path, content, problem):
    pw = tmp_path / "mqtt-password"
    pw.write_bytes(content)
    cfg = write_config(tmp_path / "c.yaml", {"mqtt": {"username": "sw", "password_file": str(pw)}})
    with pytest.raises(ConfigError, match=f"mqtt.password_file: {problem}"):
        load_config(cfg)
    out = cli("check-config", str(cfg))
    assert out.returncode == 2 and f"mqtt.password_file: {problem}" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_resolve_password_never_raises_index_error(tmp_path):
    from streamwatch.config import MQTTConfig

    pw = tmp_path / "pw"
    pw.write_text("")
    with pytest.raises(ValueError, match="empty"):
        MQTTConfig(username="u", password_file=pw).resolve_password()
    pw.write_text("  the-pw  \nignored\n")
    assert MQTTConfig(username="u", password_file=pw).resolve_password() == "the-pw"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_unreadable_password_file_is_a_config_error(tmp_path):
    work = public_dir(tmp_path)
    pw = work / "mqtt-password"
    pw.write_text("pw\n")
    pw.chmod(0o600)  # root's; the check runs as nobody
    cfg = write_config(work / "c.yaml", {"mqtt": {"username": "sw", "password_file": str(pw)}})
    cfg.chmod(0o644)
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-m", "streamwatch.cli", "check-config", str(cfg)],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ, HOME="/tmp"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "mqtt.password_file: cannot read" in out.stderr and "Permission denied" in out.stderr
    assert "Traceback" not in out.stderr


# -- camera credentials -----------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    f"rtsp://{CAM_USER}:{CAM_PASS}@cam.example:99999/x",  # out-of-range port
    f"rtsp://{CAM_USER}:{CAM_PASS}@[::1/x",  # broken IPv6 literal
    f"rtsp://{CAM_USER}:{CAM_PASS}@/x",  # no host
    f"ftp://{CAM_USER}:{CAM_PASS}@cam.example/x",  # unsupported scheme
])
def test_broken_camera_urls_are_refused_without_echoing_credentials(tmp_path, url):
    cfg = write_config(tmp_path / "c.yaml", {"cameras": [{"id": "cam", "url": url}]})
    for args in (("check-config", str(cfg)), ("run", "--config", str(cfg))):
        out = cli(*args)
        text = out.stdout + out.stderr
        assert out.returncode == 2, text
        assert "cameras[0].url" in text and "Traceback" not in text
        assert CAM_PASS not in text and CAM_USER not in text


@pytest.mark.parametrize("url,hidden", [
    (f"rtsp://{CAM_USER}:{CAM_PASS}@10.0.0.9:554/s", [CAM_USER, CAM_PASS]),
    (f"rtsp://{CAM_USER}:a/b@c{CAM_PASS}@10.0.0.9/s", [CAM_PASS, "a/b"]),  # unencoded / and @
    (f"http://10.0.0.9/snap.cgi?user={CAM_USER}&password={CAM_PASS}&ch=1", [CAM_PASS]),
    (f"rtsp://10.0.0.9/s?token={CAM_PASS}", [CAM_PASS]),
])
def test_mask_url_hides_every_credential_form(url, hidden):
    masked = mask_url(url)
    assert all(h not in masked for h in hidden), masked
    assert "10.0.0.9" in masked


def test_check_config_masks_camera_and_mqtt_secrets(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", {
        "mqtt": {"username": "sw", "password": MQTT_PASS},
        "cameras": [{"id": "a", "url": f"rtsp://{CAM_USER}:{CAM_PASS}@10.0.0.9:554/s"},
                    {"id": "b", "url": f"http://10.0.0.9/s?password={CAM_PASS}"}],
    })
    out = cli("check-config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert CAM_PASS not in out.stdout and MQTT_PASS not in out.stdout and CAM_USER not in out.stdout
    assert "rtsp://***@10.0.0.9:554/s" in out.stdout


def test_camera_credentials_never_in_logs_payloads_or_metrics(tmp_path, broker, mqtt_collector, daemons,
                                                              rtsp_server_factory, clip_factory):
    """A working camera with Basic auth, one with wrong credentials, one unreachable one with a
    query-string password: the secrets appear nowhere the daemon writes to."""
    clip = clip_factory(seconds=6, content="pan", size=(320, 180))
    server = rtsp_server_factory(clip, user=CAM_USER, password=CAM_PASS)
    wrong = server.url.replace(CAM_PASS, CAM_PASS + "x")
    collector = mqtt_collector(broker.host, broker.port, topics=["#"])
    metrics_port = free_port()
    cameras = [
        {"id": "good", "url": server.url},
        {"id": "wrong", "url": wrong, "signal_timeout": 3},
        {"id": "gone", "url": f"http://127.0.0.1:9/snap?user=x&password={CAM_PASS}", "signal_timeout": 3},
    ]
    mqtt = {"host": "127.0.0.1", "port": broker.port, "client_id": f"sw-sec-{tmp_path.name}"}
    cfg = write_config(tmp_path / "sw.yaml", base_config(tmp_path, cameras, mqtt, metrics_port=metrics_port))
    d = daemons(cfg)
    assert d.wait_log("camera_connected", timeout=30, camera="good"), d.log_text()[-3000:]

    def lost(cam: str) -> bool:
        return any(json.loads(m.payload).get("camera") == cam and json.loads(m.payload)["state"] == "raised"
                   for m in collector.on("streamwatch/events"))

    assert wait_until(lambda: lost("wrong") and lost("gone"), 30), d.log_text()[-3000:]
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'streamwatch_camera_connected{camera="good"} 1.0' in metrics
    d.stop()
    log = d.log_text()
    assert "camera_unavailable" in log  # the failing cameras were logged...
    for secret in (CAM_PASS, CAM_USER + ":"):  # ...without their credentials
        assert secret not in log
        assert secret not in metrics
        assert all(secret.encode() not in m.payload for m in collector.messages)
    assert "Traceback" not in log


# -- hostile model files ------------------------------------------------------------------------


class _Boom:
    """Unpickling this creates a marker file: proof that nothing unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def _onnx_with_metadata(src: Path, dst: Path, change: dict) -> Path:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    meta.update(change)
    del proto.metadata_props[:]
    for k, v in meta.items():
        if v is None:
            continue
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(proto, str(dst))
    return dst


def _hostile(kind: str, d: Path) -> Path:
    path = d / f"{kind}.onnx"
    if kind == "truncated":
        blob = (ASSETS / "model.onnx").read_bytes()
        path.write_bytes(blob[: len(blob) // 3])
    elif kind == "jpeg":
        import cv2
        import numpy as np

        ok, data = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
        path.write_bytes(data.tobytes())
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(_Boom(str(d / "UNPICKLED"))) * 8)
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps(_Boom(str(d / "UNPICKLED"))))
            z.writestr("archive/version", "3\n")
    elif kind == "torch_checkpoint":
        shutil.copyfile(ASSETS / "model.pt", path)  # a real torch zip with a pickle inside
    elif kind == "wrong_metadata":
        _onnx_with_metadata(ASSETS / "model.onnx", path, {"streamwatch.classes": json.dumps(["normal", "frozen"])})
    elif kind == "no_metadata":
        _onnx_with_metadata(ASSETS / "model.onnx", path, {"streamwatch.classes": None, "streamwatch.geometry": None,
                                                          "streamwatch.version": None})
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@shipped
@pytest.mark.parametrize("kind,message", [
    ("truncated", "not a loadable ONNX model"),
    ("jpeg", "not a loadable ONNX model"),
    ("pickle", "not a loadable ONNX model"),
    ("zip", "not a loadable ONNX model"),
    ("torch_checkpoint", "not a loadable ONNX model"),
    ("wrong_metadata", "do not match"),
    ("no_metadata", "lacks streamwatch metadata"),
    ("empty", "truncated or empty"),
])
def test_hostile_model_file_exits_3_with_a_clear_error(tmp_path, kind, message):
    if kind == "torch_checkpoint" and not (ASSETS / "model.pt").exists():
        pytest.skip("no shipped state dict")
    model = _hostile(kind, tmp_path)
    cfg = write_config(tmp_path / "c.yaml", base_config(tmp_path, [], model={"enabled": True, "path": str(model)}))
    started = time.monotonic()
    out = cli("run", "--config", str(cfg))
    text = out.stdout + out.stderr
    assert out.returncode == 3, text
    assert "Traceback" not in text
    failed = [json.loads(line) for line in text.splitlines() if line.startswith("{") and "startup_failed" in line]
    assert len(failed) == 1 and failed[0]["error"].startswith(f"model: model file {model}"), text
    assert message in failed[0]["error"]
    assert not (tmp_path / "UNPICKLED").exists(), "a pickle was loaded"
    assert time.monotonic() - started < 60


def test_no_pickle_loading_anywhere_in_the_package():
    """No ``pickle``/``marshal``/``shelve``/``dill``/``joblib`` loads, ``torch.load`` only with
    ``weights_only=True``, ``numpy.load`` never with ``allow_pickle=True``."""
    offenders = []
    for path in sorted((REPO / "streamwatch").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        for n, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"\b(import|from)\s+(pickle|cPickle|dill|marshal|shelve|joblib|cloudpickle)\b", code):
                offenders.append(f"{rel}:{n}: {line.strip()}")
            if re.search(r"\b(pickle|dill|marshal|joblib)\.loads?\(", code):
                offenders.append(f"{rel}:{n}: {line.strip()}")
            if "allow_pickle=True" in code:
                offenders.append(f"{rel}:{n}: {line.strip()}")
        for match in re.finditer(r"torch\.load\(", text):
            depth, i = 0, match.end() - 1
            while i < len(text):  # the whole call, across lines
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                if depth == 0:
                    break
                i += 1
            call = text[match.start() : i + 1]
            if not re.search(r"weights_only\s*=\s*True", call):
                offenders.append(f"{rel}: {call!r}")
    assert offenders == []


def _promote_copy(state: Path, version: str, src: Path) -> Path:
    from streamwatch.model.registry import ModelRegistry

    return ModelRegistry(state / "models").root / ModelRegistry(state / "models").promote(src, version).file


@shipped
def test_registry_model_with_changed_checksum_refused_at_startup(tmp_path):
    state = tmp_path / "state"
    path = _promote_copy(state, "site-1", ASSETS / "model.onnx")
    with open(path, "ab") as f:  # changed behind the registry's back (still loads as ONNX? no matter)
        f.write(b"\0")
    cfg = write_config(tmp_path / "c.yaml", base_config(tmp_path, [], model={"enabled": True}))
    out = cli("run", "--config", str(cfg))
    text = out.stdout + out.stderr
    assert out.returncode == 3 and "Traceback" not in text, text
    assert "does not match the registry" in text and "streamwatch model rollback" in text


@shipped
def test_registry_model_with_changed_checksum_refused_at_hot_swap(tmp_path, clip_factory, daemons):
    """The running daemon keeps its verified model when the registry points at a file whose
    checksum does not match (a valid ONNX model, swapped behind the registry's back)."""
    from streamwatch.model.registry import ModelRegistry, sha256_file

    clip = clip_factory(seconds=6, content="pan", size=(320, 180))
    state = tmp_path / "state"
    v1 = _onnx_with_metadata(ASSETS / "model.onnx", tmp_path / "v1.onnx", {"streamwatch.version": "site-v1"})
    _promote_copy(state, "site-v1", v1)
    cfg = write_config(tmp_path / "sw.yaml", base_config(
        tmp_path, [{"id": "cam", "url": str(clip), "loop": True}], model={"enabled": True}))
    d = daemons(cfg)
    started = d.wait_log("daemon_started", timeout=60)
    assert started and started["model"] == "site-v1", d.log_text()[-2000:]

    # v2 as promoted (checksum recorded), then its file replaced by a different valid model.
    v2 = _onnx_with_metadata(ASSETS / "model.onnx", tmp_path / "v2.onnx", {"streamwatch.version": "site-v2"})
    evil = _onnx_with_metadata(ASSETS / "model.onnx", tmp_path / "evil.onnx", {"streamwatch.version": "evil"})
    reg = ModelRegistry(state / "models")
    data = json.loads(reg.registry_path.read_text())
    shutil.copyfile(evil, reg.root / "site-v2.onnx")
    data["versions"].append({"version": "site-v2", "file": "site-v2.onnx", "sha256": sha256_file(v2),
                             "created": "2026-11-22T00:00:00+00:00", "metrics": {}, "note": ""})
    data["current"] = "site-v2"
    tmp = reg.root / "registry.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, reg.registry_path)

    rejected = d.wait_log("model_swap_rejected", timeout=30)
    assert rejected is not None, d.log_text()[-3000:]
    assert "does not match the registry" in rejected["error"] and rejected["keeping"] == "site-v1"
    time.sleep(6)  # another poll: reported once, not swapped
    assert d.alive()
    events = d.log_events()
    assert [e for e in events if e.get("event") == "model_swapped"] == []
    assert len([e for e in events if e.get("event") == "model_swap_rejected"]) == 1
    assert d.stop() < 6


# -- MQTT: TLS, password, least-privilege ACL ------------------------------------------------------

#: The ACL docs/security.md recommends: the daemon writes only under its prefix and its Home
#: Assistant discovery node, and reads only homeassistant/status. Consumers read.
LEAST_PRIVILEGE_ACL = """\
user streamwatch
topic write streamwatch/#
topic write homeassistant/binary_sensor/streamwatch/#
topic read homeassistant/status

user reader
topic read streamwatch/#
topic read homeassistant/#

user homeassistant
topic write homeassistant/status
"""


@pytest.fixture
def secure_broker(broker_factory, tmp_path):
    """Mosquitto with only a TLS listener (client certificate required), a password file and an ACL."""
    tls = make_tls_files(tmp_path / "pki")
    passwd = make_password_file(tmp_path / "passwd", {
        "streamwatch": MQTT_PASS, "reader": "reader-pw", "homeassistant": "ha-pw"})
    conf = (TLS_PASSWORD_CONF.replace("{ca}", str(tls.ca)).replace("{cert}", str(tls.server_cert))
            .replace("{key}", str(tls.server_key)).replace("{passwd}", str(passwd)))
    broker = broker_factory(conf, extra_conf="acl_file {dir}/acl\n", start=False)
    (broker.workdir / "acl").write_text(LEAST_PRIVILEGE_ACL)
    broker.start()
    return broker, tls


def _secure_mqtt(broker, tls, tmp_path: Path, password_source: str, ca: Path | None = None) -> tuple[dict, dict]:
    mqtt = {
        "host": "localhost", "port": broker.port, "username": "streamwatch", "client_id": f"sw-{tmp_path.name}",
        "tls": {"enabled": True, "ca_file": str(ca or tls.ca), "cert_file": str(tls.client_cert),
                "key_file": str(tls.client_key)},
    }
    env = {}
    if password_source == "password_file":
        pw = tmp_path / "mqtt-password"
        pw.write_text(MQTT_PASS + "\n")
        pw.chmod(0o600)
        mqtt["password_file"] = str(pw)
    else:
        mqtt["password_env"] = "STREAMWATCH_MQTT_PASSWORD"
        env["STREAMWATCH_MQTT_PASSWORD"] = MQTT_PASS
    return mqtt, env


@pytest.mark.parametrize("password_source", ["password_file", "password_env"])
def test_tls_password_and_least_privilege_acl_with_the_real_daemon(
        tmp_path, secure_broker, mqtt_collector, daemons, password_source):
    broker, tls = secure_broker
    collector = mqtt_collector("localhost", broker.port, ["streamwatch/#", "homeassistant/#"],
                               username="reader", password="reader-pw", tls=tls)
    mqtt, env = _secure_mqtt(broker, tls, tmp_path, password_source)
    cameras = [{"id": "door", "url": f"rtsp://{CAM_USER}:{CAM_PASS}@127.0.0.1:9/x", "signal_timeout": 2}]
    d = daemons(write_config(tmp_path / "sw.yaml", base_config(tmp_path, cameras, mqtt)), env=env)
    assert collector.wait_for(lambda c: any(json.loads(m.payload)["fault"] == "signal_lost"
                                            for m in c.on("streamwatch/events")), 30), d.log_text()[-3000:]
    assert collector.wait_for(lambda c: c.last("homeassistant/binary_sensor/streamwatch/door_signal_lost/config")
                              is not None, 10)
    assert collector.last("streamwatch/available").text == "online"
    assert collector.wait_for(lambda c: (m := c.last("streamwatch/door/signal_lost")) is not None and m.text == "ON", 10)

    # Home Assistant (its own user) announces itself: discovery is re-sent through the ACL.
    ha = mqtt_collector("localhost", broker.port, ["homeassistant/status"], username="homeassistant",
                        password="ha-pw", tls=tls)
    before = len(collector.on("homeassistant/binary_sensor/streamwatch/door_signal_lost/config"))
    ha.publish("homeassistant/status", "online")
    assert collector.wait_for(lambda c: len(c.on(
        "homeassistant/binary_sensor/streamwatch/door_signal_lost/config")) > before, 10)

    cmdline = Path(f"/proc/{d.proc.pid}/cmdline").read_bytes()
    assert MQTT_PASS.encode() not in cmdline
    assert d.stop() < 6
    log = d.log_text()
    assert MQTT_PASS not in log and CAM_PASS not in log and "Traceback" not in log
    assert all(MQTT_PASS.encode() not in m.payload and CAM_PASS.encode() not in m.payload
               for m in collector.messages)
    assert "Denied PUBLISH" not in broker.log_tail(400)


def test_wrong_ca_is_refused_and_logged_once(tmp_path, secure_broker, daemons):
    broker, tls = secure_broker
    other = make_tls_files(tmp_path / "other-pki")
    mqtt, env = _secure_mqtt(broker, tls, tmp_path, "password_file", ca=other.ca)
    d = daemons(write_config(tmp_path / "sw.yaml", base_config(tmp_path, [], mqtt)), env=env)
    assert d.wait_log("daemon_started", timeout=30), d.log_text()
    time.sleep(8)  # several reconnect attempts (1, 2, 4 s)
    assert d.alive()
    unreachable = [e for e in d.log_events() if "unreachable" in e.get("event", "")]
    assert len(unreachable) == 1 and "CERTIFICATE_VERIFY_FAILED" in unreachable[0]["error"], d.log_text()[-2000:]
    assert [e for e in d.log_events() if e.get("event") == "mqtt connected"] == []
    assert d.stop() < 6


def test_garbage_tls_file_is_a_startup_error_not_a_traceback(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cfg = write_config(tmp_path / "c.yaml", base_config(tmp_path, [], {"host": "127.0.0.1", "port": 1,
                                                                         "tls": {"enabled": True, "ca_file": str(ca)}}))
    out = cli("run", "--config", str(cfg))
    text = out.stdout + out.stderr
    assert out.returncode == 3 and "Traceback" not in text, text
    assert "cannot load the MQTT TLS files (mqtt.tls)" in text


def test_acl_denying_the_prefix_means_retries_not_loss(tmp_path, secure_broker, mqtt_collector, daemons):
    """The daemon's user may connect but not publish under streamwatch/ (a mis-set ACL): the
    broker refuses every event (MQTT 5 "Not authorized"); they stay spooled and are delivered,
    in order, once the ACL is fixed and reloaded."""
    broker, tls = secure_broker
    acl = broker.workdir / "acl"
    acl.write_text(LEAST_PRIVILEGE_ACL.replace("topic write streamwatch/#\n", "topic write streamwatch/available\n"))
    broker.reload()
    collector = mqtt_collector("localhost", broker.port, ["streamwatch/events"], username="reader",
                               password="reader-pw", tls=tls)
    mqtt, env = _secure_mqtt(broker, tls, tmp_path, "password_file")
    cameras = [{"id": f"cam{i}", "url": f"rtsp://127.0.0.1:9/{i}", "signal_timeout": 2} for i in range(3)]
    d = daemons(write_config(tmp_path / "sw.yaml", base_config(tmp_path, cameras, mqtt)), env=env)
    assert wait_until(lambda: len([e for e in d.log_events() if e.get("event") == "fault_raised"]) == 3, 30)
    refused = d.wait_log("mqtt broker refused an event; keeping it and retrying", timeout=15)
    assert refused is not None and "authori" in refused["reason"].lower(), d.log_text()[-3000:]
    time.sleep(3)  # retries with backoff
    assert collector.on("streamwatch/events") == []
    acl.write_text(LEAST_PRIVILEGE_ACL)
    broker.reload()
    assert collector.wait_for(lambda c: len(c.on("streamwatch/events")) >= 3, 90), d.log_text()[-3000:]
    got = [json.loads(m.payload) for m in collector.on("streamwatch/events")]
    assert sorted(e["camera"] for e in got) == ["cam0", "cam1", "cam2"]
    assert len({e["id"] for e in got}) == 3
    refused_lines = [e for e in d.log_events() if "refused an event" in e.get("event", "")]
    assert len(refused_lines) == 1  # one error per streak, not per retry
    assert d.stop() < 6


# -- unprivileged user ------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_runs_as_nobody_with_only_the_state_dir_writable(tmp_path, clip_factory, broker, mqtt_collector):
    """As uid/gid 65534 with no groups: config, clip and code are read-only to it (owned by
    root); only the state directory is writable. It monitors, publishes, spools and stops."""
    clip = clip_factory(seconds=6, content="pan", size=(320, 180))
    base = public_dir(tmp_path)
    work = base / "ro"
    work.mkdir()
    work.chmod(0o755)
    shutil.copyfile(clip, work / "clip.mp4")
    state = base / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    state.chmod(0o700)
    base.chmod(0o555)  # nobody may not create anything beside the state dir
    collector = mqtt_collector(broker.host, broker.port, ["streamwatch/#"])
    cfg = base_config(tmp_path, [{"id": "cam", "url": str(work / "clip.mp4"), "loop": True},
                                 {"id": "dead", "url": "rtsp://127.0.0.1:9/x", "signal_timeout": 2}],
                      {"host": "127.0.0.1", "port": broker.port, "client_id": f"sw-nobody-{tmp_path.name}"},
                      model={"enabled": True, "threads": 1}, reservoir={"enabled": True, "min_interval": 0,
                                                                         "min_confidence": 0.0})
    cfg["state_dir"] = str(state)
    config = write_config(work / "sw.yaml", cfg)
    config.chmod(0o644)
    work.chmod(0o555)
    d = DaemonProcess(config)
    d.log_path = tmp_path / "nobody.log"
    log = open(d.log_path, "wb")
    d._log = log
    d.proc = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
         sys.executable, "-m", "streamwatch.cli", "run", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, cwd="/",
        env=dict(os.environ, PYTHONUNBUFFERED="1", HOME="/nonexistent"),
    )
    try:
        assert wait_until(lambda: any(json.loads(m.payload)["camera"] == "dead"
                                      for m in collector.on("streamwatch/events")), 60), d.log_text()[-3000:]
        assert wait_until(lambda: (state / "reservoir" / "cam").is_dir(), 30), d.log_text()[-3000:]
        status = Path(f"/proc/{d.proc.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == ["65534"] * 4
        cap_eff = next(line for line in status.splitlines() if line.startswith("CapEff:"))
        assert int(cap_eff.split()[1], 16) == 0
    finally:
        elapsed = d.stop()
    text = d.log_text()
    errors = [e for e in d.log_events() if e.get("level") == "error"]
    assert elapsed < 6 and "Traceback" not in text and errors == [], text[-3000:]
    assert (state / "spool.sqlite3").is_file() and (state / "spool.sqlite3").stat().st_uid == 65534
    # Nothing was written outside the state directory.
    assert sorted(p.name for p in work.iterdir()) == ["clip.mp4", "sw.yaml"]
    assert sorted(p.name for p in base.iterdir()) == ["ro", "state"]
    base.chmod(0o755)


def test_garbage_on_the_subscribed_topic_is_ignored_by_the_daemon(tmp_path, broker, mqtt_collector, daemons):
    """``homeassistant/status`` is the only topic the daemon subscribes to: binary junk, a
    256 kB payload, JSON and near-misses are ignored with at most five warnings a minute; a
    real ``online`` still re-sends discovery."""
    collector = mqtt_collector(broker.host, broker.port, ["homeassistant/#", "streamwatch/#"])
    cameras = [{"id": "door", "url": "rtsp://127.0.0.1:9/x", "signal_timeout": 2}]
    mqtt = {"host": "127.0.0.1", "port": broker.port, "client_id": f"sw-garbage-{tmp_path.name}"}
    d = daemons(write_config(tmp_path / "sw.yaml", base_config(tmp_path, cameras, mqtt)))
    topic = "homeassistant/binary_sensor/streamwatch/door_signal_lost/config"
    assert collector.wait_for(lambda c: c.last(topic) is not None, 30), d.log_text()[-2000:]
    junk = [os.urandom(64), os.urandom(256 * 1024), b'{"state": "online"}', b"ONLINE!", b"online\x00",
            b"\xff\xfe", b"", "онлайн".encode()] * 5
    for payload in junk:
        collector.publish("homeassistant/status", payload)
    time.sleep(2)
    before = len(collector.on(topic))
    collector.publish("homeassistant/status", b"online")
    assert collector.wait_for(lambda c: len(c.on(topic)) > before, 10)
    assert d.alive()
    warnings = [e for e in d.log_events() if "ignored" in e.get("event", "") and e.get("level") == "warning"]
    assert 1 <= len(warnings) <= 5, warnings
    assert d.wait_log("home assistant came online; discovery re-sent", timeout=5)
    assert d.stop() < 6 and "Traceback" not in d.log_text()


def _set_mdwe() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE")


def _mdwe_supported() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import mmap; mmap.mmap(-1, 4096, prot=7)"],
                           preexec_fn=_set_mdwe, capture_output=True)
    return probe.returncode != 0 and b"Permission denied" in probe.stderr


def test_runs_without_writable_executable_memory(tmp_path, clip_factory, daemons):
    """The unit sets MemoryDenyWriteExecute=yes: the daemon (onnxruntime, PyAV and OpenCV
    decoding) must work when no W+X mapping can be made. Checked with the kernel's
    PR_SET_MDWE (Linux >= 6.3), inherited across exec; skipped where it is missing."""
    try:
        if not _mdwe_supported():
            pytest.skip("PR_SET_MDWE does not refuse W+X mappings here")
    except (OSError, subprocess.SubprocessError):
        pytest.skip("kernel without PR_SET_MDWE")
    clip = clip_factory(seconds=6, content="pan", size=(320, 180))
    port = free_port()
    cameras = [{"id": "keyframes", "url": str(clip), "loop": True},
               {"id": "every", "url": str(clip), "loop": True, "decode": "all"}]
    cfg = write_config(tmp_path / "sw.yaml", base_config(tmp_path, cameras, model={"enabled": True},
                                                         metrics_port=port))
    d = daemons(cfg, preexec_fn=_set_mdwe)
    assert d.wait_log("daemon_started", timeout=60), d.log_text()[-2000:]

    def sampled() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return False
        return all(re.search(rf'streamwatch_samples_total{{camera="{c}"}} ([3-9]|\d\d)', text) for c in
                   ("keyframes", "every"))

    assert wait_until(sampled, 30), d.log_text()[-2000:]
    assert d.stop() < 6 and "Traceback" not in d.log_text()


def _listening_addresses(port: int) -> list[str]:
    """IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp, as ``ss -lnt``)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hexport = local.split(":")
        if state == "0A" and int(hexport, 16) == port:
            found.append(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
    return found


def test_metrics_endpoint_bound_to_localhost_and_only_for_client_certificates(
        tmp_path, clip_factory, broker, daemons):
    import ssl
    import urllib.error

    tls = make_tls_files(tmp_path / "pki")
    clip = clip_factory(seconds=4, content="pan", size=(320, 180))
    port = free_port()
    mqtt = {"host": "127.0.0.1", "port": broker.port, "client_id": f"sw-m-{tmp_path.name}"}
    cfg = base_config(tmp_path, [{"id": "cam", "url": str(clip), "loop": True}], mqtt, metrics_port=port,
                      metrics_bind="127.0.0.1",
                      metrics_tls={"cert_file": str(tls.server_cert), "key_file": str(tls.server_key),
                                   "client_ca_file": str(tls.ca)})
    d = daemons(write_config(tmp_path / "sw.yaml", cfg))
    assert d.wait_log("camera_connected", timeout=30, camera="cam"), d.log_text()[-3000:]
    assert _listening_addresses(port) == ["127.0.0.1"]
    url = f"https://localhost:{port}/metrics"
    with_cert = ssl.create_default_context(cafile=str(tls.ca))
    with_cert.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    with urllib.request.urlopen(url, timeout=5, context=with_cert) as r:
        assert 'streamwatch_camera_connected{camera="cam"}' in r.read().decode()
    without_cert = ssl.create_default_context(cafile=str(tls.ca))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        with urllib.request.urlopen(url, timeout=5, context=without_cert) as r:
            r.read()
    with pytest.raises((urllib.error.URLError, ConnectionError, http_client_errors())):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            r.read()
    assert d.alive()


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException


@pytest.mark.parametrize("change, problem", [
    ({"metrics_bind": "not-an-ip"}, "metrics_bind"),
    ({"metrics_tls": {"cert_file": "missing.crt", "key_file": "missing.key"}}, "metrics_tls.cert_file"),
    ({"metrics_tls": {"cert_file": "x.crt"}}, "metrics_tls.key_file"),
])
def test_bad_metrics_settings_are_config_errors(tmp_path, change, problem):
    cfg = write_config(tmp_path / "sw.yaml", base_config(tmp_path, [], metrics_port=9464, **change))
    out = cli("check-config", str(cfg))
    assert out.returncode == 2 and problem in out.stderr and "Traceback" not in out.stderr, out.stderr
