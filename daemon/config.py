"""The configuration: YAML files in, one frozen :class:`Config` out, or a :class:`ConfigError` listing every problem.

Loading is pure: it reads files and the environment and returns data. The daemon compares the old and the new
``Config`` by equality to decide which rule actors to start, restart or stop on a reload.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache, cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, overload

import jsonschema
import yaml

from alphawatch.channels import Channel, channel_kinds
from alphawatch.daemon.calendar import CALENDAR_SCHEMA, Calendars, load_calendars
from alphawatch.daemon.durations import PATTERN as DURATION_PATTERN
from alphawatch.daemon.durations import format_duration, parse_duration
from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.escalation import ESCALATIONS_SCHEMA, Policy, build_policies
from alphawatch.daemon.inhibition import INHIBIT_RULES_SCHEMA, InhibitRule, build_inhibit_rules
from alphawatch.daemon.redact import Redactor
from alphawatch.daemon.routing import ROUTE_SCHEMA, RouteNode, build_route_tree, check_references
from alphawatch.daemon.windows import WINDOW_REF_SCHEMA, WINDOWS_SCHEMA, Windows, build_windows
from alphawatch.daemon.yamlpos import Located, load_located
from alphawatch.daemon.yamlpos import Path as KeyPath
from alphawatch.rules import Labels, RuleKind, SettingError, labels_of, rule_kinds
from alphawatch.rules._base import RuleContext

SEVERITIES = ("info", "warning", "error", "critical", "emergency")
DEFAULT_LISTEN = "127.0.0.1:9464"


@dataclass(frozen=True)
class SupervisorSettings:
    initial_backoff: float = 1.0
    max_backoff: float = 60.0
    max_restarts: int = 5
    restart_window: float = 600.0


@dataclass(frozen=True)
class DeliverySettings:
    initial_backoff: float = 1.0
    max_backoff: float = 300.0
    max_age: float = 86400.0
    concurrency: int = 64
    fallback_channel: str | None = None
    probe_interval: float = 1.0


@dataclass(frozen=True)
class DaemonSettings:
    state: Path
    host: str = "127.0.0.1"
    port: int = 9464
    external_url: str = ""
    """Where people reach the page (links in notifications); empty: the address the daemon listens on."""
    language: str = "en"
    retention: float | None = 400 * 86400.0
    max_body: int = 8 * 1024 * 1024
    max_label_bytes: int = 1024
    log_level: str = "info"
    ingest_token: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    supervisor: SupervisorSettings = SupervisorSettings()
    delivery: DeliverySettings = DeliverySettings()


def token_file(settings: DaemonSettings) -> Path:
    """Where the generated token lives when the configuration names none: beside the state file, mode 0600."""
    return settings.state.with_name(settings.state.name + ".token")


@dataclass(frozen=True)
class RuleConfig:
    """One configured rule: the common keys, and ``rule``, the kind's own settings."""

    name: str
    kind: str
    rule: RuleKind
    severity: str = "warning"
    labels: Labels = ()
    annotations: Labels = ()
    pending_for: float = 0.0
    keep_firing_for: float = 0.0
    description: str = ""
    active_during: tuple[str, ...] = ()
    muted_during: tuple[str, ...] = ()
    context: RuleContext | None = field(default=None, hash=False)
    """Calendars and windows; compared only for rules that use them, so a calendar edit restarts just those."""
    origin: str = field(default="", compare=False)

    @property
    def uses_calendar(self) -> bool:
        return bool(self.active_during or self.muted_during or self.rule.uses_calendar())

    def alert_labels(self, series: Labels) -> Labels:
        """Labels of an alert of this rule on ``series``: the series', then the rule's, then alertname/severity."""
        own, names = self._own_labels
        if not any(name in names for name, _ in series):
            # the common case: one new tuple that shares its pairs with the series and the rule (held per alert)
            return tuple(sorted(series + own))
        merged = dict(series)
        merged.update(self.labels)
        merged["alertname"] = self.name
        merged.setdefault("severity", self.severity)
        return labels_of(merged)

    @cached_property
    def _own_labels(self) -> tuple[Labels, frozenset[str]]:
        own = dict(self.labels)
        own["alertname"] = self.name
        own.setdefault("severity", self.severity)
        return tuple(own.items()), frozenset(own)


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    kind: str
    settings: Labels  # frozen key/value pairs; values are JSON-like and frozen
    origin: str = field(default="", compare=False)

    def build(self) -> Channel:
        return channel_kinds()[self.kind](self.name, _thaw(self.settings))


