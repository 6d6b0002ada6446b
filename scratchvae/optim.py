"""Optimizers that update a ``params``/``grads`` pair of dicts in place.

Both take the two dicts (for a model: ``model.params, model.grads``) and keep
references to the arrays in them. ``step()`` reads the current gradients and
writes the new values into the parameter arrays (``p[...] = ...``), so layers
and the optimizer keep sharing the same arrays.

``zero_grad()``: scratchvae's ``backward`` *overwrites* gradients, it does not
add to them, so a training loop needs no ``zero_grad`` between steps; the
method fills every gradient with zeros for code that accumulates by hand.

The update formulas, as in PyTorch (docs/layers.md#optimizers):

SGD, momentum mu, weight decay lam:
    g = grad + lam * p
    v = mu * v + g          (v = g on the first step)
    p = p - lr * v

Adam (bias-corrected), t = 1, 2, ...:
    g = grad + lam * p
    m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g^2
    p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info

from .backend import backend_of, get_array_module, to_device, to_host
from .flat_params import shared_buffer, views_like

# Adam's update is elementwise: on NumPy a flat buffer of at least this many numbers is cut into
# one contiguous part per BLAS thread, each updated by the same operations in its own thread
# (NumPy releases the GIL inside each operation). Every number gets exactly the arithmetic of
# the one-thread update, so the result does not depend on the thread count; below this size a
# second thread costs more than it saves (docs/performance.md).
PARALLEL_UPDATE_MIN = 2**17


def _blas_threads():
    """The BLAS's thread count (``OPENBLAS_NUM_THREADS=1`` gives 1), as threadpoolctl sees it."""
    return max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)


