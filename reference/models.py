"""Score models in plain NumPy with hand-derived gradients: a linear score and a small MLP.

Every model keeps its parameters in ``model.params`` (dict of float64 arrays) and exposes

* ``forward(x, c) -> (out, cache)`` and ``backward(cache, dout) -> (grads, dx)``: the raw network;
* ``jvp_forward(x, c, V) -> (out, out_dot, cache)`` and ``jvp_backward(cache, dout, dout_dot)``:
  the raw network together with K forward-mode tangents ``out_dot[b, k] = J(x_b) V[b, k]``
  (J the input Jacobian), and the reverse pass through both (what exact and sliced score
  matching need: tangents V = I give the full Jacobian, V = v a Hutchinson probe);
* ``score_forward(x, t, alpha, std) -> (score, cache)`` and ``score_backward(cache, dscore)``:
  the score with the preconditioning shared with ``scoregen_keras``.

MLP maths (the Keras ``mlp`` network copies it exactly)::

    u    = c                      (cond="t")      or  log(c)   (cond="log_sigma")
    emb  = concat(u, sin(freqs*u), cos(freqs*u)), freqs = 2**arange(n_freq) * pi / 2
    h_0  = concat(x, emb)
    h_{l+1} = act(h_l @ W_l + b_l)                 l = 0 .. L-1
    out  = h_L @ W_out + b_out
    score(x, t) = out(c_in * x, cond) / std,  c_in = 1 / sqrt(alpha**2 + std**2)

with ``(alpha, std) = sde.marginal_coefficients(t)`` and ``cond = t`` (cond="t") or
``cond = std`` (cond="log_sigma"); for NCSN (sigma-conditioned) alpha = 1, std = sigma.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from scipy.special import expit

from reference.utils import as_batch, batch_scalar

Array = np.ndarray
Grads = dict[str, Array]

# ---------------------------------------------------------------------------------------------
# Activations: value, first and second derivative (the second is needed to backpropagate through
# a Jacobian, i.e. for exact and sliced score matching).


def silu(a: Array) -> Array:
    """SiLU / swish: a * sigmoid(a)."""
    return a * expit(a)


def silu_grad(a: Array) -> Array:
    """First derivative of SiLU: sig(a) (1 + a (1 - sig(a)))."""
    sig = expit(a)
    return sig * (1.0 + a * (1.0 - sig))


def silu_grad2(a: Array) -> Array:
    """Second derivative of SiLU: sig(a) (1 - sig(a)) (2 + a (1 - 2 sig(a)))."""
    sig = expit(a)
    return sig * (1.0 - sig) * (2.0 + a * (1.0 - 2.0 * sig))


def softplus(a: Array) -> Array:
    """Softplus log(1 + e^a), computed stably."""
    return np.logaddexp(0.0, a)


def softplus_grad(a: Array) -> Array:
    """First derivative of softplus: sigmoid(a)."""
    return expit(a)


def softplus_grad2(a: Array) -> Array:
    """Second derivative of softplus: sig(a) (1 - sig(a))."""
    sig = expit(a)
    return sig * (1.0 - sig)


ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], ...]] = {
    "silu": (silu, silu_grad, silu_grad2),
    "softplus": (softplus, softplus_grad, softplus_grad2),
}

CONDITIONINGS = ("t", "log_sigma")


def sinusoidal_embedding(u: Array, n_freq: int) -> Array:
    """Fixed embedding concat(u, sin(freqs u), cos(freqs u)), freqs = 2**k * pi / 2, k < n_freq."""
    freqs = 2.0 ** np.arange(n_freq) * (np.pi / 2)
    phase = u[:, None] * freqs
    return np.concatenate([u[:, None], np.sin(phase), np.cos(phase)], axis=1)


# ---------------------------------------------------------------------------------------------
# Models


class ScoreModel(Protocol):
    """What losses, samplers and the training loop need from a score model."""

    params: dict[str, Array]

    def forward(self, x: Array, c: Array | float | None = None) -> tuple[Array, Any]: ...

    def backward(self, cache: Any, dout: Array) -> tuple[Grads, Array]: ...

    def jvp_forward(
        self, x: Array, c: Array | float | None, V: Array
    ) -> tuple[Array, Array, Any]: ...

    def jvp_backward(self, cache: Any, dout: Array, dout_dot: Array) -> Grads: ...

    def score_forward(
        self, x: Array, t: Array | float, alpha: Array | float, std: Array | float
    ) -> tuple[Array, Any]: ...

    def score_backward(self, cache: Any, dscore: Array) -> tuple[Grads, Array]: ...


class LinearScore:
    """Linear score s(x) = A x + b (rows: x @ A.T + b); the exact score of a Gaussian N(mu, Sigma)
    is A = -Sigma^{-1}, b = Sigma^{-1} mu. Unconditional: it ignores c, t, alpha and std."""

    def __init__(self, dim: int) -> None:
        """Start at the score of N(0, I): A = -I, b = 0."""
        self.dim = dim
        self.params: dict[str, Array] = {"A": -np.eye(dim), "b": np.zeros(dim)}

    def forward(self, x: Array, c: Array | float | None = None) -> tuple[Array, Array]:
        """s(x) = x A^T + b; the cache is x."""
        return x @ self.params["A"].T + self.params["b"], x

    def backward(self, cache: Array, dout: Array) -> tuple[Grads, Array]:
        """Reverse pass: gradients of A, b and of the input x."""
        x = cache
        grads = {"A": dout.T @ x, "b": dout.sum(axis=0)}
        return grads, dout @ self.params["A"]

    def jvp_forward(
        self, x: Array, c: Array | float | None, V: Array
    ) -> tuple[Array, Array, tuple[Array, Array]]:
        """s(x) and its tangents J V = V A^T for V (batch, K, d)."""
        out, _ = self.forward(x)
        return out, V @ self.params["A"].T, (x, V)

    def jvp_backward(self, cache: tuple[Array, Array], dout: Array, dout_dot: Array) -> Grads:
        """Parameter gradients through both s(x) and the tangents V A^T."""
        x, V = cache
        grads, _ = self.backward(x, dout)
        grads["A"] = grads["A"] + np.einsum("bki,bkj->ij", dout_dot, V)
        return grads

    def score_forward(
        self, x: Array, t: Array | float, alpha: Array | float, std: Array | float
    ) -> tuple[Array, Array]:
        """The score is the linear map itself (no noise conditioning, no preconditioning)."""
        return self.forward(x)

    def score_backward(self, cache: Array, dscore: Array) -> tuple[Grads, Array]:
        """Reverse pass of `score_forward`."""
        return self.backward(cache, dscore)


class MLPScore:
    """Noise-conditional MLP score network with a fixed sinusoidal embedding of t or log sigma."""

    OUT_INIT_SCALE = 1e-2  # small output layer: the initial score is close to 0

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128, 128),
        activation: str = "silu",
        cond: str = "t",
        n_freq: int = 8,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Draw W0, W1, ..., W_out in that order with rng.standard_normal; biases start at 0."""
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if cond not in CONDITIONINGS:
            raise ValueError(f"cond must be one of {CONDITIONINGS}, got {cond!r}")
        rng = np.random.default_rng() if rng is None else rng
        self.dim, self.hidden, self.n_freq = dim, tuple(hidden), n_freq
        self.activation, self.cond = activation, cond
        self.act, self.act_grad, self.act_grad2 = ACTIVATIONS[activation]
        emb_dim = 1 + 2 * n_freq
        widths = [dim + emb_dim, *self.hidden]
        self.params: dict[str, Array] = {}
        for l, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            # LeCun-normal: unit-variance pre-activations for unit-variance inputs
            self.params[f"W{l}"] = rng.standard_normal((fan_in, fan_out)) * np.sqrt(1.0 / fan_in)
            self.params[f"b{l}"] = np.zeros(fan_out)
        self.params["W_out"] = rng.standard_normal((widths[-1], dim)) * self.OUT_INIT_SCALE
        self.params["b_out"] = np.zeros(dim)

    @property
    def n_layers(self) -> int:
        """Number of hidden layers L."""
        return len(self.hidden)

    def embed(self, c: Array | float | None, batch: int) -> Array:
        """Embedding of the conditioning scalar; c=None means c=1 (t=1 or sigma=1) for all."""
        c = as_batch(1.0 if c is None else c, batch)
        u = c if self.cond == "t" else np.log(c)
        return sinusoidal_embedding(u, self.n_freq)

    def forward(self, x: Array, c: Array | float | None = None) -> tuple[Array, dict[str, Any]]:
        """Raw network output out(x, c) of shape (batch, dim)."""
        h = np.concatenate([x, self.embed(c, len(x))], axis=1)
        hs, pre = [h], []
        for l in range(self.n_layers):
            a = h @ self.params[f"W{l}"] + self.params[f"b{l}"]
            h = self.act(a)
            pre.append(a)
            hs.append(h)
        out = h @ self.params["W_out"] + self.params["b_out"]
        return out, {"hs": hs, "pre": pre}

    def backward(self, cache: dict[str, Any], dout: Array) -> tuple[Grads, Array]:
        """Reverse pass: parameter gradients and the gradient w.r.t. the input x."""
        hs, pre = cache["hs"], cache["pre"]
        grads = {"W_out": hs[-1].T @ dout, "b_out": dout.sum(axis=0)}
        dh = dout @ self.params["W_out"].T
        for l in reversed(range(self.n_layers)):
            da = dh * self.act_grad(pre[l])
            grads[f"W{l}"] = hs[l].T @ da
            grads[f"b{l}"] = da.sum(axis=0)
            dh = da @ self.params[f"W{l}"].T
        return grads, dh[:, : self.dim]

    def jvp_forward(
        self, x: Array, c: Array | float | None, V: Array
    ) -> tuple[Array, Array, dict[str, Any]]:
        """out(x, c) and K tangents out_dot[b, k] = (d out/d x)(x_b) V[b, k]; V (batch, K, dim)."""
        out, cache = self.forward(x, c)
        # the embedding does not depend on x, so its tangent is 0
        h_dot = np.concatenate([V, np.zeros((*V.shape[:2], cache["hs"][0].shape[1] - self.dim))], 2)
        h_dots, pre_dots = [h_dot], []
        for l in range(self.n_layers):
            a_dot = h_dot @ self.params[f"W{l}"]
            h_dot = a_dot * self.act_grad(cache["pre"][l])[:, None, :]
            pre_dots.append(a_dot)
            h_dots.append(h_dot)
        out_dot = h_dot @ self.params["W_out"]
        cache.update(h_dots=h_dots, pre_dots=pre_dots)
        return out, out_dot, cache

    def jvp_backward(self, cache: dict[str, Any], dout: Array, dout_dot: Array) -> Grads:
        """Parameter gradients of a loss of out and out_dot, given their cotangents."""
        hs, pre, h_dots, pre_dots = cache["hs"], cache["pre"], cache["h_dots"], cache["pre_dots"]
        W_out = self.params["W_out"]
        grads = {
            "W_out": hs[-1].T @ dout + np.einsum("bki,bkj->ij", h_dots[-1], dout_dot),
            "b_out": dout.sum(axis=0),
        }
        dh, dh_dot = dout @ W_out.T, dout_dot @ W_out.T
        for l in reversed(range(self.n_layers)):
            act1, act2 = self.act_grad(pre[l]), self.act_grad2(pre[l])
            # h_dot = a_dot * act'(a): a enters twice, through act and through act'
            da_dot = dh_dot * act1[:, None, :]
            da = dh * act1 + act2 * np.einsum("bki,bki->bi", dh_dot, pre_dots[l])
            grads[f"W{l}"] = hs[l].T @ da + np.einsum("bki,bkj->ij", h_dots[l], da_dot)
            grads[f"b{l}"] = da.sum(axis=0)
            dh, dh_dot = da @ self.params[f"W{l}"].T, da_dot @ self.params[f"W{l}"].T
        return grads

    def conditioning(self, t: Array, std: Array) -> Array:
        """The network's conditioning scalar: t (cond="t") or sigma = std (cond="log_sigma")."""
        return t if self.cond == "t" else std

    def score_forward(
        self, x: Array, t: Array | float, alpha: Array | float, std: Array | float
    ) -> tuple[Array, tuple[Any, Array, Array]]:
        """Preconditioned score out(c_in x, cond) / std with c_in = 1 / sqrt(alpha^2 + std^2)."""
        batch = len(x)
        t, alpha, std = as_batch(t, batch), as_batch(alpha, batch), as_batch(std, batch)
        # c_in gives the network unit-variance inputs for unit-variance data (EDM, Karras 2022)
        c_in = batch_scalar(1.0 / np.sqrt(alpha**2 + std**2), x)
        std_b = batch_scalar(std, x)
        out, cache = self.forward(c_in * x, self.conditioning(t, std))
        return out / std_b, (cache, c_in, std_b)

    def score_backward(self, cache: tuple[Any, Array, Array], dscore: Array) -> tuple[Grads, Array]:
        """Reverse pass of `score_forward`: parameter gradients and gradient w.r.t. x."""
        net_cache, c_in, std_b = cache
        grads, dx_in = self.backward(net_cache, dscore / std_b)
        return grads, c_in * dx_in