@dataclass(frozen=True)
class Config:
    daemon: DaemonSettings
    calendars: Calendars
    windows: Windows
    channels: tuple[ChannelConfig, ...] = ()
    route: RouteNode | None = None
    escalations: tuple[Policy, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    files: tuple[str, ...] = field(default=(), compare=False)
    secrets: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    warnings: tuple[Problem, ...] = field(default=(), compare=False, repr=False)
    """What is allowed but surely not meant (``check`` prints them, a reload answers and logs them)."""

    @property
    def digest(self) -> str:
        """A short hash identifying this configuration's content (secrets excluded)."""
        text = repr((self.daemon, self.channels, self.route, self.escalations, self.inhibit_rules, self.rules))
        # served without a token: a hash of the secrets would let anyone with the YAML test guesses of them
        return hashlib.sha256(Redactor(self.secrets)(text).encode()).hexdigest()[:12]


@cache
def base_schema() -> dict[str, Any]:
    text = resources.files("alphawatch.daemon").joinpath("config.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def full_schema() -> dict[str, Any]:
    """The complete schema: the base plus every rule and channel kind's own keys (for editors and validation)."""
    schema = json.loads(json.dumps(base_schema()))
    schema["description"] = "The alphawatch configuration: every key of every rule and channel kind."
    defs = schema["$defs"]
    schema["properties"]["calendar"] = CALENDAR_SCHEMA
    schema["properties"]["windows"] = WINDOWS_SCHEMA
    schema["properties"]["route"] = ROUTE_SCHEMA
    schema["properties"]["escalations"] = ESCALATIONS_SCHEMA
    schema["properties"]["inhibit_rules"] = INHIBIT_RULES_SCHEMA
    window_list = {"type": "array", "items": WINDOW_REF_SCHEMA, "minItems": 1}
    defs["rule"]["properties"]["active_during"] = window_list
    defs["rule"]["properties"]["muted_during"] = window_list
    rules, channels = rule_kinds(), channel_kinds()
    defs["rule"]["properties"]["kind"] = {"enum": sorted(rules)}
    defs["rule"]["allOf"] = [
        {
            "if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
            "then": {"properties": kind.schema, "required": list(kind.required)},
        }
        for name, kind in sorted(rules.items())
    ]
    defs["rule"]["unevaluatedProperties"] = False
    item = schema["properties"]["channels"]["items"]
    item["properties"]["kind"] = {"enum": sorted(channels)}
    item["allOf"] = [
        {
            "if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
            "then": {"properties": kind.schema.get("properties", {}), "required": kind.schema.get("required", [])},
        }
        for name, kind in sorted(channels.items())
    ]
    item["unevaluatedProperties"] = False
    complete: dict[str, Any] = schema
    return complete


@cache
def _validator() -> jsonschema.Draft202012Validator:
    validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator, {"pattern": _pattern}
    )
    checker: jsonschema.Draft202012Validator = validator(full_schema())
    return checker


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    """``pattern`` as JSON Schema means it (ECMA-262) and editors check it: ``$`` only at the very end (Python's
    also matches before a final newline: ``"5m\\n"`` passed). Digits are written ``[0-9]`` (``\\d`` is any
    Unicode digit in Python, an ASCII one in ECMA)."""
    if not isinstance(instance, str):
        return
    if _ecma_regex(pattern).search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")
    elif pattern == DURATION_PATTERN:
        try:
            parse_duration(instance)
        except ValueError as exc:  # longer than a century
            yield jsonschema.ValidationError(str(exc))


@cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


log = logging.getLogger("alphawatch.config")
_SECRET_REF = re.compile(r"\$\{(env|file):([^}]+)\}")
_UNEXPECTED = re.compile(r"'([^']+)'")


_LAST: dict[str, tuple[str, Config]] = {}
"""The last configuration loaded from each path, with the digest of everything it was made from."""


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and build the configuration at ``path`` (and its includes). Raise :class:`ConfigError`.

    A reload of files that did not change (same texts, same secrets, same environment values) returns the
    configuration already built, so an idle SIGHUP costs reading the files and hashing them.
    """
    env = os.environ if environ is None else environ
    digest = _inputs_digest(Path(path), env)
    last = _LAST.get(str(path))
    if digest is not None and last is not None and last[0] == digest:
        return last[1]
    try:
        config = _load_config(path, env)
    except ConfigError:
        raise
    except Exception as exc:  # a case the checks above missed: still a refused configuration, never a crash
        log.exception("unexpected error while loading %s", path)
        # the message may quote a value (a secret, say), and /health shows reload errors: the type only
        problem = f"cannot load it: {type(exc).__name__}, see the log (please report this)"
        raise ConfigError([Problem(str(path), 0, 0, "", problem)]) from None
    if digest is not None:
        _LAST.clear()  # one configuration per process is the rule; keep the memo small
        _LAST[str(path)] = (digest, config)
    return config


def load_daemon_settings(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, roles: Collection[str] = ("ingest", "admin")
) -> DaemonSettings:
    """Only the main file's ``daemon:`` section, for the CLI (the address, the tokens, the state file): a problem
    elsewhere, such as a half-edited include or a channel secret this shell cannot see, must not keep ``push``,
    ``silence`` or ``ack`` from the running daemon. Only the tokens of ``roles`` are read (the others are left
    out, ``None``): a command given its token, or needing the other one, does not need this shell to see them.
    Raise :class:`ConfigError` for a problem in that section."""
    main_path = Path(path)
    main = _read_main(main_path)
    problems: list[Problem] = []
    raw = main.data.get("daemon") if isinstance(main.data, dict) else None
    tokens = raw.get("tokens") if isinstance(raw, dict) else None
    if isinstance(tokens, dict):
        for role in [role for role in tokens if role not in roles]:
            del tokens[role]
    section = Located({"daemon": raw or {}}, main.file, main.marks)
    secrets: set[str] = set()
    _substitute(section, (), section.data, main_path.parent, os.environ if environ is None else environ, secrets,
                problems)  # fmt: skip
    if problems:
        raise ConfigError(_redact(problems, secrets))
    for error in _validator().iter_errors(section.data):
        problems += _schema_problems(section, error, secrets)
    if problems:
        raise ConfigError(_redact(problems, secrets))
    try:
        return _daemon_settings(section.data["daemon"], main_path.parent)
    except ValueError as exc:  # the port (the schema checked the rest)
        raise ConfigError([main.problem(("daemon", "listen"), str(exc))]) from None


def _inputs_digest(main_path: Path, env: Mapping[str, str]) -> str | None:
    """A hash of every input of :func:`load_config`: the texts of the file, its includes and the calendar files
    it names, and the environment variables and secret files it refers to. ``None`` if any cannot be read."""
    try:
        text = main_path.read_text(encoding="utf-8")
        includes, calendar_files = _references(text)
        base = main_path.parent
        files = [main_path, *(Path(f) for p in includes for f in sorted(glob.glob(str(base / p))))]
        files += [p if p.is_absolute() else base / p for p in map(Path, calendar_files)]
        texts = [(str(f), f.read_text(encoding="utf-8")) for f in files]
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    hasher = hashlib.sha256()
    for name, body in texts:
        hasher.update(f"{name}\0{len(body)}\0".encode())
        hasher.update(body.encode())
        for source, ref in _SECRET_REF.findall(body):
            ref = ref.strip()
            if source == "env":
                value = env.get(ref)
            else:
                secret = Path(ref) if os.path.isabs(ref) else base / ref
                try:
                    value = secret.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    value = None
            hasher.update(f"\0{source}:{ref}={value!r}".encode())
    hasher.update(os.environ.get("STATE_DIRECTORY", "").encode())
    return hasher.hexdigest()


@lru_cache(maxsize=4)
def _references(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The include patterns and calendar files a configuration text names (a quick parse, no positions)."""
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError:
        raise ValueError("not YAML") from None
    if not isinstance(data, dict):
        return (), ()
    includes = data.get("include") or []
    calendar = data.get("calendar") or {}
    files = calendar.get("files") or [] if isinstance(calendar, dict) else []
    return tuple(str(p) for p in includes), tuple(str(f) for f in files)


def _load_config(path: str | os.PathLike[str], env: Mapping[str, str]) -> Config:
    main_path = Path(path)
    problems: list[Problem] = []
    secrets: set[str] = set()
    main = _read_main(main_path)
    if main.data is None:
        main = Located({}, main.file, main.marks)
    if not isinstance(main.data, dict):
        raise ConfigError([main.problem((), "the configuration must be a mapping of sections")])
    base_dir = main_path.parent

    documents = [main]
    for index, pattern in enumerate(main.data.get("include") or []):
        if not isinstance(pattern, str):
            continue
        matched = sorted(glob.glob(str(base_dir / pattern)))
        if not matched and not glob.has_magic(pattern):
            problems.append(main.problem(("include", index), f"no such file: {pattern}"))
        for file in matched:
            try:
                located, found = load_located(Path(file).read_text(encoding="utf-8"), file)
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(main.problem(("include", index), f"cannot read {file}: {_unreadable(exc)}"))
                continue
            problems += found
            documents.append(located)

    for document in documents:
        _substitute(document, (), document.data, base_dir, env, secrets, problems)
    if problems:
        raise ConfigError(_redact(problems, secrets))

    validator = _validator()
    for doc in documents:
        target = doc.data if doc is main else _include_shape(doc, problems)
        if target is None:
            continue
        for error in validator.iter_errors(target):
            problems += _schema_problems(doc, error, secrets)
    if problems:
        raise ConfigError(_redact(sorted(problems, key=lambda p: (p.file, p.line, p.column)), secrets))

    config = _build(main, documents, base_dir, secrets, problems)
    if problems:
        raise ConfigError(_redact(problems, secrets))
    assert config is not None
    return config


def _read_main(main_path: Path) -> Located:
    """The main file, parsed with positions; :class:`ConfigError` when it cannot be read or is not YAML."""
    try:
        text = main_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(main_path), 0, 0, "", f"cannot read: {_unreadable(exc)}")]) from None
    main, problems = load_located(text, str(main_path))
    if problems:
        raise ConfigError(problems)
    return main


