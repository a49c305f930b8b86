"""A stand-in for the few `torchvision` names that timm imports when `import timm` runs.

timm 1.0.31 imports `torchvision.ops.misc.FrozenBatchNorm2d`, `torchvision.transforms` and
`torchvision.datasets` at import time, but its ViT, DeiT, Swin and TNT models use none of them.
This machine has only the CPU build of torch; torchvision 0.28.0's wheel here is built against CUDA
torch (its `_C.so` needs `libtorch_cuda.so`) and its Python part does not import without that
extension (`torchvision/_meta_registrations.py` registers fake kernels for `torchvision::nms`, an
op that only `_C.so` defines), and installing a CPU torchvision next to torch would replace torch.

So `install()` puts placeholder modules into `sys.modules`: every name looked up on them is a
class that raises `RuntimeError` when instantiated or called. timm can subclass them at import time
(`MaybeToTensor(transforms.ToTensor)`), and any model whose construction or forward touched one
would fail loudly, so a model that builds and runs did not use torchvision. The one exception is
`transforms.functional.InterpolationMode`, an enum of resampling names (timm's data code builds
lookup tables from it at import time): it is given with torchvision's member names and values.
`models.feature_extraction` is left out: timm imports it inside try/except (no FX feature extraction).
"""

import enum
import sys
import types

PLACEHOLDER_MODULES = ("torchvision", "torchvision.ops", "torchvision.ops.misc", "torchvision.transforms",
                       "torchvision.transforms.functional", "torchvision.datasets", "torchvision.utils")
# Looked up by timm inside try/except ImportError: absent, so timm takes its documented fallback.
ABSENT_NAMES = {"create_feature_extractor", "get_graph_node_names"}


class InterpolationMode(enum.Enum):
    """torchvision's resampling names (data only; no model uses them)."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _placeholder_class(module_name, name):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"{module_name}.{name} is a placeholder (benchmarks/torchvision_placeholder.py): "
                           "the benchmarked timm models must not use torchvision")

    return type(name, (), {"__init__": refuse, "__call__": refuse, "__module__": module_name})


def _placeholder_module(module_name):
    module = types.ModuleType(module_name, "Placeholder: see benchmarks/torchvision_placeholder.py")
    module.__path__ = []  # a package, so its submodules can be imported
    module.__version__ = "0.0.0+placeholder"
    module.IS_PLACEHOLDER = True

    def __getattr__(name):
        if name.startswith("__") or name in ABSENT_NAMES:
            raise AttributeError(name)
        value = _placeholder_class(module_name, name)
        setattr(module, name, value)
        return value

    module.__getattr__ = __getattr__
    return module


def install():
    """Registers the placeholder modules unless a real torchvision is already imported; returns a description."""
    existing = sys.modules.get("torchvision")
    if existing is not None and not getattr(existing, "IS_PLACEHOLDER", False):
        return f"real torchvision {existing.__version__}"
    for module_name in PLACEHOLDER_MODULES:
        sys.modules.setdefault(module_name, _placeholder_module(module_name))
    sys.modules["torchvision.transforms.functional"].InterpolationMode = InterpolationMode
    sys.modules["torchvision.transforms"].InterpolationMode = InterpolationMode
    for module_name in PLACEHOLDER_MODULES[1:]:
        parent, _, child = module_name.rpartition(".")
        setattr(sys.modules[parent], child, sys.modules[module_name])
    return ("torchvision placeholder (benchmarks/torchvision_placeholder.py: names timm imports at import "
            "time; raises if a model used one)")