# ---------------------------------------------------------------------------------------------
# Score functions for samplers


def noise_conditional_score(model: ScoreModel, sde: Any) -> Callable[[Array, Array], Array]:
    """score_fn(x, t) of a model trained on an SDE, (alpha, std) = sde.marginal_coefficients(t)."""

    def score_fn(x: Array, t: Array | float) -> Array:
        t = as_batch(t, len(x))
        alpha, std = sde.marginal_coefficients(t)
        return model.score_forward(x, t, alpha, std)[0]

    return score_fn


def sigma_conditional_score(model: ScoreModel) -> Callable[[Array, Array], Array]:
    """score_fn(x, sigma) for the NCSN family: alpha = 1, std = sigma, conditioned on sigma."""

    def score_fn(x: Array, sigma: Array | float) -> Array:
        sigma = as_batch(sigma, len(x))
        return model.score_forward(x, sigma, 1.0, sigma)[0]

    return score_fn


# ---------------------------------------------------------------------------------------------
# Flat parameter vectors (finite-difference tests, scipy optimisers)


def flatten(tree: dict[str, Array], like: dict[str, Array]) -> Array:
    """Concatenate the arrays of `tree` in the key order of `like` into one vector."""
    return np.concatenate([np.ravel(tree[name]) for name in like])