def _unreadable(exc: OSError | UnicodeDecodeError) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else "not UTF-8 text"


def _include_shape(doc: Located, problems: list[Problem]) -> dict[str, Any] | None:
    if doc.data is None:
        return None
    if not isinstance(doc.data, dict) or set(doc.data) - {"rules"}:
        problems.append(doc.problem((), "an included file holds only a `rules:` list"))
        return None
    return {"rules": doc.data.get("rules") or []}


def _substitute(
    doc: Located,
    path: KeyPath,
    value: Any,
    base_dir: Path,
    env: Mapping[str, str],
    secrets: set[str],
    problems: list[Problem],
) -> Any:
    """Replace ``${env:NAME}`` and ``${file:PATH}`` in place, in every string of ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _substitute(doc, (*path, key), item, base_dir, env, secrets, problems)
        return value
    if isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = _substitute(doc, (*path, index), item, base_dir, env, secrets, problems)
        return value
    if not isinstance(value, str) or "${" not in value:
        return value

    def resolve(found: re.Match[str]) -> str:
        source, name = found.group(1), found.group(2).strip()
        if source == "env":
            if name not in env:
                problems.append(doc.problem(path, f"environment variable {name} is not set"))
                return ""
            secret = env[name]
        else:
            file = Path(name) if os.path.isabs(name) else base_dir / name
            try:
                secret = file.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(doc.problem(path, f"cannot read secret file {name}: {_unreadable(exc)}"))
                return ""
        if secret:
            secrets.add(secret)
        return secret

    return _SECRET_REF.sub(resolve, value)


def _schema_problems(doc: Located, error: jsonschema.ValidationError, secrets: set[str]) -> list[Problem]:
    path: KeyPath = tuple(error.absolute_path)
    message = error.message
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        names = _UNEXPECTED.findall(message)
        known = _known_keys(error.instance, path)
        return [doc.problem((*path, name), "unknown key") for name in names if name not in known]
    if path[-2:-1] == ("tokens",) and error.validator == "pattern":
        message = "a token is printable ASCII without spaces (it travels in an HTTP header)"
    elif path[-1:] == ("rate_limit",) and error.validator == "pattern":
        message = f"{error.instance!r} is not a rate: write N/s, N/m or N/h with N at least 1 (e.g. 30/m)"
    elif isinstance(error.instance, str) and any(secret in error.instance for secret in secrets):
        message = f"the value (a secret, not shown) fails {error.validator}: {error.validator_value!r}"
    elif error.validator == "pattern" and error.validator_value == DURATION_PATTERN and "does not match" in message:
        message = f"{error.instance!r} is not a duration (write e.g. 30s, 5m, 4h, 2d)"
    elif error.validator == "oneOf" and path and path[-1] == "match":
        message = "match is a map of label: value, or a list of matchers like 'model=alpha7' or 'venue=~\"tw.*\"'"
    elif error.validator == "oneOf" and path and path[-1] in ("baseline", "reference"):
        chosen = _chosen_shape(error)
        if chosen:  # what it names picks one shape: that shape's own problems (a key it lacks, a bad value)
            return [problem for sub in chosen for problem in _schema_problems(doc, sub, secrets)]
        message = f"{path[-1]} is either {_shapes(_one_of(error))}"
        if isinstance(error.instance, dict) and sum(_names_shape(s, error.instance) for s in _one_of(error)) > 1:
            message += ", not both"
    elif error.validator == "type" and error.validator_value == "string" and _is_number(error.instance):
        message = _number_for_text(error.instance, doc.numbers.get(path, repr(error.instance)), error.schema)
    return [doc.problem(path, message)]


def _names_shape(shape: dict[str, Any], instance: dict[str, Any]) -> bool:
    """Whether ``instance`` names a key only ``shape`` (a branch of a ``oneOf``) requires."""
    return bool(set(shape.get("required", ())) & instance.keys())


def _one_of(error: jsonschema.ValidationError) -> list[dict[str, Any]]:
    shapes = error.validator_value
    return shapes if isinstance(shapes, list) else []


def _chosen_shape(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors within the one shape of a ``oneOf`` the value names keys of, or none when it names several."""
    if not isinstance(error.instance, dict):
        return []
    named = [i for i, shape in enumerate(_one_of(error)) if _names_shape(shape, error.instance)]
    if len(named) != 1:
        return []
    return [sub for sub in error.context or () if sub.relative_schema_path[0] == named[0]]


