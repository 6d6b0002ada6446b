"""The readers of a run folder trust nothing: malformed checkpoints, config.json and metrics.csv,
built on purpose (the faults found in issue 13) and drawn by hypothesis (valid archives with
mutated members, shapes, dtypes and metadata; random bytes; random JSON and CSV), raise only
the documented error (``CheckpointError`` / ``RunFileError``) naming the file, and never load
a wrong array."""
import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchvae.runs.checkpoint import (CheckpointError, expected_arrays, load_model, read_checkpoint,
                                   save_checkpoint)
from scratchvae.models import build_vae
from scratchvae.optim import Adam
from scratchvae.runs.folder import RunFolder
from scratchvae.runs.schema import (METRICS_FIELDS, RunFileError, format_metrics_csv, parse_config_json,
                                   parse_metrics_csv)
from scratchvae.training import TrainConfig

MODEL = "paper-conv"  # the smallest paper model: 184,421 parameters
ROW = dict(epoch="1", train_loss="200.1000", test_loss="201.2000", test_recon="195.3000",
           test_kl="5.9000", seconds="1.50", images_per_second="1000.0")
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def valid_config():
    from dataclasses import asdict

    cfg = TrainConfig(model=MODEL, latent_dim=2).resolve()
    return dict(asdict(cfg), versions=dict(numpy=np.__version__), num_params=184421)


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """(path, bytes, members) of a real checkpoint at epoch 1 (one metrics row)."""
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.npz"
    vae = build_vae(MODEL, latent_dim=2, seed=0)
    opt = Adam(vae.params, vae.grads)
    opt.t = 5
    save_checkpoint(path, vae, opt, dict(epoch=1, step=0, loss_sum=0.0), valid_config(), [ROW])
    with np.load(path, allow_pickle=False) as data:
        members = {k: data[k] for k in data.files}
    return path, path.read_bytes(), members


