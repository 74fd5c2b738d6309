"""Grouping and delivery side by side with Prometheus Alertmanager, in one run (issue 5).

    .venv/bin/python bench/bench_groups.py                  # about 5-7 minutes on 2 vCPUs
    .venv/bin/python bench/bench_groups.py --rev HEAD       # measure a committed revision, not the working tree
    .venv/bin/python bench/bench_groups.py --quick          # smoke run, about 2 minutes
    .venv/bin/python bench/bench_groups.py --profile        # also py-spy alphawatch in each phase
    .venv/bin/python bench/bench_groups.py --phases burst   # some phases only (latency,burst,burst503,join)
    .venv/bin/python bench/bench_groups.py --phases burst --burst-pairs 12   # the burst, 13 pairs in all

Both systems run on 127.0.0.1 on the same machine, one after the other inside each phase (Alertmanager first; a
fresh instance of each per phase, stopped before the other starts, so they never share the CPU). Webhooks go to a
receiver of this file (``--receiver`` mode, a separate stdlib process per system) that records every POST with its
CLOCK_MONOTONIC arrival time, status answered, ``groupKey``, ``Idempotency-Key`` and the ``id`` label of every
alert, and that answers 503 until a deadline the bench sets (``POST /_fail_until``), then 200.

Phases (alphawatch: one threshold rule ``for: 0s`` per phase, an "alert" is one sample on a new series; Alertmanager:
an alert POSTed to ``/api/v2/alerts``, ``endsAt`` an hour ahead):

  latency   ``group_by: ['...']``, ``group_wait: 0s``: N alerts one at a time (keep-alive connection), each its own
            group; latency = receiver arrival - client ``monotonic_ns()`` just before the POST.
  burst     ``group_by: [group]``, ``group_wait: 1s``, ``group_interval: 5s``: 10,000 alerts in 100 groups, POSTed in
            group order, one request per group (100 alerts); throughput = alerts / (first POST -> arrival of the
            last group's notification); then ``--settle-s`` more to catch late duplicates. Counted at the receiver:
            alerts missing, notifications per group, duplicates by ``Idempotency-Key`` (alphawatch) and by
            groupKey + alert set (both), group delivered later than its first POST + group_wait.
  burst503  the same, with the receiver answering 503 for the first ``--fail-s`` (30 s) after the first POST;
            also: 503s answered, time from the receiver's recovery to the last group delivered.
  join      ``group_wait: 1s``, ``group_interval: 5s``; 10 groups of one alert each; once a group's first notification
            arrives (t_f), one new alert joins it at t_f + 0.3 ... 4.35 s; expected delivery t_f + group_interval;
            then a second round from that delivery. Delay = arrival - expected (negative = early).

``--burst-pairs N`` runs N more bursts of each system after the phases (Alertmanager, then alphawatch, each time)
and reports their ratio run by run: median, range, and how many pairs alphawatch was ahead in. On this kind of
VM one burst's figure moves by 5-10 % from run to run, more than the two systems differ.

Every loop is bounded in count and wall-clock time; every process started here is stopped by PID in ``finally``.
Prints a Markdown table (alphawatch vs Alertmanager vs target); writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
AM_BINARY = "/usr/bin/prometheus-alertmanager"

TARGETS = {"latency_p99_ms": 10.0, "join_late_ms": 50.0}


# ==============================================================================================================
# the receiver (runs as its own process: ``bench_groups.py --receiver --port P --out FILE``)
# ==============================================================================================================


class _Receiver(BaseHTTPRequestHandler):
    out: Any = None
    lock = threading.Lock()
    fail_until_ns = 0
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _answer(self, code: int, payload: bytes = b"ok\n") -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        t_mono = time.monotonic_ns()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_fail_until"):
            _Receiver.fail_until_ns = int(body or b"0")
            self._answer(200)
            return
        code = 503 if t_mono < _Receiver.fail_until_ns else 200
        rec: dict[str, Any] = {
            "t": t_mono,
            "path": self.path,
            "code": code,
            "idem": self.headers.get("Idempotency-Key"),
        }
        try:
            msg = json.loads(body or b"{}")
            alerts = msg.get("alerts") or []
            rec.update(
                gk=msg.get("groupKey"),
                status=msg.get("status"),
                n=len(alerts),
                trunc=msg.get("truncatedAlerts", 0),
                ids=[a.get("labels", {}).get("id") for a in alerts],
            )
        except ValueError as exc:
            rec["parse_error"] = str(exc)
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self.lock:
            self.out.write(line)
            self.out.flush()
        self._answer(code, b"ok\n" if code == 200 else b"unavailable\n")

    def do_GET(self) -> None:
        self._answer(200)


def receiver_main(port: int, out: str) -> None:
    _Receiver.out = open(out, "a", buffering=1)  # noqa: SIM115 - for the process's life
    # the default listen backlog (5) overflows when a notifier opens 8+ connections at once: the kernel drops the SYN
    # and the client retransmits it 1 s later, which reads as a 1 s late delivery
    ThreadingHTTPServer.request_queue_size = 256
    srv = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    srv.daemon_threads = True
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
        _Receiver.out.close()


class Tail:
    """Reads a receiver's JSONL file incrementally; first 200 arrival per alert id."""

    def __init__(self, path: str) -> None:
        self.path, self.off, self.buf = path, 0, b""
        self.records: list[dict[str, Any]] = []
        self.first_ok: dict[str, int] = {}

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                chunk = f.read()
        except FileNotFoundError:
            return
        self.off += len(chunk)
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            rec = json.loads(line)
            self.records.append(rec)
            if rec.get("code") == 200:
                for i in rec.get("ids") or []:
                    if i is not None and i not in self.first_ok:
                        self.first_ok[i] = rec["t"]

    def wait_for(self, ids: list[str], timeout_s: float, step: float = 0.0005) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll()
            if all(i in self.first_ok for i in ids):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(step)


