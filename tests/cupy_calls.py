"""Static check: every array-module call in scratchvae/ exists in the installed CuPy, with
the keywords used. An API-surface check without a GPU (tests/test_cupy_surface.py).

What counts as an array-module call, read from the source's syntax tree:
- an attribute chain on an array module: ``xp.X``, ``self.xp.X``, ``get_array_module(a).X``,
  ``get_xp(b).X``, and ``cupy.X`` where backend.py names the module ``cupy``; deeper chains
  (``xp.random.default_rng``, ``xp.lib.stride_tricks.as_strided``) are followed;
- a CuPy generator method: ``self._rng.X(...)`` in backend.py (the generator is a
  ``cupy.random.Generator`` on the cupy backend);
- an ndarray method: any ``a.X(...)`` where X is a public method of ``numpy.ndarray``, checked
  against ``cupy.ndarray`` (a receiver that is plainly a NumPy or host object is skipped:
  ``np.X``, a name bound to ``np.something(...)``/``to_host(...)`` in the same function).
Code that runs only on NumPy is skipped: the body of ``if xp is np:`` (and ``self.xp``), the
``else`` of ``if xp is not np:``, and the rest of a block after ``if xp is not np: raise ...``
(or ``return``); so are calls on imported modules (``json.dumps``) and the files of
``HOST_ONLY``. Keywords are bound to CuPy's signature
(``cupy_standin.cupy_signature``); a call with ``**kwargs`` is checked for its explicit
keywords only.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np

from cupy_standin import cupy_signature

MODULE_NAMES = {"xp", "cupy"}
MODULE_FUNCTIONS = {"get_array_module", "get_xp"}
NDARRAY_METHODS = {n for n in dir(np.ndarray) if not n.startswith("_") and callable(getattr(np.ndarray, n))}
HOST_MAKERS = {"to_host", "asnumpy"}
# scratchvae's files that only ever hold host arrays, and why
HOST_ONLY = {"scratchvae/data/": "reads files into NumPy arrays; callers move them with to_device"}


@dataclass(frozen=True)
class Finding:
    where: str
    call: str
    problem: str

    def __str__(self):
        return f"{self.where}: {self.call}: {self.problem}"


def _is_module_expr(node):
    if isinstance(node, ast.Name):
        return node.id in MODULE_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr == "xp" and isinstance(node.value, ast.Name) and node.value.id == "self"
    if isinstance(node, ast.Call):
        func = node.func
        return isinstance(func, ast.Name) and func.id in MODULE_FUNCTIONS
    return False


def _chain(node):
    """``xp.random.default_rng`` -> (root expr, ["random", "default_rng"]), or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        if _is_module_expr(node):
            break
        parts.append(node.attr)
        node = node.value
    if not parts or not _is_module_expr(node):
        return None
    return node, parts[::-1]


