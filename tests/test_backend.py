"""The backend module: choosing numpy/cupy, clear errors, seeded generators, host/device moves."""
import ast
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

import scratchvae
from scratchvae.backend import (
    BackendUnavailableError,
    Generator,
    as_generator,
    backend_of,
    cupy_available,
    get_array_module,
    get_xp,
    resolve_dtype,
    to_device,
    to_host,
)

PACKAGE_DIR = Path(scratchvae.__file__).resolve().parent


def test_get_xp_numpy_and_unknown():
    assert get_xp("numpy") is np
    assert get_xp() is np
    for bad in ("torch", "NumPy", "", "gpu"):
        with pytest.raises(ValueError) as info:
            get_xp(bad)
        msg = str(info.value)
        assert repr(bad) in msg
        assert "numpy" in msg and "cupy" in msg
    with pytest.raises(ValueError, match="numpy"):
        Generator(0, backend="jax")


def _fake_cupy(get_device_count):
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    return fake


def test_cupy_unavailable_error(monkeypatch):
    # 1. CuPy not importable (None in sys.modules makes `import cupy` raise ImportError)
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendUnavailableError) as info:
        get_xp("cupy")
    msg = str(info.value)
    assert "pip install" in msg and "cuda12" in msg
    assert isinstance(info.value.__cause__, ImportError)
    ok, why = cupy_available()
    assert ok is False and "pip install" in why
    with pytest.raises(BackendUnavailableError, match="pip install"):
        Generator(0, backend="cupy")

    # 2. CuPy importable, but the CUDA runtime raises (no driver)
    def broken():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(broken))
    with pytest.raises(BackendUnavailableError) as info:
        get_xp("cupy")
    msg = str(info.value)
    assert "no CUDA GPU is visible" in msg
    assert "cudaErrorNoDevice" in msg
    assert "pip install" not in msg  # it is installed; the advice must be about the GPU
    assert isinstance(info.value.__cause__, RuntimeError)
    assert cupy_available()[0] is False

    # 3. CuPy importable, runtime answers 0 devices
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 0))
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU is visible"):
        get_xp("cupy")
    ok, why = cupy_available()
    assert ok is False and "0 devices" in why

    # 4. one visible device, but nothing else of CUDA: the health check's first kernel fails
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 1))
    ok, why = cupy_available()
    assert ok is False and "NVRTC" in why and "\n" not in why

    assert issubclass(BackendUnavailableError, RuntimeError)


def _standin(monkeypatch):
    cupy_standin = pytest.importorskip("cupy_standin")
    if cupy_standin.real_cupy() is None:
        pytest.skip(cupy_standin.SKIP_REASON)
    return cupy_standin.install(monkeypatch)


def test_health_check_names_the_missing_library(monkeypatch):
    """Each stage of the one-time health check, made to fail on the CuPy stand-in the way a
    machine with only the NVIDIA driver fails, gives one line naming the library, the CUDA
    version the installed CuPy was built for, and the command that fixes it."""
    standin = _standin(monkeypatch)  # skips, saying how to install it, without the CuPy wheel
    version = standin._real.cuda.runtime.runtimeGetVersion()  # the wheel's own CUDA version
    cuda = f"{version // 1000}.{version % 1000 // 10}"
    extra = f"cuda{version // 1000}"

    assert get_xp("cupy") is standin  # control: the stand-in passes all four stages
    assert cupy_available() == (True, "")

    def broken(what):
        def fail(*args, **kwargs):
            raise RuntimeError(f"{what}\nsecond line of a long CUDA error")
        return fail

    def check(library):
        ok, why = cupy_available()
        assert ok is False
        assert library in why and f"CUDA {cuda}" in why and f"pip install -e '.[{extra}]'" in why, why
        assert "[ctk]" in why and "\n" not in why and "second line" not in why, why
        with pytest.raises(BackendUnavailableError):
            Generator(0, backend="cupy")

    cases = [
        ("NVRTC", lambda s: monkeypatch.setattr(s, "ElementwiseKernel", broken("Failure finding libnvrtc.so"))),
        ("cuBLAS", lambda s: monkeypatch.setattr(s.ndarray, "__matmul__", broken("CUBLAS_STATUS_NOT_INITIALIZED"))),
        ("cuRAND", lambda s: monkeypatch.setattr(s.random, "Philox4x3210", broken("CURAND_STATUS_INITIALIZATION_FAILED"))),
    ]
    for library, plant in cases:
        standin = _standin(monkeypatch)  # a fresh module: the check runs again
        plant(standin)
        check(library)

    # a stage that runs but computes garbage fails too
    standin = _standin(monkeypatch)
    monkeypatch.setattr(standin.ndarray, "__matmul__", lambda a, b: a.sum(axis=1, keepdims=True) * 0)
    ok, why = cupy_available()
    assert ok is False and "cuBLAS" in why and "ran but gave wrong numbers" in why

    # the check runs once per module: a working stand-in is not checked again
    standin = _standin(monkeypatch)
    assert cupy_available() == (True, "")
    monkeypatch.setattr(standin, "ElementwiseKernel", broken("would fail if run again"))
    assert cupy_available() == (True, "")


