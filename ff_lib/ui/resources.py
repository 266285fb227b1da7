"""Process-wide resources behind st.cache_resource / st.cache_data: the model host, workspaces,
adapter checks (keyed by path + modification times, so an edited adapter is checked again)."""

import os
from pathlib import Path

import streamlit as st

from ff_lib.data import Workspace
from ff_lib.inference import get_host, validate_adapter
from ff_lib.workspace_path import resolve_workspace


@st.cache_resource(show_spinner=False)
def host():
    """The one ModelHost of this process, shared by every session."""
    return get_host()


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


def check_adapter(path: str | os.PathLike, base_model: str | None = None):
    """validate_adapter, cached per (path, base model, modification times)."""
    path = str(path)
    return _cached_check(path, base_model or None, _signature(path))


def workspace_folder() -> str:
    """The workspace folder in use, for display."""
    return str(resolve_workspace())


def runs_as(check) -> str:
    """How the selected run's model runs ('float32 on CPU', '4-bit NF4 on cuda:0'), '' if none."""
    if check is None or not check.ok:
        return ""
    info = host().info()
    if info is None or str(info.base_model) != str(check.base_model):
        return "loads at the first prompt"
    return info.describe
