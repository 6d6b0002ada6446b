"""Generate docs/api.md from the docstrings: ``python docs/gen_api.py > docs/api.md``.

tests/test_docs.py checks that the committed page matches this output.
"""
import importlib
import inspect

MODULES = [
    "scratchvae.backend", "scratchvae.functional.dense", "scratchvae.functional.activations",
    "scratchvae.functional.conv", "scratchvae.functional.batchnorm", "scratchvae.functional.dropout",
    "scratchvae.functional.latent", "scratchvae.functional.likelihoods",
    "scratchvae.functional.classification", "scratchvae.functional.resample",
    "scratchvae.functional.residual", "scratchvae.layers",
    "scratchvae.likelihoods", "scratchvae.models", "scratchvae.optim", "scratchvae.gradcheck",
    "scratchvae.data", "scratchvae.data.cifar10", "scratchvae.estimators", "scratchvae.figures",
    "scratchvae.runs.config", "scratchvae.runs.checkpoint", "scratchvae.runs.folder", "scratchvae.training",
    "scratchvae.evaluate", "scratchvae.exercises", "scratchvae.explorer.decoder_program",
    "scratchvae.explorer.page", "scratchvae.experiments", "scratchvae.experiments.paper",
    "scratchvae.experiments.figures", "scratchvae.experiments.nll", "scratchvae.classifier", "scratchvae.fid",
]


def _first_paragraph(obj):
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _public(module):
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for name in sorted(names):
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and (
            obj.__module__.startswith("scratchvae")
        ):
            if module.__name__ in ("scratchvae.layers", "scratchvae.models", "scratchvae.data") or \
                    obj.__module__ == module.__name__:
                yield name, obj


def _signature(obj):
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def render():
    out = ["# API reference", "",
           "Generated from the docstrings by `python docs/gen_api.py > docs/api.md`; "
           "the first paragraph of each docstring. Derivations: [layers](layers.md), [VAE](vae.md), "
           "[FID](fid.md).", ""]
    for mod_name in MODULES:
        module = importlib.import_module(mod_name)
        out += [f"## `{mod_name}`", "", _first_paragraph(module), ""]
        for name, obj in _public(module):
            kind = "class" if inspect.isclass(obj) else "def"
            out.append(f"- **`{kind} {name}{_signature(obj)}`** — {_first_paragraph(obj)}")
            if inspect.isclass(obj):
                for meth_name, meth in sorted(vars(obj).items()):
                    if meth_name.startswith("_") or not inspect.isfunction(meth):
                        continue
                    out.append(f"  - `{meth_name}{_signature(meth)}` — {_first_paragraph(meth)}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
