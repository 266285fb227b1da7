"""FF Playground dashboard: the workspace at a glance and the way into the playground."""

from functools import partial

import streamlit as st

from ff_lib.chat import EXPORT_FORMATS, export_filename
from ff_lib.errors import FFError
from ff_lib.ui import conversation, resources, state
from ff_lib.ui.dashboard import conversation_export, load_dashboard
from ff_lib.ui.engine import engine_sidebar
from ff_lib.ui.evaluation import scorecards_list
from ff_lib.ui.run_admin import remove_run_control
from ff_lib.ui.style import PAGE_ICON, md_escape, page_style
from ff_lib.ui.sweep import sweeps_list

INFERENCE_PAGE = "pages/1_Inference.py"
FULL_CHAT_PAGE = "pages/2_Full_Chat.py"
BLIND_TEST_PAGE = "pages/3_Blind_Test.py"
EMPTY_HELP = """\
This workspace has no training runs or datasets yet. Build the demo workspace (a tiny model,
two datasets and trained adapters), or register your own runs:

```
python -m ff_lib demo
python -m ff_lib runs add --name NAME --base-model BASE --adapter DIR
python -m ff_lib runs scan DIR
```
"""

st.set_page_config(page_title="FF Playground", page_icon=PAGE_ICON, layout="wide")
page_style()
engine_sidebar()
st.title("FF Playground")
st.caption(f"Workspace: `{resources.workspace_folder()}`")

try:
    ws = resources.workspace()
    board = load_dashboard(ws)
except FFError as exc:
    st.error(str(exc), icon=":material/lock:")
    st.stop()

nav = st.columns(3)
nav[0].page_link(INFERENCE_PAGE, label="Inference", icon=":material/tune:")
nav[1].page_link(FULL_CHAT_PAGE, label="Full Chat", icon=":material/forum:")
nav[2].page_link(BLIND_TEST_PAGE, label="Blind test", icon=":material/shuffle:")

if not board.run_rows and not board.datasets:
    st.info(EMPTY_HELP, icon=":material/info:")

metrics = st.columns(len(board.run_counts) + 1)
for col, (status, count) in zip(metrics, board.run_counts.items(), strict=False):
    col.metric(f"Runs {status}", count)
metrics[-1].metric("Datasets", len(board.datasets))
if n := board.checkpoint_runs:
    what = (
        "1 checkpoint registered as a run is"
        if n == 1
        else f"{n} checkpoints registered as runs are"
    )
    st.caption(f"Runs count training runs only: {what} listed below but not counted.")

st.subheader("Recent training runs")
if board.run_rows:
    st.dataframe(board.run_rows, hide_index=True, width="stretch")
    if board.cannot_answer:  # counted as completed (their training is), but they cannot answer
        lines = [f"- **{md_escape(name)}**: {md_escape(why)}" for name, why in board.cannot_answer]
        st.warning(
            "Completed, but cannot answer here:\n" + "\n".join(lines), icon=":material/error:"
        )
else:
    st.caption("No training runs registered.")
remove_run_control(ws, board.runs)
data_col, model_col = st.columns(2)
with data_col:
    st.subheader("Datasets")
    if board.datasets:
        st.dataframe(
            [{"Name": d.name, "Rows": d.rows} for d in board.datasets],
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption("No datasets imported.")

with model_col:
    st.subheader("Model in this process")
    engine = resources.host()
    loaded = engine.info()
    if resources.is_remote(engine):
        st.caption(resources.engine_summary(engine))
    elif loaded is None:
        st.caption("No model loaded yet: it loads at the first prompt.")
    else:
        st.markdown(
            f"Base `{loaded.base_model}` · {loaded.quantization} ({loaded.quantization_reason}) · "
            f"device {loaded.device} · context {loaded.context:,} tokens · up to {loaded.rows} "
            f"replies at once · {len(loaded.adapters)} adapter(s) in slots"
        )
        for folder in loaded.adapters:
            st.caption(f"Adapter `{folder}`")


def forget_delete() -> None:
    st.session_state[state.HOME_DELETE_TARGET] = None


@st.dialog("Delete conversation?", on_dismiss=forget_delete)
def confirm_delete(conversation_id: str, title: str) -> None:
    st.write("This deletes the conversation and its stored messages for good:")
    st.text(title)
    yes, no = st.columns(2)
    if yes.button("Delete", type="primary", key="home_confirm_delete"):
        try:
            ws.delete_conversation(conversation_id)
        except FFError as exc:
            st.error(str(exc))
            st.stop()
        if conversation.conversation_id() == conversation_id:
            conversation.clear_history()
        st.session_state[state.HOME_DELETE_TARGET] = None
        st.rerun()
    if no.button("Cancel", key="home_cancel_delete"):
        st.session_state[state.HOME_DELETE_TARGET] = None
        st.rerun()


scorecards_list(ws)
sweeps_list(ws)

st.subheader("Recent conversations")
if not board.conversations:
    st.caption("No conversations yet. Start one on the Inference or Full Chat page.")
else:
    fmt = st.selectbox("Export format", list(EXPORT_FORMATS), key=state.HOME_EXPORT_FORMAT)
for conv in board.conversations:
    title = conv.title or "Untitled conversation"
    with st.container(border=True):
        info, actions = st.columns([3, 4], vertical_alignment="center")
        info.text(title)
        if conv.source == "api":
            info.badge("API", icon=":material/api:", color="violet")
        info.caption(f"{conv.message_count} messages · {conv.updated_at:%Y-%m-%d %H:%M}")
        # A row sized to its labels (wrapping on a narrow window), never cutting them.
        actions = actions.container(
            horizontal=True, horizontal_alignment="right", vertical_alignment="center"
        )
        actions.download_button(
            "Download",
            # Made on click: Home never reads every conversation's messages to render.
            data=partial(conversation_export, ws, conv.id, fmt),
            file_name=export_filename(conv.id, fmt),
            mime=EXPORT_FORMATS[fmt].mime,
            on_click="ignore",
            key=f"home_download_{conv.id}",
        )
        actions.page_link(FULL_CHAT_PAGE, label="Continue", query_params={"c": conv.id})
        actions.page_link(INFERENCE_PAGE, label="Inference", query_params={"c": conv.id})
        if actions.button("Delete", key=f"home_delete_{conv.id}"):
            st.session_state[state.HOME_DELETE_TARGET] = (conv.id, title)

target = st.session_state.get(state.HOME_DELETE_TARGET)
if target:
    confirm_delete(*target)
