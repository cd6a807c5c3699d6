"""The result as a DICOM Comprehensive SR (TID 1500 Imaging Measurement Report, built with highdicom),
laid out as IHE AI Results (AIR) reads it, and safe to read without the app.

    decisions = sr_decisions(prediction, description)      # the one policy (core.serving.decision)
    ds = build_sr(source, prediction, decisions)           # a pydicom Dataset, ready for STOW-RS
    sr_file(dicom_bytes, prediction, description)          # the Predict page's download: the same SR, as a file
    read_sr(ds)                                            # what an SR of ours says, read back

What it says (``sr_content``: the SR is built from that dict and nothing else):

- per **assessed** finding, one measurement group (TID 1501): the finding (SNOMED CT); its presence,
  Present / Absent, which is the decision (flagged / not flagged) at the named operating point; the
  operating point described: its name, what a flag there means in words (core.serving.decision's
  sentence), and as numbers its sensitivity and specificity with their 95% CIs and the PPV at the
  collection's prevalence, where measured; the calibrated probability to 3 decimals, only where the
  number is calibrated (``Probability calibrated`` No otherwise, and no number); the evidence: the
  held-out (cross-validated) AUC with its CI and positives, and where it was measured; the algorithm
  (TID 4019) and the scored image;
- per finding **not assessed** (not supported from the image in this mode, no operating point), one
  TEXT item in the report's Qualitative Evaluations: the finding, "Not assessed: <why>", no number;
- an **out-of-distribution** image: no finding at all; one item "Not assessed: out-of-distribution
  image (<the guard's reason>)";
- once per report: the text mode read, the operating point, the out-of-distribution verdict.

No head's raw number, no threshold: nothing the app does not show. Nothing here decides a flag.

Identity: one SOP Instance UID, one content. The instance UID is derived from the study and a digest
of the content, which names the model version *as served* ("+int8" when the int8 image encoder ran:
its numbers differ from fp32's in the third decimal) and the operating point; the series UID from
(study, served version). So the same file scored by the same model at the same precision and point
gives the same instance (the Predict page's download and the PACS command alike; storing it again
adds nothing), and anything else gives another instance, never another content under the same UID.

Codes: SNOMED CT for the findings, present/absent and yes/no; DCM for the template's own concepts;
UMLS C0034375 for the report's Qualitative Evaluations container (TID 1500 row 10); the tool's own
concepts in the private scheme ``99CXRAI``, declared in the Coding Scheme Identification Sequence.
"""
from __future__ import annotations

import hashlib
import json

from core.errors import CxrError

ALGORITHM_NAME = "cxr-findings late-fusion"
MANUFACTURER = "cxr-findings (open-source research tool; not a medical device)"
SERIES_DESCRIPTION = "AI findings (research, not for diagnosis)"
SERIES_NUMBER = 9901
SCHEME = "99CXRAI"
INT8_SUFFIX = "+int8"
CONTENT_VERSION = 2      # the layout of sr_content (part of the digest: a new layout is a new instance)

PRESENT, ABSENT = ("52101004", "SCT", "Present"), ("2667000", "SCT", "Absent")
YES, NO = ("373066001", "SCT", "Yes"), ("373067005", "SCT", "No")
QUALITATIVE_EVALUATIONS = ("C0034375", "UMLS", "Qualitative Evaluations")
PRIVATE = {  # our concepts in 99CXRAI (value <= 16 characters, meaning <= 64)
    "probability": ("P-CALIBRATED", "Probability (calibrated)"),
    "calibrated": ("CALIBRATED", "Probability calibrated"),
    "op": ("OP-NAME", "Operating point"),
    "op_meaning": ("OP-MEANING", "What a flag at this operating point means"),
    "sensitivity": ("OP-SENS", "Sensitivity at the operating point"),
    "sensitivity_lo": ("OP-SENS-CI-LOW", "Sensitivity, 95% CI lower bound"),
    "sensitivity_hi": ("OP-SENS-CI-HIGH", "Sensitivity, 95% CI upper bound"),
    "specificity": ("OP-SPEC", "Specificity at the operating point"),
    "specificity_lo": ("OP-SPEC-CI-LOW", "Specificity, 95% CI lower bound"),
    "specificity_hi": ("OP-SPEC-CI-HIGH", "Specificity, 95% CI upper bound"),
    "ppv": ("OP-PPV", "Positive predictive value at the prevalence"),
    "prevalence": ("OP-PREVALENCE", "Prevalence the PPV is stated at"),
    "auc": ("EV-AUC", "Held-out AUC (evidence)"),
    "auc_lo": ("EV-AUC-CI-LOW", "Held-out AUC, 95% CI lower bound"),
    "auc_hi": ("EV-AUC-CI-HIGH", "Held-out AUC, 95% CI upper bound"),
    "positives": ("EV-POSITIVES", "Held-out positives"),
    "evidence": ("EVIDENCE", "Evidence (held-out AUC)"),
    "mode": ("TEXT-MODE", "Text mode"),
    "ood": ("OOD", "Out of distribution"),
    "assessment": ("ASSESSMENT", "Assessment"),
    "report": ("MODE-REPORT", "Report (findings and impression)"),
    "indication": ("MODE-INDICATION", "Indication"),
    "none": ("MODE-NONE", "No text (image only)"),
}
NUMBER_KEYS = ("probability", "sensitivity", "sensitivity_lo", "sensitivity_hi", "specificity", "specificity_lo",
               "specificity_hi", "ppv", "prevalence", "auc", "auc_lo", "auc_hi", "positives")
