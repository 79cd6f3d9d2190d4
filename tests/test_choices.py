"""`scoregen_keras.choices` is the one list of every name a user chooses: each registry of the
library and each option of `cli` holds exactly its names."""

from __future__ import annotations

import click
import pytest

from scoregen_keras import choices


def _registries() -> list[tuple[str, object, tuple[str, ...]]]:
    """(what, the library's names, the choices' names) for every registry."""
    from scoregen_keras import likelihood, losses, networks, samplers
    from scoregen_keras.sampling import ode
    from scoregen_keras.training import presets, score_model

    return [
        ("predictors", samplers.PREDICTORS, choices.PREDICTORS),
        ("correctors", samplers.CORRECTORS, choices.CORRECTORS),
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


def _cli_choices() -> dict[tuple[str, str], tuple[str, ...]]:
    """(command, option) -> the names its click.Choice offers, for every Choice option."""
    from cli.main import main

    found = {}

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            if isinstance(param.type, click.Choice):
                found[(path, param.name)] = tuple(param.type.choices)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(main, "")
    return found


def test_the_cli_offers_the_chosen_names() -> None:
    """Every click.Choice of the CLI offers one of the choices' tuples, whole."""
    tuples = {
        name: value
        for name, value in vars(choices).items()
        if isinstance(value, tuple) and name.isupper()
    }
    strays = {
        key: offered
        for key, offered in _cli_choices().items()
        if not any(set(offered) == set(names) for names in tuples.values())
    }
    assert strays == {}
