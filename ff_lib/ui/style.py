"""The few CSS rules Streamlit's theme cannot express, and the pages' icon, shared by every page."""

from pathlib import Path

import streamlit as st

# A local file: a `:material/...:` page icon makes the browser fetch its favicon from
# fonts.gstatic.com, and nothing may leave the machine.
PAGE_ICON = str(Path(__file__).resolve().with_name("icon.png"))

# Streamlit cuts a button or metric label that does not fit with an ellipsis ("Refresh data…",
# "Runs complet…"): labels wrap instead. Page links in the main area (Home's Continue / Inference, Go to Inference) are
# drawn like the secondary buttons beside them; the sidebar's navigation is left as it is.
PAGE_CSS = """
<style>
:is(.stButton, .stDownloadButton, .stPopover, .stPageLink, [data-testid="stMetricLabel"])
  :is(.stMarkdownEllipsis, .stMarkdownEllipsis p, p) {
  white-space: normal;
  overflow: visible;
  text-overflow: clip;
}
[data-testid="stMain"] a[data-testid="stPageLink-NavLink"] {
  display: inline-flex;
  align-items: center;
  justify-content: center;
  min-height: 2.5rem;
  padding: 0.25rem 0.75rem;
  border: 1px solid rgba(17, 24, 39, 0.2);
  border-radius: 0.5rem;
  background-color: #ffffff;
}
[data-testid="stMain"] a[data-testid="stPageLink-NavLink"]:hover {
  border-color: #2563eb;
  color: #2563eb;
  background-color: #ffffff;
}
</style>
"""


def page_style() -> None:
    """Add the shared CSS to the page (takes no space)."""
    st.html(PAGE_CSS)


def md_escape(text: str) -> str:
    """User text (a run name) inside Markdown, its Markdown specials shown literally
    (st.markdown never renders HTML without unsafe_allow_html)."""
    out = text or ""
    for char in "\\`*_{}[]()#+-.!|~>:$<":
        out = out.replace(char, "\\" + char)
    return out