ALGORITHM_NAME_CODE = ("111001", "DCM")
ALGORITHM_VERSION = ("111003", "DCM")
DEVICE_NAME = ("121013", "DCM")
DEVICE_MODEL = ("121015", "DCM")
MEASUREMENT_GROUP, IMAGING_MEASUREMENTS, FINDING = "125007", "126010", "121071"


def base_version(model: str) -> str:
    """The weights' version of a prediction's ``model``: the "+int8" serving suffix stripped."""
    model = str(model)
    return model[: -len(INT8_SUFFIX)] if model.endswith(INT8_SUFFIX) else model


def derived_uid(*parts: str) -> str:
    """A UID that is always the same for the same parts: '2.25.' and 128 bits of their SHA-256
    (pydicom's generate_uid ignores its entropy sources without an org root)."""
    digest = hashlib.sha256("\x1f".join(("cxr-findings", *parts)).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


# -------------------------------------------------------------------- what the SR says

def sr_decisions(prediction, description):
    """The decisions the SR states: the one policy (core.serving.decision) at the operating point the
    prediction was decided at. ``description``: the weights' (``Predictor.description``)."""
    from core.serving.decision import decide
    decisions = decide(prediction, description, getattr(prediction, "operating_point_name", "") or None)
    shown = getattr(prediction, "decision", None)
    if shown and shown != decisions.status():   # never an SR that says other than what the user was shown
        raise SrError("the prediction's decisions do not match these weights' (another model's prediction?)")
    return decisions


def _r3(x):
    return None if x is None or x != x else round(float(x), 3)


def _evidence(entry: dict | None) -> dict | None:
    e = entry or {}
    if e.get("auc") is None or e.get("auc") != e.get("auc"):
        return None
    ci = e.get("ci") or [None, None]
    return {"auc": _r3(e["auc"]), "auc_lo": _r3(ci[0]), "auc_hi": _r3(ci[1]),
            "positives": None if e.get("positives") is None else int(e["positives"]),
            "source": str(e.get("source") or "")}


def evidence_words(ev: dict | None) -> str:
    """'cross-validation, 3 folds, out-of-fold: AUC 0.844 [0.790, 0.888] on 65 positives'."""
    if not ev:
        return "no held-out evidence"
    ci = f" [{ev['auc_lo']:.3f}, {ev['auc_hi']:.3f}]" if ev.get("auc_lo") is not None else ""
    pos = f" on {ev['positives']} positives" if ev.get("positives") is not None else ""
    return f"{ev['source'] or 'held out'}: AUC {ev['auc']:.3f}{ci}{pos}"


def sr_content(source, prediction, decisions) -> dict:
    """Everything the SR says, as plain values (the SR is built from this, and its instance UID is a digest
    of it). ``source``: the scored image's header; ``decisions``: ``sr_decisions(prediction, ...)``."""
    from core.serving.decision import operating_point_words
    ood = bool(decisions.out_of_distribution)
    content = {"layout": CONTENT_VERSION, "study_uid": str(source.StudyInstanceUID),
               "source_sop_instance_uid": str(source.SOPInstanceUID), "algorithm": ALGORITHM_NAME,
               "version": str(prediction.model), "text_mode": str(prediction.text_mode), "out_of_distribution": ood,
               "operating_point": None if ood else decisions.operating_point, "assessment": None, "findings": []}
    if ood:
        reason = str(getattr(prediction, "ood_reason", "") or "").rstrip(".")
        content["assessment"] = ("Not assessed: out-of-distribution image" + (f": {reason}" if reason else "")
                                 + ". No finding is reported for this study.")
        return content
    evidence = getattr(prediction, "evidence", {}) or {}
    for d in decisions:
        if not d.assessed:
            content["findings"].append({"finding": d.finding, "status": d.status, "reason": d.reason})
            continue
        op = d.operating_point or {}
        sens_ci, spec_ci = op.get("sensitivity_ci") or [None, None], op.get("specificity_ci") or [None, None]
        content["findings"].append({
            "finding": d.finding, "status": d.status, "probability": d.probability,
            "calibrated": d.probability is not None,
            "operating_point": {"name": op.get("name"), "sensitivity": _r3(op.get("sensitivity")),
                                "sensitivity_lo": _r3(sens_ci[0]), "sensitivity_hi": _r3(sens_ci[1]),
                                "specificity": _r3(op.get("specificity")), "specificity_lo": _r3(spec_ci[0]),
                                "specificity_hi": _r3(spec_ci[1]), "ppv": _r3(op.get("ppv")),
                                "prevalence": _r3(op.get("prevalence")) if op.get("ppv") is not None else None,
                                "source": op.get("source")},
            "meaning": operating_point_words(op, d.finding),
            "evidence": _evidence(evidence.get(d.finding))})
    return content


def content_digest(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sr_uids(content: dict) -> tuple[str, str]:
    """(series UID, SOP Instance UID) of the SR that says ``content``: the series from (study, model
    version as served), the instance from (study, the content's digest). One UID, one content."""
    study = content["study_uid"]
    return (derived_uid("cxr-findings-sr-series", study, content["version"]),
            derived_uid("cxr-findings-sr", study, content_digest(content)))


# -------------------------------------------------------------------- building it

def _code(value: str, scheme: str, meaning: str):
    from highdicom.sr import CodedConcept
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _private(key: str):
    value, meaning = PRIVATE[key]
    return _code(value, SCHEME, meaning)


def _finding_code(finding: str):
    """The finding's SNOMED CT concept (core.data.findings); a finding without one: our own scheme."""
    from core.data.findings import record
    r = record(finding)
    if r.snomed is None:
        return _code(("F-" + "".join(c for c in finding.upper() if c.isalnum()))[:16], SCHEME, finding[:64])
    return _code(r.snomed, "SCT", r.display)


def _text(key_or_code, value: str):
    from highdicom.sr import RelationshipTypeValues, TextContentItem
    name = _private(key_or_code) if isinstance(key_or_code, str) else key_or_code
    return TextContentItem(name=name, value=value, relationship_type=RelationshipTypeValues.CONTAINS)


def _coded(key: str, value):
    from highdicom.sr import CodeContentItem, RelationshipTypeValues
    return CodeContentItem(name=_private(key), value=_code(*value) if isinstance(value, tuple) else value,
                           relationship_type=RelationshipTypeValues.CONTAINS)


def header_only(source):
    """A copy of the source dataset without its pixels (what the SR needs of it)."""
    import copy
    ds = copy.copy(source)
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            del ds[keyword]
    return ds


def _group(item: dict, algorithm, src_ref, sop_uid: str):
    """One assessed finding's measurement group (TID 1501), in the order a reader reads it: the finding and
    the algorithm; its presence and the operating point it is decided at, in words; the probability; the
    operating point's numbers; the evidence; the scored image."""
    from highdicom.sr import (
        ContentSequence,
        Measurement,
        MeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        TrackingIdentifier,
    )
    finding, op, ev = item["finding"], item["operating_point"], item["evidence"] or {}
    unit, count = _code("1", "UCUM", "no units"), _code("{count}", "UCUM", "count")
    values = {"probability": item["probability"], **{k: op.get(k) for k in NUMBER_KEYS if k in op},
              **{k: ev.get(k) for k in ("auc", "auc_lo", "auc_hi", "positives")}}
    measurements = [Measurement(name=_private(k), value=values[k], unit=count if k == "positives" else unit)
                    for k in NUMBER_KEYS if values.get(k) is not None]
    present = PRESENT if item["status"] == "flagged" else ABSENT
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=derived_uid(sop_uid, finding), identifier=finding[:64]),
        finding_type=_finding_code(finding), algorithm_id=algorithm, measurements=measurements,
        qualitative_evaluations=[QualitativeEvaluation(name=_finding_code(finding), value=_code(*present))],
        source_images=[src_ref])
    made = list(group[0].ContentSequence)
    nums = {str(i.ConceptNameCodeSequence[0].CodeValue): i for i in made if i.ValueType == "NUM"}
    images = [i for i in made if i.ValueType == "IMAGE"]
    presence = [i for i in made if i.ValueType == "CODE" and i.RelationshipType == "CONTAINS"
                and str(i.ConceptNameCodeSequence[0].CodeValue) != FINDING]
    head = [i for i in made if i not in nums.values() and i not in images and i not in presence]

    if PRIVATE["positives"][0] in nums:      # a count, written as one ("65", not "65.0")
        nums[PRIVATE["positives"][0]].MeasuredValueSequence[0].NumericValue = str(int(values["positives"]))

    def numbers(*keys):
        return [nums[PRIVATE[k][0]] for k in keys if PRIVATE[k][0] in nums]
    ordered = [*head, *presence, _text("op", op["name"]), _text("op_meaning", item["meaning"]),
               *numbers("probability"), _coded("calibrated", YES if item["calibrated"] else NO),
               *numbers(*NUMBER_KEYS[1:9]), _text("evidence", evidence_words(item["evidence"])),
               *numbers("auc", "auc_lo", "auc_hi", "positives"), *images]
    group[0].ContentSequence = ContentSequence(ordered, is_root=False)
    return group


