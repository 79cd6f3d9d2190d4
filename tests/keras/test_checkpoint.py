"""Checkpoints: save / load round trips, bit-exact resume, cross-backend loads, damaged files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from reference.datasets import mixture5
from scoregen_keras.networks import get_network
from scoregen_keras.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from scoregen_keras.training.score_model import ScoreModel

BATCH = 32
STEPS = 4  # steps per half of the resume test
REPO_ROOT = Path(__file__).resolve().parents[2]


def toy_data(n: int, seed: int = 0) -> np.ndarray:
    """n float32 draws from the canonical 2-D mixture."""
    return mixture5().sample(np.random.default_rng(seed), n).astype("float32")


def make_model(sde: str = "ve", **kwargs) -> ScoreModel:
    """A compiled ScoreModel on the tiny MLP with deterministic initial weights."""
    keras.utils.set_random_seed(0)
    conditioning = "sigma" if sde == "ncsn" else "t"
    model = ScoreModel(get_network("mlp/tiny", conditioning=conditioning), sde=sde, **kwargs)
    # short warm-up so that the restored iteration count matters for the learning rate
    model.compile(learning_rate=3e-3, warmup_steps=2 * STEPS + 1)
    return model


def state(model: ScoreModel) -> dict[str, np.ndarray]:
    """Everything that must survive a checkpoint, as NumPy arrays."""
    out = {v.path: ops.convert_to_numpy(v.value) for v in model.network.trainable_variables}
    out.update({v.path: ops.convert_to_numpy(v.value) for v in model.ema_variables})
    out["ema_updates"] = ops.convert_to_numpy(model.ema_updates.value)
    out["iterations"] = ops.convert_to_numpy(model.optimizer.iterations.value)
    out["seed"] = ops.convert_to_numpy(model.seed_generator.state.value).astype(np.int64)
    return out


def outputs(model: ScoreModel, x: np.ndarray, cond: np.ndarray) -> dict[str, np.ndarray]:
    """Scores with the live and the EMA weights."""
    return {
        "live": ops.convert_to_numpy(model.score(x, cond, use_ema=False)),
        "ema": ops.convert_to_numpy(model.score(x, cond, use_ema=True)),
    }


def assert_states_equal(a: dict, b: dict, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Same keys; arrays equal within the tolerance (exact by default)."""
    assert [k.split("/")[-1] for k in a] == [k.split("/")[-1] for k in b]
    for (key, va), vb in zip(a.items(), b.values(), strict=True):
        np.testing.assert_allclose(va, vb, rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("sde", ["vp", "ncsn"])
def test_save_load_round_trip(tmp_path: Path, sde: str) -> None:
    """A loaded checkpoint has the same outputs (live and EMA), optimizer, EMA and seed state."""
    model = make_model(sde)
    model.fit(toy_data(BATCH * STEPS), batch_size=BATCH, epochs=1, verbose=0)
    path = save_checkpoint(model, tmp_path / "ckpt.keras")
    loaded = load_checkpoint(path)
    assert isinstance(loaded, ScoreModel)
    assert loaded.get_config() == model.get_config()
    x, cond = toy_data(8, seed=1), np.linspace(0.2, 0.9, 8).astype("float32")
    assert_states_equal(state(loaded), state(model))
    for key, value in outputs(model, x, cond).items():
        np.testing.assert_array_equal(outputs(loaded, x, cond)[key], value, err_msg=key)
    assert int(state(loaded)["iterations"]) == STEPS


def test_resume_continues_identically(tmp_path: Path) -> None:
    """2k steps in one run == k steps, save, load, k steps (bit for bit on CPU)."""
    x = toy_data(BATCH * STEPS)
    uninterrupted = make_model("ve")
    uninterrupted.fit(x, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)

    first_half = make_model("ve")
    first_half.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    resumed = load_checkpoint(save_checkpoint(first_half, tmp_path / "half.keras"))
    resumed.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)

    assert int(state(resumed)["iterations"]) == 2 * STEPS
    assert_states_equal(state(resumed), state(uninterrupted))


WRITER = """
import json, sys
import keras, numpy as np
sys.path.insert(0, {root!r})
from reference.datasets import mixture5
from scoregen_keras.training import save_checkpoint
from scoregen_keras.networks import get_network
from scoregen_keras.training import ScoreModel
keras.utils.set_random_seed(0)
model = ScoreModel(get_network("mlp/tiny"), sde="ve", loss="dsm", seed=3)
model.compile(learning_rate=3e-3, warmup_steps=0)
x = mixture5().sample(np.random.default_rng(0), {n}).astype("float32")
model.fit(x, batch_size={batch}, epochs=1, verbose=0)
probe = x[:8]
cond = np.linspace(0.2, 0.9, 8).astype("float32")
out = {{
    "live": keras.ops.convert_to_numpy(model.score(probe, cond, use_ema=False)).tolist(),
    "ema": keras.ops.convert_to_numpy(model.score(probe, cond)).tolist(),
    "probe": probe.tolist(), "cond": cond.tolist(),
}}
save_checkpoint(model, {path!r})
json.dump(out, open({out!r}, "w"))
"""


@pytest.mark.slow
def test_tensorflow_checkpoint_loads_in_current_backend(tmp_path: Path) -> None:
    """A checkpoint written under TensorFlow (subprocess) gives the same outputs here."""
    path, out = tmp_path / "tf.keras", tmp_path / "tf.json"
    script = WRITER.format(
        root=str(REPO_ROOT), n=BATCH * STEPS, batch=BATCH, path=str(path), out=str(out)
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=True, env=env)
    expected = json.loads(out.read_text())
    model = load_checkpoint(path)
    x, cond = np.array(expected["probe"], "float32"), np.array(expected["cond"], "float32")
    for key in ("live", "ema"):
        got = ops.convert_to_numpy(model.score(x, cond, use_ema=key == "ema"))
        np.testing.assert_allclose(got, np.array(expected[key]), rtol=1e-5, atol=1e-6, err_msg=key)
    assert int(ops.convert_to_numpy(model.optimizer.iterations.value)) == STEPS
    # training continues under this backend from the restored optimizer state
    model.fit(toy_data(BATCH), batch_size=BATCH, epochs=1, verbose=0)
    assert int(ops.convert_to_numpy(model.optimizer.iterations.value)) == STEPS + 1


def test_damaged_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    """Truncated or non-archive files raise CheckpointError (a ValueError); missing: not found."""
    model = make_model("ve")
    path = save_checkpoint(model, tmp_path / "good.keras")
    blob = path.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(blob[: len(blob) // 2])
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip archive at all")
    for bad in (truncated, garbage):
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            load_checkpoint(bad)
    assert issubclass(CheckpointError, ValueError)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.keras")


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing save leaves the previous checkpoint intact and no temporary files behind."""
    model = make_model("ve")
    path = save_checkpoint(model, tmp_path / "ckpt.keras")
    before = path.read_bytes()

    def broken_save(*args, **kwargs) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.keras"]
    with pytest.raises(ValueError):
        save_checkpoint(model, tmp_path / "ckpt.h5")
