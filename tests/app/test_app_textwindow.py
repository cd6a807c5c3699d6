"""Long text: the IMPRESSION is read whole, the cut is said, nothing is dropped silently."""
import pytest

from core.data.text_window import fit_text


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from core.model.fusion import OFFLINE_TEXT_BACKBONE, resolve_text_backbone
    return AutoTokenizer.from_pretrained(resolve_text_backbone(OFFLINE_TEXT_BACKBONE))


def _n(tok, text):
    return len(tok(text)["input_ids"])


def test_short_text_is_read_as_is(tokenizer):
    w = fit_text("Heart size is normal. No effusion.", tokenizer, max_len=160)
    assert w.read == "Heart size is normal. No effusion." and not w.truncated and w.note == ""


def test_long_findings_keep_the_impression_whole(tokenizer):
    findings = "FINDINGS: " + "The lungs are clear without focal airspace disease. " * 400
    text = findings + "IMPRESSION: Cardiomegaly with pulmonary edema."
    w = fit_text(text, tokenizer, max_len=160)
    assert w.read.endswith("IMPRESSION: Cardiomegaly with pulmonary edema.")
    assert w.read.startswith("FINDINGS: The lungs are clear")
    assert _n(tokenizer, w.read) <= 160 and w.impression_first and w.truncated
    assert "IMPRESSION was read whole" in w.note and "\n" not in w.note
    (a, b), = w.skipped
    assert text[:a] in w.read and b == text.index("IMPRESSION")


def test_long_text_without_headings_keeps_the_beginning_and_says_so(tokenizer):
    text = "word " * 20_000
    w = fit_text(text, tokenizer, max_len=160)
    assert text.startswith(w.read) and _n(tokenizer, w.read) == 160
    assert w.skipped[0][1] == len(text) and "Not read" in w.note


def test_the_note_names_the_encoders_limit_and_the_count_read_is_the_originals(tokenizer):
    """The note says the limit the encoder has (158 pieces of text in a 160 window), not how
    many this text used; joining two parts with a space does not count as a character read."""
    findings = "FINDINGS: " + "The lungs are clear without focal airspace disease. " * 400
    text = findings + "IMPRESSION: Cardiomegaly with pulmonary edema."
    w = fit_text(text, tokenizer, max_len=160)
    assert "at most 158 word pieces of text" in w.note
    (a, b), = w.skipped
    assert w.chars_read == len(text) - (b - a) == len(w.read) - 1  # the join's space is not the text's
