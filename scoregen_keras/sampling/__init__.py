"""How the Keras samplers run: noise source, compiled chunks of steps, ODE integration, latents.

The samplers themselves are `scoregen_keras.samplers`, the twin of `reference.samplers`.
"""

from scoregen_keras.sampling import dopri
from scoregen_keras.sampling.chunks import (
    MAX_CHUNK_STEPS,
    clear_compiled,
    compiled,
    compiled_count,
    run_steps,
    without_grad,
)
from scoregen_keras.sampling.counter_noise import (
    DEQUANTIZE_STREAM,
    PROBE_STREAM,
    SAMPLER_STREAM,
    CounterNoise,
)
from scoregen_keras.sampling.host import host_index, host_to_float
from scoregen_keras.sampling.latent import interpolate, slerp
from scoregen_keras.sampling.noise import Noise, NoiseSource, Seed, per_sample_seeds
from scoregen_keras.sampling.ode import FIXED_STEP_METHODS, integrate_ode, probability_flow_drift

__all__ = [
    "DEQUANTIZE_STREAM",
    "FIXED_STEP_METHODS",
    "MAX_CHUNK_STEPS",
    "PROBE_STREAM",
    "SAMPLER_STREAM",
    "CounterNoise",
    "Noise",
    "NoiseSource",
    "Seed",
    "clear_compiled",
    "compiled",
    "compiled_count",
    "dopri",
    "host_index",
    "host_to_float",
    "integrate_ode",
    "interpolate",
    "per_sample_seeds",
    "probability_flow_drift",
    "run_steps",
    "slerp",
    "without_grad",
]
