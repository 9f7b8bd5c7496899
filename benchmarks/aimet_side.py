"""AIMET side of the parity harness (imported only when aimet-torch is installed).

AIMET 2.42 cannot take timm's tf_efficientnet_lite0 as is: its BN folder finds no conv/BN pair in timm's
BatchNormAct2d, and its graph builder does not know timm's Conv2dSame. So the network it gets is the same
network rewritten in plain torch.nn (outputs identical to 1e-5):
* BN folded with mpq-gym's own folder (the same folded weights mpq-gym quantizes), each BatchNormAct2d
  (an identity normalisation after folding) replaced by its activation (ReLU6);
* each Conv2dSame (TF 'same' padding, asymmetric for stride 2) replaced by ZeroPad2d + Conv2d(padding=0).
  The pad's own output quantizer is removed after building the sim (a pad of an already quantized tensor
  adds only exact zeros; real back-ends fuse it into the conv).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


def _same_pad(conv: nn.Conv2d, size: int) -> tuple[int, int, int, int]:
    pads = []
    for k, s, d in zip(conv.kernel_size, conv.stride, conv.dilation):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


@torch.no_grad()
def plain_folded_model(model: nn.Module, image_size: int = 224) -> nn.Module:
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.norm_act import BatchNormAct2d
    from mpq_gym.quant.graph import _parent, fold_batchnorm
    model = copy.deepcopy(model).eval()
    example = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    reference = model(example)
    fold_batchnorm(model, example[:1])
    sizes: dict[str, int] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, inp, n=n: sizes.setdefault(n, inp[0].shape[-1]) and None)
             for n, m in model.named_modules() if isinstance(m, Conv2dSame)]
    model(example[:1])
    for h in hooks:
        h.remove()
    for name, module in list(model.named_modules()):
        if isinstance(module, BatchNormAct2d):
            assert torch.all(module.running_mean == 0) and torch.all(module.weight == 1) and torch.all(module.bias == 0)
            parent, attr = _parent(model, name)
            setattr(parent, attr, module.act if isinstance(module.drop, nn.Identity) else nn.Sequential(module.drop, module.act))
        elif isinstance(module, Conv2dSame):
            conv = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, 0,
                             module.dilation, module.groups, module.bias is not None)
            conv.weight.copy_(module.weight)
            if module.bias is not None:
                conv.bias.copy_(module.bias)
            parent, attr = _parent(model, name)
            setattr(parent, attr, nn.Sequential(nn.ZeroPad2d(_same_pad(module, sizes[name])), conv))
    err = (model(example) - reference).abs().max().item()
    assert err < 1e-3 * reference.abs().max().item(), f"rewritten model differs from the original by {err}"
    return model.eval()
