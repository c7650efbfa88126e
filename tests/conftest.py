"""Shared fixtures: an isolated GEMBA_HOME per test, a real daemon per session, the network guard.

Everything runs the real parts: the embedded SmolLM2 model under llama.cpp, real SQLite files,
real HTTP on loopback. Tests of what is around the model (queue, cancel, crashes, console, the
governor) may run their daemon on the scripted engine instead (`fake_home`, `fake_daemon`,
`GembaHome.use_fake_engine`): the same worker, supervisor, store and API, exact tokens at a known
pace. Every process the tests start (and this one) has the network guard
(tests/netguard/sitecustomize.py): any traffic beyond loopback fails the session.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
NETGUARD = Path(__file__).resolve().parent / "netguard"
PYTHON = sys.executable

# A prompt the embedded model answers at temperature 0 with a long list (runs to the token
# limit), so tests can cancel mid-answer without racing the model's own end.
LONG_ANSWER_PROMPT = "List the numbers from 1 to 1000 separated by commas."

# What the scripted engine (appliance/inference/fake.py) answers: FAKE_ANSWER to any question,
# and to LONG_ANSWER_PROMPT the list it asks for, one number a token at FAKE_LONG_TOK_PER_S:
# 20 s for the whole list, so a test cancels it mid-answer without racing its end.
FAKE_ANSWER = "Check the belt tension, then reset the alarm."
FAKE_LONG_ANSWER = ", ".join(str(n) for n in range(1, 1001)) + "."
FAKE_LONG_TOK_PER_S = 50
FAKE_SCRIPT: dict[str, Any] = {
    "answer": FAKE_ANSWER, "tokens_per_s": 200,
    "rules": [{"when": LONG_ANSWER_PROMPT, "answer": FAKE_LONG_ANSWER,
               "tokens_per_s": FAKE_LONG_TOK_PER_S}]}
FAKE_MARKED_FIXTURES = {"fake_home", "fake_daemon"}
_daemons_started: dict[str, list[str]] = {"real model": [], "scripted engine": []}
"""Tests whose home ran a daemon, by engine: the terminal summary counts them."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def clock_in(tz: str) -> Iterator[None]:
    """This process on another clock (a POSIX TZ such as "CST-8" for UTC+8), then back."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture(scope="session")
def netguard_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("netguard") / "attempts.log"
    log.touch()
    yield log
    attempts = log.read_text()
    assert not attempts, f"network access was attempted during the tests:\n{attempts}"


@pytest.fixture(scope="session", autouse=True)
def _guard_this_process(netguard_log: Path) -> None:
    os.environ["GEMBA_NETGUARD_LOG"] = str(netguard_log)
    sys.path.insert(0, str(NETGUARD))
    import sitecustomize  # noqa: F401  (installs the guard in the test process too)


def _ctrl_c_as_at_a_terminal() -> None:
    """SIGINT as a terminal delivers it. A test run started in the background (`make test &`)
    inherits SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class GembaHome:
    """An isolated appliance: its own GEMBA_HOME, config and port."""

    home: Path
    port: int
    netguard_log: Path
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    """Variables for this appliance's processes only (the test's own GEMBA_* never leak in)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMBA_", "XDG_"))}
        env.update(GEMBA_HOME=str(self.home), GEMBA_NETGUARD_LOG=str(self.netguard_log),
                   PYTHONPATH=os.pathsep.join([str(NETGUARD), str(ROOT)]),
                   NO_COLOR="1", PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        return env

    @property
    def config_file(self) -> Path:
        return self.home / "config.toml"

    @property
    def db_file(self) -> Path:
        return self.home / "data" / "gemba.db"

    def use_fake_engine(self, **script: Any) -> GembaHome:
        """Run this home's daemons on the scripted engine: FAKE_SCRIPT, with `script`'s keys
        in its place (e.g. `tokens_per_s=10`, `rules=[...]`)."""
        self.extra_env["GEMBA_FAKE_ENGINE"] = json.dumps({**FAKE_SCRIPT, **script})
        return self

    def note_daemon(self, test: str) -> None:
        """Count this home's daemon, if one ran (only a daemon's governor writes telemetry)."""
        if (self.home / "data" / "telemetry.db").exists():
            engine = "scripted engine" if "GEMBA_FAKE_ENGINE" in self.extra_env else "real model"
            _daemons_started[engine].append(test)

    def write_config(self, text: str) -> None:
        self.config_file.write_text(text, encoding="utf-8")

    def gemba(self, *args: str, timeout: float = 180,
              check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `gemba ARGS` as a user would, in this home."""
        result = subprocess.run([PYTHON, "-m", "appliance", *args], env=self.env, text=True,
                                capture_output=True, timeout=timeout, cwd=self.home)
        if check:
            assert result.returncode == 0, f"gemba {args} failed:\n{result.stderr}"
        return result

    def start_gemba(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([PYTHON, "-m", "appliance", *args], env=self.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.home,
                                   preexec_fn=_ctrl_c_as_at_a_terminal)
        self.processes.append(process)
        return process

    def health(self) -> dict[str, Any] | None:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).json()
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            health = self.health()
            if health and health.get("ready"):
                return health
            time.sleep(0.1)
        log = self.home / "logs" / "daemon.log"
        raise AssertionError(f"daemon not ready; log:\n{log.read_text() if log.exists() else ''}")

    def start_daemon(self) -> subprocess.Popen[str]:
        process = self.start_gemba("serve")
        self.wait_ready()
        return process

    def stop_all(self) -> None:
        self.gemba("stop", timeout=30)
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def history(self) -> list[dict[str, Any]]:
        return json.loads(self.gemba("history", "--json", check=True).stdout)

    def conversation(self, conversation_id: int) -> dict[str, Any]:
        return json.loads(self.gemba("history", "show", str(conversation_id), "--json",
                                     check=True).stdout)