class Optimizer:
    """Shared bookkeeping: the parameter/gradient dicts and checks."""

    def __init__(self, params: dict, grads: dict, lr: float):
        if set(params) != set(grads):
            missing = sorted(set(params) ^ set(grads))
            raise ValueError(f"{type(self).__name__}: params and grads have different names: {missing}")
        for k in params:
            if params[k].shape != grads[k].shape:
                raise ValueError(
                    f"{type(self).__name__}: params[{k!r}] has shape {params[k].shape} but "
                    f"grads[{k!r}] has shape {grads[k].shape}"
                )
        if lr <= 0:
            raise ValueError(f"{type(self).__name__}: lr must be positive, got {lr}")
        self.params, self.grads, self.lr = dict(params), dict(grads), float(lr)
        self.t = 0

    def zero_grad(self):
        """Fill every gradient with zeros."""
        for g in self.grads.values():
            g[...] = 0

    def _slots(self):
        return {}

    def state_dict(self) -> dict:
        """Optimizer state as host arrays and numbers (for checkpoints).

        The arrays are copies: later steps do not change a state already taken.
        """
        out = {"t": self.t}
        for slot, arrays in self._slots().items():
            for k, a in arrays.items():
                out[f"{slot}.{k}"] = to_host(a).copy()  # to_host is a no-op on NumPy
        return out

    def load_state_dict(self, state: dict):
        """Restore ``state_dict()`` output onto the parameters' backend."""
        self.t = int(state["t"])
        for slot, arrays in self._slots().items():
            for k in arrays:
                key = f"{slot}.{k}"
                if key not in state:
                    raise ValueError(f"{type(self).__name__}: optimizer state lacks {key!r}")
                if tuple(state[key].shape) != tuple(arrays[k].shape):
                    raise ValueError(
                        f"{type(self).__name__}: saved {key!r} has shape {tuple(state[key].shape)}, "
                        f"the parameter has {tuple(arrays[k].shape)}: the state is from another model"
                    )
                arrays[k][...] = to_device(state[key], backend_of(self.params[k]))


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and weight decay (PyTorch's form)."""

    def __init__(self, params, grads, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params, grads, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError("SGD: momentum and weight_decay must be >= 0")
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.velocity = {k: get_array_module(p).zeros_like(p) for k, p in self.params.items()} if momentum else {}

    def _slots(self):
        return {"velocity": self.velocity}

    def step(self):
        """One update of every parameter in place."""
        self.t += 1
        for k, p in self.params.items():
            g = self.grads[k]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                v = self.velocity[k]
                if self.t == 1:
                    v[...] = g
                else:
                    v *= self.momentum
                    v += g
                g = v
            p -= self.lr * g


class Adam(Optimizer):
    """Adam with bias correction; defaults are PyTorch's (lr 1e-3, betas (0.9, 0.999), eps 1e-8).

    When the parameters tile one buffer and the gradients another (``flatten_parameters``;
    ``build_vae`` does it), every operation of the update runs once over the whole buffer
    instead of once per parameter, with the same arithmetic on every number.
    """

    def __init__(self, params, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, grads, lr)
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1) or eps <= 0 or weight_decay < 0:
            raise ValueError(f"Adam: need 0 <= betas < 1, eps > 0, weight_decay >= 0; got {betas}, {eps}, {weight_decay}")
        self.b1, self.b2, self.eps, self.weight_decay = float(b1), float(b2), float(eps), float(weight_decay)
        flat_p = shared_buffer(self.params.values())
        flat_g = shared_buffer(self.grads[k] for k in self.params)
        #: True when each operation of the update runs once over a buffer of all parameters
        self.flat = flat_p is not None and flat_g is not None and flat_p.size == flat_g.size
        if self.flat:
            # one (p, g, m, v) set over everything; m and v keep per-parameter views for state_dict
            xp = get_array_module(flat_p)
            flat_m, flat_v = xp.zeros_like(flat_p), xp.zeros_like(flat_p)
            self.m = dict(zip(self.params, views_like(flat_m, self.params.values())))
            self.v = dict(zip(self.params, views_like(flat_v, self.params.values())))
            self._groups = [(flat_p, flat_g, flat_m, flat_v)]
        else:
            self.m = {k: get_array_module(p).zeros_like(p) for k, p in self.params.items()}
            self.v = {k: get_array_module(p).zeros_like(p) for k, p in self.params.items()}
            self._groups = [(p, self.grads[k], self.m[k], self.v[k]) for k, p in self.params.items()]
        # two scratch arrays per group: every step's arithmetic writes into them (out=), so a
        # step allocates nothing; fresh multi-megabyte temporaries cost page faults every step
        self._scratch = [(get_array_module(p).empty_like(p), get_array_module(p).empty_like(p))
                         for p, _, _, _ in self._groups]
        self._parts, self._pool = self._split(), None

    def _split(self):
        """Each group's work items, ``[(p, g, m, v, a, b), ...]``: one, or for the flat NumPy
        buffer of ``PARALLEL_UPDATE_MIN`` numbers or more one contiguous part per BLAS thread
        (separate parameter arrays are updated one by one, as they always were)."""
        parts = []
        for (p, g, m, v), (a, b) in zip(self._groups, self._scratch):
            arrays = (p, g, m, v, a, b)
            big = self.flat and get_array_module(p) is np and p.size >= PARALLEL_UPDATE_MIN
            workers = _blas_threads() if big else 1
            if workers <= 1:
                parts.append([arrays])
                continue
            bounds = [p.size * i // workers for i in range(workers + 1)]
            parts.append([tuple(x[lo:hi] for x in arrays) for lo, hi in zip(bounds[:-1], bounds[1:])])
        return parts

    def _slots(self):
        return {"m": self.m, "v": self.v}

    def step(self):
        """One update of every parameter in place."""
        self.t += 1
        b1, b2 = self.b1, self.b2
        c1 = 1.0 - b1**self.t
        c2 = 1.0 - b2**self.t
        step_size = self.lr / c1
        sqrt_c2 = math.sqrt(c2)

        def update(arrays):
            p, g, m, v, a, b = arrays
            xp = get_array_module(p)
            if self.weight_decay:
                g = g + self.weight_decay * p
            m *= b1                                  # m = b1 m + (1 - b1) g
            m += xp.multiply(g, 1 - b1, out=a)
            v *= b2                                  # v = b2 v + (1 - b2) g^2
            xp.multiply(g, g, out=a)
            a *= 1 - b2
            v += a
            xp.multiply(m, step_size, out=a)         # p -= (lr / c1) m / (sqrt(v) / sqrt(c2) + eps)
            xp.sqrt(v, out=b)
            xp.divide(b, sqrt_c2, out=b)
            b += self.eps
            xp.divide(a, b, out=a)
            p -= a

        for first, *others in self._parts:  # the calling thread takes a group's first part
            if others and self._pool is None:
                self._pool = ThreadPoolExecutor(max(map(len, self._parts)) - 1,
                                                thread_name_prefix="scratchvae-adam")
            pending = [self._pool.submit(update, part) for part in others]
            update(first)
            for done in pending:
                done.result()