def _shapes(shapes: list[dict[str, Any]]) -> str:
    """``{start: DATE, end: DATE} or {lagged: N} (with an optional gap)``: the shapes of a ``oneOf`` in words."""
    out = []
    for shape in shapes:
        properties, required = shape.get("properties", {}), shape.get("required", [])
        numbers = {k for k in required if properties.get(k, {}).get("type") in ("integer", "number")}
        keys = ", ".join(f"{k}: {'N' if k in numbers else 'DATE'}" for k in required)
        optional = [k for k in properties if k not in required]
        out.append(f"{{{keys}}}" + (f" (with an optional {', '.join(optional)})" if optional else ""))
    return " or ".join(out)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_for_text(value: Any, written: str, schema: Any) -> str:
    """YAML made a number of what should have been text (``written``, as in the file): say how to write it."""
    pattern = schema.get("pattern") if isinstance(schema, dict) else None
    if pattern == DURATION_PATTERN:
        return f"{value!r} is not a duration: give it a unit (e.g. {value}m, {value}s, {value}h)"
    if isinstance(value, int) and pattern is not None and ":" in pattern and 0 <= value < 24 * 60:
        hours, minutes = divmod(value, 60)  # YAML 1.1 reads 17:00 as the base-60 number 1020
        return f'a time is text: write it in quotes, "{hours:02d}:{minutes:02d}" (unquoted, YAML reads it as {value})'
    return f"{written} is a number here: write it in quotes"


