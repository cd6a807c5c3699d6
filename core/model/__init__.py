"""Model: the late-fusion network and its weights on disk.

Owns the fusion model (``fusion``), the text-encoder families (``text_encoders``), the
weights file and its typed description (``checkpoint``, ``description``), the
out-of-distribution guard that ships with the weights (``guard``), batched feature inference
(``inference``), and the fast serving graphs (``frozen``, ``int8_image``).
``description`` is torch-free: pages read a model's facts before any model loads.

May import: ``core.data``, ``core.errors``.
"""
