"""The one module that knows about NumPy and CuPy.

Everything else in scratchvae asks this module for an array library, usually by
handing it the arrays it already holds (``get_array_module(x)``), so the same
code runs on the CPU and on the GPU. Nothing is chosen at import time and no
global switch exists: a backend is named where arrays are *created*
(parameters, noise, data), and every later op follows its inputs.

Backends: ``"numpy"`` (default, always available) and ``"cupy"`` (needs CuPy and
a visible CUDA GPU; install with ``pip install -e ".[cuda12]"`` or ``.[cuda13]``).
"""
from __future__ import annotations

import importlib

import numpy as np

BACKENDS = ("numpy", "cupy")
DEFAULT_BACKEND = "numpy"
DEFAULT_DTYPE = np.float32
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class BackendUnavailableError(RuntimeError):
    """The cupy backend was asked for on a machine that cannot provide it."""


def _import_cupy():
    """Import CuPy and check that it sees a GPU; raise one clear error if not."""
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as exc:
        raise BackendUnavailableError(
            "backend 'cupy' needs CuPy, which is not installed "
            f"({exc}). Install the CUDA extra that matches your driver: "
            "pip install -e '.[cuda12]' (CUDA 12.x) or pip install -e '.[cuda13]' "
            "(CUDA 13.x); or use backend 'numpy'."
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise BackendUnavailableError(
            "backend 'cupy': CuPy is installed but no CUDA GPU is visible "
            f"({exc}). Check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or use backend 'numpy'."
        ) from exc
    if count < 1:
        raise BackendUnavailableError(
            "backend 'cupy': CuPy is installed but no CUDA GPU is visible "
            "(0 devices). Check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or use backend 'numpy'."
        )
    return cupy


def get_xp(backend: str = DEFAULT_BACKEND):
    """Return the array module for a backend name: ``numpy`` or ``cupy``."""
    if backend == "numpy":
        return np
    if backend == "cupy":
        return _import_cupy()
    raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")


def cupy_available() -> tuple[bool, str]:
    """``(True, "")`` when the cupy backend can run here, else ``(False, reason)``."""
    try:
        _import_cupy()
    except BackendUnavailableError as exc:
        return False, str(exc)
    return True, ""


def get_array_module(*arrays):
    """The array module (numpy or cupy) that owns ``arrays``, like ``cupy.get_array_module``.

    Looks only at the arrays' types, so it never imports CuPy for NumPy inputs.
    """
    for a in arrays:
        module = type(a).__module__
        if module.startswith("cupy"):
            return importlib.import_module("cupy")
    return np


def backend_of(array) -> str:
    """The backend name of an array: ``"numpy"`` or ``"cupy"``."""
    return "cupy" if get_array_module(array) is not np else "numpy"


def to_host(array) -> np.ndarray:
    """Copy an array to host memory as a NumPy array (no-op for NumPy input)."""
    if isinstance(array, np.ndarray):
        return array
    if get_array_module(array) is not np:
        return array.get()
    return np.asarray(array)


def to_device(array, backend: str = DEFAULT_BACKEND, dtype=None):
    """Place ``array`` on ``backend`` (copying between host and GPU as needed)."""
    xp = get_xp(backend)
    if xp is np:
        array = to_host(array)
    return xp.asarray(array, dtype=dtype)


def resolve_dtype(dtype=None) -> np.dtype:
    """Validate a float dtype; ``None`` means the default, float32."""
    dt = np.dtype(DEFAULT_DTYPE if dtype is None else dtype)
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


class Generator:
    """A seeded random generator that draws directly on its backend.

    On ``"numpy"`` it wraps ``numpy.random.default_rng(seed)``; on ``"cupy"``
    ``cupy.random.default_rng(seed)``, so noise is made on the GPU with no host
    transfer. The two backends give different streams for the same seed.

    Parameters
    ----------
    seed : int or None
        ``None`` draws fresh entropy.
    backend : str
        ``"numpy"`` or ``"cupy"``.
    """

    def __init__(self, seed: int | None = None, backend: str = DEFAULT_BACKEND):
        self.backend = backend
        self.xp = get_xp(backend)
        self.seed = seed
        self._rng = self.xp.random.default_rng(seed)

    def reseed(self, *seed_parts: int) -> "Generator":
        """Restart this generator (in place) from a seed derived from ``seed_parts``.

        ``reseed(seed, epoch, step)`` makes every draw a function of those
        numbers alone, on both backends, so training can stop and resume at any
        step boundary and draw exactly the same noise. Returns self.
        """
        words = np.random.SeedSequence([int(p) for p in seed_parts]).generate_state(2)
        derived = int(words[0]) << 32 | int(words[1])
        self._rng = self.xp.random.default_rng(derived)
        return self

    def normal(self, shape, dtype=None, loc=0.0, scale=1.0):
        """Standard normal draws of ``shape`` (times ``scale``, plus ``loc``)."""
        dt = resolve_dtype(dtype)
        z = self._rng.standard_normal(size=tuple(shape), dtype=dt)
        if scale != 1.0:
            z *= scale
        if loc != 0.0:
            z += loc
        return z

    def uniform(self, shape, low=0.0, high=1.0, dtype=None):
        """Uniform draws on ``[low, high)``."""
        dt = resolve_dtype(dtype)
        u = self._rng.random(size=tuple(shape), dtype=dt)
        return u * (high - low) + low

    def bernoulli(self, shape, p_one: float, dtype=None):
        """0/1 draws (as floats) that are 1 with probability ``p_one``.

        On NumPy, when ``256 * p_one`` is a whole number (p = 0.25, 0.5, 0.75, ...), each
        draw is one random byte compared with ``256 * p_one``: exact, and a quarter of the
        random bits (and about a third of the time) of a float32 uniform draw.
        """
        dt = resolve_dtype(dtype)
        shape = tuple(shape)
        threshold = p_one * 256
        if self.xp is np and float(threshold).is_integer():
            draws = self._random_bytes(int(np.prod(shape)))
            return (draws.reshape(shape) < threshold).astype(dt)
        return (self._rng.random(size=shape, dtype=dt) < p_one).astype(dt)

    def _random_bytes(self, n):
        """``n`` random bytes (NumPy), the same stream as ``numpy.random.Generator.bytes``.

        ``bytes`` fills them 32 bits at a time, seven times slower than reading the bit
        generator's raw 64-bit outputs, which hold the same bytes (PCG64: a 64-bit draw is two
        32-bit ones, low half first). The fast read is taken when it leaves the same state:
        n a multiple of 8 and no half-used 32-bit draw pending; otherwise ``bytes`` itself.
        """
        bitgen = self._rng.bit_generator
        if n % 8 == 0 and isinstance(bitgen, np.random.PCG64) and not bitgen.state["has_uint32"]:
            return bitgen.random_raw(n // 8).astype("<u8", copy=False).view(np.uint8)
        return np.frombuffer(self._rng.bytes(n), dtype=np.uint8)

    def integers(self, high: int, size):
        """Integers in ``[0, high)``."""
        return self._rng.integers(0, high, size=size)

    def permutation(self, n: int):
        """A random permutation of ``range(n)``, on this generator's backend."""
        if self.xp is np:
            return self._rng.permutation(n)
        return self.xp.argsort(self._rng.random(size=n))  # CuPy's Generator has no permutation

    def spawn(self) -> "Generator":
        """A new, independent generator on the same backend, seeded from this one."""
        child_seed = int(to_host(self.integers(2**31 - 1, size=1))[0])
        return Generator(child_seed, self.backend)

    def __repr__(self) -> str:
        return f"Generator(seed={self.seed!r}, backend={self.backend!r})"


def as_generator(rng=None, backend: str = DEFAULT_BACKEND) -> Generator:
    """Accept a ``Generator``, an int seed or ``None`` and return a ``Generator``.

    An existing generator is returned as is (its backend wins); a seed or ``None``
    makes a new one on ``backend``.
    """
    if isinstance(rng, Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return Generator(None if rng is None else int(rng), backend)
    raise TypeError(
        f"rng must be a scratchvae.backend.Generator, an int seed or None, got {type(rng).__name__}"
    )