def _known_keys(instance: Any, path: KeyPath) -> frozenset[str]:
    """Keys a rule or channel may have: its kind's, so a bad value is not also reported as an unknown key."""
    if not isinstance(instance, dict) or len(path) != 2 or path[0] not in ("rules", "channels"):
        return frozenset()
    if path[0] == "rules":
        rule_kind = rule_kinds().get(instance.get("kind", ""))
        return _COMMON_RULE_KEYS | frozenset(rule_kind.schema if rule_kind else ())
    channel_kind = channel_kinds().get(instance.get("kind", ""))
    return frozenset({"name", "kind", "timeout", "language", "concurrency", "rate_limit"}) | frozenset(
        channel_kind.schema.get("properties", {}) if channel_kind else ()
    )


def _redact(problems: list[Problem], secrets: set[str]) -> list[Problem]:
    """The problems to report: without secrets, each once (two checks may find the same thing, e.g. a channel
    kind's own schema and the file's)."""
    redact = Redactor(secrets) if secrets else None
    found = (Problem(p.file, p.line, p.column, p.path, redact(p.message)) if redact else p for p in problems)
    return list(dict.fromkeys(found))


def _build(
    main: Located, documents: list[Located], base_dir: Path, secrets: set[str], problems: list[Problem]
) -> Config | None:
    data = main.data
    try:
        daemon = _daemon_settings(data.get("daemon") or {}, base_dir)
    except ValueError as exc:
        problems.append(main.problem(("daemon", "listen"), str(exc)))
        return None
    delivery, supervisor = daemon.delivery, daemon.supervisor
    for section, name, seconds in (  # a zero backoff retries in a busy loop; a zero max_age kills every notification
        ("delivery", "initial_backoff", delivery.initial_backoff),
        ("delivery", "max_backoff", delivery.max_backoff),
        ("delivery", "max_age", delivery.max_age),
        ("delivery", "probe_interval", delivery.probe_interval),
        ("supervisor", "initial_backoff", supervisor.initial_backoff),
        ("supervisor", "max_backoff", supervisor.max_backoff),
        ("supervisor", "restart_window", supervisor.restart_window),
    ):
        if seconds <= 0:
            problems.append(main.problem(("daemon", section, name), f"{name} cannot be zero"))
    if "\0" in str(daemon.state) or daemon.state.is_dir():
        problems.append(main.problem(("daemon", "state"), f"{str(daemon.state)!r} is not a possible file name"))
    try:
        calendars = load_calendars(
            data.get("calendar"), locate=lambda p, m: main.problem(("calendar", *p), m), base_dir=base_dir
        )
        windows = build_windows(data.get("windows"), calendars, locate=lambda p, m: main.problem(("windows", *p), m))
    except ConfigError as exc:
        problems += exc.problems
        return None
    context = RuleContext(calendars, windows)

    channels: list[ChannelConfig] = []
    channel_names: dict[str, int] = {}
    for index, raw in enumerate(data.get("channels") or []):
        name = raw["name"]
        if name in channel_names:
            problems.append(main.problem(("channels", index, "name"), f"duplicate channel name {name!r}"))
        channel_names[name] = index
        settings = {k: v for k, v in raw.items() if k not in ("name", "kind")}
        settings.setdefault("language", daemon.language)
        for key in ("url", "base_url"):
            if isinstance(settings.get(key), str) and (why := _unusable_url(settings[key])):
                problems.append(main.problem(("channels", index, key), why))  # (not the URL: it may hold a secret)
        if isinstance(ca_file := settings.get("ca_file"), str) and ca_file:
            settings["ca_file"] = str(base_dir / ca_file)  # relative to the file's folder, as state and ${file:} are
            if not os.path.isfile(settings["ca_file"]):
                problems.append(main.problem(("channels", index, "ca_file"), f"no such file: {settings['ca_file']}"))
        config = ChannelConfig(name, raw["kind"], _freeze(settings), origin=_origin(main, ("channels", index)))
        try:
            if config.build().timeout <= 0:
                problems.append(main.problem(("channels", index, "timeout"), "timeout cannot be zero"))
        except (ValueError, KeyError) as exc:
            problems.append(main.problem(("channels", index), str(exc)))
        channels.append(config)

    fallback = daemon.delivery.fallback_channel
    if fallback is not None and fallback not in channel_names:
        problems.append(main.problem(("daemon", "delivery", "fallback_channel"), f"no channel named {fallback!r}"))

    route: RouteNode | None = None
    if data.get("route") is not None:

        def locate_route(path: KeyPath, message: str) -> Problem:
            return main.problem(("route", *path), message)

        try:
            route = build_route_tree(data["route"], locate_route)
        except ConfigError as exc:
            problems += exc.problems
        else:
            problems += check_references(route, locate_route, channels=channel_names, windows=windows)

    escalations: tuple[Policy, ...] = ()
    try:
        escalations = build_policies(
            data.get("escalations") or [],
            lambda p, m: main.problem(("escalations", *p), m),
            set(channel_names),
            windows,
        )
    except ConfigError as exc:
        problems += exc.problems

    inhibit_rules: tuple[InhibitRule, ...] = ()
    try:
        inhibit_rules = build_inhibit_rules(
            data.get("inhibit_rules"), lambda p, m: main.problem(("inhibit_rules", *p), m)
        )
    except ConfigError as exc:
        problems += exc.problems

    rules: list[RuleConfig] = []
    warnings: list[Problem] = []
    seen: dict[str, str] = {}
    for doc in documents:
        for index, raw in enumerate((doc.data or {}).get("rules") or []):
            path: KeyPath = ("rules", index)
            name = raw["name"]
            origin = _origin(doc, path)
            if name in seen:
                problems.append(doc.problem((*path, "name"), f"duplicate rule name {name!r} (first at {seen[name]})"))
                continue
            seen[name] = origin
            rules.append(_rule(doc, path, raw, origin, context, problems))
            warnings += _rule_warnings(doc, path, rules[-1], main, daemon)
    return Config(daemon, calendars, windows, tuple(channels), route, escalations, inhibit_rules, tuple(rules),
                  (*(d.file for d in documents),), frozenset(secrets), tuple(warnings))  # fmt: skip


