"""A real Mosquitto broker for the tests, as a pytest plugin.

``Broker(workdir, conf=...)`` runs ``/usr/sbin/mosquitto -c <workdir>/mosquitto.conf`` as its
own process on a free 127.0.0.1 port. ``stop(kill=True)`` is a real, abrupt broker failure
(SIGKILL); ``start()`` again brings it back on the SAME port, like a broker restart.

The config text is a parameter so later tests can add TLS listeners, password files and
ACLs: ``{port}`` and ``{dir}`` in it are replaced by the port and the work directory, and
``extra_conf`` is appended to the default config (see ``DEFAULT_CONF``).

Also here:

* ``MessageCollector``: a paho client that subscribes (again after every reconnect) and
  records every message as ``Message(topic, payload, retain, qos)``, with
  ``wait_for(predicate, timeout)``.
* ``retained_snapshot(host, port, topic)``: what the broker currently retains, read by a
  fresh client.
* ``make_tls_files(dir)`` (a throw-away CA, server and client certificates, made with the
  openssl CLI), ``make_password_file(path, users)`` (``mosquitto_passwd``) and
  ``TLS_PASSWORD_CONF``, a config template for a TLS listener that requires a client
  certificate and a password; an ACL is one ``extra_conf="acl_file {dir}/acl"`` away.
* ``TcpProxy``: a TCP relay between a client and the broker that the test can ``block()``
  (close the relayed connections and refuse new ones) and ``unblock()``: with it a test
  decides *when* a client may reach a restarted broker, so it can make sure its own
  subscriber is back first.

Fixtures: ``broker`` (function scope, killed at teardown), ``broker_factory(**kwargs)``,
``mqtt_collector(host, port, topics=("#",))`` and ``tcp_proxy(target_port)``; all closed at
teardown. The tests are skipped with a clear message when mosquitto is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")

#: Default broker config: one plain listener on 127.0.0.1, anonymous, nothing on disk but the log.
#: ``user root`` keeps mosquitto from switching to the ``mosquitto`` user when the tests run
#: as root (it could not write its log in the test's directory); it is ignored otherwise.
DEFAULT_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
user root
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
"""


def find_mosquitto() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("mosquitto")


