"""Core of the multimodal chest X-ray tool: everything that is not UI (never imports streamlit)."""
