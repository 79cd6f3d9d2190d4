"""Preset resolution: overrides, the SDE's own settings, validation."""

from __future__ import annotations

import pytest

from scoregen_keras import presets


def test_an_sde_override_drops_the_presets_sde_config() -> None:
    """toy's sigma_max belongs to VE: --sde vp starts from VP's defaults, unless given one."""
    assert presets.resolve_config("toy")["sde_config"] == {"sigma_max": 20.0}
    assert presets.resolve_config("toy", {"sde": "vp"})["sde_config"] == {}
    assert presets.resolve_config("toy", {"sde": "ve"})["sde_config"] == {"sigma_max": 20.0}
    own = {"beta_max": 10.0}
    assert presets.resolve_config("toy", {"sde": "vp", "sde_config": own})["sde_config"] == own


@pytest.mark.parametrize(
    "overrides",
    [{"lr_decay": "step"}, {"sampler_sigma_max": -1.0}, {"sampler_sigma_max": True}],
)
def test_schedule_values_are_validated(overrides: dict) -> None:
    """Unknown decays and non-positive sampler sigma_max are ConfigErrors."""
    with pytest.raises(presets.ConfigError):
        presets.resolve_config("toy", overrides)


def test_toy_presets_decay_their_rate_over_the_whole_run() -> None:
    """Both toy presets: cosine decay over TOY_STEPS, few-step samplers from sigma~ = 20."""
    for name in ("toy", "toy-vp"):
        config = presets.resolve_config(name)
        assert (config["lr_decay"], config["steps"]) == ("cosine", presets.TOY_STEPS)
        assert config["sampler_sigma_max"] == presets.TOY_SAMPLER_SIGMA_MAX
