"""Import-compatibility helpers for third-party methods.

Each helper repairs one known incompatibility between a peer package and the
suite's modern stack, narrowly and only where it is needed:

* :func:`torchvision_without_compiled_ops` - the PyPI torchvision wheel is
  built against CUDA torch; beside a CPU torch its compiled ops do not load
  and ``import torchvision`` fails in its fake-op registration with
  ``RuntimeError: operator torchvision::nms does not exist``. Suite2p imports
  cellpose, which imports torchvision, so ``import suite2p`` fails too.
  Detection never calls the compiled ops (NMS, RoIAlign ...); they stay
  unavailable and raise torchvision's own error if something calls them.
* :func:`numpy_with_aliases` - HNCcorr calls ``np.product``, removed in numpy 2.
* :func:`package_versions` - installed versions for ``Segmentation.versions``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import sys
import types
from collections.abc import Iterator

import numpy as np

__all__ = ["torchvision_without_compiled_ops", "numpy_with_aliases", "patch_numpy_aliases", "package_versions"]


def _op_exists(qualname: str) -> bool:
    """Whether a torch operator such as ``"torchvision::nms"`` has been defined."""
    import torch

    namespace, _, name = qualname.partition("::")
    try:
        getattr(getattr(torch.ops, namespace), name.split(".")[0])
    except (AttributeError, RuntimeError):
        return False
    return True


@contextlib.contextmanager
def torchvision_without_compiled_ops() -> Iterator[None]:
    """Let ``import torchvision`` succeed when its compiled ops are absent.

    Inside the block, ``torch.library.register_fake`` skips the registration
    of a fake (meta) kernel for a ``torchvision::`` operator that does not
    exist, instead of raising; every other call is passed through unchanged.
    Use it around the first import of a package that imports torchvision.
    Nothing is changed when torchvision is already imported or torch is absent.
    """
    if "torchvision" in sys.modules:
        yield
        return
    try:
        import torch.library
    except ImportError:
        yield
        return
    original = torch.library.register_fake

    def register_fake(op, func=None, /, *args, **kwargs):
        if isinstance(op, str) and op.startswith("torchvision::") and not _op_exists(op):
            return func if func is not None else (lambda f: f)
        return original(op, func, *args, **kwargs)

    register_fake.__wrapped__ = original  # type: ignore[attr-defined]
    torch.library.register_fake = register_fake
    try:
        yield
    finally:
        torch.library.register_fake = original


def numpy_with_aliases() -> types.ModuleType:
    """A stand-in ``numpy`` module that also has the aliases numpy 2 removed.

    Only ``product`` (= ``prod``) is added, and only where numpy lacks it; the
    real numpy module is not modified.
    """
    proxy = types.ModuleType("numpy")
    proxy.__dict__.update(np.__dict__)  # includes numpy's lazy __getattr__
    for old, new in (("product", "prod"),):
        if not hasattr(np, old):
            setattr(proxy, old, getattr(np, new))
    return proxy


def patch_numpy_aliases(package: str) -> None:
    """Point the ``np`` of every imported submodule of ``package`` at :func:`numpy_with_aliases`.

    Nothing is changed on numpy versions that still have the aliases.
    """
    if hasattr(np, "product"):
        return
    proxy = numpy_with_aliases()
    importlib.import_module(package)
    for name, mod in list(sys.modules.items()):
        if (name == package or name.startswith(package + ".")) and getattr(mod, "np", None) is np:
            mod.np = proxy


def package_versions(*names: str) -> dict[str, str]:
    """Installed distribution versions by name (absent ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