def _numpy_only(test):
    """``xp is np`` (body is NumPy-only) -> "body"; ``xp is not np`` -> "orelse"; else None."""
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and _is_module_expr(test.left)
            and isinstance(test.comparators[0], ast.Name) and test.comparators[0].id == "np"):
        if isinstance(test.ops[0], ast.Is):
            return "body"
        if isinstance(test.ops[0], ast.IsNot):
            return "orelse"
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        if any(_numpy_only(v) == "body" for v in test.values):
            return "body"
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, cupy, filename, generator_receivers):
        self.cupy, self.filename = cupy, filename
        self.generator_receivers = generator_receivers
        self.findings, self.checked = [], 0
        self.host_names = [set()]

    def _where(self, node):
        return f"{self.filename}:{node.lineno}"

    def visit_FunctionDef(self, node):
        self.host_names.append(set(self.host_names[0]))
        for child in node.decorator_list + [node.args]:
            self.visit(child)
        self._visit_block(node.body)
        self.host_names.pop()

    def _visit_block(self, statements):
        for statement in statements:
            self.visit(statement)
            if (isinstance(statement, ast.If) and _numpy_only(statement.test) == "orelse"
                    and not statement.orelse and isinstance(statement.body[-1], (ast.Raise, ast.Return))):
                return  # `if xp is not np: raise/return`: what follows runs on NumPy only

    def visit_Import(self, node):
        for alias in node.names:
            self.host_names[0].add((alias.asname or alias.name).split(".")[0])

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node):
        value = node.value
        host = isinstance(value, ast.Call) and (
            (isinstance(value.func, ast.Attribute) and isinstance(value.func.value, ast.Name)
             and value.func.value.id == "np")
            or (isinstance(value.func, ast.Name) and value.func.id in HOST_MAKERS))
        for target in node.targets:
            if isinstance(target, ast.Name):
                (self.host_names[-1].add if host else self.host_names[-1].discard)(target.id)
        self.generic_visit(node)

    def visit_If(self, node):
        skip = _numpy_only(node.test)
        self.visit(node.test)
        self._visit_block([] if skip == "body" else node.body)
        self._visit_block([] if skip == "orelse" else node.orelse)

    def visit_Attribute(self, node):
        chain = _chain(node)
        if chain is not None:
            self._check_chain(node, chain[1], None)
            return  # the chain's inner attributes are part of this one
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        if isinstance(func, ast.Attribute):
            chain = _chain(func)
            if chain is not None:
                self._check_chain(func, chain[1], node)
                for arg in node.args + [k.value for k in node.keywords]:
                    self.visit(arg)
                self.visit(chain[0])
                return
            receiver = ast.unparse(func.value)
            if receiver in self.generator_receivers:
                self._check_call(node, f"{receiver}.{func.attr}", self.cupy.random.Generator,
                                 func.attr, "cupy.random.Generator")
            elif func.attr in NDARRAY_METHODS and not self._host_receiver(func.value):
                self._check_call(node, f"{receiver}.{func.attr}", self.cupy.ndarray, func.attr, "cupy.ndarray")
        self.generic_visit(node)

    def _host_receiver(self, node):
        root = node
        while isinstance(root, (ast.Attribute, ast.Subscript, ast.Call)):
            root = root.func if isinstance(root, ast.Call) else root.value
        if isinstance(root, ast.Name) and (root.id == "np" or root.id in self.host_names[-1]):
            return True
        return isinstance(root, ast.Constant)  # "text".join(...), b"".join(...)

    def _check_chain(self, node, parts, call):
        target = self.cupy
        for i, part in enumerate(parts):
            if not hasattr(target, part):
                self.findings.append(Finding(self._where(node), "xp." + ".".join(parts),
                                             f"the installed CuPy has no {'cupy.' + '.'.join(parts[:i + 1])}"))
                return
            target = getattr(target, part)
        self.checked += 1
        if call is not None:
            self._bind(call, "xp." + ".".join(parts), cupy_signature(target), "cupy." + ".".join(parts))

    def _check_call(self, node, text, owner, name, owner_name):
        if not hasattr(owner, name):
            self.findings.append(Finding(self._where(node), text, f"{owner_name} has no method {name!r}"))
            return
        self.checked += 1
        self._bind(node, text, cupy_signature(getattr(owner, name), method=True), f"{owner_name}.{name}")

    def _bind(self, call, text, sig, qualname):
        if sig is None:
            return
        if any(isinstance(a, ast.Starred) for a in call.args):
            args = ()
        else:
            args = (None,) * len(call.args)
        kwargs = {k.arg: None for k in call.keywords if k.arg is not None}
        try:
            if args or not any(isinstance(a, ast.Starred) for a in call.args):
                sig.bind(*args, **kwargs)
            else:
                sig.bind_partial(**kwargs)
        except TypeError as exc:
            self.findings.append(Finding(self._where(call), text, f"{qualname}{sig} refuses it: {exc}"))


def check_source(source, filename, cupy):
    """``(findings, number of calls checked)`` for one file's source."""
    if any(filename.replace("\\", "/").startswith(prefix) for prefix in HOST_ONLY):
        return [], 0
    generator_receivers = {"self._rng"} if filename.endswith("backend.py") else set()
    visitor = _Visitor(cupy, filename, generator_receivers)
    visitor.visit(ast.parse(source, filename))
    return visitor.findings, visitor.checked
