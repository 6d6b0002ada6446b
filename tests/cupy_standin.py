"""A strict NumPy-backed stand-in for CuPy: API-surface checks without a GPU.

This is not GPU verification. Nothing here runs on a GPU, and nothing here says a kernel
computes the right numbers on one (benchmarks/gpu_check.py does that, on a GPU). What it
does check, on any machine with the CuPy wheel installed (it imports without a driver):

- its namespace and every signature are read from the installed CuPy at test time, never
  from a hand-kept list: ``standin.X`` exists only where ``cupy.X`` does, a call binds its
  arguments to CuPy's own signature (``inspect.signature``, or the signature line Cython
  writes at the top of a docstring), and an unknown keyword is a ``TypeError``;
- it refuses what CuPy refuses: ``np.asarray(device_array)`` and any other implicit
  conversion to NumPy, NumPy arrays mixed into device operations, Generator methods CuPy's
  Generator lacks;
- it counts device-to-host transfers (``.get()``, ``float(a)``, ``int(a)``, ``bool(a)``,
  ``.item()``, ``.tolist()``, printing), so a test can count them per training step.

The arithmetic is NumPy's, on the host. ``install()`` puts the stand-in in
``sys.modules["cupy"]``, so ``scratchvae.backend`` finds it exactly as it finds CuPy.
"""
from __future__ import annotations

import importlib
import inspect
import re
import sys
import types
import weakref

import numpy as np

# Functions that take host data by design (they copy it to the device), as in CuPy.
HOST_INPUT_OK = {"array", "asarray", "asanyarray", "asnumpy", "get_array_module"}
# Methods and operators whose result is a host value: each call is one device-to-host transfer.
SYNCING = {"get", "item", "tolist", "__float__", "__int__", "__bool__", "__complex__", "__index__",
           "__repr__", "__str__", "__format__"}
# Names the stand-in never forwards (Python's object machinery, or the refusals below).
_OWN = {"__array__", "__array_ufunc__", "__array_function__", "__array_priority__", "__getattribute__",
        "__getattr__", "__setattr__", "__delattr__", "__init__", "__new__", "__class__", "__dir__",
        "__doc__", "__reduce__", "__reduce_ex__", "__sizeof__", "__init_subclass__", "__subclasshook__",
        "__hash__", "__getstate__", "__setstate__", "__copy__", "__deepcopy__", "__module__",
        "__dlpack__", "__dlpack_device__", "__cuda_array_interface__", "__array_interface__",
        "__pyx_vtable__", "__class_getitem__", "__weakref__"}


def real_cupy():
    """The installed CuPy module, or ``None`` (the caller skips, saying so)."""
    try:
        module = importlib.import_module("cupy")
    except ImportError:
        return None
    return module._real if isinstance(module, Standin) else module  # a stand-in already installed


SKIP_REASON = ("CuPy is not installed, so CuPy's API cannot be read: pip install cupy-cuda12x "
               "(it imports without a GPU; .ci/run installs it)")


# ---------------------------------------------------------------- signatures, read from CuPy

_DOC_SIGNATURE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+)\((.*)\)\s*(?:->.*)?$")


def _split_top_level(text):
    parts, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def signature_from_doc(doc):
    """The signature in the first line of a Cython docstring, e.g.
    ``_ndarray_base.sum(self, axis=None, dtype=None, out=None, keepdims=False) -> _ndarray_base``
    or ``exp(x, /, out=None, \\*, casting='same_kind', dtype=None)``; ``None`` if there is none.
    Defaults become ``None`` (only names and kinds matter here); C types are dropped."""
    lines = (doc or "").strip().splitlines()
    match = _DOC_SIGNATURE.match(lines[0].replace("\\*", "*")) if lines else None
    if not match:
        return None
    params = []
    for part in _split_top_level(match.group(2)):
        if part in ("*", "/"):
            params.append(part)
            continue
        name, eq, _ = part.partition("=")
        name = name.split(":")[0].split()[-1]
        params.append(name + ("=None" if eq and not name.startswith("*") else ""))
    namespace = {}
    try:
        exec(f"def f({', '.join(params)}): pass", namespace)  # noqa: S102 - text from CuPy's docstrings
    except SyntaxError:
        return None
    return inspect.signature(namespace["f"])


