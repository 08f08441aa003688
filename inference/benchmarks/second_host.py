"""A second worker host on this machine: a network namespace with its own address on a veth
pair (only loopback and that pair inside), running ``deploy/up --role worker`` against this
host's PostgreSQL and Redis. Used by the two-host test and ``benchmark scale``.

PostgreSQL and Redis listen on 127.0.0.1 only, so socat forwards the host side's veth
address to them for as long as the second host lives; nothing in their configuration
changes. Needs root (``ip netns``), socat and util-linux's ``unshare``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
HOST_ADDRESS = "10.213.0.1"  # this machine's end of the veth pair
INSIDE_ADDRESS = "10.213.0.2"  # the second host's only address besides loopback
HOSTNAME = "appliance-host2"


class SecondHostError(RuntimeError):
    pass


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SecondHostError(f"`{' '.join(args)}` failed: {result.stderr.strip()}")


class SecondHost:
    """``start()`` builds the namespace and starts the workers; ``kill()`` ends every process
    in it at once, like a host losing power; ``close()`` removes it all (call it in a
    ``finally``: it never raises)."""

    def __init__(
        self,
        *,
        queues: str,
        database: dict[str, Any],
        redis_url: str,
        data_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        suffix = str(os.getpid() % 100000)
        self.namespace = f"appliance-h2-{suffix}"
        self.veth = f"vh2-{suffix}"  # interface names: at most 15 characters
        self.peer = f"vn2-{suffix}"
        self.queues = queues
        self.database = database
        self.redis_url = redis_url
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.log_dir = data_dir / "log"
        self.forwarders: list[subprocess.Popen] = []
        self.process: subprocess.Popen | None = None
        self.created = False

    # --- the network ---------------------------------------------------------------------

    def _network(self) -> None:
        if os.geteuid() != 0:
            raise SecondHostError("the second host needs root (ip netns); run the test as root")
        for tool in ("ip", "socat", "unshare"):
            if shutil.which(tool) is None:
                raise SecondHostError(f"the second host needs `{tool}` (deploy/test installs it)")
        result = subprocess.run(
            ["ip", "netns", "add", self.namespace], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SecondHostError(
                f"`ip netns add` is not permitted here ({result.stderr.strip()}): the two-host "
                "check needs a machine (or container) that may create network namespaces"
            )
        self.created = True
        _run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", self.peer)
        _run("ip", "link", "set", self.peer, "netns", self.namespace)
        _run("ip", "addr", "add", f"{HOST_ADDRESS}/30", "dev", self.veth)
        _run("ip", "link", "set", self.veth, "up")
        inside = ("ip", "-n", self.namespace)
        _run(*inside, "addr", "add", f"{INSIDE_ADDRESS}/30", "dev", self.peer)
        _run(*inside, "link", "set", self.peer, "up")
        _run(*inside, "link", "set", "lo", "up")

    def _forward(self, port: int, target: str) -> None:
        self.forwarders.append(
            subprocess.Popen(
                [
                    "socat",
                    f"TCP-LISTEN:{port},bind={HOST_ADDRESS},reuseaddr,fork",
                    f"TCP:{target}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST_ADDRESS, port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SecondHostError(f"socat did not listen on {HOST_ADDRESS}:{port}")

    # --- the workers ---------------------------------------------------------------------

    def urls(self) -> tuple[str, str]:
        """The broker and database as the second host reaches them: over the veth pair."""
        redis = urlsplit(self.redis_url)
        broker = urlunsplit(redis._replace(netloc=f"{HOST_ADDRESS}:{self.redis_port}"))
        db = self.database
        user = quote(db["USER"], safe="")
        password = quote(db["PASSWORD"] or "", safe="")
        database = f"postgresql://{user}:{password}@{HOST_ADDRESS}:{self.db_port}/{db['NAME']}"
        return broker, database

    def start(self) -> None:
        redis = urlsplit(self.redis_url)
        self.redis_port = redis.port or 6379
        self.db_port = int(self.database.get("PORT") or 5432)
        self._network()
        self._forward(self.db_port, f"{self.database.get('HOST') or '127.0.0.1'}:{self.db_port}")
        self._forward(self.redis_port, f"{redis.hostname or '127.0.0.1'}:{self.redis_port}")
        broker, database = self.urls()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for queue in self.queues.split(","):
            (self.log_dir / f"{queue}.log").unlink(missing_ok=True)
            (self.data_dir / "run" / f"{queue}.pid").unlink(missing_ok=True)
        env = {
            **os.environ,
            "APPLIANCE_SKIP_INSTALL": "1",
            "APPLIANCE_DATA_DIR": str(self.data_dir),
            "APPLIANCE_ENV_FILE": os.environ.get(
                "APPLIANCE_ENV_FILE", str(ROOT / "var" / "appliance.env")
            ),
            "APPLIANCE_METRICS_DIR": str(self.data_dir / "run" / "metrics-host2"),
            "PYTHONUNBUFFERED": "1",
            # tests.settings takes Redis from here, over deploy/up's --broker: the same URL.
            "APPLIANCE_TEST_REDIS_URL": broker,
            **self.extra_env,
        }
        command = [
            "ip",
            "netns",
            "exec",
            self.namespace,
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            HOSTNAME,
            str(ROOT / "deploy" / "up"),
            "--role",
            "worker",
            "--queues",
            self.queues,
            "--broker",
            broker,
            "--database",
            database,
        ]
        self.up_log = self.log_dir / "host2-up.log"
        with open(self.up_log, "wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self) -> bool:
        """Every queue's worker has loaded its models and announced itself from this host."""
        if self.process is not None and self.process.poll() is not None:
            raise SecondHostError(f"deploy/up on the second host stopped:\n{self.log_tail()}")
        import redis as redis_library

        client = redis_library.Redis.from_url(self.redis_url)
        return all(
            client.keys(f"appliance:worker:{queue}:{HOSTNAME}-*")
            for queue in self.queues.split(",")
        )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.5)
        raise SecondHostError(f"the second host's workers did not start:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for name in ["host2-up", *self.queues.split(",")]:
            path = self.log_dir / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}.log\n" + "\n".join(text))
        return "\n".join(parts)

    def events(self, queue: str) -> list[dict[str, Any]]:
        """The JSON lines the second host's worker for ``queue`` wrote."""
        return read_events(self.log_dir / f"{queue}.log")

    def pids(self) -> list[int]:
        result = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, check=False
        )
        return [int(p) for p in result.stdout.split()]

    def kill(self) -> None:
        """Every process on the second host ends at once (SIGKILL), without a word to Redis
        or PostgreSQL: what a power cut does."""
        for _ in range(5):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)

    def close(self) -> None:
        """Remove the workers, the forwarders and the namespace; never raises."""
        if self.created:
            with contextlib.suppress(Exception):  # the cleanup goes on whatever happens
                self.kill()
        for forwarder in self.forwarders:
            try:
                os.killpg(forwarder.pid, signal.SIGTERM)
                forwarder.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired, PermissionError):
                pass
        self.forwarders.clear()
        if self.created:
            subprocess.run(["ip", "link", "del", self.veth], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, check=False)
            self.created = False

    def __enter__(self) -> SecondHost:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of one process's log (anything else in it, such as a traceback
    printed before logging was set up, is passed over)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def finished(events: list[dict[str, Any]], event: str, key: str) -> set[int]:
    """The ids (``question_id`` or ``document_id``) of the ``event`` lines in a log."""
    return {int(e[key]) for e in events if e.get("event") == event and key in e}
