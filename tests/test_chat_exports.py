"""Exports of the shared history: the bytes a user downloads, unicode and HTML included."""

import json

import pytest

from ff_lib.chat import (
    ChatMessage,
    export_bytes,
    export_filename,
    export_jsonl,
    export_markdown,
    export_text,
)

META = {
    "run": {"id": 3, "name": "demo-good"},
    "base_model": "/w/models/tiny",
    "adapter": "/w/adapters/good",
    "settings": {"temperature": 0.0, "max_new_tokens": 128},
    "stats": {"prompt_tokens": 9, "new_tokens": 4, "ttft_s": 0.01, "tokens_per_s": 40.0},
    "template": "chat_template",
}

HISTORY = [
    ChatMessage(
        "user", "Héllo 👋 <script>alert(1)</script>", created_at="2025-01-02T03:04:05+00:00"
    ),
    ChatMessage(
        "assistant", "Ça va 🎉 & <b>bold</b>", meta=META, created_at="2025-01-02T03:04:06+00:00"
    ),
    ChatMessage("user", "stop?"),
    ChatMessage("assistant", "partial", status="interrupted"),
]


def test_jsonl_is_one_utf8_message_per_line_with_its_meta():
    data = export_jsonl(HISTORY)
    assert isinstance(data, bytes)
    assert data.endswith(b"\n")
    lines = data.decode("utf-8").splitlines()
    assert len(lines) == 4
    records = [json.loads(line) for line in lines]
    assert records[0]["role"] == "user"
    assert records[0]["content"] == "Héllo 👋 <script>alert(1)</script>"
    assert records[0]["timestamp"] == "2025-01-02T03:04:05+00:00"
    assert records[1]["run"] == {"id": 3, "name": "demo-good"}
    assert records[1]["base_model"] == "/w/models/tiny"
    assert records[1]["settings"]["temperature"] == 0.0
    assert records[1]["stats"]["new_tokens"] == 4
    assert records[1]["status"] == "complete"
    assert records[1]["template"] == "chat_template"  # the rest of meta is kept
    assert records[3]["status"] == "interrupted"
    assert records[0]["stats"] is None


def test_jsonl_writes_emoji_and_html_as_is():
    data = export_jsonl(HISTORY[:1])
    assert "👋".encode() in data
    assert b"\\u" not in data
    assert b"<script>alert(1)</script>" in data


def test_text_keeps_content_as_is():
    text = export_text(HISTORY)
    assert "Prompt (2025-01-02T03:04:05+00:00):\nHéllo 👋 <script>alert(1)</script>" in text
    assert "Response (2025-01-02T03:04:06+00:00):\nÇa va 🎉 & <b>bold</b>" in text
    assert "-- 4 tokens · 40.0 tokens/s" in text
    assert "Response [interrupted]:\npartial" in text
    assert export_bytes(HISTORY, "Text") == text.encode("utf-8")


def test_markdown_escapes_html_so_a_viewer_shows_text():
    md = export_markdown(HISTORY)
    assert md.startswith("# FF Playground chat\n")
    assert "## Prompt\n\nHéllo 👋 &lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "<script>" not in md
    assert "Ça va 🎉 &amp; &lt;b&gt;bold&lt;/b&gt;" in md
    assert "## Response [interrupted]" in md
    assert export_bytes(HISTORY, "Markdown").decode("utf-8") == md


def test_markdown_keeps_code_blocks_verbatim():
    md = export_markdown([ChatMessage("assistant", "see:\n```html\n<p>x</p>\n```\n<p>y</p>")])
    assert "```html\n<p>x</p>\n```\n&lt;p&gt;y&lt;/p&gt;" in md


def test_empty_history_exports():
    assert export_jsonl([]) == b""
    assert export_text([]) == ""
    assert export_markdown([]) == "# FF Playground chat\n"


def test_export_bytes_and_filename_per_format():
    assert export_bytes(HISTORY, "JSONL") == export_jsonl(HISTORY)
    assert export_filename("0123456789abcdef", "Markdown") == "ff-chat-01234567.md"
    assert export_filename(None, "JSONL") == "ff-chat.jsonl"
    with pytest.raises(ValueError):
        export_bytes(HISTORY, "PDF")


BASE_SIDE = {"text": "Base says <i>hi</i>", "status": "complete", "adapter": None,
             "stats": {"new_tokens": 3, "tokens_per_s": 30.0}}  # fmt: skip
COMPARED = [
    ChatMessage("user", "Capital?"),
    ChatMessage("assistant", "Paris", meta={**META, "base_reply": BASE_SIDE}),
    ChatMessage("user", "Again?"),
    ChatMessage(
        "assistant",
        "Par",
        status="interrupted",
        meta={"base_reply": {"text": "", "status": "not answered", "note": "stopped first"}},
    ),
]


def test_text_keeps_the_base_models_side_of_compared_turns():
    text = export_text(COMPARED)
    assert "Response:\nParis\n-- 4 tokens" in text
    assert (
        "Base model response:\nBase says <i>hi</i>\n-- 3 tokens · 30.0 tokens/s · base model"
        in text
    )
    assert "Base model response [not answered: stopped first]:" in text


def test_markdown_keeps_the_base_models_side_of_compared_turns():
    md = export_markdown(COMPARED)
    assert "### Base model response\n\nBase says &lt;i&gt;hi&lt;/i&gt;" in md
    assert "### Base model response [not answered: stopped first]\n\n_(empty)_" in md
    assert md.index("Paris") < md.index("Base says") < md.index("Again?")


def test_a_failed_reply_exports_its_reason():
    failed = ChatMessage(
        "assistant", "", status="error", meta={"error": "vLLM at gpu-box:8000 does not answer"}
    )
    assert "Response [error: vLLM at gpu-box:8000 does not answer]:" in export_text([failed])
    assert "## Response [error: vLLM at gpu-box:8000 does not answer]" in export_markdown([failed])


def test_long_runs_of_line_breaks_are_folded_for_display_only():
    from ff_lib.chat import fold_blank_lines

    assert fold_blank_lines("\n" * 170 + "apap") == "\n[… 170 line breaks …]\napap"
    assert fold_blank_lines("a\n  \n\n\n\nb") == "a\n[… 5 line breaks …]\nb"
    assert fold_blank_lines("a\n\n\nb") == "a\n\n\nb"  # three are kept as they are


def test_a_compared_side_is_titled_by_its_run_name_as_written():
    from ff_lib.chat.exports import side_title

    assert side_title({"label": "capitals-lora"}) == "capitals-lora response"
    assert side_title({"label": "base model"}) == "Base model response"
    assert side_title({}) == "Other model response"
