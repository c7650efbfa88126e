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
        "key.help": "Help",
        "key.ask": "Ask",
        "key.history": "History",
        "history.title": "History: past questions (type to search, Enter to open)",
        "history.search": "Search past questions and answers",
        "history.empty": "No conversations found.",
        "history.failed": "History is not available: {message}",
        "help.title": "Help",
        "help.text": "F1  this help\nF2  ask a question\nF3  past questions and answers\nEnter  send the question / open the selected one\nEscape  stop the answer (what was written is kept)\nCtrl+Q  quit",
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
        "key.help": "帮助",
        "key.ask": "提问",
        "key.history": "历史",
        "history.title": "历史：以往的问题（输入以搜索，回车打开）",
        "history.search": "搜索以往的问题和回答",
        "history.empty": "没有找到对话。",
        "history.failed": "无法读取历史：{message}",
        "help.title": "帮助",
        "help.text": "F1  本帮助\nF2  提问\nF3  以往的问题和回答\n回车  发送问题 / 打开所选项\nEsc  停止回答（已写出的内容会保留）\nCtrl+Q  退出",
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
        "key.help": "ヘルプ",
        "key.ask": "質問",
        "key.history": "履歴",
        "history.title": "履歴：過去の質問（入力で検索、Enter で開く）",
        "history.search": "過去の質問と回答を検索",
        "history.empty": "会話が見つかりません。",
        "history.failed": "履歴を読めません：{message}",
        "help.title": "ヘルプ",
        "help.text": "F1  このヘルプ\nF2  質問する\nF3  過去の質問と回答\nEnter  質問を送る / 選んだものを開く\nEsc  回答を止める（書かれた分は残ります）\nCtrl+Q  終了",
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