# ==============================================================================================================
# helpers
# ==============================================================================================================


def load_module(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bd = load_module("bench_daemon", os.path.join(HERE, "bench_daemon.py"))  # Daemon, Client, peer loader, profiles


def rfc3339(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def am_alert(aid: str, phase: str, group: str | None, now: datetime) -> dict[str, Any]:
    labels = {"alertname": f"Bench{phase.capitalize()}", "bench": phase, "id": aid, "severity": "warning"}
    if group is not None:
        labels["group"] = group
    return {
        "labels": labels,
        "annotations": {"summary": f"bench alert {aid}"},
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + timedelta(hours=1)),
        "generatorURL": "http://127.0.0.1/bench",
    }


def aw_sample(aid: str, phase: str, group: str | None, ts: float) -> dict[str, Any]:
    labels = {"id": aid}
    if group is not None:
        labels["group"] = group
    return {"metric": f"bench_{phase}", "labels": labels, "ts": ts, "value": 1.0}


def route_settings(phase: str) -> dict[str, str]:
    if phase == "latency":
        return {"group_by": "['...']", "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
    return {"group_by": "[group]", "group_wait": "1s", "group_interval": "5s", "repeat_interval": "1h"}


def am_config(phase: str, hook_port: int) -> str:
    r = route_settings(phase)
    return f"""\
route:
  receiver: hook
  group_by: {r["group_by"]}
  group_wait: {r["group_wait"]}
  group_interval: {r["group_interval"]}
  repeat_interval: {r["repeat_interval"]}
receivers:
  - name: hook
    webhook_configs:
      - url: 'http://127.0.0.1:{hook_port}/hook'
        send_resolved: false
        max_alerts: 0
"""


def aw_config(phase: str, state: str, hook_port: int) -> str:
    r = route_settings(phase)
    rule = {"name": phase, "kind": "threshold", "metric": f"bench_{phase}", "op": "above", "value": 0.5, "for": "0s"}
    return "\n".join(
        [
            "daemon:",
            f"  state: {state}",
            "  listen: 127.0.0.1:0",
            "  language: en",
            "  tokens:",
            f"    ingest: {bd.INGEST_TOKEN}",
            f"    admin: {bd.ADMIN_TOKEN}",
            "channels:",
            "  - name: hook",
            "    kind: webhook",
            f"    url: http://127.0.0.1:{hook_port}/hook",
            "    timeout: 10s",
            "route:",
            "  channels: [hook]",
            f"  group_by: {r['group_by']}",
            f"  group_wait: {r['group_wait']}",
            f"  group_interval: {r['group_interval']}",
            f"  repeat_interval: {r['repeat_interval']}",
            "rules:",
            "  - " + json.dumps(rule),
            "",
        ]
    )


PEER: Any = None


# ==============================================================================================================
# the two systems behind one interface
# ==============================================================================================================


class AMSystem:
    name = "alertmanager"

    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.p: subprocess.Popen[bytes] | None = None
        self.conn: http.client.HTTPConnection | None = None

    def start(self, phase: str) -> None:
        b = self.b
        d = os.path.join(b.wd, f"am-{phase}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        cfg = os.path.join(d, "alertmanager.yml")
        bd.write(cfg, am_config(phase, b.a.am_hook_port))
        port = b.a.am_port
        argv = [
            AM_BINARY,
            f"--config.file={cfg}",
            f"--storage.path={os.path.join(d, 'data')}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            f"--web.external-url=http://127.0.0.1:{port}/",
            "--log.level=info",
        ]
        self.p = b.procs.start(f"alertmanager[{phase}]", argv, os.path.join(d, "am.log"))
        b.res["meta"].setdefault("alertmanager_argv", " ".join(argv).replace(b.wd, "$WORKDIR"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.p.poll() is None:
            try:
                if PEER.req("GET", port, "/-/ready", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        else:
            raise RuntimeError(f"alertmanager[{phase}] not ready (rc={self.p.poll()})")
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def body(self, phase: str, items: list[tuple[str, str | None]]) -> bytes:
        now = datetime.now(UTC)
        return json.dumps([am_alert(i, phase, g, now) for i, g in items], separators=(",", ":")).encode()

    def post(self, body: bytes) -> int:
        assert self.conn is not None
        self.conn.request("POST", "/api/v2/alerts", body=body, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        r.read()
        return r.status

    def profile_start(self, phase: str) -> None:
        pass

    def profile_stop(self) -> None:
        pass

    def pid(self) -> int | None:
        return self.p.pid if self.p else None

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.p is not None:
            self.b.procs.stop(self.p)
            self.p = None


class AWSystem:
    name = "alphawatch"

    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.d: Any = None
        self.c: Any = None

    def start(self, phase: str) -> None:
        b = self.b
        tag = f"aw-{phase}"
        self.d = bd.Daemon(b.dbench, tag, aw_config(phase, os.path.join(b.wd, tag, "state.db"), b.a.aw_hook_port))
        self.d.start(timeout=60)
        self.c = self.d.client()
        time.sleep(0.5)  # let the actors settle

    def body(self, phase: str, items: list[tuple[str, str | None]]) -> bytes:
        ts = time.time()
        return json.dumps([aw_sample(i, phase, g, ts) for i, g in items], separators=(",", ":")).encode()

    def post(self, body: bytes) -> int:
        code, _ = self.c.post("/api/v1/samples", body)
        return int(code)

    def profile_start(self, phase: str) -> None:
        self.d.profile_start(phase)

    def profile_stop(self) -> None:
        self.d.profile_stop()

    def pid(self) -> int | None:
        return self.d.pid if self.d and self.d.p else None

    def status(self) -> dict[str, Any] | None:
        try:
            return self.d.status()  # type: ignore[no-any-return]
        except Exception as exc:
            return {"error": repr(exc)}

    def stop(self) -> None:
        if self.c is not None:
            self.c.close()
            self.c = None
        if self.d is not None:
            self.d.stop()
            self.d = None


# ==============================================================================================================
# the run
# ==============================================================================================================


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        global PEER
        self.a = a
        self.wd = a.workdir
        os.makedirs(self.wd, exist_ok=True)
        # bench_daemon's Bench gives the process registry, the daemon launcher and py-spy handling
        self.dbench = bd.Bench(
            argparse.Namespace(peer_dir=a.peer_dir, workdir=self.wd, profile=a.profile, rev=a.rev, skip_am=False)
        )
        PEER = self.dbench.peer
        self.procs = self.dbench.procs
        self.out_dir = self.dbench.out_dir
        self.stamp = self.dbench.stamp
        self.res: dict[str, Any] = {"meta": {}, "alphawatch": {}, "alertmanager": {}}
        self.tails: dict[str, Tail] = {}

    # ---------------- preparation ----------------
    def prepare(self) -> None:
        a = self.a
        os.makedirs(self.out_dir, exist_ok=True)
        if not os.path.exists(AM_BINARY):
            sys.exit(f"{AM_BINARY} not found: apt-get install -y prometheus-alertmanager")
        for port in (a.am_port, a.am_hook_port, a.aw_hook_port):
            if not PEER.port_free(port):
                sys.exit(f"port {port} on 127.0.0.1 is busy; pass other ports")
        measured = self.dbench.use_code(a.rev)
        v = subprocess.run([AM_BINARY, "--version"], capture_output=True, text=True)
        self.res["meta"] = {
            "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([".venv/bin/python", "bench/bench_groups.py", *sys.argv[1:]]),
            "alphawatch_measured": measured,
            "alertmanager_version": (v.stdout + v.stderr).splitlines()[0],
            "python": platform.python_version(),
            "kernel": platform.release(),
            "nproc": os.cpu_count(),
            "cpu_model": PEER._cpu_model(),
            "mem_total_kB": PEER._mem_total(),
            "loadavg_at_start": os.getloadavg(),
            "settings": {k: v for k, v in vars(a).items() if k not in ("peer_dir", "workdir")},
            "loadavg_per_phase": {},
        }
        for sysname, port in (("alertmanager", a.am_hook_port), ("alphawatch", a.aw_hook_port)):
            path = os.path.join(self.wd, f"recv-{sysname}.jsonl")
            if os.path.exists(path):
                os.remove(path)
            argv = [sys.executable, os.path.abspath(__file__), "--receiver", "--port", str(port), "--out", path]
            self.procs.start(f"receiver[{sysname}]", argv, os.path.join(self.wd, f"recv-{sysname}.log"))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    if PEER.req("GET", port, "/", timeout=1)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.01)
            else:
                raise RuntimeError(f"receiver on {port} did not start")
            self.tails[sysname] = Tail(path)

    def set_fail_until(self, sysname: str, until_ns: int) -> None:
        port = self.a.am_hook_port if sysname == "alertmanager" else self.a.aw_hook_port
        PEER.req("POST", port, "/_fail_until", str(until_ns).encode(), timeout=5)

    # ---------------- phases ----------------
    def latency(self, s: Any, tail: Tail) -> dict[str, Any]:
        n = self.a.latency_n
        lat: list[int] = []
        rtt: list[int] = []
        missing = 0
        t_phase = time.monotonic()
        s.profile_start("latency")
        for i in range(n):
            if time.monotonic() - t_phase > 120:
                break
            aid = f"lat-{i}"
            body = s.body("latency", [(aid, None)])
            t0 = time.monotonic_ns()
            code = s.post(body)
            t1 = time.monotonic_ns()
            if code != 200 or not tail.wait_for([aid], 5.0):
                missing += 1
                continue
            lat.append(tail.first_ok[aid] - t0)
            rtt.append(t1 - t0)
        s.profile_stop()
        q = len(lat) // 4 or 1
        return {
            "alert_to_webhook_ms": PEER.summary_ms(lat),
            "post_rtt_ms": PEER.summary_ms(rtt),
            "first_quarter_ms": PEER.summary_ms(lat[:q]),
            "last_quarter_ms": PEER.summary_ms(lat[-q:]),
            "missing": missing,
            "phase_s": round(time.monotonic() - t_phase, 2),
        }

    def burst(self, s: Any, tail: Tail, phase: str, fail_s: float, tag: str | None = None) -> dict[str, Any]:
        a = self.a
        n_groups, per_group = a.groups, a.burst // a.groups
        tag = tag or ("b5" if fail_s else "b")
        groups = [f"{tag}g{g:03d}" for g in range(n_groups)]
        ids_by_group = {g: [f"{tag}-{k}-{j}" for j in range(per_group)] for k, g in enumerate(groups)}
        all_ids = [i for g in groups for i in ids_by_group[g]]
        bodies = [(g, s.body(phase, [(i, g) for i in ids_by_group[g]])) for g in groups]  # built before the clock
        tail.poll()
        mark = len(tail.records)
        cpu0 = PEER.cpu_seconds(s.pid())
        s.profile_start(phase)
        t0 = time.monotonic_ns()
        if fail_s:
            self.set_fail_until(s.name, t0 + int(fail_s * 1e9))
        posted_at: dict[str, int] = {}
        errors = 0
        for g, body in bodies:
            posted_at[g] = time.monotonic_ns()
            try:
                code = s.post(body)
            except (OSError, http.client.HTTPException):
                code = -1
            if code != 200:
                errors += 1
        t_posted = time.monotonic_ns()
        cap = a.burst_cap_s + fail_s
        complete = tail.wait_for(all_ids, cap - (t_posted - t0) / 1e9, step=0.005)
        t_done = max((tail.first_ok[i] for i in all_ids if i in tail.first_ok), default=None)
        time.sleep(a.settle_s)  # late duplicates or extra flushes
        tail.poll()
        s.profile_stop()
        cpu1 = PEER.cpu_seconds(s.pid())
        if fail_s:
            self.set_fail_until(s.name, 0)
        recs = [r for r in tail.records[mark:] if any(str(i).startswith(f"{tag}-") for i in r.get("ids") or [])]
        ok = [r for r in recs if r["code"] == 200]
        failed = [r for r in recs if r["code"] != 200]
        by_idem = collections.Counter(r.get("idem") for r in ok if r.get("idem"))
        by_content = collections.Counter((r.get("gk"), tuple(sorted(r.get("ids") or []))) for r in ok)
        per_group: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for r in ok:
            per_group[r.get("gk")].append(r)
        seen = {i for r in ok for i in r.get("ids") or []}
        group_of = {i: g for g in groups for i in ids_by_group[g]}
        first_group_arrival: dict[str, int] = {}
        for i, t in tail.first_ok.items():
            g = group_of.get(i)
            if g is not None:
                first_group_arrival[g] = min(first_group_arrival.get(g, t), t)
        # a group is late when its first notification arrives more than 100 ms after first POST + group_wait
        late = {
            g: round((first_group_arrival[g] - posted_at[g]) / 1e6 - 1000, 1)
            for g in groups
            if g in first_group_arrival and (first_group_arrival[g] - posted_at[g]) / 1e6 > 1100
        }
        elapsed = (t_done - t0) / 1e9 if t_done and complete else None
        out: dict[str, Any] = {
            "alerts": len(all_ids),
            "groups": n_groups,
            "post_errors": errors,
            "post_s": round((t_posted - t0) / 1e9, 3),
            "all_delivered": complete,
            "first_post_to_last_group_s": round(elapsed, 3) if elapsed else None,
            "alerts_per_s": round(len(all_ids) / elapsed) if elapsed else None,
            "alerts_per_s_without_group_wait": (
                round(len(all_ids) / (elapsed - 1.0)) if elapsed and elapsed > 1 else None
            ),
            "notifications_200": len(ok),
            "notifications_non_200": len(failed),
            "groups_delivered": sum(1 for g in groups if g in first_group_arrival),
            "groups_with_more_than_one_notification": sum(1 for v in per_group.values() if len(v) > 1),
            "alerts_missing": len(set(all_ids) - seen),
            "alerts_delivered_twice_or_more": sum(
                1 for i, c in collections.Counter(i for r in ok for i in r.get("ids") or []).items() if c > 1
            ),
            "duplicates_by_idempotency_key": sum(c - 1 for c in by_idem.values()),
            "duplicates_by_groupkey_and_alert_set": sum(c - 1 for c in by_content.values()),
            "late_groups_over_100ms": len(late),
            "late_groups_ms_top": sorted(late.values(), reverse=True)[:5],
            "group_first_delivery_after_post_ms": PEER.summary_ms(
                [first_group_arrival[g] - posted_at[g] for g in groups if g in first_group_arrival]
            ),
            "cpu_s": round(cpu1 - cpu0, 2),
        }
        if fail_s:
            recover = t0 + int(fail_s * 1e9)
            out["fail_s"] = fail_s
            out["answers_503"] = len(failed)
            out["attempts_per_group_max"] = max(collections.Counter(r.get("gk") for r in recs).values(), default=0)
            out["recovery_to_last_group_s"] = round((t_done - recover) / 1e9, 2) if t_done and complete else None
            out["delivered_before_recovery"] = sum(1 for r in ok if r["t"] < recover)
        if isinstance(s, AWSystem):
            out["daemon_status"] = s.status()
        return out

    def join(self, s: Any, tail: Tail) -> dict[str, Any]:
        a = self.a
        gi_ms = 5000.0
        n = a.join_groups
        groups = [f"jg{k:02d}" for k in range(n)]
        offsets = [0.3 + (4.05 * k / max(1, n - 1)) for k in range(n)]  # 0.3 .. 4.35 s after the last flush
        seeds = [f"j-{g}-0" for g in groups]
        s.profile_start("join")
        t_seed = time.monotonic_ns()
        if s.post(s.body("join", [(seeds[k], g) for k, g in enumerate(groups)])) != 200:
            raise RuntimeError("seed POST failed")
        if not tail.wait_for(seeds, 15.0):
            raise RuntimeError(f"{s.name}: seed alerts not delivered")
        seed_after = [round((tail.first_ok[i] - t_seed) / 1e6, 1) for i in seeds]
        last_flush = {g: tail.first_ok[seeds[k]] for k, g in enumerate(groups)}
        rows: list[dict[str, Any]] = []
        for rnd in (1, 2):
            offs = offsets if rnd == 1 else list(reversed(offsets))
            plan = sorted((last_flush[g] + int(offs[k] * 1e9), k, g, f"j-{g}-{rnd}") for k, g in enumerate(groups))
            joined_at: dict[str, int] = {}
            for when, _k, g, aid in plan:
                body = s.body("join", [(aid, g)])
                wait = (when - time.monotonic_ns()) / 1e9
                if wait > 0:
                    time.sleep(wait)
                joined_at[aid] = time.monotonic_ns()
                if s.post(body) != 200:
                    raise RuntimeError("join POST failed")
            ids = [p[3] for p in plan]
            tail.wait_for(ids, 15.0, step=0.001)
            for _when, _k, g, aid in plan:
                arr = tail.first_ok.get(aid)
                expected = last_flush[g] + int(gi_ms * 1e6)
                rows.append(
                    {
                        "round": rnd,
                        "group": g,
                        "join_after_flush_s": round((joined_at[aid] - last_flush[g]) / 1e9, 3),
                        "delay_vs_expected_ms": round((arr - expected) / 1e6, 1) if arr else None,
                        "join_to_delivery_ms": round((arr - joined_at[aid]) / 1e6, 1) if arr else None,
                    }
                )
                if arr:
                    last_flush[g] = arr
        s.profile_stop()
        delays = [r["delay_vs_expected_ms"] for r in rows if r["delay_vs_expected_ms"] is not None]
        # what each group's notifications held: the joined alert must arrive with the rest of the group
        tail.poll()
        return {
            "group_wait_s": 1,
            "group_interval_s": gi_ms / 1000,
            "seed_first_delivery_ms": {"min": min(seed_after), "max": max(seed_after)},
            "joins": len(rows),
            "missing": len(rows) - len(delays),
            "delay_ms": {
                "min": min(delays, default=None),
                "p50": sorted(delays)[len(delays) // 2] if delays else None,
                "max": max(delays, default=None),
            },
            "late_over_target": sum(1 for d in delays if d > TARGETS["join_late_ms"]),
            "early_over_50ms": sum(1 for d in delays if d < -50),
            "rows": rows,
        }

    # ---------------- driver ----------------
    def phase(self, name: str, fn: Any) -> None:
        self.res["meta"]["loadavg_per_phase"][name] = os.getloadavg()
        for s in ([] if self.a.skip_am else [AMSystem(self)]) + [AWSystem(self)]:
            print(f"{s.name}: {name} ...", flush=True)
            tail = self.tails[s.name]
            try:
                s.start(name if name != "burst503" else "burst503")
                self.res[s.name][name] = fn(s, tail)
            except Exception as exc:
                self.res[s.name][name] = {"error": repr(exc)}
                print(f"  {s.name} {name} failed: {exc!r}", file=sys.stderr, flush=True)
            finally:
                s.stop()

    def pair(self, k: int) -> None:
        """One more burst of each system, Alertmanager first (``--burst-pairs``): the burst's figure moves with this
        machine's noise by more than the two systems differ, so it is compared run by run."""
        one: dict[str, Any] = {}
        for s in ([] if self.a.skip_am else [AMSystem(self)]) + [AWSystem(self)]:
            print(f"{s.name}: burst pair {k + 1} of {self.a.burst_pairs} ...", flush=True)
            try:
                s.start("burst")
                one[s.name] = self.burst(s, self.tails[s.name], "burst", 0.0, tag=f"p{k}")
            except Exception as exc:
                one[s.name] = {"error": repr(exc)}
                print(f"  {s.name} burst pair {k + 1} failed: {exc!r}", file=sys.stderr, flush=True)
            finally:
                s.stop()
        keep = ("alerts_per_s", "post_s", "first_post_to_last_group_s", "alerts_missing",
                "groups_with_more_than_one_notification", "duplicates_by_groupkey_and_alert_set", "error")  # fmt: skip
        self.res.setdefault("burst_pairs", []).append(
            {name: {key: one[name][key] for key in keep if key in one[name]} for name in one}
        )

    def run(self) -> int:
        a = self.a
        path = os.path.join(self.out_dir, f"groups_vs_am-{self.stamp}.json")
        try:
            self.prepare()
            if a.load_max is not None and os.getloadavg()[0] > a.load_max:
                print(f"warning: 1-minute load average {os.getloadavg()[0]:.2f} > {a.load_max}", flush=True)
            phases = {
                "latency": self.latency,
                "burst": lambda s, t: self.burst(s, t, "burst", 0.0),
                "burst503": lambda s, t: self.burst(s, t, "burst503", a.fail_s),
                "join": self.join,
            }
            for name in a.phases.split(","):
                self.phase(name, phases[name])
            for k in range(a.burst_pairs):
                self.pair(k)
        finally:
            self.procs.stop_all()
            m = self.res["meta"]
            m["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
            m["leftover_pids"] = list(self.procs.live)
            m["loadavg_at_end"] = os.getloadavg()
            self.res["profiles"] = self.dbench.res.get("profiles", {})
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
            "load average (1 min): start {:.2f}, end {:.2f}; per phase {}".format(
                m["loadavg_at_start"][0],
                m["loadavg_at_end"][0],
                ", ".join(f"{k} {v[0]:.2f}" for k, v in m["loadavg_per_phase"].items()),
            )
        )
        print(f"results: {os.path.relpath(path, ROOT)}")
        for phase, prof in self.res.get("profiles", {}).items():
            print(f"\npy-spy, {phase}: {prof.get('busy_samples')} busy samples ({prof.get('idle_samples')} idle)")
            for name, share in prof.get("self_lines_pct", [])[:8]:
                print(f"  self {share:5.1f}  {name}")
            for name, share in prof.get("alphawatch_inclusive_pct", [])[:12]:
                print(f"  incl {share:5.1f}  {name}")
        return 0

    # ---------------- report ----------------
    def table(self) -> str:
        aw, am = self.res["alphawatch"], self.res["alertmanager"]

        def g(d: Any, *path: Any) -> Any:
            for p in path:
                if not isinstance(d, dict):
                    return None
                d = d.get(p)
            return d

        def f(v: Any, nd: int = 1) -> str:
            if v is None:
                return "n/a"
            if isinstance(v, float):
                return f"{v:,.{nd}f}"
            if isinstance(v, bool):
                return "yes" if v else "**no**"
            return f"{v:,}" if isinstance(v, int) else str(v)

        def meets(cond: bool | None) -> str:
            return "n/a" if cond is None else ("yes" if cond else "**no**")

        rows: list[tuple[str, str, str, str, str]] = []
        la, lm = g(aw, "latency", "alert_to_webhook_ms"), g(am, "latency", "alert_to_webhook_ms")
        rows.append((f"1. alert → webhook p50, ms ({f(g(la, 'n'))} alerts one at a time, group_wait 0s)",
                     f(g(la, "p50"), 2), f(g(lm, "p50"), 2), "", ""))  # fmt: skip
        p99 = g(la, "p99")
        rows.append(("1. alert → webhook p99, ms", f(p99, 2), f(g(lm, "p99"), 2), "≤ 10",
                     meets(None if p99 is None else p99 <= TARGETS["latency_p99_ms"])))  # fmt: skip
        miss = g(aw, "latency", "missing")
        rows.append(("1. alerts not delivered", f(miss), f(g(am, "latency", "missing")), "0",
                     meets(None if miss is None else miss == 0)))  # fmt: skip
        b503 = f"2b. burst, receiver 503 for the first {self.a.fail_s:g} s"
        for key, label in (("burst", "2a. burst"), ("burst503", b503)):
            ba, bm = g(aw, key) or {}, g(am, key) or {}
            tput, tput_am = g(ba, "alerts_per_s"), g(bm, "alerts_per_s")
            rows.append((f"{label}: alerts/s, first POST → last group notification ({f(g(ba, 'alerts'))} alerts, "
                         f"{f(g(ba, 'groups'))} groups)", f(tput), f(tput_am), "≥ Alertmanager",
                         meets(None if tput is None or tput_am is None else tput >= tput_am)))  # fmt: skip
            rows.append((f"{label}: first POST → last group, s (POSTs took: ours / AM)",
                         f"{f(g(ba, 'first_post_to_last_group_s'), 2)} ({f(g(ba, 'post_s'), 2)})",
                         f"{f(g(bm, 'first_post_to_last_group_s'), 2)} ({f(g(bm, 'post_s'), 2)})", "", ""))  # fmt: skip
            rows.append((f"{label}: notifications answered 200 (groups delivered)",
                         f"{f(g(ba, 'notifications_200'))} ({f(g(ba, 'groups_delivered'))})",
                         f"{f(g(bm, 'notifications_200'))} ({f(g(bm, 'groups_delivered'))})",
                         f"{f(g(ba, 'groups'))} ({f(g(ba, 'groups'))})",
                         meets(None if not ba else g(ba, "notifications_200") == g(ba, "groups")
                               and g(ba, "groups_delivered") == g(ba, "groups"))))  # fmt: skip
            lost = g(ba, "alerts_missing")
            rows.append((f"{label}: alerts lost", f(lost), f(g(bm, "alerts_missing")), "0",
                         meets(None if lost is None else lost == 0)))  # fmt: skip
            da = g(ba, "duplicates_by_idempotency_key")
            rows.append((f"{label}: duplicates (ours: same Idempotency-Key; AM: same groupKey + alert set) / "
                         "same groupKey + alert set (ours)",
                         f"{f(da)} / {f(g(ba, 'duplicates_by_groupkey_and_alert_set'))}",
                         f(g(bm, "duplicates_by_groupkey_and_alert_set")), "0",
                         meets(None if da is None else da == 0
                               and g(ba, "duplicates_by_groupkey_and_alert_set") == 0)))  # fmt: skip
            if key == "burst":
                lg = g(ba, "late_groups_over_100ms")
                rows.append((f"{label}: groups first delivered > 100 ms after first POST + group_wait",
                             f(lg), f(g(bm, "late_groups_over_100ms")), "0",
                             meets(None if lg is None else lg == 0)))  # fmt: skip
            else:
                rows.append((f"{label}: 503 answers; receiver recovery → last group, s",
                             f"{f(g(ba, 'answers_503'))}; {f(g(ba, 'recovery_to_last_group_s'), 2)}",
                             f"{f(g(bm, 'answers_503'))}; {f(g(bm, 'recovery_to_last_group_s'), 2)}",
                             "", ""))  # fmt: skip
        pairs = [(g(p, "alphawatch", "alerts_per_s"), g(p, "alertmanager", "alerts_per_s"))
                 for p in self.res.get("burst_pairs", [])]  # fmt: skip
        ratios = sorted(100 * x / y for x, y in pairs if x and y)  # (a pair where either failed is left out)
        if ratios:
            clean = all(g(p, "alphawatch", "alerts_missing") == 0
                        and g(p, "alphawatch", "groups_with_more_than_one_notification") == 0
                        for p in self.res["burst_pairs"])  # fmt: skip
            median = statistics.median(ratios) if ratios else None
            rows.append((f"2c. burst again, {len(ratios)} of {len(pairs)} pairs measured: alphawatch / Alertmanager, "
                         "% (median; min–max); "
                         "pairs ahead; every pair without loss or duplicate group",
                         f"{f(median)}; {f(ratios[0] if ratios else None)}–{f(ratios[-1] if ratios else None)}; "
                         f"{sum(r >= 100 for r in ratios)} of {len(ratios)}; {f(clean)}", "", "median ≥ 100",
                         meets(None if median is None else median >= 100 and clean)))  # fmt: skip
        ja, jm = g(aw, "join", "delay_ms") or {}, g(am, "join", "delay_ms") or {}
        mx = g(ja, "max")
        rows.append((f"3. join → delivery vs last flush + group_interval (5 s): delay min / p50 / max, ms "
                     f"({f(g(aw, 'join', 'joins'))} joins)",
                     f"{f(g(ja, 'min'))} / {f(g(ja, 'p50'))} / {f(mx)}",
                     f"{f(g(jm, 'min'))} / {f(g(jm, 'p50'))} / {f(g(jm, 'max'))}", "max ≤ 50",
                     meets(None if mx is None else mx <= TARGETS["join_late_ms"]
                           and g(aw, "join", "missing") == 0)))  # fmt: skip
        head = "| measure | alphawatch | Alertmanager | target | alphawatch meets |\n|---|---:|---:|---:|:---:|\n"
        return head + "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--peer-dir", default=bd.PEER_DIR, help="the peer scripts (bench_alertmanager.py)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "aw_bench_groups"))
    ap.add_argument("--rev", default=None, help="measure this git revision (git archive) instead of the working tree")
    ap.add_argument("--profile", action="store_true", help="py-spy alphawatch in each phase")
    ap.add_argument("--skip-am", action="store_true", help="alphawatch only (with --profile, say)")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument("--phases", default="latency,burst,burst503,join", help="which phases, in this order")
    ap.add_argument("--am-port", type=int, default=19293)
    ap.add_argument("--am-hook-port", type=int, default=19299, help="receiver for Alertmanager")
    ap.add_argument("--aw-hook-port", type=int, default=19298, help="receiver for alphawatch")
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--burst", type=int, default=10_000, help="alerts per burst")
    ap.add_argument("--groups", type=int, default=100, help="groups per burst")
    ap.add_argument("--burst-cap-s", type=float, default=90.0, help="wait cap of a burst (plus --fail-s)")
    ap.add_argument("--fail-s", type=float, default=30.0, help="receiver answers 503 this long in burst503")
    ap.add_argument("--settle-s", type=float, default=6.0, help="wait after the last group for late duplicates")
    ap.add_argument("--join-groups", type=int, default=10)
    ap.add_argument("--burst-pairs", type=int, default=0, help="after the phases, this many more bursts of each")
    ap.add_argument("--load-max", type=float, default=1.5, help="warn when the 1-minute load average is above this")
    a = ap.parse_args()
    if a.receiver:
        receiver_main(a.port, a.out)
        return 0
    if a.quick:
        a.latency_n, a.burst, a.groups, a.fail_s, a.join_groups, a.settle_s = 30, 1000, 10, 5.0, 4, 2.0
    return Bench(a).run()


if __name__ == "__main__":
    sys.exit(main())