def cupy_signature(obj, method=False):
    """CuPy's signature of a callable (for a method, without ``self``), or ``None`` if CuPy
    states none. ``inspect`` first; then the Cython docstring line."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        sig = signature_from_doc(getattr(obj, "__doc__", None))
    if sig is not None and method:
        params = list(sig.parameters.values())
        if params and params[0].name == "self":
            sig = sig.replace(parameters=params[1:])
    return sig


def _bind(sig, qualname, args, kwargs):
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{qualname}{sig}: {exc} (CuPy's signature, read from the installed CuPy)") from None


# ---------------------------------------------------------------- the stand-in

class StandinUnsupported(NotImplementedError):
    """CuPy has it, but the stand-in cannot emulate it (a test using it must say so)."""


class Standin(types.ModuleType):
    """``sys.modules["cupy"]`` during a test: see the module docstring."""

    def __init__(self, real):
        super().__init__("cupy")
        self._real = real
        self.__version__ = real.__version__
        self.d2h = []  # one entry per device-to-host transfer: what made it
        self.ndarray = _make_ndarray_class(self)
        self._cache = {}
        self._wrappers = weakref.WeakValueDictionary()
        self.random = _Namespace(self, real.random, np.random, "cupy.random")
        self.lib = _Namespace(self, real.lib, np.lib, "cupy.lib")
        self.cuda = _FakeCuda(self, real.cuda)

    def reset_counts(self):
        self.d2h.clear()

    # the module namespace, resolved on demand from the real CuPy
    def __getattr__(self, name):
        if name.startswith("_") and name not in ("__name__",):
            raise AttributeError(name)
        cache = self.__dict__["_cache"]
        if name not in cache:
            cache[name] = _resolve(self, self._real, np, "cupy", name)
        return cache[name]

    # --- values crossing between host and device
    def wrap(self, value):
        if isinstance(value, np.ndarray):  # one wrapper per NumPy array, so `a.base is b` holds as in CuPy
            wrapper = self._wrappers.get(id(value))
            if wrapper is None or wrapper._a is not value:
                wrapper = self._wrappers[id(value)] = self.ndarray(value)
            return wrapper
        if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_)):
            return self.ndarray(np.asarray(value))  # CuPy's reductions give 0-d device arrays
        if isinstance(value, tuple):
            return tuple(self.wrap(v) for v in value)
        if isinstance(value, list):
            return [self.wrap(v) for v in value]
        return value

    def unwrap(self, value):
        if isinstance(value, self.ndarray):
            return value._a
        if isinstance(value, tuple):
            return tuple(self.unwrap(v) for v in value)
        if isinstance(value, list):
            return [self.unwrap(v) for v in value]
        if isinstance(value, dict):
            return {k: self.unwrap(v) for k, v in value.items()}
        return value

    def refuse_host(self, where, args, kwargs=None):
        """CuPy's TypeError for a NumPy array mixed into a device operation."""
        for value in _flatten(list(args) + list((kwargs or {}).values())):
            if isinstance(value, np.ndarray):
                raise TypeError(f"{where}: Unsupported type {type(value)} (a NumPy array mixed into a "
                                "device operation; move it with cupy.asarray first)")

    def call(self, qualname, func, sig, args, kwargs, host_ok=False):
        _bind(sig, qualname, args, kwargs)
        if not host_ok:
            self.refuse_host(qualname, args, kwargs)
        out = kwargs.get("out")
        result = func(*self.unwrap(args), **self.unwrap(kwargs))
        if isinstance(out, self.ndarray) and result is out._a:
            return out
        return self.wrap(result)

    # CuPy functions the stand-in implements itself
    def asnumpy(self, a, stream=None, order="C", out=None, blocking=True):
        if isinstance(a, self.ndarray):
            self.d2h.append("asnumpy")
            return a._a.copy()
        return np.asarray(a)

    def get_array_module(self, *args):
        return self if any(isinstance(a, self.ndarray) for a in args) else np


