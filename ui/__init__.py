"""Shared Streamlit helpers for the pages: cached loaders, plot builders, renderers.
UI functions draw and return values; nothing here is needed by core/ or the CLIs."""
