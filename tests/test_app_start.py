"""The app starts without weights, and every page says how to train them instead of crashing."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui.config import TRAIN_COMMAND

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["pages/predict.py", "pages/batch_review.py", "pages/model_card.py", "pages/training_monitor.py"]


def _codes(at) -> list[str]:
    return [c.value for c in at.code]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_without_weights_says_how_to_train(app_env, page):
    at = AppTest.from_file(APP, default_timeout=30).run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    assert not at.exception
    assert not at.error
    assert TRAIN_COMMAND in _codes(at)
    assert any("No trained model" in i.value for i in at.info)


def test_sidebar_reports_no_model_and_local_only(app_env):
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert any("No model loaded" in w.value for w in at.sidebar.warning)
    assert any("Local only" in c.value for c in at.sidebar.caption)


def test_sidebar_shows_loaded_model(app_env, tiny_weights, monkeypatch):
    monkeypatch.setenv("CXR_WEIGHTS", str(tiny_weights))
    at = AppTest.from_file(APP, default_timeout=30).run()
    text = " ".join(m.value for m in at.sidebar.markdown)
    assert "Version" in text and "densenet121" in text
    assert not at.sidebar.warning
