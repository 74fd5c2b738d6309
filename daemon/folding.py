"""A group's notifications reach a channel in the order they were made; the newest of those waiting goes for all.

A notification tells its group's alerts as they stood when it was made. Delivered after a newer one, it would undo
what that one told: a receiver left showing "firing" for an alert resolved since. So the outbox sends one
notification of a group to a channel at a time, oldest first, and one that waits for a retry while a newer one of
its group is due is folded into that one, which goes in its place carrying, beside its own alerts, every alert only
the older ones told (a resolution that left the group with them, say). The older ones end ``superseded``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alphawatch.daemon.store import dump_json


def fold(newer: str, older: Sequence[str]) -> str:
    """``newer``'s document with the alerts that only ``older`` ones (newest first) tell, each as the newest of
    those told it; the group's status and what its alerts have in common made again from them all."""
    document: dict[str, Any] = json.loads(newer)
    alerts: list[dict[str, Any]] = document["alerts"]
    told = {alert["fingerprint"] for alert in alerts}
    added = False
    for text in older:
        for alert in json.loads(text).get("alerts", []):
            if alert["fingerprint"] not in told:
                told.add(alert["fingerprint"])
                alerts.append(alert)
                added = True
    if not added:
        return newer
    document["status"] = "firing" if any(alert["status"] == "firing" for alert in alerts) else "resolved"
    document["commonLabels"] = _common(alert["labels"] for alert in alerts)
    document["commonAnnotations"] = _common(alert["annotations"] for alert in alerts)
    return dump_json(document)


def _common(maps: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    first, *rest = maps
    return {k: v for k, v in first.items() if all(k in m and m[k] == v for m in rest)}
