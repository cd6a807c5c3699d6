"""Core of the multimodal chest X-ray tool: everything that is not UI (never imports streamlit).

One package per concern, dependencies pointing one way (checked by import-linter in .ci/run,
see .importlinter and docs/architecture.md):

    data  <-  model  <-  evaluation  <-  training
                              ^
                 store  <-  serving            (pacs builds on serving)

``errors`` (the one exception family) sits under all of them; ``access`` (who may open the app and
what they may change) sits beside ``data`` and needs nothing but ``errors``.
"""
