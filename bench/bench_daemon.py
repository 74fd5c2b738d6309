"""Daemon speed and memory side by side with Prometheus Alertmanager, in one run (issue 2).

    .venv/bin/python bench/bench_daemon.py                 # about 4-6 minutes on 2 vCPUs
    .venv/bin/python bench/bench_daemon.py --quick         # smoke run, about a minute
    .venv/bin/python bench/bench_daemon.py --rev HEAD      # measure a committed revision, not the working tree
    .venv/bin/python bench/bench_daemon.py --profile       # also py-spy the daemon in each phase

Alertmanager (Debian's ``prometheus-alertmanager``; nothing is installed here) is measured with the peer scripts
in ``../shared/bench/peer_alertmanager/``: this script imports ``bench_alertmanager.py`` and runs a reduced set of
its phases (cold starts, latency with every alert its own group, no-op reloads, batched ingest, RSS after load),
then stops it before alphawatch runs, so the two never compete for the CPU.

alphawatch is started as a subprocess (``.venv/bin/alphawatch run -c FILE``, or a ``git archive`` of ``--rev``
on ``PYTHONPATH``) with temporary configs, tokens set, state in a temporary directory. Webhooks go to the peer's
``webhook_recorder.py`` (CLOCK_MONOTONIC arrival times). Phases:

  start      Popen -> "alphawatch ready" log line and -> first /health 200, RSS at ready and after 2 s idle,
             SIGTERM -> exit; a config like monitor.example.yaml, fresh state each time
  latency    one threshold rule with ``for: 0s``; N samples one at a time, each a new series (label id=lat-i),
             latency = recorder arrival - client monotonic just before the POST
  ingest     pre-serialised batches of 100 and 1,000 samples (1,000 series, epoch-second ts) of a metric no
             rule watches, from 1 and 2 client threads (keep-alive connections)
  reload     1,000 threshold rules, 10 of them firing; POST /-/reload with the file unchanged: round trip and
             the ``ms`` field; webhook POSTs in the 3 s after
  memory     one rule; 500 warm-up alerts, settle, RSS; then 20,000 more series firing (batches of 1,000),
             wait until all fire and every webhook is delivered, settle, RSS; (delta)/20,000. Then 20,000 more
             the same way: (delta from the first load's RSS)/20,000, the cost of one more alert

Every loop is bounded in count and wall-clock time; all traffic stays on 127.0.0.1; every process started here is
stopped by PID in ``finally``. Prints a Markdown table; writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_DIR = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench", "peer_alertmanager"))
AM_BINARY = "/usr/bin/prometheus-alertmanager"
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")
VENV_ALPHAWATCH = os.path.join(ROOT, ".venv", "bin", "alphawatch")
INGEST_TOKEN = "bench-ingest-token-0123456789abcdef"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef0"
READY_MSG = '"msg": "alphawatch ready"'
CODE_DIRS = ("daemon", "rules", "channels", "web")

TARGETS = {
    "latency_p99_ms": 10.0,
    "ingest_samples_per_s": 100_000.0,
    "rss_after_start_mib": 50.0,
    "start_to_ready_ms": 500.0,
    "reload_1000_rules_ms": 100.0,
    "reload_notifications": 0,
    "memory_per_alert_kib": 1.0,
}


def load_peer(peer_dir: str) -> Any:
    path = os.path.join(peer_dir, "bench_alertmanager.py")
    spec = importlib.util.spec_from_file_location("bench_alertmanager", path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------------------
# small helpers (the peer module provides pct, summary_ms, rss_kib, cpu_seconds, HookTail, Procs)
# --------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Client:
    """One keep-alive connection to the daemon with a bearer token."""

    def __init__(self, port: int, token: str, timeout: float = 30.0) -> None:
        self.port, self.token, self.timeout = port, token, timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                # a keep-alive connection the server closed while idle (after 5 s): once more, on a new one
                stale = isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError)
                if attempt == 2 or not stale:
                    raise
        raise AssertionError("unreachable")

    def get_json(self, path: str) -> Any:
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)

    def close(self) -> None:
        self.conn.close()


def samples_body(metric: str, ids: list[str], value: float, ts: float | None = None) -> bytes:
    ts = time.time() if ts is None else ts
    return json.dumps(
        [{"metric": metric, "labels": {"id": i}, "ts": ts, "value": value} for i in ids], separators=(",", ":")
    ).encode()


def example_config(example_text: str, state: str, hook_port: int, port: int) -> str:
    """monitor.example.yaml of the measured tree with only the state path, listen address, tokens and webhook URLs
    changed."""
    text = re.sub(r"(?m)^  state: .*$", f"  state: {state}", example_text, count=1)
    text = re.sub(
        r"(?m)^  listen: .*$",
        f"  listen: 127.0.0.1:{port}\n  tokens: {{ingest: {INGEST_TOKEN}, admin: {ADMIN_TOKEN}}}",
        text,
        count=1,
    )
    return re.sub(r"url: https?://\S+", f"url: http://127.0.0.1:{hook_port}/hook", text)


def daemon_config(state: str, hook_port: int, rules: list[dict[str, Any]], port: int = 0, example: bool = False) -> str:
    """A config in the documented format; ``example`` copies monitor.example.yaml's daemon settings, route and rules."""
    lines = [
        "daemon:",
        f"  state: {state}",
        f"  listen: 127.0.0.1:{port}",
        "  language: en",
        "  retention: 400d",
        "  tokens:",
        f"    ingest: {INGEST_TOKEN}",
        f"    admin: {ADMIN_TOKEN}",
        "channels:",
        "  - name: hook",
        "    kind: webhook",
        f"    url: http://127.0.0.1:{hook_port}/hook",
        "    timeout: 10s",
        # the same grouping as the peer's bench: every alert its own group, sent at once
        "route:",
        "  channels: [hook]",
        "  group_by: ['...']",
        "  group_wait: 0s",
        "  group_interval: 1s",
        "  repeat_interval: 1h",
    ]
    if example:
        lines += ["  routes:", "    - matchers: [severity=critical]", "      group_wait: 0s"]
    lines += ["rules:"]
    if example:
        lines += EXAMPLE_RULES.splitlines()
    for r in rules:
        lines.append("  - " + json.dumps(r))  # JSON is YAML
    if not example and not rules:
        lines[-1] = "rules: []"
    return "\n".join(lines) + "\n"


