"""Wrap any user ``nn.Module`` as a backbone.

Two ways to say where the tokens come from:

* ``hook_layers=["layer1", "layer2", ...]`` — names from ``module.named_modules()``; a forward hook
  records each one's output. 4-D outputs [B, C, H, W] are local maps (global = spatial mean);
  3-D token outputs [B, N, C] drop ``prefix_tokens`` leading tokens, the rest must form a square
  grid (global = first prefix token, or the token mean when there is none). The forward pass is
  cut short after the last hooked module.
* ``tokens_fn(module, x) -> (local, global)`` — a function doing it all on the normalised input
  [B, 3, S, S]; it must return dicts in network order.

Example::

    net = torchvision.models.resnet18()
    bb = wrap_module(net, hook_layers=["layer1", "layer2", "layer3", "layer4"], input_size=224)
    local, glob = bb.get_tokens(images)   # local["0"] is layer1's map
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone, InputConfig, resolve_layer_indices
from .registry import register_backbone


class _StopForward(Exception):
    """Raised by the last needed hook to end the forward pass early."""


def _as_tokens(out, prefix_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Module output -> (local [B, C, H, W], global [B, C])."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"hooked module returned {type(out).__name__}, expected a tensor")
    if out.ndim == 4:
        return out, out.mean((2, 3))
    if out.ndim == 3:
        b, n, c = out.shape
        grid = out[:, prefix_tokens:]
        side = math.isqrt(grid.shape[1])
        if side * side != grid.shape[1]:
            raise ValueError(
                f"hooked token output has {n} tokens; after {prefix_tokens} prefix tokens {grid.shape[1]} is not a "
                "square grid (set prefix_tokens=)"
            )
        glob = out[:, 0] if prefix_tokens > 0 else grid.mean(1)
        return grid.transpose(1, 2).reshape(b, c, side, side), glob
    raise ValueError(f"hooked output of shape {tuple(out.shape)} is neither [B, C, H, W] nor [B, N, C]")


class ModuleBackbone(Backbone):
    """A user module behind ``get_tokens`` (see the module docstring).

    Args:
        module: the network (its ``forward`` takes the normalised [B, 3, S, S] input).
        hook_layers: module names to tap, in network order; or None with ``tokens_fn``.
        tokens_fn: alternative to hooks, ``fn(module, x) -> (local dict, global dict)``.
        input_size, mean, std: the input transform.
        prefix_tokens: leading non-spatial tokens of 3-D hooked outputs.
        layers: timm-style subset of the taps.
        name: architecture name used in the fingerprint.
    """

    def __init__(
        self,
        module: nn.Module,
        hook_layers: Sequence[str] | None = None,
        tokens_fn: Callable | None = None,
        input_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        prefix_tokens: int = 0,
        layers=None,
        name: str = "custom",
    ):
        if (hook_layers is None) == (tokens_fn is None):
            raise ValueError("give exactly one of hook_layers (module names) or tokens_fn")
        inp = InputConfig(size=int(input_size), mean=tuple(mean), std=tuple(std))
        modules = dict(module.named_modules())
        if hook_layers is not None:
            hook_layers = list(hook_layers)
            missing = [h for h in hook_layers if h not in modules]
            if missing:
                raise ValueError(f"modules {missing} not found; available e.g. {list(modules)[1:12]}")
        # dry run on one blank image to learn widths / grids (the module cannot tell us otherwise)
        module.eval()
        probe = torch.zeros(1, 3, inp.size, inp.size, dtype=next(module.parameters(), torch.zeros(())).dtype)
        taps = self._run(module, probe, hook_layers, tokens_fn, prefix_tokens, None, modules)
        n_taps = len(taps)
        indices = resolve_layer_indices(n_taps, layers)
        super().__init__(
            arch={"name": f"module:{name}", "class": type(module).__name__, "hook_layers": hook_layers,
                  "tokens_fn": getattr(tokens_fn, "__qualname__", None), "prefix_tokens": int(prefix_tokens)},
            input_config=inp, n_taps=n_taps, indices=indices,
            widths=[taps[i][0].shape[1] for i in indices], grid_sizes=[tuple(taps[i][0].shape[-2:]) for i in indices],
        )
        self.module = module
        self.hook_layers = hook_layers
        self.tokens_fn = tokens_fn
        self.prefix_tokens = int(prefix_tokens)

    @staticmethod
    def _run(module, x, hook_layers, tokens_fn, prefix_tokens, take, modules):
        if tokens_fn is not None:
            local, glob = tokens_fn(module, x)
            names = list(local)
            taps = [(local[n], glob[n]) for n in names]
            return taps if take is None else [taps[i] for i in take]
        wanted = list(range(len(hook_layers))) if take is None else list(take)
        got: dict[int, tuple] = {}
        handles = []

        def make_hook(i):
            def hook(_mod, _inp, out):
                got[i] = _as_tokens(out, prefix_tokens)
                if i == wanted[-1]:
                    raise _StopForward

            return hook

        try:
            for i in wanted:
                handles.append(modules[hook_layers[i]].register_forward_hook(make_hook(i)))
            with contextlib.suppress(_StopForward):  # raised by the last hook: the rest of forward is not needed
                module(x)
        finally:
            for h in handles:
                h.remove()
        if len(got) != len(wanted):
            missing = [hook_layers[i] for i in wanted if i not in got]
            raise RuntimeError(f"hooked modules {missing} never ran in forward")
        return [got[i] for i in wanted]

    def _forward_taps(self, x, take):
        return self._run(self.module, x, self.hook_layers, self.tokens_fn, self.prefix_tokens, take,
                         dict(self.module.named_modules()))


def wrap_module(module: nn.Module, **kwargs) -> ModuleBackbone:
    """Wrap ``module`` as a frozen :class:`ModuleBackbone` (kwargs as in its constructor)."""
    return ModuleBackbone(module, **kwargs).freeze()


@register_backbone("module", description="wrap a user nn.Module: module=, hook_layers= or tokens_fn=")
def _module(module: nn.Module | None = None, pretrained=True, weights=None, layers=None, image_size=None, **kwargs):
    """The module's weights are used as given (``pretrained``), or a checkpoint ``weights`` is loaded
    into it; brainnet cannot re-initialise a user module, so random weights are refused."""
    if module is None:
        raise ValueError("backbone 'module' needs module=<your nn.Module>")
    if not pretrained and weights is None:
        raise ValueError("backbone 'module' uses your module's weights as they are; re-initialise it yourself "
                         "instead of asking for weights='random'")
    if weights is not None:
        from .weights import load_into, load_state_dict_file

        load_into(module, load_state_dict_file(weights), weights)
    if image_size is not None:
        kwargs["input_size"] = image_size
    bb = ModuleBackbone(module, layers=layers, **kwargs)
    if weights is not None:
        from .weights import weights_label

        bb.weights_source = weights_label(weights, None)
    return bb
