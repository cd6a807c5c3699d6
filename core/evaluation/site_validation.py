"""A site's validation from its predictions: the labels (core.evaluation.site_labels), the measurements and
verdicts (core.evaluation.site_measure) and the guard's rate, as one result — what scripts/validate_site.py
writes as JSON and the Site validation page shows."""
from __future__ import annotations

from core.evaluation.site_labels import agreement, labels_kind, site_labels
from core.evaluation.site_measure import measure_site, ood_summary
from core.model.description import describe


def validate(description, table, probs: dict, ood: list[bool], ood_per_study: list[list[bool]], *,
             site: str, target: str | None = None, n_boot: int = 1000):
    """(result, Y): the validation result of ``table``'s studies (core.data.site_table) from their per-task
    probabilities and guard flags (core.serving.site_run), and the labels it used (studies x findings)."""
    findings = list(describe(description).findings)
    Y, source = site_labels(table.studies, findings, table.label_columns)
    agree = agreement(table.studies, findings, table.label_columns) if table.label_columns else None
    result = measure_site(description, Y, probs, ood=ood_summary(ood, ood_per_study), labels=labels_kind(source),
                          label_agreement=agree, label_source=source, target=target, n_boot=n_boot, site=site)
    result.update(source=table.source, images=table.n_images)
    return result, Y
