"""Every string the console shows, in English, Chinese and Japanese.

Operators read the console in their own language; engineers add a language by adding a column
here (tests check that every language has every key and the same placeholders).
"""

from __future__ import annotations

LANGUAGES = ("en", "zh", "ja")

CATALOG: dict[str, dict[str, str]] = {
    "en": {
        "placeholder": "Type a question and press Enter",
        "status": "Gemba | model {model} | {state}",
        "severity": "budget {severity}",
        "state.loading": "loading",
        "state.ready": "ready",
        "state.answering": "answering…",
        "state.throttled": "slowed: box is hot",
        "state.restarting": "engine restarting",
        "state.offline": "offline: reconnecting",
        "state.failed": "engine failed",
        "state.error": "error",
        "state.cancelling": "cancelling…",
        "severity.ok": "OK",
        "severity.careful": "careful",
        "severity.warning": "WARNING",
        "severity.critical": "CRITICAL",
        "note.cancelled": " [cancelled: partial answer kept]",
        "note.length": " [incomplete: token limit reached]",
        "error.answer": "Could not answer: {message}",
        "error.unexpected": "unexpected reply from the appliance ({kind})",
        "key.cancel": "Cancel answer",
        "key.quit": "Quit",
    },
    "zh": {
        "placeholder": "输入问题后按回车",
        "status": "Gemba | 模型 {model} | {state}",
        "severity": "预算 {severity}",
        "state.loading": "加载中",
        "state.ready": "就绪",
        "state.answering": "回答中…",
        "state.throttled": "已降速：设备过热",
        "state.restarting": "引擎重启中",
        "state.offline": "离线：正在重连",
        "state.failed": "引擎故障",
        "state.error": "错误",
        "state.cancelling": "正在取消…",
        "severity.ok": "正常",
        "severity.careful": "注意",
        "severity.warning": "警告",
        "severity.critical": "危急",
        "note.cancelled": " [已取消：保留部分回答]",
        "note.length": " [未完成：达到长度上限]",
        "error.answer": "无法回答：{message}",
        "error.unexpected": "设备返回了意外的应答（{kind}）",
        "key.cancel": "取消回答",
        "key.quit": "退出",
    },
    "ja": {
        "placeholder": "質問を入力して Enter",
        "status": "Gemba | モデル {model} | {state}",
        "severity": "予算 {severity}",
        "state.loading": "読み込み中",
        "state.ready": "準備完了",
        "state.answering": "回答中…",
        "state.throttled": "減速中：装置が高温",
        "state.restarting": "エンジン再起動中",
        "state.offline": "オフライン：再接続中",
        "state.failed": "エンジン故障",
        "state.error": "エラー",
        "state.cancelling": "取り消し中…",
        "severity.ok": "正常",
        "severity.careful": "注意",
        "severity.warning": "警告",
        "severity.critical": "危険",
        "note.cancelled": " [取り消し：途中までの回答を保存]",
        "note.length": " [未完了：長さの上限に到達]",
        "error.answer": "回答できません：{message}",
        "error.unexpected": "装置から想定外の応答（{kind}）",
        "key.cancel": "回答を取り消す",
        "key.quit": "終了",
    },
}


class Strings:
    """The console's strings in one language."""

    def __init__(self, lang: str) -> None:
        if lang not in CATALOG:
            raise ValueError(f"unknown console language {lang!r}; known: {', '.join(LANGUAGES)}")
        self.lang = lang
        self._table = CATALOG[lang]

    def __call__(self, key: str, **values: object) -> str:
        return self._table[key].format(**values)