def _report(context, procedure, groups, source, evaluations):
    """TID 1500: the measurement groups (when any) and the report's Qualitative Evaluations container."""
    from highdicom.sr import (
        ContainerContentItem,
        ContentSequence,
        MeasurementReport,
        MeasurementsAndQualitativeEvaluations,
        RelationshipTypeValues,
        TrackingIdentifier,
    )
    placeholder = not groups   # highdicom wants one group; an out-of-distribution study has none: removed below
    if placeholder:
        groups = [MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=derived_uid("placeholder"), identifier="none"))]
    try:  # the image library needs the projection descriptors (ImagerPixelSpacing...) some files lack
        report = MeasurementReport(observation_context=context, procedure_reported=procedure,
                                   imaging_measurements=groups, referenced_images=[source])
    except (AttributeError, ValueError, TypeError, IndexError, KeyError):  # every group still references the image
        report = MeasurementReport(observation_context=context, procedure_reported=procedure,
                                   imaging_measurements=groups)
    root = report[0].ContentSequence
    if placeholder:
        for i in reversed(range(len(root))):
            if str(root[i].ConceptNameCodeSequence[0].CodeValue) == IMAGING_MEASUREMENTS:
                del root[i]
    container = ContainerContentItem(name=_code(*QUALITATIVE_EVALUATIONS),
                                     relationship_type=RelationshipTypeValues.CONTAINS)
    container.ContentSequence = ContentSequence(evaluations, is_root=False)
    root.append(container)
    return report


