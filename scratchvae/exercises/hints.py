"""Name the likely mistake behind a wrong array: a transposed or permuted result, a sum over
an axis too many or too few, a wrong sign, a factor of the batch size or of another named
size, a missing factor 1/2, an upstream gradient ignored, a chain-rule factor f'(x) missing.

Every function takes the learner's array and the right one (the definition's value, or the
finite differences of the learner's own forward) and returns one sentence, or None.
``indices`` (flat, into the right array) says which entries of the right one are known:
finite differences are taken at a random subset of the entries.
"""
from itertools import permutations

import numpy as np

AGREE = 1e-6  # a fitted explanation must leave at most this much of the error (relative)


def _scale(a):
    return max(float(np.max(np.abs(a), initial=0.0)), 1e-12)


def _close(a, b):
    return float(np.max(np.abs(a - b), initial=0.0)) <= AGREE * max(_scale(a), _scale(b))


def shape_hint(name, yours, right, indices, sizes):
    """For arrays of different shapes; ``yours`` and ``right`` are full (right may hold NaN
    outside ``indices``)."""
    ys, rs = tuple(yours.shape), tuple(right.shape)
    if sorted(ys) == sorted(rs):
        for order in permutations(range(len(ys))):
            if tuple(ys[i] for i in order) == rs and order != tuple(range(len(ys))):
                moved = np.transpose(yours, np.argsort(order))
                if moved.shape == rs and _close(moved.reshape(-1)[indices],
                                                right.reshape(-1)[indices]):
                    if len(ys) == 2:
                        return (f"{name} is transposed: yours has shape {ys}, the right one {rs}, "
                                f"and {name}.T is right (swap the operands of the product, "
                                "A.T @ B rather than B.T @ A)")
                    return (f"{name} has its axes in another order: transposing yours with axes "
                            f"{tuple(int(i) for i in np.argsort(order))} gives the right one")
        return f"{name} has the right axes in another order, {ys} for {rs}: a transposed product?"
    if len(ys) == len(rs) + 1 and ys[1:] == rs:
        return (f"{name} keeps an axis of {ys[0]} too many: sum over the batch axis (axis 0), "
                "where the forward broadcast this input over the batch")
    if len(ys) > len(rs) and ys[: len(rs)] == rs:
        return (f"{name} keeps axes the forward summed over: the result is one number per "
                f"{' x '.join(map(str, rs))}, so sum over the axes after {len(rs)}")
    if len(rs) > len(ys) and rs[: len(ys)] == ys:
        return (f"{name} is summed over axes it should keep: it must have the shape of its input, "
                f"{rs}")
    if right.size == 1 and yours.size > 1:
        return (f"{name} is one number shared by every image, so its gradient is one number too: "
                "sum the contributions of every image and pixel")
    if yours.size == right.size:
        return f"{name} has the right number of entries in the wrong shape: reshape to {rs}"
    return None


def value_hint(name, yours, right, sizes, special=None):
    """For arrays of one shape (``yours`` and ``right`` flat, over the known entries): a
    constant factor between them, or None."""
    denominator = float(np.dot(right, right))
    if denominator == 0.0:
        return None
    if _scale(yours) <= AGREE * _scale(right):
        return f"{name} is all zeros"
    c = float(np.dot(yours, right)) / denominator
    if not _close(yours, c * right):
        return None
    for ratio, cause in (special or {}).items():
        if abs(c - ratio) <= 1e-3 * abs(ratio):
            return f"{name} is {_times(c)} the right one: {cause}"
    if abs(c + 1.0) <= 1e-3:
        return f"{name} has the wrong sign: yours = -1 x the right one (a minus sign lost or added)"
    for size_name, size in sizes.items():
        if size > 1 and abs(c - size) <= 1e-3 * size:
            return (f"{name} is {_times(c)} too large, and {size} is {_describe(size_name)}: a sum "
                    "where a mean belongs (or a missing 1/" + size_name + ")")
        if size > 1 and abs(c * size - 1.0) <= 1e-3:
            return (f"{name} is {size} times too small, and {size} is {_describe(size_name)}: a "
                    "mean where a sum belongs (the objective sums; divide once, at the end)")
    return f"{name} is {_times(c)} the right one: a constant factor is wrong"


def offset_hint(name, yours, right):
    """For arrays of one shape (flat): yours = right + a constant, or None."""
    shift = yours - right
    c = float(np.mean(shift))
    if c != 0.0 and _close(shift, np.full_like(shift, c)) and abs(c) > AGREE * _scale(right):
        return (f"{name} is the right one plus {c:.6g} everywhere: a constant term is missing or "
                "extra (a normalizing constant such as log(2 pi c) / 2 per value?)")
    return None


def _times(c):
    return f"{c:.4g} x"


def _describe(size_name):
    return {"N": "N, the batch size", "D": "D, the number of values per image",
            "H W": "H W, the pixels of a channel", "N H W": "N H W, the values per feature",
            "s s": "s s, the pixels of one upsampled block"}.get(size_name, size_name)


def ignores_upstream(name):
    return (f"{name} does not change when the upstream gradient does: multiply by it (the chain "
            "rule's dL/dy; a gradient check with an all-ones dy cannot see this)")


def missing_derivative(name):
    return (f"{name} equals the upstream gradient dy: the chain rule's factor f'(x) is missing "
            "(dx = dy * f'(x))")
