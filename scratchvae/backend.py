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


def _first_line(exc) -> str:
    """An exception as one short line (NVRTC errors carry the whole kernel source)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def _cupy_build(cupy) -> tuple[str, str, str]:
    """``(package, CUDA version CuPy was built for, the setup.cfg extra)`` of an imported CuPy,
    e.g. ``("cupy-cuda12x 14.2.0", "12.9", "cuda12")``."""
    try:
        version = int(cupy.cuda.runtime.runtimeGetVersion())  # the build's CUDA, e.g. 12090
        cuda = f"{version // 1000}.{version % 1000 // 10}"
    except Exception:  # an old or odd CuPy: fall back to the package name
        cuda = ""
    from importlib import metadata

    dists = sorted({d.metadata["Name"] for d in metadata.distributions()
                    if (d.metadata["Name"] or "").lower().startswith("cupy-cuda")})
    package = dists[0] if dists else "cupy"
    major = cuda.split(".")[0] if cuda else "".join(ch for ch in package if ch.isdigit())[:2]
    return f"{package} {getattr(cupy, '__version__', '?')}", cuda or "unknown", f"cuda{major}"


def _fix(cupy) -> str:
    package, cuda, extra = _cupy_build(cupy)
    wheel = f"cupy-{extra}x" if extra[4:].isdigit() else "cupy-cuda12x"
    return (f"{package} expects CUDA {cuda}; fix with pip install -e '.[{extra}]' "
            f"(or pip install '{wheel}[ctk]>=14', which brings the CUDA libraries), or use backend 'numpy'")


def _health_check(cupy) -> None:
    """Prove, once, that CuPy can do what training needs; raise one clear error if not.

    Four stages, each naming the CUDA piece it needs: a device is visible (the driver), a
    tiny kernel compiles and runs (NVRTC), a matrix product runs (cuBLAS), a normal draw
    runs (cuRAND's Philox kernels, the generator ``Generator`` uses). Each result is read
    back and compared, so a stage that runs but computes garbage fails too.
    """
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing, too old or broken
        raise BackendUnavailableError(
            f"backend 'cupy': CuPy is installed but no CUDA GPU is visible ({_first_line(exc)}); "
            f"{_cupy_build(cupy)[0]} needs an NVIDIA driver for CUDA {_cupy_build(cupy)[1]} or newer. "
            "Check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or use backend 'numpy'."
        ) from exc
    if count < 1:
        raise BackendUnavailableError(
            "backend 'cupy': CuPy is installed but no CUDA GPU is visible "
            "(0 devices). Check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or use backend 'numpy'."
        )

    def stage(library, run, expected):
        try:
            got = np.asarray(run(), dtype=np.float64)
        except Exception as exc:
            raise BackendUnavailableError(
                f"backend 'cupy': {library} failed ({_first_line(exc)}); {_fix(cupy)}"
            ) from exc
        if not expected(got):
            raise BackendUnavailableError(
                f"backend 'cupy': {library} ran but gave wrong numbers ({got.ravel()[:4]}); {_fix(cupy)}"
            )

    def compiled_kernel():
        kernel = cupy.ElementwiseKernel("float32 x", "float32 y", "y = x * 2 + 1", "scratchvae_health_check")
        return kernel(cupy.arange(4, dtype=np.float32)).get()

    def matmul():
        a = cupy.arange(6, dtype=np.float32).reshape(2, 3)
        return (a @ a.T).get()

    def normal_draw():
        return _cupy_rng(cupy, 0).standard_normal(size=4096, dtype=np.float32).get()

    square = np.arange(6.0).reshape(2, 3)
    stage("NVRTC (libnvrtc, the CUDA runtime compiler: a tiny kernel)", compiled_kernel,
          lambda y: np.array_equal(y, [1.0, 3.0, 5.0, 7.0]))
    stage("cuBLAS (libcublas: a matrix product)", matmul, lambda y: np.array_equal(y, square @ square.T))
    stage("cuRAND (CuPy's Philox4x3210 generator: a normal draw)", normal_draw,
          lambda z: bool(np.isfinite(z).all()) and abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1)


_HEALTH: dict = {}  # id(cupy module) -> (the module, None or the error it raised): checked once


def _import_cupy():
    """Import CuPy and check, once per process, that it can run here; raise one clear error if not."""
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as exc:
        raise BackendUnavailableError(
            "backend 'cupy' needs CuPy, which is not installed "
            f"({exc}). Install the CUDA extra that matches your driver: "
            "pip install -e '.[cuda12]' (CUDA 12.x) or pip install -e '.[cuda13]' "
            "(CUDA 13.x); or use backend 'numpy'."
        ) from exc
    module, error = _HEALTH.get(id(cupy), (None, None))
    if module is not cupy:  # first time for this module (holding it keeps its id unique)
        try:
            _health_check(cupy)
            error = None
        except BackendUnavailableError as exc:
            error = exc
        _HEALTH[id(cupy)] = (cupy, error)
    if error is not None:
        raise error
    return cupy


def _cupy_rng(cupy, seed: int):
    """A CuPy generator on the counter-based Philox4x3210 bit generator (see ``Generator``)."""
    return cupy.random.Generator(cupy.random.Philox4x3210(seed))


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

    On ``"numpy"`` it wraps ``numpy.random.default_rng(seed)`` (PCG64); on ``"cupy"`` a
    ``cupy.random.Generator`` on the counter-based Philox4x3210 bit generator, so noise is
    made on the GPU with no host transfer and a reseed costs one small kernel launch
    (docs/performance.md, "Noise on the GPU"). The two backends give different streams for
    the same seed.

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
        self._rng = self._new_rng(seed)

    def _new_rng(self, seed):
        if self.xp is np:
            return np.random.default_rng(seed)
        # not cupy.random.default_rng: its XORWOW states are set up by cuRAND skip-ahead,
        # one per GPU thread, tens of milliseconds per generator; Philox's set-up is O(1) a state
        return _cupy_rng(self.xp, seed)

    def reseed(self, *seed_parts: int) -> "Generator":
        """Restart this generator (in place) from a seed derived from ``seed_parts``.

        ``reseed(seed, epoch, step)`` makes every draw a function of those
        numbers alone, on both backends, so training can stop and resume at any
        step boundary and draw exactly the same noise. Returns self.
        """
        words = np.random.SeedSequence([int(p) for p in seed_parts]).generate_state(2)
        derived = int(words[0]) << 32 | int(words[1])
        self._rng = self._new_rng(derived)
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
        if self.xp is not np:
            raise NotImplementedError("random bytes are drawn on NumPy only (CuPy's Generator has no bytes)")
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