def test_get_array_module_follows_inputs(backend, monkeypatch):
    xp = get_xp(backend)
    a = xp.asarray(np.arange(6.0).reshape(2, 3))
    assert get_array_module(a) is xp
    assert backend_of(a) == backend
    assert get_array_module(np.zeros(2), a) is xp  # any device array wins
    assert get_array_module(a, np.zeros(2)) is xp
    # a result computed from backend arrays stays on that backend
    assert get_array_module(a @ a.T + 1.0) is xp

    # NumPy (and non-array) inputs give numpy without ever trying to import CuPy
    monkeypatch.setitem(sys.modules, "cupy", None)
    h = np.ones((2, 2))
    assert get_array_module(h) is np
    assert get_array_module(h, np.float32(1.0), 3.0) is np
    assert get_array_module() is np
    assert backend_of(h) == "numpy"

    # a type defined in a cupy module is recognised by its module name
    fake = _fake_cupy(lambda: 1)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    FakeArray = type("ndarray", (), {"__module__": "cupy._core.core"})
    assert get_array_module(h, FakeArray()) is fake
    assert backend_of(FakeArray()) == "cupy"


def test_generator_seeded(backend):
    xp = get_xp(backend)

    def draw(seed, **kw):
        return Generator(seed, backend).normal((4, 5), **kw)

    a, b, c = draw(7), draw(7), draw(8)
    assert get_array_module(a) is xp  # drawn on the backend
    assert a.shape == (4, 5)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(to_host(a), to_host(b))
    assert not np.array_equal(to_host(a), to_host(c))
    d = draw(7, dtype=np.float64)
    assert d.dtype == np.float64
    assert draw(7, dtype="float64").dtype == np.float64

    # successive draws from one generator differ; a replay with the same seed repeats them
    g1, g2 = Generator(3, backend), Generator(3, backend)
    first, second = to_host(g1.normal((10,))), to_host(g1.normal((10,)))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(to_host(g2.normal((10,))), first)
    np.testing.assert_array_equal(to_host(g2.normal((10,))), second)

    gen = Generator(11, backend)
    n = 200_000
    z = to_host(gen.normal((n,), dtype=np.float64, loc=2.0, scale=3.0))
    # mean within 5 standard errors, std within 2%
    assert abs(z.mean() - 2.0) < 5 * 3.0 / np.sqrt(n)
    assert abs(z.std() - 3.0) < 0.06

    u = gen.uniform((3, 7), low=-2.0, high=5.0)
    assert u.shape == (3, 7) and u.dtype == np.float32 and get_array_module(u) is xp
    uh = to_host(gen.uniform((n,), low=-2.0, high=5.0, dtype=np.float64))
    assert uh.min() >= -2.0 and uh.max() < 5.0
    assert abs(uh.mean() - 1.5) < 5 * (7.0 / np.sqrt(12)) / np.sqrt(n)

    nb = 1_000_000
    for p in (0.0, 0.3, 0.75, 1.0):  # 0.75 and 1.0: NumPy's one-byte path
        bern = gen.bernoulli((nb,), p)
        assert bern.dtype == np.float32 and bern.shape == (nb,)
        bh = to_host(bern)
        assert set(np.unique(bh)) <= {0.0, 1.0}
        sigma = np.sqrt(p * (1 - p) / nb)
        assert abs(bh.mean() - p) <= 5 * sigma + 1e-12
    assert gen.bernoulli((2, 3), 0.5, dtype=np.float64).dtype == np.float64

    ints = to_host(gen.integers(6, size=10_000))
    assert ints.min() >= 0 and ints.max() <= 5
    assert set(np.unique(ints)) == set(range(6))

    perm = gen.permutation(50)
    assert get_array_module(perm) is xp
    ph = to_host(perm)
    np.testing.assert_array_equal(np.sort(ph), np.arange(50))
    assert not np.array_equal(ph, np.arange(50))
    np.testing.assert_array_equal(to_host(Generator(5, backend).permutation(50)),
                                  to_host(Generator(5, backend).permutation(50)))
    assert not np.array_equal(to_host(Generator(5, backend).permutation(50)),
                              to_host(Generator(6, backend).permutation(50)))

    # spawned children are reproducible, on the same backend, and not the parent's stream
    c1, c2 = Generator(9, backend).spawn(), Generator(9, backend).spawn()
    assert c1.backend == backend
    np.testing.assert_array_equal(to_host(c1.normal((5,))), to_host(c2.normal((5,))))
    parent = Generator(9, backend)
    child = parent.spawn()
    assert not np.array_equal(to_host(child.normal((5,))), to_host(parent.normal((5,))))

    # as_generator
    assert as_generator(gen) is gen
    g_seed = as_generator(7, backend)
    assert isinstance(g_seed, Generator) and g_seed.backend == backend
    np.testing.assert_array_equal(to_host(g_seed.normal((4, 5))), to_host(a))
    assert as_generator(np.int64(7), backend).seed == 7
    assert as_generator(None, backend).seed is None
    with pytest.raises(TypeError, match="rng must be"):
        as_generator(1.5)
    with pytest.raises(ValueError, match="float32 or float64"):
        gen.normal((2,), dtype=np.float16)


