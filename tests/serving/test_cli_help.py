"""Every option of the main CLIs says what it does in --help (with its default), and --json
takes an output path in each of them."""
from __future__ import annotations

import importlib

import pytest

from scripts._cli import Parser

SCRIPTS = ("predict", "train", "cv", "evaluate", "refit_operating_points", "report_qa", "calibrate_int8", "bench")


class _Stop(Exception):
    pass


@pytest.fixture
def parser_of(monkeypatch):
    seen = {}

    def capture(self, argv=None, namespace=None):
        seen["parser"] = self
        raise _Stop

    monkeypatch.setattr(Parser, "parse_args", capture)

    def get(name: str) -> Parser:
        with pytest.raises(_Stop):
            importlib.import_module(f"scripts.{name}").parse_args([])
        return seen["parser"]
    return get


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_has_help_text(parser_of, name):
    parser = parser_of(name)
    bare = [a.option_strings[-1] for a in parser._actions if a.option_strings and not (a.help or "").strip()]
    assert not bare, f"scripts/{name}.py options without help: {bare}"
    assert "(default:" in parser.format_help()  # ArgumentDefaultsHelpFormatter shows them


def test_predict_json_prints_or_writes_a_path_like_evaluate_and_bench():
    from scripts import predict
    assert predict.parse_args(["--image", "x.png", "--json"]).json == "-"
    assert predict.parse_args(["--image", "x.png", "--json", "out.json"]).json == "out.json"
    assert predict.parse_args(["--image", "x.png"]).json is None


def test_train_and_cv_take_the_same_recipe_flags(parser_of):
    """One builder (core.training.config.add_config_arguments) makes both: same defaults, help
    and choices; cv sets out, run dir, split file and the guard itself, per fold."""
    def options(name):
        return {a.option_strings[0]: (a.default, a.help, a.choices, a.required)
                for a in parser_of(name)._actions if a.option_strings}
    train, cv = options("train"), options("cv")
    own = {"--out", "--run-dir", "--split-file", "--fit-ood"}
    assert not own & set(cv)
    from dataclasses import fields

    from core.training.config import TrainConfig
    recipe = {"--" + f.name.replace("_", "-") for f in fields(TrainConfig)} - own
    assert all(cv[k] == train[k] for k in recipe)
    assert cv["--unfreeze"][2] == ["auto", "text", "both", "none"] and "mimic-cxr" in cv["--dataset"][2]
