"""Process-wide resources behind st.cache_resource / st.cache_data: the model host, workspaces,
adapter checks (keyed by path + modification times, so an edited adapter is checked again)."""

import os
from pathlib import Path

import streamlit as st

from ff_lib.data import Workspace
from ff_lib.evaluation import engine_label
from ff_lib.inference import ModelHost, get_host, validate_adapter
from ff_lib.inference.host import new_host
from ff_lib.inference.remote import RemoteHost, check_for_remote
from ff_lib.ui import state
from ff_lib.workspace_path import resolve_workspace


@st.cache_resource(show_spinner=False)
def _process_host():
    """The host of this process (get_host: FF_ENGINE_URL decides), shared by every session."""
    return get_host()


@st.cache_resource(show_spinner=False)
def _local_host():
    """The in-process engine, for sessions that choose this machine while FF_ENGINE_URL is set."""
    return new_host(engine_url="")


@st.cache_resource(show_spinner=False)
def _remote_host(url: str):
    """One RemoteHost per vLLM address, shared by the sessions that choose it. An empty address
    still gives a RemoteHost (new_host would give this machine's engine): it refuses every
    request, saying that the server needs its URL."""
    return RemoteHost(url, os.environ.get("FF_ENGINE_API_KEY") or None)


def host():
    """The engine this session chose in the sidebar (ui/engine.py): the in-process ModelHost or
    a RemoteHost for the vLLM URL given; before any choice, the process's (FF_ENGINE_URL)."""
    choice = st.session_state.get(state.ENGINE_CHOICE)
    if choice is None:
        return _process_host()
    if choice == "vLLM server":
        # Even an empty or malformed URL gives a RemoteHost: it refuses every request with the
        # reason, rather than this session silently answering from another engine.
        return _remote_host(str(st.session_state.get(state.ENGINE_URL) or "").strip())
    process = _process_host()
    return _local_host() if is_remote(process) else process


def is_remote(engine) -> bool:
    """Whether replies come from a remote engine (a vLLM server) rather than this process."""
    return not isinstance(engine, ModelHost)


def engine_summary(engine) -> str:
    """Home's line for a remote engine: who answers, which base and adapters it serves."""
    info = engine.info()
    if info is None:
        return f"No model in this process: replies come from {engine_label(engine)}, which does not answer now."
    return (
        f"No model in this process: replies come from {info.describe}, serving base "
        f"`{info.base_model}` (context {info.context:,} tokens) and {len(info.adapters)} adapter(s)."
    )


def engine_problem(engine) -> str | None:
    """Why the chosen remote engine cannot answer now (None when it can, or it is local)."""
    return engine.availability("") if is_remote(engine) else None


@st.cache_resource(show_spinner=False)
def _workspace_at(folder: str) -> Workspace:
    return Workspace.open(Path(folder))


def workspace() -> Workspace:
    """The workspace named by FF_WORKSPACE (else ./workspace); holds no connection open."""
    return _workspace_at(str(resolve_workspace()))


def _signature(path: str) -> tuple:
    """(name, mtime_ns, size) of the folder and its direct children: changes when files do."""
    root = Path(path)
    if not root.exists():
        return ()
    entries = [root, *sorted(root.iterdir())] if root.is_dir() else [root]
    sig = []
    for entry in entries:
        st_ = entry.stat()
        sig.append((entry.name, st_.st_mtime_ns, st_.st_size))
    return tuple(sig)


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_check(path: str, base_model: str | None, signature: tuple):
    return validate_adapter(path, base_model=base_model)


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_remote_check(path: str, base_model: str | None, signature: tuple, where: str):
    return check_for_remote(path, base_model, where)


def check_adapter(path: str | os.PathLike, base_model: str | None = None):
    """validate_adapter, cached per (path, base model, modification times); with a vLLM server
    as this session's engine, as it sees it (check_for_remote: files not here are its to check)."""
    path = str(path)
    engine = host()
    if is_remote(engine):
        return _cached_remote_check(
            path, base_model or None, _signature(path), engine_label(engine)
        )
    return _cached_check(path, base_model or None, _signature(path))


def workspace_folder() -> str:
    """The workspace folder in use, for display."""
    return str(resolve_workspace())


def runs_as(check) -> str:
    """How the selected run's model runs ('float32 on CPU', '4-bit NF4 on cuda:0'), '' if none."""
    if check is None or not check.ok:
        return ""
    engine = host()
    if is_remote(engine):
        return engine_label(engine)
    info = engine.info()
    if info is None or str(info.base_model) != str(check.base_model):
        return "loads at the first prompt"
    return info.describe
