"""Preset resolution: overrides, the SDE's own settings, validation."""

from __future__ import annotations

import pytest

from reference import sde as ref_sde
from scoregen_keras.training import presets


def test_an_sde_override_drops_the_presets_sde_config() -> None:
    """toy's sigma_max belongs to VE: --sde vp starts from VP's defaults, unless given one."""
    assert presets.resolve_config("toy")["sde_config"] == {"sigma_max": 20.0}
    assert presets.resolve_config("toy", {"sde": "vp"})["sde_config"] == {}
    assert presets.resolve_config("toy", {"sde": "ve"})["sde_config"] == {"sigma_max": 20.0}
    own = {"beta_max": 10.0}
    assert presets.resolve_config("toy", {"sde": "vp", "sde_config": own})["sde_config"] == own


@pytest.mark.parametrize(
    "overrides",
    [
        {"lr_decay": "step"},
        {"sampler_sigma_max": -1.0},
        {"sampler_sigma_max": True},
        {"sampler_corrector": "annealed"},
        {"sampler_corrector": 1},
    ],
)
def test_schedule_values_are_validated(overrides: dict) -> None:
    """Unknown decays and correctors and non-positive sampler sigma_max are ConfigErrors."""
    with pytest.raises(presets.ConfigError):
        presets.resolve_config("toy", overrides)


def test_toy_presets_decay_their_rate_over_the_whole_run() -> None:
    """Both toy presets: cosine decay over TOY_STEPS, few-step samplers from sigma~ = 20."""
    for name in ("toy", "toy-vp"):
        config = presets.resolve_config(name)
        assert (config["lr_decay"], config["steps"]) == ("cosine", presets.TOY_STEPS)
        assert config["sampler_sigma_max"] == presets.TOY_SAMPLER_SIGMA_MAX
        assert config["sampler_corrector"] == presets.TOY_SAMPLER_CORRECTOR == "ald"
    assert presets.resolve_config("digits")["sampler_corrector"] is None  # images: langevin


@pytest.mark.parametrize("name", ["cifar10-ncsn", "cifar10-ncsnv2", "mnist-ncsnv2"])
def test_ncsn_presets_follow_their_papers(name: str) -> None:
    """The NCSN loss E‖σ s + z‖² over the dims, not their mean; NCSNv2's annealed Langevin takes
    NCSNV2_STEPS_EACH steps a level at technique 4's step size for its levels, doubled for NCSN's
    update x + α/2 s + sqrt(α) z (NCSNv2 writes x + ε s + sqrt(2ε) z)."""
    config = presets.resolve_config(name)
    assert (config["sde"], config["loss"], config["reduce"]) == ("ncsn", "ncsn", "squared_norm")
    if config["model"].startswith("ncsnv2"):
        sde_config = config["sde_config"]
        sigmas = ref_sde.geometric_sigmas(
            sde_config["sigma_max"], sde_config["sigma_min"], sde_config["num_scales"]
        )
        steps = config["ald_steps_each"]
        eps = ref_sde.ncsnv2_step_size(sigmas[-1], sigmas[0] / sigmas[1], steps)
        # the paper rounds technique 4's 6.18e-6 to 6.2e-6
        assert config["ald_step_lr"] == pytest.approx(2 * eps, rel=0.01)
        assert steps == presets.NCSNV2_STEPS_EACH
    else:  # NCSN v1: the sampler's defaults, 100 steps a level at 2e-5
        assert config["ald_steps_each"] is None and config["ald_step_lr"] is None


@pytest.mark.parametrize(
    "overrides", [{"ald_step_lr": 0.0}, {"ald_steps_each": 0}, {"ald_steps_each": 2.0}]
)
def test_annealed_langevin_settings_are_validated(overrides: dict) -> None:
    with pytest.raises(presets.ConfigError, match="must be a positive"):
        presets.resolve_config("cifar10-ncsn", overrides)


# score_sde_pytorch (commit cb1f359): configs/default_cifar10_configs.py sets
# training.reduce_mean = False; configs/vp/cifar10_ddpmpp_continuous.py overrides it to True;
# configs/ve/cifar10_ncsnpp_continuous.py keeps the default. losses.get_sde_loss_fn then reduces
# the squared residual over the dims by torch.mean (True) or 0.5 * torch.sum (False).
SCORE_SDE_REDUCE_MEAN = {"cifar10-ncsnpp-cont": False, "cifar10-ddpmpp-cont": True}


@pytest.mark.parametrize("name", sorted(SCORE_SDE_REDUCE_MEAN))
def test_score_sde_presets_reduce_over_the_dims_as_the_original(name: str) -> None:
    """The paper presets' reduce is the original config's reduce_mean: "mean" for True, "sum"
    (0.5 sum over the dims, losses.REDUCTIONS) for False."""
    config = presets.resolve_config(name)
    expected = "mean" if SCORE_SDE_REDUCE_MEAN[name] else "sum"
    assert config["reduce"] == expected
