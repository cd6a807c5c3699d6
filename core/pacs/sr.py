"""The result as a DICOM Comprehensive SR (TID 1500 Measurement Report, built with highdicom).

    ds = build_sr(source, prediction, version="20261128-...")   # a pydicom Dataset, ready for STOW-RS
    algorithm_versions(sr_json_or_dataset)                       # {versions of our algorithm it holds}

Per finding, one measurement group (TID 1501) holding: the finding (SNOMED CT) as a qualitative
evaluation, present or absent at the model's threshold; the fused probability, each head's
probability and the threshold (numeric, unit 1); whether the image can support the finding (the
held-out evidence) and its held-out AUC; whether the probability is calibrated (a finding with too
few validation positives keeps the model's own number: core.evaluation.recalibration); the text mode
read; the out-of-distribution verdict; the
algorithm (TID 4019: name and the weights' version). Every group references the scored image's
SOP Instance UID; the SR copies the source's patient and study modules, so the PACS files it in
the source study. Its Series and SOP Instance UIDs are derived from (study, version): storing it
again (after a crash) stores the same instance, never a second one.

Codes: SNOMED CT for the findings, present/absent and yes/no; DCM for the template's own concepts;
the tool's own concepts (probability, threshold, text mode...) in the private scheme ``99CXRAI``,
declared in the Coding Scheme Identification Sequence.
"""
from __future__ import annotations

import hashlib

from core.errors import CxrError

ALGORITHM_NAME = "cxr-findings late-fusion"
MANUFACTURER = "cxr-findings (open-source research tool; not a medical device)"
SERIES_DESCRIPTION = "AI findings (research, not for diagnosis)"
SERIES_NUMBER = 9901
SCHEME = "99CXRAI"
INT8_SUFFIX = "+int8"

# finding -> SNOMED CT concept
FINDING_CODES = {
    "Pneumonia": ("233604007", "Pneumonia"),
    "Edema": ("19242006", "Pulmonary edema"),
    "Cardiomegaly": ("8186001", "Cardiomegaly"),
    "Atelectasis": ("46621007", "Atelectasis"),
    "Consolidation": ("95436008", "Lung consolidation"),
}
PRESENT, ABSENT = ("52101004", "SCT", "Present"), ("2667000", "SCT", "Absent")
YES, NO = ("373066001", "SCT", "Yes"), ("373067005", "SCT", "No")
PRIVATE = {  # our concepts in 99CXRAI
    "fused": ("P-FUSED", "Probability (fused image and text)"),
    "image": ("P-IMAGE", "Probability (image head)"),
    "text": ("P-TEXT", "Probability (text head)"),
    "threshold": ("THRESHOLD", "Decision threshold"),
    "supports": ("IMG-SUPPORT", "Image can support finding"),
    "calibrated": ("CALIBRATED", "Probability calibrated"),
    "auc": ("HELDOUT-AUC", "Held-out AUC"),
    "mode": ("TEXT-MODE", "Text mode"),
    "ood": ("OOD", "Out of distribution"),
    "report": ("MODE-REPORT", "Report (findings and impression)"),
    "indication": ("MODE-INDICATION", "Indication"),
    "none": ("MODE-NONE", "No text (image only)"),
}
ALGORITHM_VERSION = ("111003", "DCM")
ALGORITHM_NAME_CODE = ("111001", "DCM")


def base_version(model: str) -> str:
    """The weights' version of a prediction's ``model``: the "+int8" serving suffix stripped."""
    model = str(model)
    return model[: -len(INT8_SUFFIX)] if model.endswith(INT8_SUFFIX) else model


