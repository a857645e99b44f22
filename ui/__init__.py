"""Gradio front end of the SAM annotator: layout, handlers, rendering, per-session state."""