def build_sr(source, prediction, decisions, *, series_number: int = SERIES_NUMBER):
    """The Comprehensive SR of ``prediction`` (core.serving.prediction.Prediction) and its ``decisions``
    (``sr_decisions``), made on ``source`` (the scored image's pydicom Dataset; its pixels are not needed)."""
    import highdicom as hd
    from highdicom.sr import (
        AlgorithmIdentification,
        ComprehensiveSR,
        DeviceObserverIdentifyingAttributes,
        ObservationContext,
        ObserverContext,
        SourceImageForMeasurementGroup,
    )
    from pydicom.sr.codedict import codes

    source = header_only(source)
    content = sr_content(source, prediction, decisions)
    series_uid, sop_uid = sr_uids(content)
    version = content["version"]              # as served: "+int8" when the int8 image encoder ran
    algorithm = AlgorithmIdentification(name=ALGORITHM_NAME, version=version)
    device = DeviceObserverIdentifyingAttributes(
        uid=derived_uid("cxr-findings-device", version), name=ALGORITHM_NAME[:64],
        manufacturer_name="cxr-findings", model_name=version)
    context = ObservationContext(observer_device_context=ObserverContext(observer_type=codes.DCM.Device,
                                                                          observer_identifying_attributes=device))
    src_ref = SourceImageForMeasurementGroup.from_source_image(source)
    mode = content["text_mode"] if content["text_mode"] in ("report", "indication", "none") else "none"
    evaluations = [_coded("mode", _private(mode)), _coded("ood", YES if content["out_of_distribution"] else NO)]
    if content["assessment"]:
        evaluations.append(_text("assessment", content["assessment"]))
    else:
        evaluations.insert(1, _text("op", content["operating_point"]))
    groups = []
    for item in content["findings"]:
        if item["status"] == "not assessed":   # one item, no number
            evaluations.append(_text(_finding_code(item["finding"]), f"Not assessed: {item['reason']}"))
        else:
            groups.append(_group(item, algorithm, src_ref, sop_uid))
    procedure = _code("399208008", "SCT", "Plain chest X-ray")
    report = _report(context, procedure, groups, source, evaluations)
    scheme = hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=SCHEME, name="cxr-findings private concepts", version=str(CONTENT_VERSION),
        responsible_organization="cxr-findings")
    return ComprehensiveSR(
        evidence=[source], content=report, series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER[:64], is_complete=True,
        coding_schemes=[scheme], series_description=SERIES_DESCRIPTION,
        software_versions=[version[i:i + 64] for i in range(0, len(version), 64)],
        manufacturer_model_name=ALGORITHM_NAME[:64])