def derived_uid(*parts: str) -> str:
    """A UID that is always the same for the same parts: '2.25.' and 128 bits of their SHA-256
    (pydicom's generate_uid ignores its entropy sources without an org root)."""
    digest = hashlib.sha256("\x1f".join(("cxr-findings", *parts)).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def sr_uids(study_uid: str, version: str) -> tuple[str, str]:
    """(series UID, SOP instance UID) of our SR for a study and model version: always the same."""
    version = base_version(version)
    return (derived_uid(*["cxr-findings-sr-series", study_uid, version]),
            derived_uid(*["cxr-findings-sr", study_uid, version]))


def _code(value: str, scheme: str, meaning: str):
    from highdicom.sr import CodedConcept
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _private(key: str):
    value, meaning = PRIVATE[key]
    return _code(value, SCHEME, meaning)


def _finding_code(finding: str):
    value, meaning = FINDING_CODES.get(finding, (None, None))
    if value is None:  # a finding a newer model added: our own scheme until it has its SNOMED code
        return _code(("F-" + "".join(c for c in finding.upper() if c.isalnum()))[:16], SCHEME, finding[:64])
    return _code(value, "SCT", meaning)


def header_only(source):
    """A copy of the source dataset without its pixels (what the SR needs of it)."""
    import copy
    ds = copy.copy(source)
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            del ds[keyword]
    return ds


def build_sr(source, prediction, *, version: str | None = None, series_number: int = SERIES_NUMBER):
    """The Comprehensive SR of ``prediction`` (core.serving.predictor.Prediction) made on ``source``
    (the scored image's pydicom Dataset; its pixels are not needed)."""
    import highdicom as hd
    from highdicom.sr import (
        AlgorithmIdentification,
        ComprehensiveSR,
        DeviceObserverIdentifyingAttributes,
        Measurement,
        MeasurementReport,
        MeasurementsAndQualitativeEvaluations,
        ObservationContext,
        ObserverContext,
        QualitativeEvaluation,
        SourceImageForMeasurementGroup,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    version = base_version(version or prediction.model)
    study_uid = str(source.StudyInstanceUID)
    series_uid, sop_uid = sr_uids(study_uid, version)
    source = header_only(source)
    # the text mode is a coded evaluation in every group (TEXT-MODE), not a free-text parameter
    algorithm = AlgorithmIdentification(name=ALGORITHM_NAME, version=version[:64])
    device = DeviceObserverIdentifyingAttributes(
        uid=derived_uid(*["cxr-findings-device", version]), name=ALGORITHM_NAME[:64],
        manufacturer_name="cxr-findings", model_name=version[:64])
    context = ObservationContext(observer_device_context=ObserverContext(observer_type=codes.DCM.Device,
                                                                          observer_identifying_attributes=device))
    unit = _code("1", "UCUM", "no units")
    src_ref = SourceImageForMeasurementGroup.from_source_image(source)
    reliable = getattr(prediction, "image_reliable", {}) or {}
    evidence = getattr(prediction, "evidence", {}) or {}
    calibrated = getattr(prediction, "calibrated", {}) or {}
    mode_code = _private(prediction.text_mode if prediction.text_mode in PRIVATE else "none")
    groups = []
    for finding, p in prediction.fusion.items():
        threshold = float(prediction.thresholds[finding])
        measurements = [Measurement(name=_private("fused"), value=float(p), unit=unit),
                        Measurement(name=_private("image"), value=float(prediction.image[finding]), unit=unit),
                        Measurement(name=_private("threshold"), value=threshold, unit=unit)]
        if prediction.has_text:
            measurements.insert(2, Measurement(name=_private("text"), value=float(prediction.text[finding]),
                                               unit=unit))
        auc = (evidence.get(finding) or {}).get("auc")
        if auc is not None and auc == auc:
            measurements.append(Measurement(name=_private("auc"), value=float(auc), unit=unit))
        evaluations = [
            QualitativeEvaluation(name=_finding_code(finding), value=_code(*(PRESENT if p >= threshold else ABSENT))),
            QualitativeEvaluation(name=_private("supports"), value=_code(*(YES if reliable.get(finding) else NO))),
            # too few validation positives to recalibrate: the number is the model's raw (temperature-scaled) one
            QualitativeEvaluation(name=_private("calibrated"),
                                  value=_code(*(YES if calibrated.get(finding, True) else NO))),
            QualitativeEvaluation(name=_private("mode"), value=mode_code),
            QualitativeEvaluation(name=_private("ood"), value=_code(*(YES if prediction.out_of_distribution else NO))),
        ]
        groups.append(MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(
                uid=derived_uid(*[sop_uid, finding]), identifier=finding[:64]),
            finding_type=_finding_code(finding), algorithm_id=algorithm, measurements=measurements,
            qualitative_evaluations=evaluations, source_images=[src_ref]))
    procedure = _code("399208008", "SCT", "Plain chest X-ray")
    try:  # the image library needs the projection descriptors (ImagerPixelSpacing...) some files lack
        report = MeasurementReport(observation_context=context, procedure_reported=procedure,
                                   imaging_measurements=groups, referenced_images=[source])
    except (AttributeError, ValueError, TypeError, IndexError, KeyError):  # every group still references the image
        report = MeasurementReport(observation_context=context, procedure_reported=procedure,
                                   imaging_measurements=groups)
    scheme = hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=SCHEME, name="cxr-findings private concepts", version="1", responsible_organization="cxr-findings")
    return ComprehensiveSR(
        evidence=[source], content=report, series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER[:64], is_complete=True,
        coding_schemes=[scheme], series_description=SERIES_DESCRIPTION, software_versions=version[:64],
        manufacturer_model_name=ALGORITHM_NAME[:64])


