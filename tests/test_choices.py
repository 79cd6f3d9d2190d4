"""`scoregen_keras.choices` is the one list of every name a user chooses: each registry of the
library and each option of `cli` holds exactly its names."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import click
import pytest

import reference
from scoregen_keras import choices


def _registries() -> list[tuple[str, object, tuple[str, ...]]]:
    """(what, the library's names, the choices' names) for every registry."""
    from reference import samplers as reference_samplers
    from scoregen_keras import likelihood, losses, networks, samplers
    from scoregen_keras.sampling import ode
    from scoregen_keras.training import presets, score_model

    return [
        ("predictors", samplers.PREDICTORS, choices.PREDICTORS),
        ("correctors", samplers.CORRECTORS, choices.CORRECTORS),
        ("corrector norm rules", samplers.NORM_RULES, choices.NORM_RULES),
        ("the reference's norm rules", reference_samplers.NORM_RULES, choices.NORM_RULES),
        ("fixed-step ODE methods", ode.FIXED_STEP_METHODS, choices.FIXED_STEP_ODE_METHODS),
        ("likelihood solvers", likelihood.METHODS, choices.ODE_SOLVERS),
        ("networks", networks.CONFIGS, choices.NETWORKS),
        ("presets", presets.PRESETS, choices.PRESETS),
        ("SDEs", (*score_model.SDE_NAMES, score_model.NCSN), choices.SDES),
        ("weightings", losses.WEIGHTINGS, choices.WEIGHTINGS),
    ]


@pytest.mark.parametrize("index", range(len(_registries())))
def test_every_registry_holds_exactly_the_chosen_names(index: int) -> None:
    what, registry, names = _registries()[index]
    assert sorted(registry) == sorted(names), what


def _cli_choices(group: click.Group) -> dict[tuple[str, str], tuple[str, ...]]:
    """(command, option) -> the names its click.Choice offers, for every Choice option."""
    found = {}

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            if isinstance(param.type, click.Choice):
                found[(path, param.name)] = tuple(param.type.choices)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(group, "")
    return found


def _names(module: ModuleType) -> list[tuple[str, ...]]:
    """The registries of a module: its public upper-case tuples and dicts of names."""
    return [
        tuple(value)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, tuple | dict) and value
        if all(isinstance(key, str) for key in value)
    ]


def _reference_registries() -> list[tuple[str, ...]]:
    """Every registry of the `reference` package (the oracle the `reference` commands run)."""
    modules = pkgutil.iter_modules(reference.__path__, prefix=f"{reference.__name__}.")
    return [names for info in modules for names in _names(importlib.import_module(info.name))]


def _strays(group: click.Group) -> dict[tuple[str, str], tuple[str, ...]]:
    """The Choice options that offer neither a tuple of `choices` nor, under `reference`, the
    names of a registry of `reference`."""
    chosen, oracle = _names(choices), _reference_registries()

    def allowed(path: str, offered: tuple[str, ...]) -> bool:
        names = chosen + (oracle if path.split(" ")[0] == "reference" else [])
        return any(sorted(offered) == sorted(whole) for whole in names)

    return {
        key: offered for key, offered in _cli_choices(group).items() if not allowed(key[0], offered)
    }


def test_the_cli_offers_the_chosen_names() -> None:
    """Every click.Choice of the CLI offers one of the choices' tuples, whole; those of
    `scoregen reference` may offer a registry of `reference` instead."""
    from cli.main import main

    assert _cli_choices(main)  # the walk reaches the options
    assert _strays(main) == {}


def test_the_rule_finds_names_written_out_in_a_command() -> None:
    """A list of its own, a part of a tuple, or a reference registry outside `reference`."""
    partial = choices.SAMPLERS[:2]
    group = click.Group("scoregen")
    for name, names in (("own", ("a", "b")), ("partial", partial), ("sde", ("ve", "vp", "subvp"))):
        group.add_command(
            click.Command(name, params=[click.Option(["--x"], type=click.Choice(names))])
        )
    reference_group = click.Group("reference")
    group.add_command(reference_group)
    kept = click.Option(["--sde"], type=click.Choice(("ve", "vp", "subvp")))
    reference_group.add_command(click.Command("sample", params=[kept]))
    assert set(_strays(group)) == {("own", "x"), ("partial", "x"), ("sde", "x")}