class SrError(CxrError, ValueError):
    """An SR cannot be made for this input (not a DICOM image with its study's modules)."""


def sr_file(dicom_bytes: bytes, prediction, description) -> bytes:
    """The SR of a prediction made on an uploaded DICOM image, as a DICOM file (the Predict page's
    download): the same ``build_sr`` as the PACS command, so the same file, model version, precision and
    operating point give the same instance. ``description``: the weights' (``Predictor.description``).
    The SR goes into the upload's study; a PNG or JPEG upload has no study to go into."""
    import io

    import pydicom
    try:
        source = pydicom.dcmread(io.BytesIO(dicom_bytes), stop_before_pixels=True, force=True)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            if not str(source.get(keyword) or ""):
                raise SrError("the DICOM file lacks its study, series or instance UID; an SR cannot reference it")
        ds = build_sr(source, prediction, sr_decisions(prediction, description))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    except SrError:
        raise
    except Exception:  # noqa: BLE001 — a header highdicom cannot use: one sentence, no DICOM value echoed
        raise SrError("an SR cannot be made from this DICOM file's header (missing or malformed patient or "
                      "study attributes)") from None


# -------------------------------------------------------------------- reading an SR back

def _walk_dataset(ds, out: list[tuple[tuple[str, str], str]]) -> None:
    for item in ds.get("ContentSequence", []) or []:
        names = item.get("ConceptNameCodeSequence") or []
        if names and "TextValue" in item:
            out.append(((str(names[0].CodeValue), str(names[0].CodingSchemeDesignator)), str(item.TextValue)))
        _walk_dataset(item, out)


def _texts(sr) -> list[tuple[tuple[str, str], str]]:
    texts: list[tuple[tuple[str, str], str]] = []
    _walk_dataset(sr, texts)
    return texts


def algorithm_versions(sr) -> set[str]:
    """The versions of *our* algorithm an SR records, as served ("+int8" when the int8 image encoder ran):
    a pydicom Dataset (WADO-RS metadata, or the file). From TID 4019 and the device observer (an
    out-of-distribution study's SR has no measurement group)."""
    texts = _texts(sr)
    if not any(code in (ALGORITHM_NAME_CODE, DEVICE_NAME) and value == ALGORITHM_NAME for code, value in texts):
        return set()
    return {value for code, value in texts if code in (ALGORITHM_VERSION, DEVICE_MODEL)}