class SrError(CxrError, ValueError):
    """An SR cannot be made for this input (not a DICOM image with its study's modules)."""


def sr_file(dicom_bytes: bytes, prediction) -> bytes:
    """The SR of a prediction made on an uploaded DICOM image, as a DICOM file (the predict page's
    download). The SR goes into the upload's study; a PNG or JPEG upload has no study to go into."""
    import io

    import pydicom
    try:
        source = pydicom.dcmread(io.BytesIO(dicom_bytes), stop_before_pixels=True, force=True)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            if not str(source.get(keyword) or ""):
                raise SrError("the DICOM file lacks its study, series or instance UID; an SR cannot reference it")
        ds = build_sr(source, prediction)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    except SrError:
        raise
    except Exception:  # noqa: BLE001 — a header highdicom cannot use: one sentence, no DICOM value echoed
        raise SrError("an SR cannot be made from this DICOM file's header (missing or malformed patient or "
                      "study attributes)") from None


# -------------------------------------------------------------------- reading an SR back

def _walk_json(node, out: list[tuple[tuple[str, str], str]]) -> None:
    if isinstance(node, dict):
        name = node.get("0040A043")
        text = node.get("0040A160")
        if name and text:
            code = (name.get("Value") or [{}])[0]
            value = ((code.get("00080100") or {}).get("Value") or [""])[0]
            scheme = ((code.get("00080102") or {}).get("Value") or [""])[0]
            out.append(((str(value), str(scheme)), str((text.get("Value") or [""])[0])))
        for child in node.values():
            _walk_json(child, out)
    elif isinstance(node, list):
        for child in node:
            _walk_json(child, out)


def _walk_dataset(ds, out: list[tuple[tuple[str, str], str]]) -> None:
    for item in ds.get("ContentSequence", []) or []:
        names = item.get("ConceptNameCodeSequence") or []
        if names and "TextValue" in item:
            out.append(((str(names[0].CodeValue), str(names[0].CodingSchemeDesignator)), str(item.TextValue)))
        _walk_dataset(item, out)


def algorithm_versions(sr) -> set[str]:
    """The versions of *our* algorithm an SR records (DICOM JSON from WADO-RS metadata, or a pydicom Dataset)."""
    texts: list[tuple[tuple[str, str], str]] = []
    if isinstance(sr, dict):
        _walk_json(sr, texts)
    else:
        _walk_dataset(sr, texts)
    if not any(code == ALGORITHM_NAME_CODE and value == ALGORITHM_NAME for code, value in texts):
        return set()
    return {value for code, value in texts if code == ALGORITHM_VERSION}


def read_probabilities(ds) -> dict[str, dict[str, float]]:
    """finding -> {fused, image, text, threshold, present, supports, calibrated} of one of our SRs (a pydicom
    Dataset)."""
    by_code = {v[0]: k for k, v in PRIVATE.items()}
    names = {v[0]: k for k, v in FINDING_CODES.items()}
    out: dict[str, dict] = {}

    def groups(node):
        for item in node.get("ContentSequence", []) or []:
            concept = (item.get("ConceptNameCodeSequence") or [None])[0]
            if concept is not None and str(concept.CodeValue) == "125007":  # Measurement Group
                yield item
            else:
                yield from groups(item)

    for group in groups(ds):
        finding, values = None, {}
        for item in group.get("ContentSequence", []) or []:
            concept = item.ConceptNameCodeSequence[0]
            code = str(concept.CodeValue)
            if str(concept.CodeValue) == "121071" and "ConceptCodeSequence" in item:  # Finding
                value = item.ConceptCodeSequence[0]
                finding = names.get(str(value.CodeValue), str(value.CodeMeaning))
            elif item.ValueType == "NUM" and code in by_code:
                values[by_code[code]] = float(item.MeasuredValueSequence[0].NumericValue)
            elif item.ValueType == "CODE" and code in names:
                values["present"] = str(item.ConceptCodeSequence[0].CodeValue) == PRESENT[0]
            elif item.ValueType == "CODE" and code in (PRIVATE["calibrated"][0], PRIVATE["supports"][0]):
                key = "calibrated" if code == PRIVATE["calibrated"][0] else "supports"
                values[key] = str(item.ConceptCodeSequence[0].CodeValue) == YES[0]
        if finding is not None:
            out[finding] = values
    return out