def get_flat_params(model: ScoreModel) -> Array:
    """The model's parameters as one float64 vector (a copy)."""
    return flatten(model.params, model.params).astype(np.float64)


def set_flat_params(model: ScoreModel, theta: Array) -> None:
    """Overwrite the model's parameters from a flat vector made by `get_flat_params`."""
    offset = 0
    for name, value in model.params.items():
        model.params[name] = np.array(
            theta[offset : offset + value.size], dtype=np.float64
        ).reshape(value.shape)
        offset += value.size
    if offset != len(theta):
        raise ValueError(f"expected {offset} parameters, got {len(theta)}")


def flatten_grads(model: ScoreModel, grads: Grads) -> Array:
    """A gradient dict as one vector in the order of `get_flat_params`."""
    return flatten(grads, model.params)


# ---------------------------------------------------------------------------------------------
# Optimiser


class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1) with optional global-norm gradient clipping."""

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        grad_clip: float | None = None,
    ) -> None:
        """Moments are created lazily, one pair per parameter name."""
        self.lr, self.beta1, self.beta2, self.eps, self.grad_clip = lr, beta1, beta2, eps, grad_clip
        self.m: dict[str, Array] = {}
        self.v: dict[str, Array] = {}
        self.step_count = 0

    def step(self, params: dict[str, Array], grads: Grads) -> None:
        """Update `params` in place from `grads` (same keys)."""
        self.step_count += 1
        scale = 1.0
        if self.grad_clip is not None:
            norm = np.sqrt(sum(float(np.sum(g**2)) for g in grads.values()))
            scale = self.grad_clip / max(norm, self.grad_clip)
        bias1 = 1.0 - self.beta1**self.step_count
        bias2 = 1.0 - self.beta2**self.step_count
        for name, g in grads.items():
            g = scale * g
            m = self.m.get(name, np.zeros_like(g))
            v = self.v.get(name, np.zeros_like(g))
            self.m[name] = m = self.beta1 * m + (1.0 - self.beta1) * g
            self.v[name] = v = self.beta2 * v + (1.0 - self.beta2) * g**2
            params[name] -= self.lr * (m / bias1) / (np.sqrt(v / bias2) + self.eps)