def _flatten(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        else:
            yield v


def _resolve(standin, real_ns, np_ns, path, name):
    """``standin.<path>.<name>``: only where CuPy has it, with CuPy's signature."""
    if not hasattr(real_ns, name):
        raise AttributeError(f"module {path!r} has no attribute {name!r} (the installed CuPy lacks it)")
    real = getattr(real_ns, name)
    if path == "cupy.random":
        special = _random_special(standin, name, real)
        if special is not None:
            return special
    if name == "ElementwiseKernel" and path == "cupy":
        return _elementwise_kernel_class(standin, real)
    if isinstance(real, types.ModuleType):
        return _Namespace(standin, real, getattr(np_ns, name, None), f"{path}.{name}")
    if isinstance(real, type) or not callable(real) or type(real).__module__.startswith("numpy"):
        return real  # dtypes (cupy.float32 is numpy.float32), constants, numpy objects CuPy re-exports
    np_func = getattr(np_ns, name, None) if np_ns is not None else None
    qualname = f"{path}.{name}"
    if np_func is None:
        def unsupported(*args, **kwargs):
            raise StandinUnsupported(f"{qualname} exists in CuPy but has no NumPy counterpart here")
        return unsupported
    sig = cupy_signature(real)
    host_ok = path == "cupy" and name in HOST_INPUT_OK

    def function(*args, **kwargs):
        return standin.call(qualname, np_func, sig, args, kwargs, host_ok=host_ok)

    function.__name__ = name
    function.__qualname__ = qualname
    function.cupy_signature = sig
    return function


class _Namespace:
    """A CuPy submodule (``cupy.random``, ``cupy.lib.stride_tricks``, ...), resolved on demand."""

    def __init__(self, standin, real, np_ns, path):
        self._standin, self._real, self._np, self._path = standin, real, np_ns, path
        self._cache = {}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in self._cache:
            self._cache[name] = _resolve(self._standin, self._real, self._np, self._path, name)
        return self._cache[name]


class _FakeCuda:
    """``cupy.cuda``: one visible stand-in device. Names CuPy lacks are refused; names the
    stand-in does not emulate raise ``StandinUnsupported``."""

    def __init__(self, standin, real_cuda):
        self._real = real_cuda
        runtime = real_cuda.runtime
        props = {"name": b"NumPy stand-in (not a GPU)", "totalGlobalMem": 0, "multiProcessorCount": 1}
        own = {"getDeviceCount": lambda: 1, "runtimeGetVersion": runtime.runtimeGetVersion,
               "getDeviceProperties": lambda device: dict(props)}
        self.runtime = types.SimpleNamespace(**{k: v for k, v in own.items() if hasattr(runtime, k)})

    def __getattr__(self, name):
        if not hasattr(self._real, name):
            raise AttributeError(f"module 'cupy.cuda' has no attribute {name!r}")
        raise StandinUnsupported(f"cupy.cuda.{name} is not emulated by the NumPy stand-in")


# ---------------------------------------------------------------- the device array

def _make_ndarray_class(standin):
    real_nd = standin._real.ndarray
    real_names = set(dir(real_nd))

    def __init__(self, a):
        object.__setattr__(self, "_a", a)

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
                        "construct a NumPy array explicitly. (cupy stand-in)")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or not hasattr(standin._real, ufunc.__name__):
            return NotImplemented
        return getattr(standin, ufunc.__name__)(*inputs, **kwargs)  # CuPy dispatches to itself

    def __array_function__(self, func, types_, args, kwargs):
        module = func.__module__.replace("numpy", "cupy", 1).split(".")
        target = standin
        try:
            for part in module[1:]:
                if not part.startswith("_"):
                    target = getattr(target, part)
            return getattr(target, func.__name__)(*args, **kwargs)
        except AttributeError:
            return NotImplemented

    def __getattr__(self, name):
        if name not in real_names:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} (the installed CuPy lacks it)")
        value = getattr(real_nd, name)
        if name == "data":  # CuPy: a MemoryPointer; its .ptr is the first element's address
            return types.SimpleNamespace(ptr=self._a.__array_interface__["data"][0])
        if not callable(value):  # a property: shape, dtype, T, ...
            return standin.wrap(getattr(self._a, name))
        return _method(self, name, value)

    namespace = dict(__init__=__init__, __array__=__array__, __array_ufunc__=__array_ufunc__,
                     __array_function__=__array_function__, __getattr__=__getattr__, __slots__=("_a", "__weakref__"),
                     __array_priority__=100, __hash__=None, __module__="cupy._core.core")

    def _method(self, name, real_method):
        sig = cupy_signature(real_method, method=True)
        target = getattr(self._a, name, None)
        qualname = f"cupy.ndarray.{name}"
        if name == "get":
            def get(*args, **kwargs):
                _bind(sig, qualname, args, kwargs)
                standin.d2h.append("get")
                return self._a.copy()
            return get
        if target is None:
            def unsupported(*args, **kwargs):
                raise StandinUnsupported(f"{qualname} exists in CuPy but not on NumPy arrays")
            return unsupported

        def method(*args, **kwargs):
            if name in SYNCING:
                standin.d2h.append(name)
            return standin.call(qualname, target, sig, args, kwargs)
        return method

    def make_dunder(name):
        inplace = name.startswith("__i") and name not in ("__init__", "__index__", "__int__", "__invert__",
                                                          "__iter__")

        def dunder(self, *args):
            if name in SYNCING:
                standin.d2h.append(name)
            if name not in ("__getitem__", "__setitem__"):  # index arrays and values may come from the host
                standin.refuse_host(f"cupy.ndarray.{name}", args)
            result = getattr(self._a, name)(*standin.unwrap(args))
            if result is NotImplemented:
                return NotImplemented
            return self if inplace else standin.wrap(result)
        dunder.__name__ = name
        return dunder

    for name in sorted(real_names):
        if (name.startswith("__") and name.endswith("__") and name not in _OWN
                and name not in namespace and hasattr(np.ndarray, name)):
            namespace[name] = make_dunder(name)
    return type("ndarray", (), namespace)


