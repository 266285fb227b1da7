"""A long history draws its newest turns and hides the rest behind "Show N earlier"."""

from streamlit.testing.v1 import AppTest


def _page():
    from ff_lib.chat.history import ChatMessage
    from ff_lib.ui.widgets import output_list

    history = []
    for i in range(60):
        history.append(ChatMessage("user", f"question {i}"))
        history.append(ChatMessage("assistant", f"answer {i}"))
    output_list(history)


def _texts(at) -> str:
    return " ".join(str(e.value) for e in at.markdown) + " ".join(str(e.value) for e in at.text)


def test_long_history_shows_newest_turns_then_all_on_request():
    at = AppTest.from_function(_page, default_timeout=30).run()
    assert not at.exception
    toggle = at.toggle(key="inf_show_all_pairs")
    assert toggle.label == "Show 10 earlier"
    shown = _texts(at)
    assert "answer 59" in shown and "answer 10" in shown
    assert "answer 9 " not in shown + " "

    toggle.set_value(True).run()

    assert "answer 0" in _texts(at)