def free_port() -> int:
    """A free port BELOW the kernel's ephemeral range: a broker restarted on the same port after
    a kill must not find it taken by some client's outgoing connection meanwhile."""
    import random

    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (returns True) or ``timeout`` passes (returns False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Broker:
    """One mosquitto process; restartable on the same port."""

    def __init__(
        self,
        workdir: Path,
        conf: str = DEFAULT_CONF,
        *,
        extra_conf: str = "",
        port: int | None = None,
        binary: str | None = None,
        host: str = "127.0.0.1",
    ):
        binary = binary or find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto not found; install it (Debian: apt-get install mosquitto)")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port()
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        text = conf + ("\n" + extra_conf if extra_conf else "")
        self.conf_text = text.replace("{port}", str(self.port)).replace("{dir}", str(self.workdir))
        self.conf_path.write_text(self.conf_text, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _log_count(self, line: str) -> int:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").count(line)
        except OSError:
            return 0

    def _logs_to_file(self) -> bool:
        return "log_dest file" in self.conf_text

    def start(self, timeout: float = 10.0) -> Broker:
        """Start (or restart) on the same port; returns once the port accepts connections and,
        when mosquitto logs to its file, once it has logged "running": it opens its listeners
        before it installs its signal handlers, and a SIGHUP in between kills it."""
        if self.running:
            return self
        deadline = time.monotonic() + timeout
        running_before = self._log_count(" running\n")
        attempt = 0
        while True:
            attempt += 1
            out = open(self.workdir / "mosquitto.stdout", "ab")
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            out.close()
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break  # died: typically the port still bound after a kill; try again
                if self._accepts() and (not self._logs_to_file() or self._log_count(" running\n") > running_before):
                    self.starts += 1
                    return self
                time.sleep(0.02)
            if time.monotonic() >= deadline:
                self.stop(kill=True)
                raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{self.log_tail()}")
            time.sleep(min(0.1 * attempt, 0.5))

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, kill: bool = False, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM (clean) or SIGKILL (abrupt failure)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP: mosquitto reloads its password and ACL files; returns once it has logged the reload."""
        assert self.running, "reload() needs a running broker"
        before = self._log_count("Reloading config.")
        self.proc.send_signal(signal.SIGHUP)
        if self._logs_to_file() and not wait_until(lambda: self._log_count("Reloading config.") > before, timeout):
            raise RuntimeError(f"mosquitto did not reload its config:\n{self.log_tail()}")

    def kill(self) -> None:
        self.stop(kill=True)

    def restart(self, kill: bool = True) -> Broker:
        self.stop(kill=kill)
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        try:
            text += (self.workdir / "mosquitto.stdout").read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(kill=True)


# -- subscriber ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


class MessageCollector:
    """Subscribes to ``topics`` (again after every reconnect) and records all messages."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: Iterable[str] = ("#",),
        qos: int = 1,
        client_id: str | None = None,
        reconnect_delay: float = 0.05,
        username: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ):
        import paho.mqtt.client as mqtt

        self.topics = list(topics)
        self.qos = qos
        self._cond = threading.Condition()
        self.messages: list[Message] = []
        self.subscribed = 0  # SUBACKs received, one per (re)connect
        self.connected = False
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"test-collector-{uuid.uuid4().hex[:8]}"
        )
        self.client.reconnect_delay_set(reconnect_delay, reconnect_delay)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.client_cert), keyfile=str(tls.client_key))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):  # noqa: ANN001
        if reason_code.is_failure:
            return
        self.connected = True
        client.subscribe([(t, self.qos) for t in self.topics])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):  # noqa: ANN001
        self.connected = False

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):  # noqa: ANN001
        with self._cond:
            self.subscribed += 1
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):  # noqa: ANN001
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self._cond.notify_all()

    def wait_subscribed(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until at least ``count`` SUBACKs have arrived (one per successful connect)."""
        if not self.wait_for(lambda c: c.subscribed >= count, timeout):
            raise TimeoutError(f"collector not subscribed {count} time(s) within {timeout} s")

    def wait_for(self, predicate: Callable[[MessageCollector], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def texts(self, topic: str) -> list[str]:
        return [m.text for m in self.on(topic)]

    def last(self, topic: str) -> Message | None:
        found = self.on(topic)
        return found[-1] if found else None

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained_snapshot(
    host: str, port: int, topic: str = "#", settle: float = 0.3, timeout: float = 5.0, **client_kwargs
) -> dict[str, bytes]:
    """The retained messages the broker holds under ``topic``, read by a fresh subscriber.

    Waits until no new retained message arrived for ``settle`` seconds. ``client_kwargs``
    go to MessageCollector (username, password, tls).
    """
    collector = MessageCollector(host, port, [topic], **client_kwargs)
    try:
        collector.wait_subscribed(1, timeout)
        last_count = -1
        stable_since = time.monotonic()
        while True:
            count = len(collector.messages)
            if count != last_count:
                last_count, stable_since = count, time.monotonic()
            elif time.monotonic() - stable_since >= settle:
                break
            time.sleep(0.02)
        return {m.topic: m.payload for m in collector.messages if m.retain}
    finally:
        collector.close()


# -- TLS and passwords ---------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA, a server certificate for ``localhost``/127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a test CA and certificates with the openssl CLI (EC P-256, valid 2 days)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed; TLS tests need it to make certificates")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=streamwatch test CA")
    for name, cn, ext in (
        ("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "streamwatch-test-client", "extendedKeyUsage=clientAuth"),
    ):
        (d / f"{name}.ext").write_text(ext + "\n")
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    for key in ("ca.key", "server.key", "client.key"):
        (d / key).chmod(0o644)  # mosquitto may run as another user
    return TlsFiles(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


def make_password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file (hashed with ``mosquitto_passwd``)."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed (Debian: apt-get install mosquitto)")
    path = Path(path)
    path.write_text("")
    for user, password in users.items():
        subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
    path.chmod(0o644)
    return path


#: A TLS listener requiring a client certificate and a password; fill in with ``str.format``-
#: like replacement of ``{ca}``, ``{cert}``, ``{key}`` and ``{passwd}`` before passing it on.
TLS_PASSWORD_CONF = """\
listener {port} 127.0.0.1
cafile {ca}
certfile {cert}
keyfile {key}
require_certificate true
allow_anonymous false
password_file {passwd}
persistence false
user root
log_dest file {dir}/mosquitto.log
log_type all
connection_messages true
"""


# -- TCP relay -------------------------------------------------------------------------------


class TcpProxy:
    """Relays TCP connections from ``127.0.0.1:<port>`` to ``target``; can be blocked.

    ``block()`` closes every relayed connection and makes new ones fail right after they are
    accepted (the client sees the connection close, as with a broker that is not there);
    ``unblock()`` relays again. The proxy also fails a client's connection when the target
    refuses, so a killed broker looks the same through it.
    """

    def __init__(self, target_host: str, target_port: int, port: int | None = None):
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port or 0))
        self._listener.listen(16)
        self.host = "127.0.0.1"
        self.port = self._listener.getsockname()[1]
        self._blocked = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self._blocked.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)

    def block(self) -> None:
        self._blocked.set()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _close(a)
            _close(b)

    def unblock(self) -> None:
        self._blocked.clear()

    def close(self) -> None:
        self._closed.set()
        self.block()
        _close(self._listener)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


# -- fixtures --------------------------------------------------------------------------------


def _require_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto); MQTT tests need a real broker")


@pytest.fixture
def broker_factory(tmp_path_factory: pytest.TempPathFactory):
    """``broker_factory(conf=..., extra_conf=..., start=True) -> Broker``; all killed at teardown."""
    _require_mosquitto()
    brokers: list[Broker] = []

    def make(conf: str = DEFAULT_CONF, *, extra_conf: str = "", start: bool = True, **kwargs) -> Broker:
        b = Broker(tmp_path_factory.mktemp("broker"), conf, extra_conf=extra_conf, **kwargs)
        brokers.append(b)
        return b.start() if start else b

    yield make
    for b in brokers:
        b.stop(kill=True)


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A started mosquitto on a free 127.0.0.1 port (anonymous, no persistence)."""
    return broker_factory()


@pytest.fixture
def mqtt_collector():
    """``mqtt_collector(host, port, topics=("#",)) -> MessageCollector`` (subscribed on return)."""
    made: list[MessageCollector] = []

    def make(host: str, port: int, topics: Iterable[str] = ("#",), **kwargs) -> MessageCollector:
        c = MessageCollector(host, port, topics, **kwargs)
        made.append(c)
        c.wait_subscribed(1)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def tcp_proxy():
    """``tcp_proxy(target_port, target_host="127.0.0.1") -> TcpProxy`` (closed at teardown)."""
    made: list[TcpProxy] = []

    def make(target_port: int, target_host: str = "127.0.0.1") -> TcpProxy:
        p = TcpProxy(target_host, target_port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
