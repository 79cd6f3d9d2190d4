"""The names of every choice a user makes, in one place that imports nothing (no keras).

The library keys its registries by these names and `cli` builds its `click.Choice` options from
them before any backend is chosen; `tests/test_choices.py` checks that every registry holds
exactly these names. To add a predictor, say: write its step in `scoregen_keras/samplers.py`,
give it its record there, and add its name below.
"""

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = BACKENDS[0]

# sampling
SAMPLERS = ("pc", "ald", "ode", "heun", "dpm-solver")
PC_SAMPLER, ALD_SAMPLER = SAMPLERS[0], SAMPLERS[1]
PREDICTORS = ("reverse_diffusion", "euler_maruyama", "ancestral", "none")
CORRECTORS = ("langevin", "ald", "none")
DEFAULT_PREDICTOR, DEFAULT_CORRECTOR = PREDICTORS[0], CORRECTORS[0]
NORM_RULES = ("batch", "per_example")
"""The Langevin corrector's norms: averaged over the batch (score_sde's), or per example."""
NOISE_SOURCES = ("counter", "backend")
"""Where samplers' normals come from: per-sample counter-based seeds (the same sample for a seed
on every backend and batch size), or the backend's own keras.random stream (an opt-in)."""
COUNTER_NOISE, BACKEND_NOISE = NOISE_SOURCES
ODE_SOLVERS = ("RK45", "dopri5")
"""Adaptive probability-flow solvers: SciPy's RK45 on the host, the same RK45 compiled."""
FIXED_STEP_ODE_METHODS = ("euler", "heun")
DPM_SCHEDULES = ("logsnr", "time", "karras")

# likelihood
DIVERGENCES = ("exact", "hutchinson")
AUTO = "auto"
RUN_DIVERGENCES = (AUTO, *DIVERGENCES)
"""What a run's likelihood takes: auto (exact for data of few dimensions, else Hutchinson)."""
PROBES = ("rademacher", "gaussian")

# training
SDES = ("ve", "vp", "subvp", "ncsn")
NCSN_SDE = SDES[3]
"""Discrete NCSN noise levels (Song & Ermon 2019) rather than a continuous SDE."""
LOSSES = ("dsm", "ncsn", "ssm", "ssm_vr", "exact")
WEIGHTINGS = ("std2", "likelihood")
DISTRIBUTE_MODES = ("none", "data-parallel")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
LR_DECAYS = ("none", "cosine")
PRESETS = (
    "toy",
    "toy-vp",
    "digits",
    "mnist-ncsnv2",
    "cifar10-ncsn",
    "cifar10-ncsnv2",
    "cifar10-ncsnpp-cont",
    "cifar10-ddpmpp-cont",
)
DEFAULT_PRESET = PRESETS[0]

# import of published models (`scoregen import score-sde --weights`): the EMA weights, as the
# paper samples with, or the raw training weights
IMPORT_WEIGHTS = ("ema", "model")
DEFAULT_IMPORT_WEIGHTS = IMPORT_WEIGHTS[0]

# networks: a family name, or family/configuration (scoregen_keras.networks.CONFIGS)
NETWORKS = (
    "mlp",
    "mlp/toy",
    "mlp/tiny",
    "ncsn",
    "ncsn/cifar10",
    "ncsn/mnist",
    "ncsn/digits",
    "ncsn/tiny",
    "ncsnv2",
    "ncsnv2/cifar10",
    "ncsnv2/mnist",
    "ncsnv2/digits",
    "ncsnv2/tiny",
    "ncsnpp",
    "ddpmpp",
    "ncsnpp/cifar10",
    "ncsnpp/cifar10-deep",
    "ddpmpp/cifar10",
    "ddpmpp/cifar10-deep",
    "ncsnpp/digits",
    "ddpmpp/digits",
    "ncsnpp/digits-small",
    "ncsnpp/mnist",
    "ncsnpp/tiny",
    "ddpmpp/tiny",
)