def operating_point_names(sr) -> set[str]:
    """The operating points an SR of ours names (none for an out-of-distribution study's)."""
    return {value for code, value in _texts(sr) if code == (PRIVATE["op"][0], SCHEME)}


def is_ours_for(sr, version: str, points=None) -> bool:
    """Whether ``sr`` is ours for these weights (whichever precision served them) and, when ``points`` is
    given, at one of those operating points (an SR that names none, an out-of-distribution study's,
    holds for any)."""
    if base_version(version) not in {base_version(v) for v in algorithm_versions(sr)}:
        return False
    named = operating_point_names(sr)
    return points is None or not named or bool(named & set(points))


def read_sr(ds) -> dict:
    """What one of our SRs (a pydicom Dataset) says: ``{version, text_mode, operating_point,
    out_of_distribution, assessment, findings}``; ``findings``: finding -> ``{status, ...}``: an assessed
    finding's ``present``, ``operating_point``, ``meaning``, ``calibrated``, ``evidence`` and its numbers
    (``probability`` only where calibrated, ``sensitivity``, ``auc``...); a finding not assessed:
    ``{status: "not assessed", reason}``."""
    by_code = {v[0]: k for k, v in PRIVATE.items()}
    from core.data.findings import RECORDS
    names = {r.snomed: r.name for r in RECORDS if r.snomed}
    out = {"version": None, "text_mode": None, "operating_point": None, "out_of_distribution": None,
           "assessment": None, "findings": {}}
    versions = algorithm_versions(ds)
    out["version"] = next(iter(versions)) if len(versions) == 1 else (sorted(versions) or None)

    def concept(item):
        c = (item.get("ConceptNameCodeSequence") or [None])[0]
        return (str(c.CodeValue), str(c.CodingSchemeDesignator)) if c is not None else ("", "")

    def code_value(item):
        return str(item.ConceptCodeSequence[0].CodeValue)

    def finding_of(code: tuple[str, str], item) -> str:
        return names.get(code[0]) or str(item.ConceptNameCodeSequence[0].CodeMeaning)

    for top in ds.get("ContentSequence", []) or []:
        code = concept(top)
        if code == QUALITATIVE_EVALUATIONS[:2]:
            for item in top.get("ContentSequence", []) or []:
                c = concept(item)
                key = by_code.get(c[0]) if c[1] == SCHEME else None
                if key == "mode":
                    modes = {PRIVATE[m][0]: m for m in ("report", "indication", "none")}
                    out["text_mode"] = modes.get(code_value(item))
                elif key == "ood":
                    out["out_of_distribution"] = code_value(item) == YES[0]
                elif key == "op":
                    out["operating_point"] = str(item.TextValue)
                elif key == "assessment":
                    out["assessment"] = str(item.TextValue)
                elif item.ValueType == "TEXT":
                    text = str(item.TextValue)
                    out["findings"][finding_of(c, item)] = {"status": "not assessed",
                                                            "reason": text.removeprefix("Not assessed: ")}
        elif code[0] == IMAGING_MEASUREMENTS:
            for group in top.get("ContentSequence", []) or []:
                if concept(group)[0] != MEASUREMENT_GROUP:
                    continue
                finding, values = None, {"calibrated": None}
                for item in group.get("ContentSequence", []) or []:
                    c = concept(item)
                    key = by_code.get(c[0]) if c[1] == SCHEME else None
                    if c[0] == FINDING and "ConceptCodeSequence" in item:
                        v = item.ConceptCodeSequence[0]
                        finding = names.get(str(v.CodeValue), str(v.CodeMeaning))
                    elif item.ValueType == "NUM" and key:
                        number = float(item.MeasuredValueSequence[0].NumericValue)
                        values[key] = int(number) if key == "positives" else number
                    elif item.ValueType == "CODE" and (c[0] in names or c[1] == SCHEME and key is None):
                        values["present"] = code_value(item) == PRESENT[0]
                    elif item.ValueType == "CODE" and key == "calibrated":
                        values["calibrated"] = code_value(item) == YES[0]
                    elif item.ValueType == "TEXT" and key in ("op", "op_meaning", "evidence"):
                        values[{"op": "operating_point", "op_meaning": "meaning"}.get(key, key)] = str(item.TextValue)
                if finding is not None:
                    values["status"] = "flagged" if values.get("present") else "not flagged"
                    out["findings"][finding] = values
    return out
