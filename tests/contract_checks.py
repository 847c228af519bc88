"""Reusable checks of the mmdet backbone contract, shared by the tests of every backbone family.

Each ``check_*`` takes a backbone config dict (``type`` + kwargs) and asserts real behaviour on a tiny input.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import shufflenet_det  # noqa: F401
from mmdet.registry import MODELS
from shufflenet_det.models.layers import count_batchnorm


def build(cfg: dict) -> nn.Module:
    """Build a backbone from a config dict (copied, so the caller's dict is untouched)."""
    return MODELS.build(copy.deepcopy(cfg))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters, so folding and norm_eval are really tested."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def check_outputs_match_declared(cfg: dict, size: int = 64) -> None:
    """``out_channels``/``out_strides`` equal the shapes of the real outputs, in ``out_indices`` order."""
    model = build(cfg).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, size, size))
    assert isinstance(outs, tuple) and len(outs) == len(model.out_indices)
    assert len(model.out_channels) == len(model.out_strides) == len(outs)
    for out, ch, stride in zip(outs, model.out_channels, model.out_strides):
        assert out.shape[1] == ch, (cfg, out.shape, ch)
        assert out.shape[2] == size // stride and out.shape[3] == size // stride, (cfg, out.shape, stride)


def check_frozen_stages(cfg: dict, frozen: int) -> None:
    """Frozen groups have no trainable parameter and their BN (the stem's too) stays in eval after train().

    The groups after the last output index never run and are frozen alike (so DDP needs no find_unused_parameters).
    """
    model = build(dict(cfg, frozen_stages=frozen))
    model.train()
    last = max(model.out_indices)
    assert model.unused_groups == tuple(range(last + 1, len(model._groups)))
    for idx, group in enumerate(model._groups):
        for name in group:
            module = getattr(model, name)
            params = list(module.parameters())
            bns = [m for m in module.modules() if isinstance(m, _BatchNorm)]
            if idx <= frozen or idx > last:
                assert all(not p.requires_grad for p in params), (name, idx)
                assert all(not bn.training for bn in bns), (name, idx)
            else:
                assert all(p.requires_grad for p in params), (name, idx)
                assert all(bn.training for bn in bns), (name, idx)


def check_norm_eval(cfg: dict) -> None:
    """With norm_eval every _BatchNorm stays in eval mode after train(); running stats do not move."""
    model = build(dict(cfg, norm_eval=True))
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not bn.training for bn in bns)
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, bns))


def check_with_cp(cfg: dict, size: int = 32) -> None:
    """with_cp gives identical outputs and gradients."""
    torch.manual_seed(0)
    ref = build(dict(cfg, with_cp=False))
    ckp = build(dict(cfg, with_cp=True))
    ckp.load_state_dict(ref.state_dict())
    ref.train(), ckp.train()
    x = torch.randn(2, 3, size, size)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out1, out2 = ref(x1), ckp(x2)
    for a, b in zip(out1, out2):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    sum(o.sum() for o in out1).backward()
    sum(o.sum() for o in out2).backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)
    for (name, p1), p2 in zip(ref.named_parameters(), ckp.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-5, atol=1e-6, msg=name)


def check_deploy_fold(cfg: dict, size: int = 64, atol: float = 1e-5) -> None:
    """switch_to_deploy folds every BN (none left) and keeps outputs within ``atol``."""
    model = randomize_bn(build(cfg)).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    assert count_batchnorm(model) == 0
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)


def check_init_cfg_pretrained_prefix(cfg: dict, tmp_path) -> None:
    """``init_cfg=dict(type='Pretrained', prefix='backbone.')`` loads the backbone part of a detector checkpoint."""
    src = randomize_bn(build(cfg))
    ckpt = tmp_path / 'detector.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.state_dict().items()}}, ckpt)
    model = build(dict(cfg, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt), prefix='backbone.')))
    model.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