def _rule_warnings(
    doc: Located, path: KeyPath, rule: RuleConfig, main: Located, daemon: DaemonSettings
) -> list[Problem]:
    """What is allowed but surely not meant: the rule works, not as written."""
    out = []
    retention, history = daemon.retention, rule.rule.history()
    # a fixed baseline reads back all there is, and the retention keeps every sample since its start: all it uses
    if retention and 0 < retention < history and rule.rule.keeps_samples_since() is None:
        out.append(main.problem(("daemon", "retention"), f"{format_duration(retention)} is shorter than the "
                                f"{format_duration(history)} of samples rule {rule.name!r} reads back at a start: "
                                "after a restart it would judge on less"))  # fmt: skip
    reported = rule.rule.detail_names
    if reported is not None:
        for key, text in rule.annotations:
            for found in ANNOTATION_PLACEHOLDER.finditer(text):
                if found.group(2) == "details" and found.group(3) not in reported:
                    kind_says = f"reports {', '.join(sorted(reported))}" if reported else "reports no details"
                    article = "an" if rule.kind[:1] in "aeiou" else "a"
                    out.append(doc.problem((*path, "annotations", key), f"{article} {rule.kind} rule {kind_says}: "
                                           f"{found.group()} renders empty"))  # fmt: skip
    return out


