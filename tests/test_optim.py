"""SGD and Adam against the textbook (PyTorch) update formulas, written out here."""
import numpy as np
import pytest

from optional import torch_or_skip

from scratchvae.backend import backend_of, get_xp, to_device, to_host
from scratchvae.layers import Dense
from scratchvae.optim import SGD, Adam

SHAPES = {"W": (3, 4), "b": (4,), "s": (1,)}


def _host_values(seed):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) for k, s in SHAPES.items()}


def _grad_sequence(n_steps, seed=99):
    """A different gradient for every step (host float64)."""
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(s) for k, s in SHAPES.items()} for _ in range(n_steps)]


def _on_backend(host_dict, backend):
    return {k: to_device(v.copy(), backend, dtype=np.float64) for k, v in host_dict.items()}


def _feed(grads, host_grads):
    """Write new gradient values into the arrays the optimizer holds (in place)."""
    for k, g in host_grads.items():
        grads[k][...] = to_device(g, backend_of(grads[k]))


def _assert_close(params, expected):
    for k in expected:
        np.testing.assert_allclose(to_host(params[k]), expected[k], rtol=1e-12, atol=1e-15, err_msg=k)


@pytest.mark.parametrize(
    "momentum, weight_decay",
    [(0.0, 0.0), (0.0, 0.05), (0.9, 0.0), (0.9, 0.05)],
)
def test_sgd_step_matches_formula(backend, momentum, weight_decay):
    lr = 0.1
    p0 = _host_values(0)
    grads_seq = _grad_sequence(3)
    params = _on_backend(p0, backend)
    grads = _on_backend({k: np.zeros(s) for k, s in SHAPES.items()}, backend)
    opt = SGD(params, grads, lr=lr, momentum=momentum, weight_decay=weight_decay)

    # Reference, written out: g = grad + wd*p; v = mu*v + g (v = g at step 1); p -= lr*v
    ref_p = {k: v.copy() for k, v in p0.items()}
    ref_v = {}
    for t, host_g in enumerate(grads_seq, start=1):
        _feed(grads, host_g)
        opt.step()
        for k in SHAPES:
            g = host_g[k] + weight_decay * ref_p[k]
            if momentum:
                ref_v[k] = g.copy() if t == 1 else momentum * ref_v[k] + g
                g = ref_v[k]
            ref_p[k] = ref_p[k] - lr * g
        _assert_close(params, ref_p)
        assert opt.t == t

    # the parameters really moved (the check above is not trivially true)
    for k in SHAPES:
        assert not np.allclose(to_host(params[k]), p0[k])