def archive(members, raw=()):
    """An .npz (zip of .npy members) of ``members``; ``raw``: (name, bytes) written as they are."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for key, value in members.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=True)
            z.writestr(f"{key}.npy", member.getvalue())
        for name, data in raw:
            z.writestr(name, data)
    return buf.getvalue()


def meta_of(members):
    return json.loads(str(members["meta"]))


def with_meta(members, meta):
    return {**members, "meta": np.array(json.dumps(meta))}


def refused(tmp_path, data, *fragments):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_valid_checkpoint_loads_exactly(valid):
    path, _, members = valid
    meta, arrays = read_checkpoint(path)
    assert meta["metrics"] == [ROW] and meta["position"]["epoch"] == 1
    for key, value in arrays.items():
        np.testing.assert_array_equal(value, members[key])
        assert value.dtype == members[key].dtype


W = "param/encoder.0.W"


@pytest.mark.parametrize("name, change, fragment", [
    ("int8 weights", lambda m: {**m, W: m[W].astype(np.int8)}, f"{W} is |i1"),
    ("a scalar", lambda m: {**m, W: np.float32(1.0)}, f"{W} is <f4 ()"),
    ("a broadcastable row", lambda m: {**m, W: m[W][:1]}, "the model needs <f4"),
    ("float16", lambda m: {**m, W: m[W].astype(np.float16)}, f"{W} is <f2"),
    ("float64", lambda m: {**m, W: m[W].astype(np.float64)}, f"{W} is <f8"),
    ("big-endian", lambda m: {**m, W: m[W].astype(">f4")}, f"{W} is >f4"),
    ("a NaN", lambda m: {**m, W: np.where(np.arange(m[W].size).reshape(m[W].shape) == 7, np.nan,
                                          m[W]).astype(np.float32)}, "NaN or infinite"),
    ("an infinite Adam moment", lambda m: {**m, "optim/v.encoder.0.W": np.full_like(
        m["optim/v.encoder.0.W"], np.inf)}, "NaN or infinite"),
    ("a missing member", lambda m: {k: v for k, v in m.items() if k != W}, "missing ['param/encoder.0.W']"),
    ("an extra member", lambda m: {**m, "param/extra": np.zeros(3, np.float32)}, "unexpected ['param/extra']"),
    ("an object array (pickle)", lambda m: {**m, W: np.array([{"a": 1}], dtype=object)}, "holds objects"),
    ("a negative step count", lambda m: {**m, "optim/t": np.int64(-1)}, "negative step count"),
    ("an int32 step count", lambda m: {**m, "optim/t": np.int32(5)}, "optim/t is <i4"),
])
def test_bad_arrays_are_refused(tmp_path, valid, name, change, fragment):
    refused(tmp_path, archive(change(valid[2])), fragment)


@pytest.mark.parametrize("name, change, fragment", [
    ("a list", lambda meta: [meta], "a JSON list, not an object"),
    ("a number", lambda meta: 3, "a JSON int, not an object"),
    ("no position", lambda meta: {k: v for k, v in meta.items() if k != "position"}, "has keys"),
    ("a future format", lambda meta: {**meta, "format": 99}, "checkpoint format 99"),
    ("a negative epoch", lambda meta: {**meta, "position": {**meta["position"], "epoch": -1}}, "epoch -1"),
    ("a boolean step", lambda meta: {**meta, "position": {**meta["position"], "step": True}}, "step True"),
    ("rows behind the position", lambda meta: {**meta, "position": {**meta["position"], "epoch": 2}},
     "1 metrics rows for 2 completed epochs"),
    ("a None in a row", lambda meta: {**meta, "metrics": [{**ROW, "test_kl": None}]}, "test_kl"),
    ("a NaN loss in a row", lambda meta: {**meta, "metrics": [{**ROW, "test_loss": "nan"}]}, "not a finite"),
    ("another model's config", lambda meta: {**meta, "config": {**meta["config"], "model": "paper-mlp"}},
     "its config says model"),
    ("a string latent size", lambda meta: {**meta, "config": {**meta["config"], "latent_dim": "2"}},
     "latent_dim"),
    ("a huge latent size", lambda meta: {**meta, "config": {**meta["config"], "latent_dim": 10**9}},
     "latent_dim"),
    ("an unknown config key", lambda meta: {**meta, "config": {**meta["config"], "surprise": 1}},
     "unknown config key 'surprise'"),
    ("shapes that are not lists", lambda meta: {**meta, "architecture": {**meta["architecture"],
                                                                         "shapes": {"a": "b"}}}, "shapes"),
])
def test_bad_metadata_is_refused(tmp_path, valid, name, change, fragment):
    members = valid[2]
    refused(tmp_path, archive(with_meta(members, change(meta_of(members)))), fragment)


def test_bad_files_are_refused(tmp_path, valid):
    _, data, members = valid
    refused(tmp_path, b"", "not a readable zip archive")  # zero bytes: was EOFError
    refused(tmp_path, data[: len(data) // 2], "not a readable")
    refused(tmp_path, archive(members, raw=[("notes.txt", b"hi")]), "unexpected archive member")
    refused(tmp_path, archive({k: v for k, v in members.items() if k != "meta"}), "no meta member")
    refused(tmp_path, archive({**members, "meta": np.array("{not json")}), "not valid JSON")
    refused(tmp_path, archive({**members, "meta": np.array('{"format": NaN}')}), "NaN is not JSON")
    # a header that promises 10^12 floats in a member of a few bytes: refused before allocating
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, dict(descr="<f4", fortran_order=False, shape=(10**12,)))
    raw = [(f"{W}.npy", header.getvalue() + b"\0" * 16)]
    big = archive({k: v for k, v in members.items() if k != W}, raw=raw)
    refused(tmp_path, big, W)
    # a member whose declared size is far beyond what the model needs is refused unread
    huge = archive({k: v for k, v in members.items() if k != W},
                   raw=[(f"{W}.npy", b"\x93NUMPY" + b"\0" * 3_000_000)])
    refused(tmp_path, huge, "bytes, the model's array needs")


def test_format_1_loads_its_rows_from_metrics_csv_and_resume_writes_format_2(tmp_path, valid):
    members = valid[2]
    meta = meta_of(members)
    meta["format"] = 1
    del meta["metrics"]
    run = tmp_path / "old"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(archive(with_meta(members, meta)))
    (run / "metrics.csv").write_text(format_metrics_csv([ROW, {**ROW, "epoch": "2"}]))
    meta1, _, rows = RunFolder(run).read_state()
    assert meta1["format"] == 1 and rows == [ROW]  # the rows up to the checkpoint's epoch
    vae, config = load_model(run)
    assert config["model"] == MODEL and vae.num_params() == 184421
    (run / "metrics.csv").write_text(format_metrics_csv([]))
    with pytest.raises(CheckpointError, match="format-1 checkpoint at epoch 1"):
        RunFolder(run).read_state()


# -- hypothesis: structure-aware and byte-level --------------------------------------------------

def mutate_value(draw, value):
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return None
    if choice == 1:
        return draw(st.sampled_from([float("nan"), float("inf"), -1, 0, 10**30, True, "x", [], {}]))
    if choice == 2 and isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value)))
        return {k: v for k, v in value.items() if k != key}
    if choice == 3 and isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate_value(draw, value[key])}
    if choice == 4 and isinstance(value, list) and value:
        return value[1:] + value[:1] * draw(st.integers(0, 2))
    if choice == 5:
        return [value]
    return draw(st.text(max_size=5))


@FUZZ
@given(st.data())
def test_fuzz_mutated_members_raise_only_checkpoint_error(tmp_path, valid, data):
    members = dict(valid[2])
    expected = expected_arrays(build_vae(MODEL, latent_dim=2))
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(members)))
        kind = data.draw(st.integers(0, 4))
        if key == "meta" or kind == 0:
            meta = meta_of(valid[2])
            members["meta"] = np.array(json.dumps(mutate_value(data.draw, meta)))
        elif kind == 1:
            members[key] = members[key].astype(data.draw(st.sampled_from(
                [np.float16, np.float64, np.int8, np.int64, ">f4", np.complex64, np.bool_])))
        elif kind == 2:
            shape = data.draw(st.lists(st.integers(0, 4), max_size=3))
            members[key] = np.zeros(shape, dtype=members[key].dtype)
        elif kind == 3:
            del members[key]
        else:
            members[f"{key}x"] = members[key]
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(archive(members))
    try:
        meta, arrays = read_checkpoint(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    for key, (shape, dtype) in expected.items():  # loaded: then every array is exactly right
        assert arrays[key].shape == shape and arrays[key].dtype == dtype


@FUZZ
@given(st.data())
def test_fuzz_bytes_raise_only_checkpoint_error(tmp_path, valid, data):
    raw = bytearray(valid[1])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.integers(0, 2))
        # half the edits land in the zip directory and the headers, where the structure is
        at = data.draw(st.one_of(st.integers(0, len(raw) - 1), st.integers(max(0, len(raw) - 4000), len(raw) - 1),
                                 st.integers(0, 300)))
        at = min(at, len(raw) - 1)  # an earlier edit may have cut the file shorter
        if op == 0:
            raw[at] = data.draw(st.integers(0, 255))
        elif op == 1:
            del raw[at:]
            if not raw:
                break
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(bytes(raw))
    try:
        read_checkpoint(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@FUZZ
@given(st.data())
def test_fuzz_config_json_raises_only_run_file_error(data):
    config = valid_config()
    kind = data.draw(st.integers(0, 3))
    if kind == 0:
        text = json.dumps(data.draw(json_values))
    elif kind == 1:
        text = json.dumps(mutate_value(data.draw, config))
    elif kind == 2:
        key = data.draw(st.sampled_from(sorted(config)))
        text = json.dumps({**config, key: data.draw(json_values)})
    else:
        text = data.draw(st.binary(max_size=64)) + json.dumps(config).encode()[data.draw(st.integers(0, 50)):]
    try:
        parsed = parse_config_json(text, "config.json")
    except RunFileError as exc:
        assert "config.json" in str(exc)
        return
    TrainConfig(**{k: v for k, v in parsed.items() if k in TrainConfig.__dataclass_fields__
                   and k != "preprocess"}).resolve()  # what passes, trains


@FUZZ
@given(st.data())
def test_fuzz_metrics_csv_raises_only_run_file_error(data):
    text = format_metrics_csv([ROW, {**ROW, "epoch": "2"}])
    kind = data.draw(st.integers(0, 2))
    if kind == 0:
        blob = data.draw(st.binary(max_size=200))
    elif kind == 1:
        cut = data.draw(st.integers(0, len(text)))
        blob = (text[:cut] + data.draw(st.text(",.0123456789naif-\n e", max_size=20)) + text[cut:]).encode()
    else:
        rows = [dict(zip(METRICS_FIELDS, data.draw(st.lists(st.text(max_size=6), min_size=7, max_size=7))))]
        blob = format_metrics_csv(rows).encode() if all("," not in v and "\n" not in v
                                                        for v in rows[0].values()) else b""
    try:
        rows = parse_metrics_csv(blob, "metrics.csv")
    except RunFileError as exc:
        assert "metrics.csv" in str(exc)
        return
    assert [r["epoch"] for r in rows] == [str(i + 1) for i in range(len(rows))]
    assert all(np.isfinite(float(r[k])) for r in rows for k in METRICS_FIELDS[1:])