def test_to_host_to_device_roundtrip(backend):
    xp = get_xp(backend)
    host = np.random.default_rng(0).standard_normal((3, 4))
    dev = to_device(host, backend)
    assert get_array_module(dev) is xp
    assert backend_of(dev) == backend
    assert dev.dtype == np.float64 and dev.shape == (3, 4)
    back = to_host(dev)
    assert isinstance(back, np.ndarray)
    assert back.tobytes() == host.tobytes()  # bit-for-bit

    as32 = to_device(host, backend, dtype=np.float32)
    assert as32.dtype == np.float32
    np.testing.assert_array_equal(to_host(as32), host.astype(np.float32))

    # device -> numpy backend lands on the host
    on_host = to_device(dev, "numpy")
    assert isinstance(on_host, np.ndarray)
    np.testing.assert_array_equal(on_host, host)
    # and back again
    np.testing.assert_array_equal(to_host(to_device(on_host, backend)), host)

    # to_host is a no-op for NumPy input, and converts lists
    assert to_host(host) is host
    lst = to_host([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(lst, np.ndarray)
    np.testing.assert_array_equal(lst, [[1.0, 2.0], [3.0, 4.0]])

    with pytest.raises(ValueError, match="unknown backend"):
        to_device(host, "tpu")


def test_resolve_dtype():
    assert resolve_dtype() == np.dtype(np.float32)
    assert resolve_dtype(None) == np.dtype(np.float32)
    assert isinstance(resolve_dtype(None), np.dtype)
    for ok32 in (np.float32, "float32", np.dtype("float32")):
        assert resolve_dtype(ok32) == np.dtype(np.float32)
    for ok64 in (np.float64, "float64", float):
        assert resolve_dtype(ok64) == np.dtype(np.float64)
    for bad in (int, np.int32, np.int64, np.float16, "float16", bool, np.complex128, np.uint8):
        with pytest.raises(ValueError, match="float32 or float64"):
            resolve_dtype(bad)


def _cupy_imports(source: str, filename: str):
    """Line numbers where ``source`` imports cupy (statements or import_module/__import__ calls)."""
    hits = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            if any(a.name == "cupy" or a.name.startswith("cupy.") for a in node.names):
                hits.append(node.lineno)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 0 and (mod == "cupy" or mod.startswith("cupy.")):
                hits.append(node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and (
                    arg.value == "cupy" or arg.value.startswith("cupy.")
                ):
                    hits.append(node.lineno)
    return hits


def test_no_cupy_import_outside_backend():
    # the scanner itself finds the imports that backend.py does have
    assert _cupy_imports((PACKAGE_DIR / "backend.py").read_text(), "backend.py")
    assert _cupy_imports("import cupy as cp\n", "x") == [1]
    assert _cupy_imports("from cupy import cuda\n", "x") == [1]
    assert _cupy_imports("import importlib\nimportlib.import_module('cupy')\n", "x") == [2]
    assert _cupy_imports("import numpy  # cupy is optional\n", "x") == []

    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) > 5
    offenders = {}
    for path in files:
        if path == PACKAGE_DIR / "backend.py":
            continue
        hits = _cupy_imports(path.read_text(), str(path))
        if hits:
            offenders[str(path.relative_to(PACKAGE_DIR))] = hits
    assert not offenders, f"cupy imported outside scratchvae/backend.py: {offenders}"


def test_backend_not_chosen_at_import():
    code = textwrap.dedent(
        """
        import sys

        attempts = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == "cupy" or name.startswith("cupy."):
                    attempts.append(name)
                return None

        sys.meta_path.insert(0, Watch())
        import scratchvae
        import scratchvae.layers
        import scratchvae.backend, scratchvae.optim, scratchvae.gradcheck, scratchvae.functional
        import numpy as np
        layer = scratchvae.layers.Dense(3, 2, seed=0)
        layer.forward(np.ones((4, 3), dtype=np.float32))
        print("ATTEMPTS", attempts)
        print("LOADED", sorted(m for m in sys.modules if m == "cupy" or m.startswith("cupy.")))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ATTEMPTS []" in out.stdout, out.stdout
    assert "LOADED []" in out.stdout, out.stdout

    # control: the watcher does see an attempt when the cupy backend is asked for
    probe = code.replace('print("ATTEMPTS"', 'scratchvae.backend.cupy_available()\nprint("ATTEMPTS"')
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    attempts_line = next(line for line in out.stdout.splitlines() if line.startswith("ATTEMPTS"))
    assert "'cupy'" in attempts_line, out.stdout


def test_numpy_bernoulli_bytes_are_numpy_generator_bytes():
    """The one-byte Bernoulli path reads raw 64-bit draws when that leaves the generator as
    ``numpy.random.Generator.bytes`` would: the masks must be exactly those of ``bytes``, in
    order, across aligned and unaligned sizes (which use ``bytes`` itself) and mixed with other
    draws, so seeded runs keep their dropout masks."""
    gen = Generator(123, "numpy")
    ref = np.random.default_rng(123)
    for shape in [(64, 8), (3, 5), (16,), (3, 4), (7, 1), (2, 4), (5, 4), (1_000, 8)]:
        n = int(np.prod(shape))
        expected = (np.frombuffer(ref.bytes(n), dtype=np.uint8) < 192).reshape(shape)
        np.testing.assert_array_equal(gen.bernoulli(shape, 0.75), expected.astype(np.float32))
        np.testing.assert_array_equal(to_host(gen.normal((3,), dtype=np.float64)),
                                      ref.standard_normal(3))
