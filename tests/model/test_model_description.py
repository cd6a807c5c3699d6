"""The typed description of a model (core.model.description.ModelDescription): the shipped
weights and an old-format file both round-trip, key for key, without training anything."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from core.data.labels import FINDINGS, HEADS, TEXT_MODES
from core.model.description import ModelDescription, Preprocessing, describe, read_description, read_metadata

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def test_the_shipped_weights_round_trip_key_for_key():
    md = read_metadata(WEIGHTS)
    desc = read_description(WEIGHTS)
    assert desc.to_metadata() == md  # the content digest covers exactly this JSON
    assert json.loads(json.dumps(desc.to_metadata(), sort_keys=True)) == md
    assert desc.findings == tuple(md["labels"]) and desc.heads == tuple(md["heads"])
    assert desc.preprocessing == Preprocessing(image_size=md["preprocessing"]["image_size"],
                                               mean=md["preprocessing"]["mean"], std=md["preprocessing"]["std"])
    assert desc.thresholds_for("none", "image") == md["thresholds"]["none"]["image"]
    assert desc.split_uids("test") == md["split"]["test"]
    assert desc.image_reliable == md["evidence"]["image_reliable"]
    assert desc.extra == {"aux_vocab": md["aux_vocab"]}  # every other key has a typed field


def _old_format(md: dict) -> dict:
    """Weights from before heads, text modes, evidence, report QA and the digest existed."""
    old = copy.deepcopy(md)
    for key in ("heads", "text_modes", "evidence", "discordance", "content_sha256", "refits", "trained_on",
                "image_encoder_datasets"):
        old.pop(key, None)
    old["legacy_key"] = {"kept": True}  # a key this code does not know is carried, not dropped
    return old


def test_an_old_format_file_round_trips_and_reads_with_the_codes_defaults():
    old = _old_format(read_metadata(WEIGHTS))
    desc = ModelDescription.from_metadata(old)
    assert desc.heads == HEADS and desc.text_modes == TEXT_MODES and desc.findings == FINDINGS
    assert desc.evidence is None and desc.discordance is None and desc.split is not None
    assert desc.image_reliable == {f: False for f in FINDINGS}  # no evidence: nothing is claimed
    assert desc.extra["legacy_key"] == {"kept": True}
    again = desc.to_metadata()
    # what the file had comes back unchanged; only the facts it lacked are written out
    assert {k: v for k, v in again.items() if k not in ("heads", "text_modes")} == old
    assert ModelDescription.from_metadata(again) == desc


def test_a_sixth_finding_is_the_descriptions_not_the_codes():
    md = read_metadata(WEIGHTS)
    md["labels"] = [*md["labels"], "Effusion"]
    desc = describe(md)
    assert desc.findings[-1] == "Effusion" and len(desc.findings) == 6
    assert describe(desc) is desc


def test_updated_refuses_a_field_it_does_not_have():
    desc = read_description(WEIGHTS)
    assert desc.updated(version="x").version == "x" and desc.version != "x"
    with pytest.raises(TypeError, match="no field"):
        desc.updated(thresholdz={})


def test_the_blocks_are_typed_and_their_lookups_read_the_stored_values():
    from core.model.description_blocks import DiscordancePoints, Evidence, OperatingPoints
    from core.model.recalibration_maps import NotCalibrated, PlattMap, Recalibration
    if not (WEIGHTS / "model.safetensors").is_file():
        pytest.skip("no shipped weights in weights/")
    meta = read_metadata(WEIGHTS)
    desc = ModelDescription.from_metadata(meta)
    assert isinstance(desc.evidence, Evidence) and isinstance(desc.operating_points, OperatingPoints)
    assert isinstance(desc.discordance, DiscordancePoints) and isinstance(desc.recalibration, Recalibration)
    raw = meta["operating_points"]["points"]["none"]["Edema"]["specificity 0.90"]
    assert desc.operating_points.point("none", "Edema", "specificity 0.90") == raw
    assert desc.evidence.entry("none", "image", "Edema") == meta["evidence"]["table"]["none"]["image"]["Edema"]
    assert isinstance(desc.recalibration.entry("none", "image", "Edema"), PlattMap)
    pneumonia = desc.recalibration.entry("none", "image", "Pneumonia")
    assert isinstance(pneumonia, NotCalibrated) and "positives" in pneumonia.reason
    assert desc.discordance.points == meta["discordance"]["points"]
    # a description built by hand from the JSON dicts reads the same types
    again = ModelDescription(evidence=meta["evidence"], recalibration=meta["recalibration"])
    assert again.evidence == desc.evidence and again.recalibration.maps == desc.recalibration.maps


def test_refitted_bumps_the_version_once_and_records_the_refit():
    desc = ModelDescription(version="20261128-x+refit20261129+recal20261204", refits=[{"at": "then"}])
    new = desc.refitted("recal", script="scripts/recalibrate.py", what="maps", when="now")
    assert new.version.startswith("20261128-x+refit20261129+recal") and new.version.count("+recal") == 1
    assert new.refits == [{"at": "then"}, {"at": "now", "script": "scripts/recalibrate.py", "what": "maps"}]
    # strip="": the version before any suffix (scripts/refit_operating_points.py)
    assert desc.refitted("refit", strip="", script="s", what="w").version.startswith("20261128-x+refit")
    assert desc.refitted("refit", strip="", script="s", what="w").version.count("+") == 1
    with pytest.raises(TypeError):
        desc.refitted("x", script="s", what="w", no_such_field=1)
