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
        "id": "ID (for ack, why)",
        "none": "No active alerts.",
        "live": "live",
        "offline": "reconnecting…",
        "reload": "Last reload",
        "info": "info",
        "warning": "warning",
        "error": "error",
        "critical": "critical",
        "emergency": "emergency",
        "locale": "en-GB",
        "st_starting": "starting",
        "st_running": "running",
        "st_backoff": "restarting",
        "st_failed": "failed",
        "st_stopped": "stopped",
        "acked": "acknowledged by %s",
        "silence": "silenced",
        "inhibited": "inhibited",
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
        "id": "編號（ack、why 用）",
        "none": "目前沒有警示。",
        "live": "即時",
        "offline": "重新連線中…",
        "reload": "最近重新載入",
        "info": "資訊",
        "warning": "警告",
        "error": "錯誤",
        "critical": "嚴重",
        "emergency": "緊急",
        "locale": "zh-TW",
        "st_starting": "啟動中",
        "st_running": "執行中",
        "st_backoff": "重啟中",
        "st_failed": "失敗",
        "st_stopped": "已停止",
        "acked": "已由 %s 確認",
        "silence": "已靜音",
        "inhibited": "已抑制",
    },
}


def words(language: str) -> dict[str, str]:
    return TEXT.get(language, TEXT["en"])


def page_language(requested: str | None, default: str) -> str:
    """The page's language: ``?lang=`` when it names one of ours in any spelling (``zh-tw``, ``zh_TW``,
    ``zh-Hant-TW``, ``EN``), else the daemon's."""
    text = (requested or "").strip().lower().replace("_", "-")
    if text.startswith("zh"):
        return "zh-TW"
    if text == "en" or text.startswith("en-"):
        return "en"
    return default
