"""Rule 4 of the design: a concept has the same name and signature in `reference` and
`scoregen_keras`, so a call written for the oracle binds the same values in the port. A Keras
function may add parameters, after the reference's or keyword-only; it may not rename one, apart
from the renames below that the two sides' natures force."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil

import reference

ALLOWED_RENAMES = {
    ("rng", "seed"): "Keras draws from a seed (an int or a keras.random.SeedGenerator)",
    ("rng", "z"): "a compiled sampler step takes the normals drawn for it",
    ("model", "score_fn"): "the oracle's losses backpropagate through its NumPy MLP by hand; "
    "Keras differentiates any score function",
}
MIN_PAIRS = 30
"""Fewer namesakes than this means the scan below stopped finding them."""


def _positional(fn: object) -> list[str]:
    """Names of the parameters a positional argument can bind to, in order."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds]


def _namesakes() -> list[tuple[str, object, object]]:
    """(module.name, reference function, Keras function) for every public reference function
    whose Keras module has a callable of the same name."""
    pairs = []
    for info in pkgutil.iter_modules(reference.__path__):
        if importlib.util.find_spec(f"scoregen_keras.{info.name}") is None:
            continue
        ref_module = importlib.import_module(f"reference.{info.name}")
        keras_module = importlib.import_module(f"scoregen_keras.{info.name}")
        for name, ref_fn in vars(ref_module).items():
            own = inspect.isfunction(ref_fn) and ref_fn.__module__ == ref_module.__name__
            keras_fn = getattr(keras_module, name, None)
            if own and not name.startswith("_") and callable(keras_fn):
                pairs.append((f"{info.name}.{name}", ref_fn, keras_fn))
    return pairs


def test_a_positional_call_binds_the_same_parameters_on_both_sides() -> None:
    pairs = _namesakes()
    assert len(pairs) >= MIN_PAIRS, [name for name, _, _ in pairs]
    clashes = []
    for name, ref_fn, keras_fn in pairs:
        ref_params, keras_params = _positional(ref_fn), _positional(keras_fn)
        for ref_param, keras_param in zip(ref_params, keras_params, strict=False):
            if ref_param != keras_param and (ref_param, keras_param) not in ALLOWED_RENAMES:
                clashes.append(f"{name}: reference {ref_params}, Keras {keras_params}")
                break
    assert not clashes, "\n".join(clashes)
