"""The page's words in English and Traditional Chinese."""

from __future__ import annotations

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "alphawatch",
        "rules": "Rules",
        "alerts": "Active alerts",
        "rule": "Rule",
        "kind": "Kind",
        "status": "Status",
        "restarts": "Restarts",
        "last_error": "Last error",
        "firing": "Firing",
        "pending": "Pending",
        "severity": "Severity",
        "state": "State",
        "labels": "Labels",
        "value": "Value",
        "since": "Since",
        "none": "No active alerts.",
        "live": "live",
        "offline": "reconnecting…",
        "reload": "Last reload",
        "info": "info",
        "warning": "warning",
        "error": "error",
        "critical": "critical",
        "emergency": "emergency",
    },
    "zh-TW": {
        "title": "alphawatch 模型監控",
        "rules": "規則",
        "alerts": "進行中的警示",
        "rule": "規則",
        "kind": "類型",
        "status": "狀態",
        "restarts": "重啟次數",
        "last_error": "最近錯誤",
        "firing": "觸發中",
        "pending": "待定",
        "severity": "嚴重度",
        "state": "狀態",
        "labels": "標籤",
        "value": "數值",
        "since": "開始時間",
        "none": "目前沒有警示。",
        "live": "即時",
        "offline": "重新連線中…",
        "reload": "最近重新載入",
        "info": "資訊",
        "warning": "警告",
        "error": "錯誤",
        "critical": "嚴重",
        "emergency": "緊急",
    },
}


def words(language: str) -> dict[str, str]:
    return TEXT.get(language, TEXT["en"])