# ---------------------------------------------------------------- random

def _random_special(standin, name, real):
    random = standin._real.random
    if name == "Generator":
        return _generator_class(standin, real)
    if isinstance(real, type) and issubclass(real, random.BitGenerator):
        return _bit_generator_class(standin, name, real)
    if name == "default_rng":
        sig = cupy_signature(real)

        def default_rng(*args, **kwargs):
            _bind(sig, "cupy.random.default_rng", args, kwargs)
            seed = sig.bind(*args, **kwargs).arguments.get("seed")
            return standin.random.Generator(standin.random.XORWOW(seed))
        return default_rng
    return None


def _bit_generator_class(standin, name, real):
    sig = cupy_signature(real.__init__, method=True)

    class BitGenerator:
        def __init__(self, *args, **kwargs):
            _bind(sig, f"cupy.random.{name}", args, kwargs)
            seed = sig.bind(*args, **kwargs).arguments.get("seed")
            # like CuPy: the seed goes through SeedSequence to one 32-bit word
            word = int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])
            self._numpy = (np.random.Philox if name == "Philox4x3210" else np.random.PCG64)(word)

    BitGenerator.__name__ = BitGenerator.__qualname__ = name
    return BitGenerator


def _generator_class(standin, real):
    real_names = {n for n in dir(real) if not n.startswith("_")}
    init_sig = cupy_signature(real.__init__, method=True)

    class Generator:
        def __init__(self, *args, **kwargs):
            _bind(init_sig, "cupy.random.Generator", args, kwargs)
            bit_generator = init_sig.bind(*args, **kwargs).arguments["bit_generator"]
            if not hasattr(bit_generator, "_numpy"):
                raise TypeError(f"cupy.random.Generator needs a cupy BitGenerator, got {type(bit_generator)}")
            self._g = np.random.Generator(bit_generator._numpy)

        def __getattr__(self, name):
            if name not in real_names:
                raise AttributeError(f"'cupy.random.Generator' object has no attribute {name!r} "
                                     "(the installed CuPy lacks it)")
            sig = cupy_signature(getattr(real, name), method=True)
            target = getattr(self._g, name)
            return lambda *args, **kwargs: standin.call(f"cupy.random.Generator.{name}", target, sig,
                                                        args, kwargs)
    return Generator


def _elementwise_kernel_class(standin, real):
    """``ElementwiseKernel`` for kernels whose body is one Python-valid statement
    (``y = x * 2 + 1``), enough for the backend's health check."""
    sig = cupy_signature(real)

    class ElementwiseKernel:
        def __init__(self, *args, **kwargs):
            _bind(sig, "cupy.ElementwiseKernel", args, kwargs)
            bound = sig.bind(*args, **kwargs).arguments
            self._ins = [p.split() for p in bound["in_params"].split(",")]
            self._outs = [p.split() for p in bound["out_params"].split(",")]
            self._op = bound["operation"].strip().rstrip(";")

        def __call__(self, *inputs):
            standin.refuse_host("cupy.ElementwiseKernel", inputs)
            env = {name: np.asarray(standin.unwrap(x), dtype=dtype) for (dtype, name), x in zip(self._ins, inputs)}
            try:
                exec(self._op, {}, env)  # noqa: S102 - the kernel body the caller wrote
            except Exception as exc:
                raise StandinUnsupported(f"the stand-in cannot run kernel body {self._op!r}: {exc}") from exc
            outs = [standin.wrap(np.asarray(env[name], dtype=dtype)) for dtype, name in self._outs]
            return outs[0] if len(outs) == 1 else tuple(outs)
    return ElementwiseKernel


# ---------------------------------------------------------------- install

def install(monkeypatch):
    """Put a fresh stand-in in ``sys.modules["cupy"]`` (undone by ``monkeypatch``); return it."""
    real = real_cupy()
    if real is None:
        raise RuntimeError(SKIP_REASON)
    standin = Standin(real)
    monkeypatch.setitem(sys.modules, "cupy", standin)
    return standin
