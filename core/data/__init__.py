"""Data: what a study is and how it is read, before any model.

Owns the findings and their label mapping (``labels``), the Open-I reports and the split
(``reports``), the other dataset readers behind one interface (``sources``: Open-I, MIMIC-CXR,
CheXpert, a CSV manifest), image decoding of uploads and dataset files (``images``), the one
pixel pipeline (``preprocess``), the training image bank (``image_bank``), lateral views
(``laterals``) and the text a model reads (``text_clean``, ``text_window``).

May import: ``core.errors`` only. Everything else in ``core`` builds on this package.
"""
