"""Every st.session_state key of the app, prefixed by the module or page that owns it.

State holds ids and plain data (ChatMessage, dicts, str), never models or connections.
"""

# --- ff_lib/ui/conversation.py: the shared history (one conversation per browser session) ---
CHAT_MESSAGES = "chat_messages"  # list[ChatMessage], oldest first
CHAT_CONVERSATION_ID = "chat_conversation_id"  # str | None, created at the first message
CHAT_TURN_IN_FLIGHT = "chat_turn_in_flight"  # int | None: the reply id a run is streaming
CHAT_NOTICE = "chat_notice"  # str | None: a one-time message (e.g. a ?c= id that is unknown)

# --- ff_lib/ui/selection.py: the validated run and the model status, shared by both pages ---
MODEL_SELECTION = "model_selection"  # dict (see selection.Selection.as_state) | None
MODEL_STATUS = (
    "model_status"  # "idle" | "validating" | "ready" | "generating" | "waiting" | "error"
)
MODEL_STATUS_DETAIL = "model_status_detail"  # str: the reason shown with the status
MODEL_SETTINGS = "model_settings"  # dict of GenerationSettings fields, set on the Inference page
MODEL_PENDING_RUN = "model_pending_run"  # int | None: a run chosen, to validate on this rerun
MODEL_BASE_FILLED = "model_base_filled"  # str: the base model last filled in from a run

# --- pages/1_Inference.py widgets (persisted for the session) ---
INF_BASE_MODEL = "inf_base_model"
INF_RUN = "inf_run"
INF_PRESET = "inf_preset"
INF_TEMPERATURE = "inf_temperature"
INF_MAX_NEW_TOKENS = "inf_max_new_tokens"
INF_REPETITION_PENALTY = "inf_repetition_penalty"
INF_TOP_P = "inf_top_p"
INF_SEED = "inf_seed"
INF_SYSTEM_PROMPT = "inf_system_prompt"
INF_DATASET = "inf_dataset"
INF_SAMPLES = "inf_samples"  # list[SamplePair] shown in `Sample prompts` (plain data)
INF_SAMPLE = "inf_sample"  # index of the chosen sample prompt
INF_EXPECTED = "inf_expected"  # str | None: the chosen sample's expected answer
INF_PROMPT = "inf_prompt"
INF_EXPORT_FORMAT = "inf_export_format"
INF_COMPARE_WITH = "inf_compare_with"  # list of "base" | run id | "RUN_ID@checkpoint-N"
INF_RAW_TEXT = "inf_raw_text"  # bool: replies shown as generated, Markdown not rendered
INF_PENDING_PROMPT = "inf_pending_prompt"  # str | None: Generate clicked, to run on this rerun
INF_MESSAGE = "inf_message"  # str | None: a one-time warning under the buttons
INF_DIALOG_OPEN = "inf_dialog_open"  # bool: the Full Chat View dialog is open
INF_DIALOG_PENDING = "inf_dialog_pending"  # str | None: a dialog message to answer

# --- ff_lib/ui/evaluation.py: effect, Score and replay panels ---
EVAL_SCORECARD_ID = "eval_scorecard_id"  # int | None: the scorecard shown under Score
EVAL_REPLAY = "eval_replay"  # evaluation.Replay | None: the last replay shown
EVAL_MEASURE = "eval_measure_effect"  # int | None: a run whose effect to measure on this rerun
EVAL_SCORE_RUN = "eval_score_run"  # int | None: the run the Score dataset was defaulted for

# Widget keys of those panels (also their `.st-key-<key>` for browser tests).
EVAL_SCORE_DATASET = "score_dataset"  # int: the dataset Score answers
EVAL_SCORE_ROWS = "score_rows"  # int: how many of its rows
EVAL_SCORE_COMPARE_RUNS = "score_compare_runs"  # list[int]: runs scored beside the run
EVAL_SCORE_DISAGREE = "score_disagree"  # bool: only rows where the models' answers differ
EVAL_REPLAY_RUN = "replay_run"  # int | None: the run a conversation is replayed with

# --- ff_lib/ui/explain.py: "Why this answer?" under a reply ---
EXPLAIN_CACHE = "explain_cache"  # dict[int, ReplyExplanation | str]: views (or errors) by id
EXPLAIN_SHOWN = "explain_shown"  # set[int]: message ids whose token view is open

# --- pages/2_Full_Chat.py ---
FULL_EXPORT_FORMAT = "full_export_format"

# --- Home.py ---
HOME_DELETE_TARGET = "home_delete_target"  # str | None: the conversation id to confirm deleting
HOME_EXPORT_FORMAT = "home_export_format"
HOME_REMOVE_RUN = "home_remove_run"  # int | None: the run chosen in Home's `Remove a run` box
HOME_REMOVE_TARGET = "home_remove_target"  # int | None: the run id to confirm removing

# --- ff_lib/ui/blind.py: the Blind test page ---
BLIND_FIRST = "blind_first"  # int | "RUN_ID@checkpoint-N" | None: the first model
BLIND_SECOND = "blind_second"  # "base" | int | "RUN_ID@checkpoint-N" | None
BLIND_DATASET = "blind_dataset"  # int | None: the dataset "Draw a prompt" draws from
BLIND_PROMPT = "blind_prompt"  # str: the prompt both models answer
BLIND_PRESET = "blind_preset"  # str: a preset name of ff_lib.inference.PRESETS
BLIND_MAX_NEW_TOKENS = "blind_max_new_tokens"  # int
BLIND_PAIR = "blind_pair"  # votes.BlindPair | None: the answers shown as A and B
BLIND_VOTE = "blind_vote"  # data.votes.Vote | None: the vote cast on the pair shown
BLIND_MESSAGE = "blind_message"  # str | None: a one-time warning (a refused choice, an error)

# --- ff_lib/ui/engine.py: which engine answers this session (the sidebar's choice) ---
ENGINE_CHOICE = "engine_choice"  # "this machine" | "vLLM server": the session's (no widget's)
ENGINE_URL = "engine_url"  # str: the vLLM server's address, http://HOST:PORT/v1 (no widget's)
ENGINE_CHOICE_WIDGET = "engine_choice_widget"  # the sidebar radio, seeded from ENGINE_CHOICE
ENGINE_URL_WIDGET = "engine_url_widget"  # the sidebar URL box, seeded from ENGINE_URL
