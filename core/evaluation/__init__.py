"""Evaluation: what a model's numbers are worth.

Owns the metrics and their bootstrap CIs (``metrics``), evaluation of a split
(``split_eval``), cross-validation bookkeeping (``cross_validation``), the held-out evidence
per finding (``evidence``), thresholds and report-QA operating points (``operating_points``),
the keyword baseline (``keyword_baseline``), the evaluation files next to the weights
(``eval_files``), and the refit of thresholds, evidence and discordance on existing weights
(``refit``).

May import: ``core.model``, ``core.data``, ``core.errors``.
"""