ANNOTATION_PLACEHOLDER = re.compile(r"\{\{\s*(value|(labels|details)\.([A-Za-z_][A-Za-z0-9_]*))\s*\}\}")
"""What an annotation may hold between ``{{ }}``: the value, a label, a detail (channel templates are Jinja; these
are not: no filters, no expressions)."""
_BRACES = re.compile(r"\{\{.*?\}\}", re.S)

_COMMON_RULE_KEYS = frozenset(
    {"name", "kind", "description", "severity", "labels", "annotations", "for", "keep_firing_for", "active_during",
     "muted_during"}
)  # fmt: skip


def _rule(
    doc: Located, path: KeyPath, raw: dict[str, Any], origin: str, context: RuleContext, problems: list[Problem]
) -> RuleConfig:
    kind_settings = {k: v for k, v in raw.items() if k not in _COMMON_RULE_KEYS}
    try:
        rule = rule_kinds()[raw["kind"]](kind_settings)
    except (ValueError, KeyError) as exc:  # (a KeyError's text is its key's repr: the quotes go)
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        problems.append(doc.problem((*path, *exc.where) if isinstance(exc, SettingError) else path, message))
        rule = RuleKind(kind_settings)
    else:
        venue = kind_settings.get("venue")  # a rule's `venue` names a calendar, as a window's does
        if venue is not None and venue not in context.calendars:
            known = ", ".join(context.calendars.venues)
            problems.append(doc.problem((*path, "venue"), f"unknown venue {venue!r} (known: {known})"))
    for key, text in (raw.get("annotations") or {}).items():
        for found in _BRACES.finditer(text):
            if not ANNOTATION_PLACEHOLDER.fullmatch(found.group()):
                why = (
                    f"{found.group()[:60]} is not a placeholder: annotations take {{{{ value }}}}, "
                    "{{ labels.NAME }} and {{ details.NAME }}, without filters (channel templates are Jinja)"
                )
                problems.append(doc.problem((*path, "annotations", key), why))
    rule.context = context
    for key in ("active_during", "muted_during"):
        for index, name in enumerate(raw.get(key) or []):
            if name not in context.windows:
                problems.append(doc.problem((*path, key, index), f"no window named {name!r}"))
    for name in rule.window_names():
        if name not in context.windows:
            key = next((k for k, v in kind_settings.items() if v == name), None)  # the setting naming it
            problems.append(doc.problem(path if key is None else (*path, key), f"no window named {name!r}"))
    config = RuleConfig(
        name=raw["name"],
        kind=raw["kind"],
        rule=rule,
        severity=raw.get("severity", "warning"),
        labels=labels_of(raw.get("labels") or {}),
        annotations=labels_of(raw.get("annotations") or {}),
        pending_for=_duration(raw.get("for")) or 0.0,
        keep_firing_for=_duration(raw.get("keep_firing_for")) or 0.0,
        description=raw.get("description", ""),
        active_during=tuple(raw.get("active_during") or ()),
        muted_during=tuple(raw.get("muted_during") or ()),
        origin=origin,
    )
    return replace(config, context=context) if config.uses_calendar else config


