"""A run folder whose checkpoint is a freshly initialised network: sampling tests train nothing.

The weights are the initialiser's under the config's seed (fixed once the file is written), so
the checkpoint is an ordinary run to `runs.load_run` and `scoregen sample` on every backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from scoregen_keras import runs
from scoregen_keras.training.checkpoint import save_checkpoint
from scoregen_keras.training.presets import resolve_config

POINTS = {"preset": "toy", "model": "mlp/tiny", "n_train": 256, "sde_config": {"sigma_max": 1.0}}
"""A 2-D point run: the tiny MLP, VE up to sigma 1 (samples of the data's unit scale)."""
IMAGES = {
    "preset": "digits",
    "model": "ncsnpp/digits-small",
    # the digits preset's network at a quarter of its width, without attention: seconds, not
    # minutes, for a few hundred evaluations on a shared CPU under eager PyTorch
    "model_config": {"nf": 8, "attn_resolutions": []},
    "dataset": "digits:train",
    "sde_config": {"sigma_max": 1.0},
}
"""An 8x8 grey image run on [0, 1] pixels: a small NCSN++, VE up to sigma 1."""


ZERO_INIT_LIMIT = 1e-6
"""Variables initialised below this everywhere (score_sde's near-zero output convolutions and the
zero biases) get random values, so that the score is not ~0 and the samplers have work to do."""
RANDOM_WEIGHT_STD = 3.0
"""Their scale: it gives the small NCSN++ ||s|| sigma / sqrt(D) ~ 0.8 at every sigma, near a trained
score's 1, so that the Langevin corrector's step rule takes steps of the usual size."""


def _randomise(model: Any, seed: int) -> None:
    """Give the network's near-zero variables N(0, RANDOM_WEIGHT_STD^2) values, the EMA copy the
    network's weights (the samplers read the EMA)."""
    rng = np.random.default_rng(seed)
    for variable in model.network.trainable_variables:
        value = keras.ops.convert_to_numpy(variable)
        if np.all(np.abs(value) < ZERO_INIT_LIMIT):
            variable.assign(
                RANDOM_WEIGHT_STD * rng.standard_normal(value.shape).astype(value.dtype)
            )
    for average, variable in zip(
        model.ema_variables, model.network.trainable_variables, strict=True
    ):
        average.assign(variable)


def untrained_run(folder: Path, settings: dict[str, Any]) -> Path:
    """Write a run (config.json and checkpoints/latest.keras, nothing trained) into ``folder``
    from ``settings``: a preset and its overrides (POINTS, IMAGES)."""
    overrides = {key: value for key, value in settings.items() if key != "preset"}
    config = resolve_config(settings["preset"], overrides)
    dataset = runs.training_data(config)
    model = runs.build_model(config, dataset.shape)
    _randomise(model, int(config["seed"]))
    config["backend"] = keras.backend.backend()
    config["ema"] = model.ema_rate
    config["data"] = runs.data_info(dataset)
    config["network"] = {
        "class": type(model.network).__name__,
        "config": runs.comparable_config(model.network.get_config()),
    }
    model.optimizer.build(model.network.trainable_variables)  # saved as a trained run's is
    paths = runs.RunPaths(Path(folder))
    paths.latest.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, paths.latest)
    runs.write_json_atomic(paths.config, config)
    return paths.root
