"""The 3-node Kafka cluster of scripts/services.sh for the fault tests (issue 17): start it, kill
and restart its brokers by number, make replicated topics, and hold it for one test run at a time.

Everything is loopback and bounded: every wait has a deadline (never asserted as a speed). The
cluster is shared by everyone on this machine, so a test session holds an exclusive lock on it
while it kills brokers (another session waits, bounded), puts every broker back before it lets
go, and stops the cluster at the end only if it was the one that started it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kafka.admin import KafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]  # tests/support/cluster.py -> the repository
SCRIPT = ROOT / "scripts" / "services.sh"
BROKERS = 3
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
SERVICES_TIMEOUT_S = 420.0  # one services.sh call: a first start formats three nodes (~1 min)
LOCK_WAIT_S_MAX = 900.0  # another session's fault tests hold the cluster for a few minutes
TOPIC_WAIT_S_MAX = 30.0
DEFAULT_STATE_DIR = "/var/tmp/stripe-ledger-services"


def services_run(*args: str) -> subprocess.CompletedProcess[str]:
    """``scripts/services.sh ARGS`` without the LEDGER_* services of the caller's shell (with
    both set, `up` would echo them back and start nothing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    if "LEDGER_SERVICES_DIR" in os.environ:
        env["LEDGER_SERVICES_DIR"] = os.environ["LEDGER_SERVICES_DIR"]
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=SERVICES_TIMEOUT_S,
    )


def services(*args: str) -> str:
    """``scripts/services.sh ARGS``; its stdout. Fails the test with stderr's tail otherwise."""
    done = services_run(*args)
    assert done.returncode == 0, (args, done.stderr[-3000:])
    return done.stdout


def running_nodes() -> set[int]:
    """The cluster nodes ``status`` reports up."""
    up = set()
    for line in services("status").splitlines():
        for node in range(1, BROKERS + 1):
            if line.startswith(f"kafka-{node}:") and line.split()[1] == "up":
                up.add(node)
    return up


@dataclass
class Cluster:
    bootstrap: str

    def kill_broker(self, node: int) -> None:
        """SIGKILL node N; returns once the process is gone."""
        services("kill-broker", str(node))

    def start_broker(self, node: int) -> None:
        """Start node N again; returns once it logged its start and takes connections."""
        services("start-broker", str(node))

    def start_all(self) -> None:
        """Start every node that is down (launched together, then waited for)."""
        services("start-cluster")

    def create_topic(self, topic: str, partitions: int) -> None:
        """A topic on all three brokers; writes need two in sync (the brokers' default)."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, partitions, REPLICATION_FACTOR)])
            deadline = time.monotonic() + TOPIC_WAIT_S_MAX
            while True:  # the new topic reaches every broker's metadata a moment later
                described = admin.describe_topics([topic])[0]["partitions"]
                if len(described) == partitions or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            admin.close()
        assert len(described) == partitions, described
        assert all(len(p["replica_nodes"]) == REPLICATION_FACTOR for p in described), described


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S_MAX
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, f"the cluster stayed locked ({path})"
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def held_cluster() -> Iterator[Cluster]:
    """The cluster, started if needed, held exclusively; every broker runs again afterwards."""
    state_dir = Path(os.environ.get("LEDGER_SERVICES_DIR", DEFAULT_STATE_DIR))
    with _exclusive(state_dir / "kafka-cluster.tests.lock"):
        started_here = not running_nodes()
        exports = services("start-cluster").strip().splitlines()
        assert exports and exports[-1].startswith("export LEDGER_KAFKA_BOOTSTRAP="), exports
        bootstrap = exports[-1].split("=", 1)[1]
        assert len(bootstrap.split(",")) == BROKERS, bootstrap
        try:
            yield Cluster(bootstrap)
        finally:
            if started_here:
                services("stop-cluster")
            else:
                services("start-cluster")  # a test that failed midway may have left one down
