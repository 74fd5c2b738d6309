"""The real daemon as a subprocess: samples in over HTTP, webhooks out to a real receiver, signals, crashes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.daemon_harness import TOKEN, DaemonProcess, daemon_process
from tests.http_receiver import Receiver

RULES = """
  - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}
  - {name: ic-floor, kind: threshold, metric: ic, op: below, value: 0.01}
"""


def config_text(receiver: Receiver, rules: str = RULES, extra: str = "") -> str:
    return f"""
daemon:
  state: state.db
  listen: 127.0.0.1:0
  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
  delivery: {{initial_backoff: 50ms, max_backoff: 200ms}}
{extra}
channels:
  - {{name: hook, kind: webhook, url: "{receiver.url}/alerts", timeout: 2s}}
route: {{channels: [hook], group_wait: 0s, group_interval: 1s, group_by: ['...']}}
rules:
{rules}
"""


def push(daemon: DaemonProcess, metric: str, value: float, **labels: str) -> None:
    sample = {"metric": metric, "labels": labels, "ts": time.time(), "value": value}
    response = daemon.post("/api/v1/samples", [sample])
    assert response.status_code == 200, response.text


def test_a_sample_over_the_threshold_arrives_as_a_webhook(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    with daemon_process(write_config(config_text(receiver))) as daemon:
        push(daemon, "gross", 1.9, model="alpha7")
        (request,) = receiver.wait_for(1)
        body = request.json()
        assert body["version"] == "4"
        assert body["status"] == "firing"
        assert body["receiver"] == "hook"
        (alert,) = body["alerts"]
        assert alert["labels"] == {"alertname": "exposure", "model": "alpha7", "severity": "warning"}
        assert alert["value"] == 1.9
        assert len(request.headers["Idempotency-Key"]) == 32
        push(daemon, "gross", 1.2, model="alpha7")
        resolved = receiver.wait_for(2)[1].json()
        assert resolved["status"] == "resolved"
        assert resolved["alerts"][0]["value"] == 1.2
        assert daemon.stop() == 0
        assert daemon.wait_log("stopped")


def test_every_thread_of_the_daemon_allocates_from_one_heap(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """glibc gives each thread a heap of its own (64 MiB of address space each, memory freed in one reused by no
    other): the daemon asks for one heap, so its store threads leave no memory behind in heaps of their own."""
    if os.environ.get("MALLOC_ARENA_MAX") or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        pytest.skip("the environment sets glibc's heaps itself, and the daemon leaves that be")
    with daemon_process(write_config(config_text(receiver))) as daemon:
        for value in range(20):  # the store's worker thread writes each batch
            push(daemon, "gross", 1.0 + value / 100, model=f"m{value}")
        assert daemon.process is not None
        maps = Path(f"/proc/{daemon.process.pid}/maps").read_text().splitlines()
        assert _thread_heaps(maps) == 0
        assert daemon.stop() == 0


def _thread_heaps(maps: list[str]) -> int:
    """The heaps glibc made for threads: 64 MiB reserved each, a used part followed by an inaccessible rest."""

    def size(line: str) -> int:
        start, end = line.split()[0].split("-")
        return int(end, 16) - int(start, 16)

    pairs = itertools.pairwise(maps)
    return sum(1 for before, line in pairs if line.split()[1] == "---p" and size(before) + size(line) == 64 << 20)


def test_sighup_applies_only_the_difference_and_a_broken_config_keeps_the_old_one(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    path = write_config(config_text(receiver))
    with daemon_process(path) as daemon:
        push(daemon, "gross", 1.9, model="a")
        push(daemon, "ic", 0.0, model="a")
        receiver.wait_for(2)
        fired_before = {a["rule"]: a["fired_at"] for a in daemon.get("/api/v1/alerts")["alerts"]}

        # change one rule: the other keeps its firing alert and sends nothing new
        path.write_text(config_text(receiver, RULES.replace("value: 0.01", "value: -0.5")))
        mark = len(daemon.logs)
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_log("configuration reloaded", after=mark)
        assert reloaded["changed"] == ["ic-floor"]
        assert reloaded["added"] == reloaded["removed"] == []
        requests = receiver.wait_for(3)  # ic-floor: 0.0 is not below -0.5 any more, so it resolves
        assert requests[2].json()["status"] == "resolved"
        assert requests[2].json()["alerts"][0]["labels"]["alertname"] == "ic-floor"
        alerts = daemon.get("/api/v1/alerts")["alerts"]
        assert [(a["rule"], a["state"]) for a in alerts] == [("exposure", "firing")]
        assert alerts[0]["fired_at"] == fired_before["exposure"]  # the unchanged rule's alert is the same alert

        # a broken file: logged with file:line, the running rules go on
        path.write_text(config_text(receiver, RULES.replace("op: above", "op: abov")))
        mark = len(daemon.logs)
        daemon.signal(signal.SIGHUP)
        failed = daemon.wait_log("reload failed", after=mark)
        assert f"{path}:" in failed["error"]
        assert "op" in failed["error"]
        health = daemon.get("/health")
        assert health["components"]["reload"]["ok"] is False
        push(daemon, "gross", 1.95, model="b")
        assert receiver.wait_for(4)[3].json()["alerts"][0]["labels"]["model"] == "b"
        time.sleep(0.3)
        assert len(receiver.requests) == 4  # nothing was sent because of the reloads themselves
        assert daemon.stop() == 0


def test_the_configuration_digest_names_the_files_and_not_the_port_bound(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    path = write_config(config_text(receiver))  # listen on any free port: the address is filled in after loading
    with daemon_process(path) as daemon:
        at_start = daemon.get("/health")["components"]["reload"]["digest"]
        assert daemon.get("/api/v1/status")["reload"]["warnings"] == []  # the same fields after start as after a reload
        assert daemon.get("/api/v1/status")["digest"] == at_start
        unchanged = daemon.post("/-/reload", {}).json()
        assert unchanged["digest"] == at_start
        assert daemon.get("/health")["components"]["reload"]["digest"] == at_start
        path.write_text(config_text(receiver, RULES.replace("value: 1.5", "value: 1.6")))
        changed = daemon.post("/-/reload", {}).json()
        assert changed["changed"] == ["exposure"]
        assert changed["digest"] != at_start
        assert daemon.get("/api/v1/status")["digest"] == changed["digest"]


def test_on_loopback_the_daemon_answers_only_its_own_names_and_hardens_every_response(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    path = write_config(config_text(receiver, extra="  external_url: https://alphawatch.desk.example/"))
    with daemon_process(path) as daemon:
        port = daemon.url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "alphawatch.desk.example"):
            answer = httpx.get(daemon.url + "/health", headers={"Host": host}, timeout=10)
            assert answer.status_code == 200, host
            assert answer.headers["x-content-type-options"] == "nosniff"
        # a page elsewhere that resolves its own name to 127.0.0.1 (DNS rebinding) cannot read the open API
        rebound = httpx.get(daemon.url + "/api/v1/alerts", headers={"Host": f"attacker.example:{port}"}, timeout=10)
        assert rebound.status_code == 421
        assert "does not answer to the host 'attacker.example'" in rebound.json()["error"]
        page = httpx.get(daemon.url + "/", timeout=10)
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        # a probe speaking HTTP/1.0 sends no Host at all (a browser always does): answered
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as probe:
            probe.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            assert probe.recv(64).startswith(b"HTTP/1.1 200")
        # links in notifications: the external URL's trailing "/" is not doubled (a proxy would answer 404)
        push(daemon, "gross", 1.9, model="alpha7")
        (alert,) = receiver.wait_for(1)[0].json()["alerts"]
        assert alert["generatorURL"] == "https://alphawatch.desk.example/#rule=exposure"


def test_kill_9_during_deliveries_loses_nothing(write_config: Callable[..., Path], receiver: Receiver) -> None:
    receiver.answer(503)
    path = write_config(config_text(receiver))
    with daemon_process(path) as daemon:
        for index in range(20):
            push(daemon, "gross", 2.0, model=f"m{index}")
        pending = httpx.get(daemon.url + "/api/v1/notifications?state=pending").json()["notifications"]
        assert len(pending) == 20
        receiver.wait_for(5)
        daemon.kill()  # SIGKILL: no shutdown code runs
    receiver.answer(200)
    with daemon_process(path) as daemon:
        requests = receiver.wait_for(25, timeout=20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            delivered = {r.headers["Idempotency-Key"] for r in receiver.requests[len(requests) - 20 :]}
            keys = {r.headers["Idempotency-Key"] for r in receiver.requests}
            done = httpx.get(daemon.url + "/api/v1/notifications?state=delivered").json()["notifications"]
            if len(done) == 20:
                break
            time.sleep(0.05)
        assert len(done) == 20
        assert {n["idempotency_key"] for n in done} <= keys
        assert len(delivered) >= 1
        models = {r.json()["alerts"][0]["labels"]["model"] for r in receiver.requests if r.json()["status"] == "firing"}
        assert models == {f"m{i}" for i in range(20)}
        assert daemon.stop() == 0


def test_a_broken_config_at_start_exits_1_naming_the_line(write_config: Callable[..., Path]) -> None:
    path = write_config("daemon:\n  listen: 127.0.0.1:0\nrules:\n  - {name: r, kind: threshold}\n")
    errors = [entry for entry in _start_fails(path) if entry["level"] == "error"]
    assert errors[0]["msg"] == f"configuration error: {path}:4:5: rules[0]: 'metric' is a required property"
    assert (errors[0]["file"], errors[0]["line"], errors[0]["key"]) == (str(path), 4, "rules[0]")


def _start_fails(path: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "alphawatch.daemon.cli", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("not-sqlite", "cannot open the state file {path}: file is not a database"),
        ("newer", "the state file is from a newer alphawatch (schema 999"),
    ],
)
def test_a_state_file_that_cannot_be_used_stops_the_start_with_one_log_line(
    write_config: Callable[..., Path], tmp_path: Path, state: str, reason: str
) -> None:
    path = tmp_path / "state.db"
    if state == "not-sqlite":
        path.write_bytes(b"not a database" * 400)
    else:
        import sqlite3

        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version = 999")
        db.close()
    logs = _start_fails(write_config(f"daemon:\n  state: {path}\n  listen: 127.0.0.1:0\n"))
    errors = [entry for entry in logs if entry["level"] == "error"]
    assert len(errors) == 1
    assert str(errors[0]["msg"]).startswith("cannot start: " + reason.format(path=path))


def test_a_listen_address_in_use_stops_the_start_with_one_log_line(write_config: Callable[..., Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        logs = _start_fails(write_config(f"daemon:\n  listen: 127.0.0.1:{port}\n"))
    errors = [entry["msg"] for entry in logs if entry["level"] == "error"]
    assert errors == [f"cannot start: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_check_command(write_config: Callable[..., Path], receiver: Receiver) -> None:
    good = write_config(config_text(receiver))
    result = subprocess.run([sys.executable, "-m", "alphawatch.daemon.cli", "check", "-c", str(good)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0
    assert "2 rules, 1 channels" in result.stdout
    bad = write_config(
        "rules:\n  - {name: r, kind: threshold, metric: m, op: above, value: 1, for: soon}\n", "bad.yaml"
    )
    result = subprocess.run([sys.executable, "-m", "alphawatch.daemon.cli", "check", "-c", str(bad)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 1
    assert f"{bad}:2:69: rules[0].for: 'soon' is not a duration" in result.stderr


def test_push_and_status_commands_use_the_generated_token(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    path = write_config(config_text(receiver).replace(f"  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}\n", ""))
    with daemon_process(path) as daemon:
        token_file = path.parent / "state.db.token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        port = daemon.url.rsplit(":", 1)[1]
        cli = [sys.executable, "-m", "alphawatch.daemon.cli"]
        args = ["-c", str(path), "--url", daemon.url]
        pushed = subprocess.run([*cli, "push", *args, "gross", "1.9", "-l", "model=cli"], capture_output=True,
                                text=True, timeout=30)  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        assert receiver.wait_for(1)[0].json()["alerts"][0]["labels"]["model"] == "cli"
        lines = json.dumps({"metric": "ic", "labels": {"model": "x"}, "ts": time.time(), "value": 0.5}) + "\n"
        pushed = subprocess.run([*cli, "push", *args, "-"], input=lines, capture_output=True, text=True, timeout=30)
        assert "accepted 1 sample(s)" in pushed.stdout
        status = subprocess.run([*cli, "status", *args], capture_output=True, text=True, timeout=30)
        assert status.returncode == 0
        assert "1 alerts firing" in status.stdout
        assert "notifications since start: 1 delivered, 0 in flight, 0 failed attempts, 0 dead letters" in status.stdout
        assert port in status.stdout
        refused = subprocess.run([*cli, "push", *args, "--token", "wrong", "gross", "1"], capture_output=True,
                                 text=True, timeout=30)  # fmt: skip
        assert refused.returncode == 1
        assert "401" in refused.stderr


def test_the_cli_finds_the_token_of_a_daemon_under_systemd_given_its_state_directory(
    write_config: Callable[..., Path], receiver: Receiver, tmp_path: Path
) -> None:
    # systemd sets $STATE_DIRECTORY for the daemon only: an admin's shell does not have it
    path = write_config(config_text(receiver).replace(f"  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}\n", ""))
    state_dir = tmp_path / "var-lib-alphawatch"
    state_dir.mkdir()
    with daemon_process(path, env={"STATE_DIRECTORY": str(state_dir)}) as daemon:
        assert (state_dir / "state.db.token").exists()
        push = [sys.executable, "-m", "alphawatch.daemon.cli", "push", "-c", str(path), "--url", daemon.url, "ic", "1"]
        env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "ALPHAWATCH_TOKEN")}
        lost = subprocess.run(push, capture_output=True, text=True, timeout=30, env=env)
        assert lost.returncode == 1
        assert f"no API token: pass --token or set $ALPHAWATCH_TOKEN; the daemon's generated token is not at " \
               f"{path.parent / 'state.db.token'}" in lost.stderr  # fmt: skip
        assert "STATE_DIRECTORY=/var/lib/alphawatch" in lost.stderr
        found = subprocess.run(push, capture_output=True, text=True, timeout=30,
                               env={**env, "STATE_DIRECTORY": str(state_dir)})  # fmt: skip
        assert found.returncode == 0, found.stderr
        assert "accepted 1 sample(s)" in found.stdout


def test_the_cli_reaches_the_daemon_whatever_is_wrong_outside_the_daemon_section(
    write_config: Callable[..., Path], receiver: Receiver, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # the CLI finds the daemon by the configured address: a fixed free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = config_text(receiver, extra="include: ['rules.d/*.yaml']")
    text = text.replace("listen: 127.0.0.1:0", f"listen: 127.0.0.1:{port}").replace(receiver.url, "${env:HOOK}")
    path = write_config(text)
    with daemon_process(path, env={"HOOK": receiver.url}):
        # a half-edited include, and a channel secret the operator's shell does not have
        write_config("rules:\n  - {name: half, kind: thresh", "rules.d/extra.yaml")
        env = {k: v for k, v in os.environ.items() if k not in ("HOOK", "ALPHAWATCH_TOKEN")}
        cli = [sys.executable, "-m", "alphawatch.daemon.cli"]
        pushed = subprocess.run([*cli, "push", "-c", str(path), "gross", "1.9", "-l", "model=cli"],
                                capture_output=True, text=True, timeout=30, env=env)  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        assert "accepted 1 sample(s)" in pushed.stdout
        listed = subprocess.run([*cli, "silence", "list", "-c", str(path)], capture_output=True, text=True,
                                timeout=30, env=env)  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        checked = subprocess.run([*cli, "check", "-c", str(path)], capture_output=True, text=True, timeout=30,
                                 env=env)  # fmt: skip
        assert checked.returncode == 1  # the problems are still there for `check` (and a reload) to name
        assert "rules.d/extra.yaml" in checked.stderr


def test_sd_notify_sequence(write_config: Callable[..., Path], receiver: Receiver, tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(10)
    path = write_config(config_text(receiver))
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    with daemon_process(path, env) as daemon:

        def next_message(want: str) -> dict[str, str]:
            while True:
                fields = dict(line.split("=", 1) for line in listener.recv(4096).decode().splitlines())
                if want in fields:
                    return fields

        ready = next_message("READY")
        assert ready["READY"] == "1"
        assert "rules" in ready["STATUS"]
        assert next_message("WATCHDOG") == {"WATCHDOG": "1"}
        daemon.signal(signal.SIGHUP)
        reloading = next_message("RELOADING")
        assert abs(int(reloading["MONOTONIC_USEC"]) - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 5e6
        assert next_message("READY")["READY"] == "1"
        daemon.signal(signal.SIGTERM)
        assert next_message("STOPPING") == {"STOPPING": "1"}
        assert daemon.stop() == 0
    listener.close()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX only")
def test_sigterm_during_a_reload_that_cannot_finish_still_stops_the_daemon(
    write_config: Callable[..., Path], receiver: Receiver, tmp_path: Path
) -> None:
    path = write_config(config_text(receiver))
    with daemon_process(path) as daemon:
        fifo = tmp_path / "secret.fifo"
        os.mkfifo(fifo)  # reading it blocks until a writer comes, and none will
        path.write_text(config_text(receiver).replace(receiver.url, "${file:" + str(fifo) + "}"))
        mark = len(daemon.logs)
        daemon.signal(signal.SIGHUP)
        time.sleep(0.5)  # the reload is now stuck in the read
        began = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - began < 10
        assert not [entry for entry in daemon.logs[mark:] if entry["level"] == "error"]


def test_sigterm_with_deliveries_in_flight_exits_cleanly(write_config: Callable[..., Path], receiver: Receiver) -> None:
    receiver.answer(200, delay=30)  # the receiver hangs: shutdown must not wait for it
    path = write_config(config_text(receiver))
    with daemon_process(path) as daemon:
        push(daemon, "gross", 1.9, model="slow")
        receiver.wait_for(1)
        began = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - began < 10
    pending = subprocess.run(
        ["sqlite3", str(path.parent / "state.db"), "SELECT state FROM outbox"], capture_output=True, text=True
    )
    if pending.returncode == 0:
        assert pending.stdout.split() == ["pending"]  # kept for the next start, not lost
