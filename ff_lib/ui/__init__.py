"""Small Streamlit helpers shared by the pages: state keys, cached resources, widgets."""