def _unusable_url(text: str) -> str | None:
    """Why a channel's URL can reach nothing (no host, a port outside 1-65535), or ``None``."""
    import httpx

    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        return f"not a URL ({str(exc).split(':')[0]})"
    if not url.host or " " in url.host or "%20" in url.host:
        return "the URL names no host"
    if url.port is not None and not 1 <= url.port <= 65535:
        return f"the URL's port {url.port} is not between 1 and 65535"
    return None


def _daemon_settings(raw: dict[str, Any], base_dir: Path) -> DaemonSettings:
    listen = raw.get("listen", DEFAULT_LISTEN)
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if int(port) > 65535:
        raise ValueError(f"port {port} is not a TCP port (0-65535)")
    state = Path(raw.get("state", "alphawatch.db"))
    if not state.is_absolute():
        # under systemd the unit's StateDirectory= is the place; elsewhere, beside the configuration file
        state = Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or base_dir) / state
    tokens = raw.get("tokens") or {}
    supervisor = raw.get("supervisor") or {}
    delivery = raw.get("delivery") or {}
    retention = raw.get("retention")
    return DaemonSettings(
        state=state,
        host=host,
        port=int(port),
        external_url=raw.get("external_url", "").rstrip("/"),  # a path joins it with "/"
        language=raw.get("language", "en"),
        retention=parse_duration(retention) if retention else DaemonSettings.retention,
        max_body=raw.get("max_body", DaemonSettings.max_body),
        max_label_bytes=raw.get("max_label_bytes", DaemonSettings.max_label_bytes),
        log_level=raw.get("log_level", "info"),
        ingest_token=tokens.get("ingest"),
        admin_token=tokens.get("admin"),
        supervisor=SupervisorSettings(
            initial_backoff=_duration(supervisor.get("initial_backoff"), SupervisorSettings.initial_backoff),
            max_backoff=_duration(supervisor.get("max_backoff"), SupervisorSettings.max_backoff),
            max_restarts=supervisor.get("max_restarts", SupervisorSettings.max_restarts),
            restart_window=_duration(supervisor.get("restart_window"), SupervisorSettings.restart_window),
        ),
        delivery=DeliverySettings(
            initial_backoff=_duration(delivery.get("initial_backoff"), DeliverySettings.initial_backoff),
            max_backoff=_duration(delivery.get("max_backoff"), DeliverySettings.max_backoff),
            max_age=_duration(delivery.get("max_age"), DeliverySettings.max_age),
            concurrency=delivery.get("concurrency", DeliverySettings.concurrency),
            fallback_channel=delivery.get("fallback_channel"),
            probe_interval=_duration(delivery.get("probe_interval"), DeliverySettings.probe_interval),
        ),
    )


@overload
def _duration(value: str | None) -> float | None: ...
@overload
def _duration(value: str | None, default: float) -> float: ...
def _duration(value: str | None, default: float | None = None) -> float | None:
    """Seconds of a duration setting; ``default`` only when it is absent (``0s`` means zero)."""
    return parse_duration(value) if value else default


def _origin(doc: Located, path: KeyPath) -> str:
    line = doc.marks.get(path, (0, 0))[0]
    return f"{doc.file}:{line}"


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("__list__", *(_freeze(v) for v in value))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        if value and value[0] == "__list__":
            return [_thaw(v) for v in value[1:]]
        return {k: _thaw(v) for k, v in value}
    return value