def make_home(root: Path, netguard_log: Path) -> GembaHome:
    root.mkdir(parents=True, exist_ok=True)
    home = GembaHome(root, free_port(), netguard_log)
    home.write_config(f"[daemon]\nport = {home.port}\nidle_timeout_s = 300\n")
    return home


_make_home = make_home  # the name older test modules import


@pytest.fixture
def gemba_home(tmp_path: Path, netguard_log: Path,
               request: pytest.FixtureRequest) -> Iterator[GembaHome]:
    """A fresh appliance home; any daemon started in it is stopped afterwards."""
    home = make_home(tmp_path / "gemba", netguard_log)
    yield home
    home.stop_all()
    home.note_daemon(request.node.nodeid)


@pytest.fixture(scope="session")
def smollm() -> Any:
    """The embedded model's GGUF facts (layers, KV size, weights), for plans and limits."""
    from appliance.models import CATALOG, locate
    from installer.gguf_info import read_model_facts

    path = locate(CATALOG["smollm2-135m-instruct-q4_1"], Path("/nonexistent"))
    assert path is not None
    return read_model_facts(path)


@pytest.fixture
def fake_home(gemba_home: GembaHome) -> GembaHome:
    """A fresh appliance home whose daemons answer with the scripted engine (FAKE_SCRIPT)."""
    return gemba_home.use_fake_engine()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`-m fake` selects the tests whose daemon runs the scripted engine, `-m model` (also)
    those that talk to the session's real daemon."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if FAKE_MARKED_FIXTURES & fixtures:
            item.add_marker(pytest.mark.fake)
        if "daemon" in fixtures:
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def fake_daemon(tmp_path_factory: pytest.TempPathFactory,
                netguard_log: Path) -> Iterator[GembaHome]:
    """One daemon on the scripted engine, shared by the tests that only talk to it."""
    home = make_home(tmp_path_factory.mktemp("fake-daemon") / "gemba", netguard_log)
    home.use_fake_engine().start_daemon()
    yield home
    home.stop_all()
    home.note_daemon("fake_daemon (session)")


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory, netguard_log: Path) -> Iterator[GembaHome]:
    """One real daemon with the embedded model, shared by the tests that only talk to it."""
    home = make_home(tmp_path_factory.mktemp("daemon") / "gemba", netguard_log)
    home.start_daemon()
    yield home
    home.stop_all()
    home.note_daemon("daemon (session)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many daemons loaded the real model: issue 11 wants only the tests that need it to."""
    counts = ", ".join(f"{len(tests)} on the {engine}" for engine, tests in
                       _daemons_started.items())
    if any(_daemons_started.values()):
        terminalreporter.write_line(f"daemons started: {counts}")
        for test in _daemons_started["real model"]:
            terminalreporter.write_line(f"  real model: {test}", light=True)