def test_sgd_momentum_differs_from_plain(backend):
    """Momentum carries the previous gradient: with a zero gradient, plain SGD stands still
    and momentum SGD keeps moving by lr * mu * v."""
    p0 = _host_values(1)
    g1 = _grad_sequence(1, seed=5)[0]
    moved = {}
    for mu in (0.0, 0.5):
        params = _on_backend(p0, backend)
        grads = _on_backend(g1, backend)
        opt = SGD(params, grads, lr=0.2, momentum=mu)
        opt.step()
        after1 = {k: to_host(v).copy() for k, v in params.items()}
        opt.zero_grad()
        opt.step()
        moved[mu] = {k: to_host(params[k]) - after1[k] for k in SHAPES}
    for k in SHAPES:
        np.testing.assert_array_equal(moved[0.0][k], 0.0)
        np.testing.assert_allclose(moved[0.5][k], -0.2 * 0.5 * g1[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_step_matches_formula(backend, weight_decay):
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    p0 = _host_values(2)
    grads_seq = _grad_sequence(3, seed=7)
    # make the grads of one tensor tiny, so eps matters there
    for g in grads_seq:
        g["s"] = g["s"] * 1e-7
    params = _on_backend(p0, backend)
    grads = _on_backend({k: np.zeros(s) for k, s in SHAPES.items()}, backend)
    opt = Adam(params, grads, weight_decay=weight_decay)  # PyTorch defaults
    assert (opt.lr, opt.b1, opt.b2, opt.eps) == (lr, b1, b2, eps)

    ref_p = {k: v.copy() for k, v in p0.items()}
    m = {k: np.zeros(s) for k, s in SHAPES.items()}
    v = {k: np.zeros(s) for k, s in SHAPES.items()}
    for t, host_g in enumerate(grads_seq, start=1):
        _feed(grads, host_g)
        opt.step()
        for k in SHAPES:
            g = host_g[k] + weight_decay * ref_p[k]
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            mhat = m[k] / (1 - b1**t)
            vhat = v[k] / (1 - b2**t)
            ref_p[k] = ref_p[k] - lr * mhat / (np.sqrt(vhat) + eps)
        _assert_close(params, ref_p)

    # Adam's first step, simplified by hand: mhat = g, vhat = g^2, so dp = -lr * g / (|g| + eps)
    params = _on_backend(p0, backend)
    grads = _on_backend(grads_seq[0], backend)
    Adam(params, grads).step()
    for k in SHAPES:
        g = grads_seq[0][k]
        delta = to_host(params[k]) - p0[k]
        np.testing.assert_allclose(delta, -lr * g / (np.abs(g) + eps), rtol=1e-9, atol=1e-18, err_msg=k)


def test_optimizer_updates_in_place(backend):
    xp = get_xp(backend)
    layer = Dense(3, 2, seed=0, backend=backend)  # float32 by default
    x = xp.asarray(np.random.default_rng(0).standard_normal((5, 3)), dtype=np.float32)
    dy = xp.asarray(np.random.default_rng(1).standard_normal((5, 2)), dtype=np.float32)
    layer.forward(x)
    layer.backward(dy)

    for opt_cls, kwargs in [(SGD, {"lr": 0.1, "momentum": 0.9}), (Adam, {"lr": 0.01})]:
        ids = {k: id(v) for k, v in layer.params.items()}
        grad_ids = {k: id(v) for k, v in layer.grads.items()}
        before = {k: to_host(v).copy() for k, v in layer.params.items()}
        opt = opt_cls(layer.params, layer.grads, **kwargs)
        opt.step()
        for k in ("W", "b"):
            assert id(layer.params[k]) == ids[k], f"{opt_cls.__name__} replaced params[{k!r}]"
            assert id(layer.grads[k]) == grad_ids[k]
            assert opt.params[k] is layer.params[k]
            assert layer.params[k].dtype == np.float32
            assert not np.array_equal(to_host(layer.params[k]), before[k])
        # the layer's next forward uses the updated weights
        W, b = to_host(layer.params["W"]), to_host(layer.params["b"])
        y = to_host(layer.forward(x))
        np.testing.assert_allclose(y, to_host(x) @ W + b, rtol=1e-5, atol=1e-6)
        y_old = to_host(x) @ before["W"] + before["b"]
        assert not np.allclose(y, y_old)
        # and new gradients written by the layer reach the optimizer
        layer.backward(dy)
        for k in ("W", "b"):
            assert opt.grads[k] is layer.grads[k]


def test_zero_grad(backend):
    layer = Dense(4, 3, seed=1, backend=backend)
    xp = get_xp(backend)
    x = xp.asarray(np.random.default_rng(2).standard_normal((6, 4)), dtype=np.float32)
    layer.forward(x)
    layer.backward(xp.ones((6, 3), dtype=np.float32))
    assert all(np.any(to_host(g) != 0) for g in layer.grads.values())
    params_before = {k: to_host(v).copy() for k, v in layer.params.items()}
    grad_objects = dict(layer.grads)

    for opt in (SGD(layer.params, layer.grads, lr=0.1), Adam(layer.params, layer.grads)):
        layer.backward(xp.ones((6, 3), dtype=np.float32))
        opt.zero_grad()
        for k, g in layer.grads.items():
            assert g is grad_objects[k]
            np.testing.assert_array_equal(to_host(g), 0.0)
        for k, p in layer.params.items():
            np.testing.assert_array_equal(to_host(p), params_before[k])
        # a step on zero gradients leaves plain SGD and Adam's parameters where they are
        opt.step()
        for k, p in layer.params.items():
            np.testing.assert_array_equal(to_host(p), params_before[k])


@pytest.mark.parametrize(
    "opt_cls, kwargs",
    [
        (SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
        (SGD, {"lr": 0.05}),
        (Adam, {"lr": 0.01, "weight_decay": 0.001}),
    ],
)
def test_optimizer_state_roundtrip(backend, opt_cls, kwargs):
    p0 = _host_values(3)
    seq = _grad_sequence(6, seed=11)

    # A: six uninterrupted steps
    pa = _on_backend(p0, backend)
    ga = _on_backend(seq[0], backend)
    opt_a = opt_cls(pa, ga, **kwargs)
    for g in seq:
        _feed(ga, g)
        opt_a.step()

    # B: two steps, snapshot, then keep going (the snapshot must not follow it)
    pb = _on_backend(p0, backend)
    gb = _on_backend(seq[0], backend)
    opt_b = opt_cls(pb, gb, **kwargs)
    for g in seq[:2]:
        _feed(gb, g)
        opt_b.step()
    state = opt_b.state_dict()
    params_at_snapshot = {k: to_host(v).copy() for k, v in pb.items()}
    assert state["t"] == 2
    for key, val in state.items():
        if key != "t":
            assert isinstance(val, np.ndarray), f"{key} is not a host array"
    expected_keys = {"t"}
    if opt_cls is Adam:
        expected_keys |= {f"{slot}.{k}" for slot in ("m", "v") for k in SHAPES}
    elif kwargs.get("momentum"):
        expected_keys |= {f"velocity.{k}" for k in SHAPES}
    assert set(state) == expected_keys
    for g in seq[2:]:
        _feed(gb, g)
        opt_b.step()

    # C: a fresh optimizer on the snapshot's parameters, loaded with the snapshot
    pc = _on_backend(params_at_snapshot, backend)
    gc = _on_backend(seq[0], backend)
    opt_c = opt_cls(pc, gc, **kwargs)
    opt_c.load_state_dict(state)
    assert opt_c.t == 2
    for g in seq[2:]:
        _feed(gc, g)
        opt_c.step()

    for k in SHAPES:
        np.testing.assert_array_equal(to_host(pc[k]), to_host(pa[k]), err_msg=k)
        np.testing.assert_array_equal(to_host(pb[k]), to_host(pa[k]), err_msg=k)

    # a state without its slots is refused, naming the missing key
    if len(expected_keys) > 1:
        missing = sorted(expected_keys - {"t"})[0]
        broken = {k: v for k, v in state.items() if k != missing}
        with pytest.raises(ValueError, match=missing.replace(".", r"\.")):
            opt_cls(_on_backend(p0, backend), _on_backend(seq[0], backend), **kwargs).load_state_dict(broken)


def test_loaded_state_changes_next_step():
    """Loading state matters: a fresh Adam without the loaded moments takes a different step."""
    p0 = _host_values(4)
    seq = _grad_sequence(3, seed=12)
    params = _on_backend(p0, "numpy")
    grads = _on_backend(seq[0], "numpy")
    opt = Adam(params, grads, lr=0.01)
    for g in seq[:2]:
        _feed(grads, g)
        opt.step()
    state = opt.state_dict()
    snap = {k: v.copy() for k, v in params.items()}

    results = []
    for load in (True, False):
        p = _on_backend(snap, "numpy")
        gr = _on_backend(seq[2], "numpy")
        o = Adam(p, gr, lr=0.01)
        if load:
            o.load_state_dict(state)
        o.step()
        results.append(p["W"].copy())
    assert not np.allclose(results[0], results[1])


@pytest.mark.parametrize("opt_cls", [SGD, Adam])
def test_optimizer_bad_arguments(opt_cls):
    p = {"W": np.zeros((2, 3)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match=r"different names.*'b'"):
        opt_cls(p, {"W": np.zeros((2, 3))}, lr=0.1)
    with pytest.raises(ValueError, match=r"different names.*'c'"):
        opt_cls(p, {"W": np.zeros((2, 3)), "b": np.zeros(3), "c": np.zeros(1)}, lr=0.1)
    with pytest.raises(ValueError, match=r"params\['W'\] has shape \(2, 3\).*grads\['W'\] has shape \(3, 2\)"):
        opt_cls(p, {"W": np.zeros((3, 2)), "b": np.zeros(3)}, lr=0.1)
    g = {"W": np.zeros((2, 3)), "b": np.zeros(3)}
    for lr in (0, 0.0, -1e-3):
        with pytest.raises(ValueError, match=r"lr must be positive"):
            opt_cls(p, g, lr=lr)
    if opt_cls is SGD:
        with pytest.raises(ValueError, match="momentum"):
            SGD(p, g, lr=0.1, momentum=-0.5)
        with pytest.raises(ValueError, match="weight_decay"):
            SGD(p, g, lr=0.1, weight_decay=-1.0)
    else:
        for bad in ({"betas": (1.0, 0.999)}, {"betas": (0.9, -0.1)}, {"eps": 0.0}, {"weight_decay": -1.0}):
            with pytest.raises(ValueError, match="Adam"):
                Adam(p, g, **bad)
    # valid arguments are accepted
    opt_cls(p, g, lr=0.1)


def _torch_compare(torch, opt_cls, torch_cls, kwargs, torch_kwargs, n_steps=4):
    p0 = _host_values(5)
    seq = _grad_sequence(n_steps, seed=13)
    params = _on_backend(p0, "numpy")
    grads = _on_backend(seq[0], "numpy")
    opt = opt_cls(params, grads, **kwargs)
    tp = {k: torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True) for k, v in p0.items()}
    topt = torch_cls(list(tp.values()), **torch_kwargs)
    for g in seq:
        _feed(grads, g)
        opt.step()
        for k, t in tp.items():
            t.grad = torch.tensor(g[k], dtype=torch.float64)
        topt.step()
        for k in SHAPES:
            np.testing.assert_allclose(params[k], tp[k].detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=k)


def test_adam_matches_torch():
    torch = torch_or_skip()
    _torch_compare(torch, Adam, torch.optim.Adam, {}, {})
    _torch_compare(torch, Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
                   {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1})


def test_sgd_matches_torch():
    torch = torch_or_skip()
    kw = {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}
    _torch_compare(torch, SGD, torch.optim.SGD, kw, kw)
    _torch_compare(torch, SGD, torch.optim.SGD, {"lr": 0.05}, {"lr": 0.05})


# -- one buffer for all parameters -------------------------------------------------------------
def _flat_and_plain_vae(backend, model="paper-conv"):
    from scratchvae.models import build_vae

    flat = build_vae(model, 3, seed=4, backend=backend)
    plain = build_vae(model, 3, seed=4, backend=backend)
    for k, p in plain.params.items():  # break the tiling: every parameter its own array again
        _replace(plain, k, p.copy())
    return flat, plain


def _replace(model, dotted, array):
    """Put ``array`` where ``model.params[dotted]`` lives (and a fresh zero gradient)."""
    from scratchvae.flat_params import _holders

    for holder in _holders(model):
        for name, p in list(holder.params.items()):
            if p is model.params[dotted]:
                holder.params[name] = array
                holder.grads[name] = get_xp(backend_of(array)).zeros_like(array)
                return
    raise KeyError(dotted)


def test_flatten_parameters_keeps_values_and_tiles_one_buffer(backend):
    from scratchvae.flat_params import flatten_parameters, shared_buffer
    from scratchvae.models import build_vae

    vae = build_vae("paper-mlp", 2, seed=1, backend=backend)  # build_vae flattens
    before = {k: to_host(p).copy() for k, p in vae.params.items()}
    P, G = shared_buffer(vae.params.values()), shared_buffer(vae.grads.values())
    assert P is not None and G is not None and P.size == G.size == vae.num_params()
    np.testing.assert_array_equal(to_host(P), np.concatenate([v.ravel() for v in before.values()]))
    P[...] = 0.5  # the layers read the buffer
    assert all(float(to_host(p).min()) == float(to_host(p).max()) == 0.5 for p in vae.params.values())
    P2, _ = flatten_parameters(vae)  # flattening again copies into new buffers, same values
    np.testing.assert_array_equal(to_host(P2), to_host(P))
    _replace(vae, "decoder.2.b", vae.params["decoder.2.b"].copy())
    assert shared_buffer(vae.params.values()) is None  # a reassigned parameter breaks the tiling
    with pytest.raises(ValueError, match="no parameters"):
        flatten_parameters(_Empty())


class _Empty:
    params, grads = {}, {}


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_flat_adam_is_bit_identical_to_per_parameter_adam(backend, weight_decay):
    """Training steps of a flattened VAE (one Adam update over one buffer) and of the same VAE
    with separate arrays (one update per parameter): the same numbers bit for bit, and the
    same optimizer state, which loads into either kind."""
    flat, plain = _flat_and_plain_vae(backend)
    x = to_device(np.random.default_rng(0).random((6, 1, 28, 28)), backend, dtype=np.float32)
    opts = [Adam(m.params, m.grads, lr=1e-2, weight_decay=weight_decay) for m in (flat, plain)]
    assert [o.flat for o in opts] == [True, False]
    for step in range(3):
        for model, opt in zip((flat, plain), opts):
            model.rng.reseed(0, 0, step)
            model.forward(x, training=True)
            model.backward()
            opt.step()
    for k in flat.params:
        np.testing.assert_array_equal(to_host(flat.params[k]), to_host(plain.params[k]))
    states = [o.state_dict() for o in opts]
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        np.testing.assert_array_equal(states[0][k], states[1][k])
    opts[0].load_state_dict(states[1])  # per-parameter state into the flat optimizer
    np.testing.assert_array_equal(to_host(opts[0].m["decoder.8.W"]), states[1]["m.decoder.8.W"])


def test_vae_stays_flat_when_moved(backend):
    from scratchvae.flat_params import shared_buffer
    from scratchvae.models import build_vae

    vae = build_vae("paper-mlp", 2, seed=1)
    values = {k: to_host(p).copy() for k, p in vae.params.items()}
    vae.to_backend(backend)
    assert shared_buffer(vae.params.values()) is not None
    assert shared_buffer(vae.grads.values()) is not None
    for k, p in vae.params.items():
        np.testing.assert_array_equal(to_host(p), values[k])


def _tiled(shapes, values):
    """{name: view} tiling one flat float32 buffer (as ``flatten_parameters`` lays them out)."""
    flat = np.asarray(values, dtype=np.float32).copy()
    out, start = {}, 0
    for k, shape in shapes.items():
        size = int(np.prod(shape))
        out[k] = flat[start:start + size].reshape(shape)
        start += size
    return out, flat


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_on_several_threads_is_bit_identical_to_one(monkeypatch, weight_decay):
    """A flat buffer above ``PARALLEL_UPDATE_MIN`` is updated in one contiguous part per BLAS
    thread, each part in its own thread: every number gets the one-thread arithmetic, whatever
    the thread count (1, 2 or 3 parts, split at odd places), state included."""
    from scratchvae import optim

    shapes = {"a": (700, 300), "b": (301,), "c": (97, 13)}  # 211,562 numbers, over 2**17
    n = sum(int(np.prod(s)) for s in shapes.values())
    start = np.random.default_rng(0).standard_normal(n)
    grads_seen = np.random.default_rng(1).standard_normal((4, n))
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(optim, "_blas_threads", lambda threads=threads: threads)
        params, _ = _tiled(shapes, start)
        grads, flat_g = _tiled(shapes, np.zeros(n))
        opt = Adam(params, grads, lr=1e-2, weight_decay=weight_decay)
        assert opt.flat and [len(parts) for parts in opt._parts] == [threads]
        for g in grads_seen:
            flat_g[...] = g
            opt.step()
        results.append(({k: p.copy() for k, p in params.items()}, opt.state_dict()))
    for params, state in results[1:]:
        for k in params:
            np.testing.assert_array_equal(params[k], results[0][0][k])
        for k in state:
            np.testing.assert_array_equal(state[k], results[0][1][k])


def test_a_small_buffer_is_updated_in_one_part(monkeypatch):
    from scratchvae import optim

    monkeypatch.setattr(optim, "_blas_threads", lambda: 2)
    p = {"w": np.ones(1000, np.float32)}
    assert [len(parts) for parts in Adam(p, {"w": np.zeros(1000, np.float32)})._parts] == [1]