# The rules of monitor.example.yaml (kept in step by hand; the file itself points at var/ and port 9464).
EXAMPLE_RULES = """\
  - name: ic-floor-alpha7
    kind: threshold
    description: Daily rank IC of alpha7 averaged over five days falls below 0.01
    metric: ic_daily
    match: {model: alpha7}
    aggregate: mean
    window: 5d
    op: below
    value: 0.01
    hysteresis: 0.005
    for: 1h
    severity: warning
    labels: {team: quant}
    annotations:
      summary: "alpha7 mean IC {{ value }} below 0.01"
  - name: gross-exposure-alpha7
    kind: threshold
    metric: gross_exposure
    match: ["model=alpha7"]
    op: above
    value: 1.5
    keep_firing_for: 10m
    severity: critical
    annotations:
      summary: "gross exposure {{ value }} above 1.5"
  - name: predictions-heartbeat
    kind: absence
    description: the prediction job stopped reporting
    metric: predictions_published
    by: [model]
    absent_for: 26h
    severity: error
    annotations:
      summary: "no predictions from {{ labels.model }} for 26h"
"""


# --------------------------------------------------------------------------------------------------------------
# the daemon under test
# --------------------------------------------------------------------------------------------------------------


class Daemon:
    """One alphawatch process; its stdout+stderr go to a log file that is polled for the ready line."""

    def __init__(self, bench: Bench, tag: str, config_text: str, port: int = 0) -> None:
        self.bench, self.tag = bench, tag
        self.dir = os.path.join(bench.wd, tag)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.cfg = os.path.join(self.dir, "monitor.yaml")
        write(self.cfg, config_text)
        self.log = os.path.join(self.dir, "daemon.log")
        self.fixed_port = port
        self.port: int | None = port or None
        self.p: subprocess.Popen[bytes] | None = None
        self.timing: dict[str, Any] = {}
        self.profiler: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0, poll_health: bool = False) -> dict[str, Any]:
        b = self.bench
        logf = open(self.log, "ab")  # noqa: SIM115 - handed to the child, closed right after
        t0 = time.monotonic_ns()
        self.p = subprocess.Popen(
            [*b.daemon_argv, "run", "-c", self.cfg],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=b.daemon_env,
            cwd=self.dir,
        )
        logf.close()
        b.procs.live[self.p.pid] = (f"alphawatch[{self.tag}]", self.p)
        t_ready = t_health = None
        deadline = time.monotonic() + timeout
        offset = 0
        while (
            time.monotonic() < deadline
            and self.p.poll() is None
            and (t_ready is None or (poll_health and t_health is None))
        ):
            if t_ready is None:
                with open(self.log, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                # only consume whole lines
                cut = chunk.rfind(b"\n") + 1
                offset += cut
                for line in chunk[:cut].decode(errors="replace").splitlines():
                    if READY_MSG in line:
                        t_ready = time.monotonic_ns()
                        url = json.loads(line)["listen"][0]
                        self.port = int(url.rsplit(":", 1)[1].strip("/"))
            if poll_health and t_health is None and self.fixed_port:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", self.fixed_port, timeout=1)
                    c.request("GET", "/health")
                    r = c.getresponse()
                    r.read()
                    c.close()
                    if r.status == 200:
                        t_health = time.monotonic_ns()
                except OSError:
                    pass
            time.sleep(0.001)
        if t_ready is None:
            raise RuntimeError(f"alphawatch[{self.tag}] not ready in {timeout}s (rc={self.p.poll()}); see {self.log}")
        self.timing = {
            "to_ready_line_ms": round((t_ready - t0) / 1e6, 1),
            "to_health_200_ms": round((t_health - t0) / 1e6, 1) if t_health else None,
        }
        return self.timing

    @property
    def pid(self) -> int:
        assert self.p is not None
        return self.p.pid

    def rss(self) -> dict[str, Any]:
        return self.bench.peer.rss_kib(self.pid)

    def client(self, token: str = INGEST_TOKEN) -> Client:
        assert self.port
        return Client(self.port, token)

    def status(self) -> dict[str, Any]:
        c = self.client()
        try:
            return c.get_json("/api/v1/status")[1]
        finally:
            c.close()

    def stop(self) -> float | None:
        self.profile_stop()
        if self.p is None:
            return None
        s = self.bench.procs.stop(self.p)
        return round(s, 3)

    # optional py-spy sampling of one phase -----------------------------------------------------------------
    def profile_start(self, phase: str) -> None:
        if not self.bench.a.profile:
            return
        out = os.path.join(self.bench.out_dir, f"pyspy-{self.bench.stamp}-{phase}.txt")
        argv = [
            self.bench.pyspy,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            out,
        ]
        self.profiler = self.bench.procs.start(f"py-spy[{phase}]", argv, os.path.join(self.dir, f"pyspy-{phase}.log"))
        self.profile_out, self.profile_phase = out, phase
        time.sleep(0.5)  # let py-spy attach

    def profile_stop(self) -> None:
        if self.profiler is None:
            return
        p, self.profiler = self.profiler, None
        if p.poll() is None:
            os.kill(p.pid, signal.SIGINT)  # py-spy writes its file on SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(20)
        self.bench.procs.stop(p)
        self.bench.res.setdefault("profiles", {})[self.profile_phase] = summarise_profile(self.profile_out)


IDLE_LEAVES = ("EpollIOManager.get_events", "WorkerThread._work")  # the event loop or a worker thread waiting
OURS = re.compile(r"(^|/)(daemon|rules|channels|web)/[^/]+\.py$")


def summarise_profile(path: str, top: int = 15) -> dict[str, Any]:
    """Shares of the busy samples in py-spy's collapsed stacks: self time per function and per line, inclusive
    time per function, and inclusive time of alphawatch's own functions (waiting in epoll or in an idle worker
    thread is counted apart as idle)."""
    if not os.path.exists(path):
        return {"file": path, "error": "no output"}
    busy = idle = 0
    own: dict[str, int] = {}
    own_line: dict[str, int] = {}
    incl: dict[str, int] = {}
    ours: dict[str, int] = {}
    frame_re = re.compile(r"^(.*) \((.*?):(\d+)\)$")
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not n.isdigit():
                continue
            count = int(n)
            frames = []
            for fr in stack.split(";"):
                m = frame_re.match(fr)
                if m:
                    frames.append((m.group(1), m.group(2), int(m.group(3))))
            if not frames:
                continue
            if frames[-1][0] in IDLE_LEAVES:
                idle += count
                continue
            busy += count
            name, file, lineno = frames[-1]
            key = f"{name} ({os.path.basename(file)})"
            own[key] = own.get(key, 0) + count
            own_line[f"{name} ({file}:{lineno})"] = own_line.get(f"{name} ({file}:{lineno})", 0) + count
            seen = set()
            for name, file, _ in frames:
                key = f"{name} ({os.path.basename(file)})"
                if key in seen:
                    continue
                seen.add(key)
                incl[key] = incl.get(key, 0) + count
                if OURS.search(file):
                    ours[f"{name} ({file})"] = ours.get(f"{name} ({file})", 0) + count

    def share(d: dict[str, int], k: int = top) -> list[tuple[str, float]]:
        return [(x, round(100 * v / busy, 1)) for x, v in sorted(d.items(), key=lambda kv: -kv[1])[:k]] if busy else []

    return {
        "file": os.path.relpath(path, ROOT),
        "busy_samples": busy,
        "idle_samples": idle,
        "self_pct": share(own),
        "self_lines_pct": share(own_line),
        "inclusive_pct": share(incl),
        "alphawatch_inclusive_pct": share(ours, 25),
    }


# --------------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.peer = load_peer(a.peer_dir)
        self.procs = self.peer.Procs()
        self.wd = a.workdir
        self.out_dir = os.path.join(ROOT, "bench", "results")
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.res: dict[str, Any] = {"meta": {}, "alphawatch": {}, "alertmanager": {}}
        self.pyspy = shutil.which("py-spy", path=os.path.dirname(VENV_PY)) or shutil.which("py-spy") or "py-spy"
        self.daemon_env = dict(os.environ)
        self.daemon_argv = [VENV_ALPHAWATCH]
        self.hook_tail: Any = None

    # ---------------- preparation ----------------
    def prepare(self) -> None:
        a = self.a
        os.makedirs(self.wd, exist_ok=True)
        os.makedirs(self.out_dir, exist_ok=True)
        if not a.skip_am and not os.path.exists(AM_BINARY):
            sys.exit(f"{AM_BINARY} not found: apt-get install -y prometheus-alertmanager (or pass --skip-am)")
        ports = [a.hook_port] + ([] if a.skip_am else [a.am_port, a.am_port + 1, a.am_port + 2, a.am_hook_port])
        for port in ports:
            if not self.peer.port_free(port):
                sys.exit(f"port {port} on 127.0.0.1 is busy; pass other ports (--hook-port/--am-port/--am-hook-port)")
        measured = self.use_code(a.rev)
        check = subprocess.run(
            [VENV_PY, "-c", "import alphawatch.daemon as d; print(d.__file__)"],
            capture_output=True,
            text=True,
            env=self.daemon_env,
        )
        ref = a.rev or None
        self.example_text = (
            subprocess.run(
                ["git", "-C", ROOT, "show", f"{ref}:monitor.example.yaml"], capture_output=True, text=True, check=True
            ).stdout
            if ref
            else _read(os.path.join(ROOT, "monitor.example.yaml"))
        )
        am_version = None
        if not a.skip_am:
            v = subprocess.run([AM_BINARY, "--version"], capture_output=True, text=True)
            am_version = (v.stdout + v.stderr).splitlines()[0]
        self.res["meta"] = {
            "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([".venv/bin/python", "bench/bench_daemon.py", *sys.argv[1:]]),
            "alphawatch_measured": measured,
            "alphawatch_daemon_module": check.stdout.strip() or check.stderr.strip()[-300:],
            "alertmanager_version": am_version,
            "python": platform.python_version(),
            "kernel": platform.release(),
            "nproc": os.cpu_count(),
            "cpu_model": self.peer._cpu_model(),
            "mem_total_kB": self.peer._mem_total(),
            "loadavg_at_start": os.getloadavg(),
        }

    def use_code(self, rev: str | None) -> str:
        """Run the daemons from ``rev`` (a compiled ``git archive`` of it, on PYTHONPATH) or, without one, from the
        working tree (.venv's editable install); returns what is measured, for the results."""
        if not rev:
            # bytecode as scripts/install leaves it: with PYTHONDONTWRITEBYTECODE set, a module changed since the
            # last install would otherwise be compiled again at every start of every daemon measured
            subprocess.run([VENV_PY, "-m", "compileall", "-q", *(os.path.join(ROOT, d) for d in CODE_DIRS)], check=True)
            git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
            dirty = subprocess.run(
                ["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
            ).stdout.strip()
            return f"working tree at {git.stdout.strip()}" + (" + uncommitted changes" if dirty else "")
        snap = os.path.join(self.wd, "snapshot")
        shutil.rmtree(snap, ignore_errors=True)
        pkg = os.path.join(snap, "alphawatch")
        os.makedirs(pkg)
        archive = subprocess.run(
            ["git", "-C", ROOT, "archive", rev, *CODE_DIRS], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", pkg], input=archive, check=True)
        subprocess.run([VENV_PY, "-m", "compileall", "-q", pkg], check=True)  # as scripts/install does
        self.daemon_env["PYTHONPATH"] = snap
        launcher = "import sys; from alphawatch.daemon.cli import main; sys.exit(main())"
        self.daemon_argv = [VENV_PY, "-c", launcher]
        code = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", rev], capture_output=True, text=True)
        return f"{code.stdout.strip()} (git archive of {rev})"

    def start_recorder(self, port: int, name: str) -> Any:
        path = os.path.join(self.wd, f"{name}.jsonl")
        if os.path.exists(path):
            os.remove(path)
        argv = [
            sys.executable,
            os.path.join(self.a.peer_dir, "webhook_recorder.py"),
            "--port",
            str(port),
            "--out",
            path,
        ]
        self.procs.start(name, argv, os.path.join(self.wd, f"{name}.log"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.peer.req("GET", port, "/", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.01)
        return self.peer.HookTail(path)

    # ---------------- Alertmanager, through the peer script ----------------
    def run_alertmanager(self) -> None:
        a, peer = self.a, self.peer
        args = argparse.Namespace(
            binary=AM_BINARY,
            amtool=shutil.which("amtool") or "/usr/bin/amtool",
            am_port=a.am_port,
            hook_port=a.am_hook_port,
            workdir=os.path.join(self.wd, "am"),
            results=None,
            cold_starts=a.starts,
            idle_s=2.0,
            latency_n=a.latency_n,
            grouped_n=0,
            retry_window_s=0,
            reload_n=a.reload_n,
            single_total=0,
            single_cap_s=0,
            total=a.am_total,
            cap_s=a.cap_s,
            reps=1,
            settle_s=a.settle_s,
        )
        os.makedirs(args.workdir, exist_ok=True)
        am = peer.Bench(args)
        am.procs = self.procs  # one registry: everything is stopped in our finally
        out = self.res["alertmanager"]
        write(am.cfg, peer.config_text("good", args.hook_port))
        am.start_hook()
        print("alertmanager: cold starts ...", flush=True)
        am.cold_starts()
        st = am.res["startup"]
        out["startup"] = st
        print("alertmanager: latency ...", flush=True)
        am.main_start()
        am.latency_distinct()
        out["latency"] = am.res["latency_distinct_groups"]
        out["rss_idle_after_start"] = am.res["rss"]["idle_after_start"]
        out["command"] = am.res["commands"]["alertmanager"]
        print("alertmanager: no-op reloads ...", flush=True)
        rtt = []
        for _ in range(a.reload_n):
            t0 = time.monotonic_ns()
            code, _ = peer.req("POST", a.am_port, "/-/reload", timeout=30)
            if code == 200:
                rtt.append(time.monotonic_ns() - t0)
            time.sleep(0.2)
        am.noop_reload_duplicates()
        out["reload_noop"] = {
            "post_reload_rtt_ms": peer.summary_ms(rtt),
            **am.res["reload"]["noop_reload_notifications_next_3s"],
        }
        print("alertmanager: ingest ...", flush=True)
        rss0 = peer.rss_kib(am.am.pid)
        active0 = peer.metric(a.am_port, "alertmanager_alerts", {"state": "active"}) or 0
        runs = []
        for batch in (100, 1000):
            for threads in a.clients:
                tag = f"b{batch}x{threads}"
                am.throughput(tag, batch=batch, total=a.am_total, cap_s=a.cap_s, threads=threads)
                runs.append(am.res["throughput"][tag])
        out["ingest"] = runs
        am.res["rss"]["before_load"] = rss0
        am.finish_rss()
        rss = am.res["rss"]
        active1 = rss.get("active_alerts_after_load") or 0
        held = int(active1 - active0)
        out["memory"] = {
            "rss_before_kB": rss0["VmRSS_kB"],
            "rss_after_settle_kB": rss["after_load_settled"]["VmRSS_kB"],
            "alerts_added": held,
            "go_heap_inuse_bytes": rss.get("go_heap_inuse_bytes_after_load"),
            "per_alert_bytes": round((rss["after_load_settled"]["VmRSS_kB"] - rss0["VmRSS_kB"]) * 1024 / held)
            if held
            else None,
        }
        self.procs.stop(am.am)
        am.am = None

    # ---------------- alphawatch ----------------
    def run_alphawatch(self) -> None:
        a = self.a
        out = self.res["alphawatch"]
        self.hook_tail = self.start_recorder(a.hook_port, "aw_recorder")
        self.res["meta"]["loadavg_before_alphawatch"] = os.getloadavg()
        phases = {
            "starts": ("starts", self.aw_starts, "startup"),
            "latency": ("latency", self.aw_latency, "latency"),
            "ingest": ("ingest", self.aw_ingest, "ingest"),
            "reload": ("reload with 1,000 rules", self.aw_reload, "reload"),
            "memory": ("memory per firing alert", self.aw_memory, "memory"),
        }
        for name in a.phases.split(","):
            title, measure, key = phases[name]
            print(f"alphawatch: {title} ...", flush=True)
            out[key] = measure()

    def aw_starts(self) -> dict[str, Any]:
        samples = []
        for i in range(self.a.starts):
            port = free_port()
            d = Daemon(
                self,
                f"start{i}",
                example_config(
                    self.example_text, os.path.join(self.wd, f"start{i}", "state.db"), self.a.hook_port, port
                ),
                port=port,
            )
            try:
                st = d.start(poll_health=True)
                st["rss_at_ready"] = d.rss()
                time.sleep(2.0)
                st["rss_after_2s"] = d.rss()
            finally:
                st_stop = d.stop()
            st["sigterm_to_exit_s"] = st_stop
            st["exit_rc"] = d.p.returncode if d.p else None
            samples.append(st)
        ready = sorted(s["to_ready_line_ms"] for s in samples)
        health = sorted(s["to_health_200_ms"] for s in samples if s["to_health_200_ms"] is not None)
        rss = sorted(s["rss_after_2s"]["VmRSS_kB"] for s in samples)
        return {
            "samples": samples,
            "to_ready_line_ms_median": ready[len(ready) // 2],
            "to_health_200_ms_median": health[len(health) // 2] if health else None,
            "rss_after_start_kB_median": rss[len(rss) // 2],
        }

    def aw_latency(self) -> dict[str, Any]:
        n = self.a.latency_n
        rule = {"name": "latency", "kind": "threshold", "metric": "bench_lat", "op": "above", "value": 0.5, "for": "0s"}
        d = Daemon(
            self, "latency", daemon_config(os.path.join(self.wd, "latency", "state.db"), self.a.hook_port, [rule])
        )
        try:
            d.start()
            time.sleep(0.5)
            c = d.client()
            lat: list[int] = []
            rtt: list[int] = []
            missing = 0
            d.profile_start("latency")
            t_phase = time.monotonic()
            for i in range(n):
                if time.monotonic() - t_phase > 120:
                    break
                aid = f"lat-{i}"
                body = samples_body("bench_lat", [aid], 1.0)
                t0 = time.monotonic_ns()
                code, _ = c.post("/api/v1/samples", body)
                t1 = time.monotonic_ns()
                arr = self.hook_tail.wait_for(aid, 5.0) if code == 200 else None
                if arr is None:
                    missing += 1
                    continue
                lat.append(arr - t0)
                rtt.append(t1 - t0)
            phase_s = time.monotonic() - t_phase
            d.profile_stop()
            c.close()
            q = len(lat) // 4 or 1
            return {
                "sample_to_webhook_ms": self.peer.summary_ms(lat),
                "post_rtt_ms": self.peer.summary_ms(rtt),
                "first_quarter_ms": self.peer.summary_ms(lat[:q]),
                "last_quarter_ms": self.peer.summary_ms(lat[-q:]),
                "missing": missing,
                "phase_s": round(phase_s, 2),
                "rss_after": d.rss(),
            }
        finally:
            d.stop()

    def aw_ingest(self) -> dict[str, Any]:
        a = self.a
        d = Daemon(
            self, "ingest", daemon_config(os.path.join(self.wd, "ingest", "state.db"), a.hook_port, [], example=True)
        )
        runs = []
        try:
            d.start()
            base = time.time() - 86400 * 30
            n_series = 1000
            for batch in (100, 1000):
                for clients in a.clients:
                    # Bodies are built before the clock starts: the client's JSON cost is not measured.
                    total = a.ingest_total
                    per_client = total // clients
                    bodies: list[list[bytes]] = []
                    tick = [0]
                    for _ in range(clients):
                        mine = []
                        for start in range(0, per_client, batch):
                            m = min(batch, per_client - start)
                            items = []
                            for _ in range(m):
                                tick[0] += 1
                                seq = tick[0]
                                items.append(
                                    {
                                        "metric": "bench_ingest",
                                        "labels": {"model": f"m{seq % n_series}", "run": f"b{batch}c{clients}"},
                                        "ts": base + seq // n_series + 0.001 * len(runs),
                                        "value": seq * 0.5,
                                    }
                                )
                            mine.append(json.dumps(items, separators=(",", ":")).encode())
                        bodies.append(mine)
                    counts = [0] * clients
                    errors = [0] * clients
                    stop_at = time.monotonic() + a.cap_s

                    def worker(
                        k: int, bodies: list[list[bytes]], stop_at: float, counts: list[int], errors: list[int]
                    ) -> None:
                        c = d.client()
                        for body in bodies[k]:
                            if time.monotonic() > stop_at:
                                break
                            try:
                                code, resp = c.post("/api/v1/samples", body)
                            except OSError:
                                errors[k] += 1
                                continue
                            if code == 200:
                                counts[k] += json.loads(resp)["accepted"]
                            else:
                                errors[k] += 1
                        c.close()

                    tag = f"b{batch}x{clients}"
                    d.profile_start(f"ingest-{tag}")
                    cpu0 = self.peer.cpu_seconds(d.pid)
                    t0 = time.monotonic()
                    threads = [
                        threading.Thread(target=worker, args=(k, bodies, stop_at, counts, errors))
                        for k in range(clients)
                    ]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    el = time.monotonic() - t0
                    cpu1 = self.peer.cpu_seconds(d.pid)
                    d.profile_stop()
                    accepted = sum(counts)
                    runs.append(
                        {
                            "batch": batch,
                            "clients": clients,
                            "samples": accepted,
                            "errors": sum(errors),
                            "elapsed_s": round(el, 3),
                            "samples_per_s": round(accepted / el) if el else None,
                            "daemon_cpu_s": round(cpu1 - cpu0, 2),
                            "daemon_cpu_us_per_sample": round((cpu1 - cpu0) * 1e6 / accepted, 2) if accepted else None,
                            "rss_after": d.rss(),
                        }
                    )
            floor = self.request_floor(d, base)
            st = d.status()
            return {
                "runs": runs,
                "request_floor": floor,
                "samples_ingested_reported": st.get("samples_ingested"),
                "series": n_series,
                "db_bytes": _db_size(os.path.join(self.wd, "ingest", "state.db")),
            }
        finally:
            d.stop()

    def request_floor(self, d: Daemon, base: float) -> dict[str, Any]:
        """What one request costs whatever it carries: batches of one sample (known series) from one client. A
        batch of ``n`` cannot go faster than ``n`` samples per this time."""
        n = self.a.floor_requests
        bodies = [samples_body("bench_ingest", [f"m{k % 100}"], 1.0, base + k) for k in range(n)]
        c = d.client()
        c.post("/api/v1/samples", bodies[0])  # the series exist before the clock starts
        cpu0 = self.peer.cpu_seconds(d.pid)
        t0 = time.monotonic()
        for body in bodies[1:]:
            code, _ = c.post("/api/v1/samples", body)
            if code != 200:
                raise RuntimeError(f"1-sample batch answered {code}")
        el = time.monotonic() - t0
        cpu1 = self.peer.cpu_seconds(d.pid)
        c.close()
        per_request_us = el * 1e6 / (n - 1)
        return {
            "requests": n - 1,
            "us_per_request": round(per_request_us, 1),
            "daemon_cpu_us_per_request": round((cpu1 - cpu0) * 1e6 / (n - 1), 1),
            "batch_100_ceiling_samples_per_s": round(100 / per_request_us * 1e6),
        }

    def aw_reload(self) -> dict[str, Any]:
        a = self.a
        n_rules = a.reload_rules
        rules = [
            {
                "name": f"r{i:04d}",
                "kind": "threshold",
                "metric": f"reload_m{i}",
                "op": "above",
                "value": 0.5,
                "for": "0s",
            }
            for i in range(n_rules)
        ]
        d = Daemon(self, "reload", daemon_config(os.path.join(self.wd, "reload", "state.db"), a.hook_port, rules))
        try:
            start = d.start(timeout=120)
            rss_start = d.rss()
            c = d.client()
            firing = min(10, n_rules)
            for i in range(firing):
                c.post("/api/v1/samples", samples_body(f"reload_m{i}", [f"reload-{i}"], 1.0))
            delivered = sum(self.hook_tail.wait_for(f"reload-{i}", 10.0) is not None for i in range(firing))
            time.sleep(1.0)
            self.hook_tail.poll()
            before = len(self.hook_tail.records)
            admin = d.client(ADMIN_TOKEN)
            rtt, ms, bodies = [], [], []
            d.profile_start("reload")
            for _ in range(a.reload_n):
                t0 = time.monotonic_ns()
                code, body = admin.post("/-/reload", b"")
                t1 = time.monotonic_ns()
                doc = json.loads(body)
                if code == 200 and doc.get("ok"):
                    rtt.append(t1 - t0)
                    ms.append(doc.get("ms"))
                bodies.append(
                    {
                        k: (len(v) if isinstance(v, list) else v)
                        for k, v in doc.items()
                        if k in ("ok", "added", "changed", "removed", "error")
                    }
                )
                time.sleep(0.2)
            d.profile_stop()
            time.sleep(3.0)
            self.hook_tail.poll()
            after = self.hook_tail.records[before:]
            admin.close()
            c.close()
            ms_sorted = sorted(m for m in ms if m is not None)
            return {
                "rules": n_rules,
                "firing_before": firing,
                "delivered_before": delivered,
                "start_to_ready_ms": start["to_ready_line_ms"],
                "rss_after_start": rss_start,
                "post_reload_rtt_ms": self.peer.summary_ms(rtt),
                "reported_ms": {
                    "n": len(ms_sorted),
                    "p50": ms_sorted[len(ms_sorted) // 2] if ms_sorted else None,
                    "max": ms_sorted[-1] if ms_sorted else None,
                },
                "responses": bodies[:2],
                "webhook_posts_during_and_3s_after": len(after),
                "rss_after": d.rss(),
            }
        finally:
            d.stop()

    def aw_memory(self) -> dict[str, Any]:
        a = self.a
        rule = {"name": "memory", "kind": "threshold", "metric": "bench_mem", "op": "above", "value": 0.5, "for": "0s"}
        d = Daemon(self, "memory", daemon_config(os.path.join(self.wd, "memory", "state.db"), a.hook_port, [rule]))
        try:
            d.start()
            c = d.client()
            self.hook_tail.poll()
            mark = len(self.hook_tail.records)

            def fire(prefix: str, count: int, deadline_s: float) -> dict[str, Any]:
                t0 = time.monotonic()
                want = d.status()["firing"] + count
                sent = 0
                while sent < count and time.monotonic() - t0 < deadline_s:
                    m = min(a.mem_batch, count - sent)
                    c.post(
                        "/api/v1/samples", samples_body("bench_mem", [f"{prefix}-{sent + j}" for j in range(m)], 1.0)
                    )
                    sent += m
                t_sent = time.monotonic() - t0
                firing = 0
                while time.monotonic() - t0 < deadline_s:
                    firing = d.status()["firing"]
                    if firing >= want:
                        break
                    time.sleep(0.2)
                t_firing = time.monotonic() - t0
                delivered = 0
                while time.monotonic() - t0 < deadline_s:
                    self.hook_tail.poll()
                    delivered = len(self.hook_tail.records) - mark
                    if delivered >= want:
                        break
                    time.sleep(0.2)
                return {
                    "sent": sent,
                    "post_s": round(t_sent, 2),
                    "firing": firing,
                    "all_firing_s": round(t_firing, 2),
                    "webhooks_total": delivered,
                    "all_delivered_s": round(time.monotonic() - t0, 2),
                }

            warm = fire("mem-warm", a.mem_warmup, 60)
            time.sleep(a.settle_s)
            rss0 = d.rss()
            d.profile_start("memory")
            load = fire("mem", a.mem_alerts, a.mem_cap_s)
            d.profile_stop()
            rss_loaded = d.rss()
            time.sleep(a.settle_s)
            rss1 = d.rss()
            # as many again: what one more alert costs, once the first load's one-off growth (the high-water mark
            # of a step of 1,000 new alerts, SQLite's page cache filling up) is in the baseline
            more = fire("mem2", a.mem_alerts, a.mem_cap_s)
            time.sleep(a.settle_s)
            rss2 = d.rss()
            c.close()
            added = load["firing"] - warm["firing"]
            added2 = more["firing"] - load["firing"]

            def per_alert(before: dict[str, Any], after: dict[str, Any], count: int) -> int | None:
                return round((after["VmRSS_kB"] - before["VmRSS_kB"]) * 1024 / count) if count > 0 else None

            return {
                "warmup": warm,
                "load": load,
                "second_load": more,
                "rss_before": rss0,
                "rss_after_load": rss_loaded,
                "rss_after_settle": rss1,
                "rss_after_second_load": rss2,
                "alerts_added": added,
                "alerts_added_second": added2,
                "per_alert_bytes": per_alert(rss0, rss1, added),
                "per_alert_marginal_bytes": per_alert(rss1, rss2, added2),
            }
        finally:
            d.stop()

    # ---------------- report ----------------
    def table(self) -> str:
        aw, am = self.res["alphawatch"], self.res["alertmanager"]
        rows: list[tuple[str, str, str, str, str]] = []

        def ok(value: float | None, target: float, higher: bool = False) -> str:
            if value is None:
                return "n/a"
            return "yes" if (value >= target if higher else value <= target) else "**no**"

        def g(d: Any, *path: Any) -> Any:
            for p in path:
                if d is None:
                    return None
                d = d[p] if isinstance(d, list) else d.get(p)
            return d

        def fmt(v: Any, nd: int = 1) -> str:
            if v is None:
                return "n/a"
            if isinstance(v, float):
                return f"{v:,.{nd}f}"
            return f"{v:,}"

        lat_aw, lat_am = g(aw, "latency", "sample_to_webhook_ms"), g(am, "latency", "post_to_webhook_ms")
        rows.append(
            (
                "sample → webhook p50, ms (200 alerts, one at a time)",
                fmt(g(lat_aw, "p50"), 2),
                fmt(g(lat_am, "p50"), 2),
                "",
                "",
            )
        )
        rows.append(
            (
                "sample → webhook p99, ms",
                fmt(g(lat_aw, "p99"), 2),
                fmt(g(lat_am, "p99"), 2),
                "≤ 10",
                ok(g(lat_aw, "p99"), TARGETS["latency_p99_ms"]),
            )
        )
        for batch in (100, 1000):
            ours = [r for r in g(aw, "ingest", "runs") or [] if r["batch"] == batch]
            theirs = [r for r in am.get("ingest") or [] if r["batch"] == batch]
            best = max(ours, key=lambda r: r["samples_per_s"] or 0) if ours else None
            best_am = max(theirs, key=lambda r: r["alerts_per_s"] or 0) if theirs else None
            rows.append(
                (
                    f"batched ingest, batch {batch:,}, samples/s (alerts/s for AM)",
                    f"{fmt(g(best, 'samples_per_s'))} ({_clients(g(best, 'clients'))})" if best else "n/a",
                    f"{fmt(g(best_am, 'alerts_per_s'), 0)} ({_clients(g(best_am, 'threads'))})" if best_am else "n/a",
                    "≥ 100,000",
                    ok(g(best, "samples_per_s"), TARGETS["ingest_samples_per_s"], higher=True),
                )
            )
        floor = g(aw, "ingest", "request_floor")
        rows.append(
            (
                "ingest of 1-sample batches: µs per request (so at most this many samples/s in batches of 100)",
                f"{fmt(g(floor, 'us_per_request'))} ({fmt(g(floor, 'batch_100_ceiling_samples_per_s'))})",
                "",
                "",
                "",
            )
        )
        rss_aw = g(aw, "startup", "rss_after_start_kB_median")
        rss_am = g(am, "rss_idle_after_start", "VmRSS_kB")
        rows.append(
            (
                "RSS after start (example config), MiB",
                fmt(rss_aw / 1024 if rss_aw else None),
                fmt(rss_am / 1024 if rss_am else None),
                "≤ 50",
                ok(rss_aw / 1024 if rss_aw else None, 50),
            )
        )
        rows.append(
            (
                "start → ready, ms (median; AM: /-/ready)",
                fmt(g(aw, "startup", "to_ready_line_ms_median")),
                fmt(g(am, "startup", "to_ready_ms_median")),
                "≤ 500",
                ok(g(aw, "startup", "to_ready_line_ms_median"), 500),
            )
        )
        rows.append(
            ("start → first /health 200, ms (median)", fmt(g(aw, "startup", "to_health_200_ms_median")), "", "", "")
        )
        rr = g(aw, "reload", "post_reload_rtt_ms")
        rows.append(
            (
                "reload, 1,000 rules unchanged: POST /-/reload round trip p50 / max, ms (AM: no-op, no rules)",
                f"{fmt(g(rr, 'p50'))} / {fmt(g(rr, 'max'))}",
                f"{fmt(g(am, 'reload_noop', 'post_reload_rtt_ms', 'p50'))} / "
                f"{fmt(g(am, 'reload_noop', 'post_reload_rtt_ms', 'max'))}",
                "≤ 100",
                ok(g(rr, "max"), 100),
            )
        )
        rows.append(
            (
                "reload: daemon's own `ms` field p50 / max",
                f"{fmt(g(aw, 'reload', 'reported_ms', 'p50'))} / {fmt(g(aw, 'reload', 'reported_ms', 'max'))}",
                "",
                "≤ 100",
                ok(g(aw, "reload", "reported_ms", "max"), 100),
            )
        )
        rows.append(
            (
                "notifications caused by the reloads (3 s after)",
                fmt(g(aw, "reload", "webhook_posts_during_and_3s_after")),
                fmt(g(am, "reload_noop", "webhook_posts")),
                "0",
                ok(g(aw, "reload", "webhook_posts_during_and_3s_after"), 0),
            )
        )
        pa, pm = g(aw, "memory", "per_alert_bytes"), g(am, "memory", "per_alert_bytes")
        rows.append(
            (
                f"memory per firing alert, KiB (RSS delta / {fmt(g(aw, 'memory', 'alerts_added'))} alerts; "
                f"AM / {fmt(g(am, 'memory', 'alerts_added'))})",
                fmt(pa / 1024 if pa is not None else None, 2),
                fmt(pm / 1024 if pm is not None else None, 2),
                "≤ 1",
                ok(pa / 1024 if pa is not None else None, 1),
            )
        )
        pm2 = g(aw, "memory", "per_alert_marginal_bytes")
        rows.append(
            (
                f"… the next {fmt(g(aw, 'memory', 'alerts_added_second'))} alerts, KiB (RSS delta from the first "
                "load's settled RSS)",
                fmt(pm2 / 1024 if pm2 is not None else None, 2),
                "",
                "≤ 1",
                ok(pm2 / 1024 if pm2 is not None else None, 1),
            )
        )
        head = "| measure | alphawatch | Alertmanager | target | alphawatch meets |\n|---|---:|---:|---:|:---:|\n"
        return head + "\n".join("| " + " | ".join(r) + " |" for r in rows)

    def run(self) -> int:
        self.prepare()
        path = os.path.join(self.out_dir, f"daemon_vs_am-{self.stamp}.json")
        try:
            if not self.a.skip_am:
                self.run_alertmanager()
            self.run_alphawatch()
        finally:
            self.procs.stop_all()
            self.res["meta"]["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
            self.res["meta"]["leftover_pids"] = list(self.procs.live)
            self.res["meta"]["loadavg_at_end"] = os.getloadavg()
            self.res["table_md"] = self.table()
            with open(path, "w") as f:
                json.dump(self.res, f, indent=2, default=str)
        print()
        print(self.res["table_md"])
        print()
        m = self.res["meta"]
        print(
            f"alphawatch: {m['alphawatch_measured']}; Alertmanager: {m['alertmanager_version']}; "
            f"Python {m['python']}; nproc {m['nproc']}"
        )
        print(
            "1-minute load average: start {:.2f}, before alphawatch {:.2f}, end {:.2f}".format(
                m["loadavg_at_start"][0], m.get("loadavg_before_alphawatch", [float("nan")])[0], m["loadavg_at_end"][0]
            )
        )
        print(f"results: {os.path.relpath(path, ROOT)}")
        if self.a.profile:
            for phase, prof in self.res.get("profiles", {}).items():
                print(
                    f"\npy-spy, {phase}: {prof.get('busy_samples')} busy samples ({prof.get('idle_samples')} idle);"
                    " % of busy samples, self by line (top 8):"
                )
                for name, share in prof.get("self_lines_pct", [])[:8]:
                    print(f"  {share:5.1f}  {name}")
                print("  alphawatch functions, inclusive (top 12):")
                for name, share in prof.get("alphawatch_inclusive_pct", [])[:12]:
                    print(f"  {share:5.1f}  {name}")
        return 0


def _clients(n: int | None) -> str:
    return f"{n} client" + ("" if n == 1 else "s")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _db_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--peer-dir", default=PEER_DIR, help="the peer scripts (bench_alertmanager.py, webhook_recorder.py)"
    )
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "aw_bench"))
    ap.add_argument("--rev", default=None, help="measure this git revision (git archive) instead of the working tree")
    ap.add_argument(
        "--phases",
        default="starts,latency,ingest,reload,memory",
        help="alphawatch phases to run, comma-separated (default: all); the table leaves the others empty",
    )
    ap.add_argument("--skip-am", action="store_true", help="alphawatch only")
    ap.add_argument("--profile", action="store_true", help="py-spy the daemon during each phase")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument("--hook-port", type=int, default=19199, help="recorder for alphawatch's webhooks")
    ap.add_argument("--am-port", type=int, default=19093, help="Alertmanager; +1 and +2 are used too")
    ap.add_argument("--am-hook-port", type=int, default=19099, help="recorder for Alertmanager's webhooks")
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--ingest-total", type=int, default=200_000, help="samples per ingest run")
    ap.add_argument("--am-total", type=int, default=20_000, help="alerts per Alertmanager ingest run")
    ap.add_argument("--clients", default="1,2", help="client thread counts for ingest")
    ap.add_argument("--cap-s", type=float, default=60.0, help="wall-clock cap of each ingest run")
    ap.add_argument("--floor-requests", type=int, default=3000, help="1-sample requests of the ingest floor")
    ap.add_argument("--reload-rules", type=int, default=1000)
    ap.add_argument("--reload-n", type=int, default=10)
    ap.add_argument("--mem-alerts", type=int, default=20_000)
    ap.add_argument("--mem-warmup", type=int, default=500)
    ap.add_argument("--mem-batch", type=int, default=1000)
    ap.add_argument("--mem-cap-s", type=float, default=180.0)
    ap.add_argument("--settle-s", type=float, default=5.0)
    a = ap.parse_args()
    a.clients = [int(x) for x in str(a.clients).split(",") if x]
    if a.quick:
        a.starts, a.latency_n, a.ingest_total, a.am_total, a.floor_requests = 2, 30, 20_000, 5_000, 300
        a.reload_rules, a.reload_n, a.mem_alerts, a.mem_warmup, a.settle_s = 200, 3, 2_000, 100, 2.0
    return Bench(a).run()


if __name__ == "__main__":
    sys.exit(main())
