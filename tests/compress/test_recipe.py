"""Recipes: bundled names and files load into the same frozen data; every mistake is one InputError naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.compress import apply_recipe
from edgekit.errors import InputError
from edgekit.load import LoadedModel
from edgekit.recipe import Recipe, StageSpec, bundled_recipes


def test_bundled_prune50_is_one_prune_stage():
    r = Recipe.load("prune50")
    assert r.stages == (StageSpec("prune", {"sparsity": 0.5, "epochs": 2}),)
    assert r.to_dict()["name"] == "prune50"
    assert r.to_dict()["stages"] == [{"name": "prune", "sparsity": 0.5, "epochs": 2}]


@pytest.mark.parametrize("name", sorted(bundled_recipes()))
def test_every_bundled_recipe_loads_and_round_trips_through_toml(name, tmp_path):
    r = Recipe.load(name)
    p = tmp_path / f"{name}.toml"
    p.write_text(r.to_toml())
    again = Recipe.load(p)
    assert again.stages == r.stages
    assert again.description == r.description


def test_from_cli_maps_flags_onto_a_prune_stage():
    assert Recipe.from_cli(None, 3).stages == ()
    assert Recipe.from_cli(None, 3).name == "none"
    r = Recipe.from_cli(0.75, 3)
    assert r.stages == (StageSpec("prune", {"sparsity": 0.75, "epochs": 3}),)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, needle, hint",
    [
        ('[[stage]]\nname = "prnue"\n', "unknown compression stage 'prnue'", "'prune'"),
        ('[[stage]]\nname = "prune"\nsparsty = 0.5\n', "unknown parameter 'sparsty'", "'sparsity'"),
        ('[[stages]]\nname = "prune"\n', "unknown top-level key 'stages'", "'stage'"),
        ('[[stage]]\nsparsity = 0.5\n', "stage 1 has no name", "name"),
        ('[[stage]]\nname = "prune"\nsparsity = 1.5\n', "sparsity must be between 0 and 1", None),
        ('[[stage]]\nname = "prune"\nepochs = 0\n', "epochs must be an integer >= 1", None),
        ('[[stage]]\nname = "prune"\npattern = "4:2"\n', "pattern must be", None),
        ('[[stage]\nname = "prune"\n', "not a valid TOML recipe", None),
    ],
)
def test_bad_recipe_file_is_one_input_error_naming_the_file(tmp_path, text, needle, hint):
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        Recipe.load(p)
    line = exc.value.one_line()
    assert str(p) in line and needle in line and "\n" not in line
    if hint:
        assert hint in line


def test_unknown_bundled_name_suggests_the_closest():
    with pytest.raises(InputError) as exc:
        Recipe.load("prune5")
    assert "no such recipe" in str(exc.value) and "'prune50'" in str(exc.value)


def test_missing_recipe_file():
    with pytest.raises(InputError, match="recipe file not found"):
        Recipe.load("/nonexistent/recipe.toml")


def test_recipe_on_a_tflite_model_is_refused(tmp_path):
    lm = LoadedModel("tflite", tmp_path / "m.tflite", tflite=b"")
    with pytest.raises(InputError, match="compression needs a Keras model"):
        apply_recipe(lm, Recipe.load("prune50"), train=None)


def test_prune_without_labels_is_refused_before_training(digits_dir):
    from edgekit.data import Dataset, load_data
    from edgekit.load import load_model

    lm = load_model(digits_dir / "model.keras")
    with pytest.raises(InputError, match=r"needs --train data with labels \(y\)"):
        apply_recipe(lm, Recipe.load("prune50"), train=None)
    unlabelled = Dataset(load_data(digits_dir / "train.npz").x, None, Path("x.npy"))
    with pytest.raises(InputError, match=r"x.npy has no labels y"):
        apply_recipe(lm, Recipe.load("prune50"), train=unlabelled)


def test_build_cli_with_an_unknown_recipe_exits_2_with_one_line(digits_dir, tmp_path, capsys):
    from edgekit.cli import main

    rc = main(["build", str(digits_dir / "model.keras"), "--target", "rpi4", "--eval", str(digits_dir / "eval.npz"),
               "--recipe", "prune5", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    errors = [line for line in err.splitlines() if line.startswith("edgekit: error:")]
    assert len(errors) == 1 and "prune5: no such recipe" in errors[0] and "'prune50'" in errors[0]
    assert "Traceback" not in err
