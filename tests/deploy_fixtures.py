"""Small models and inputs shared by the deploy tests (export, ncnn, mmdeploy, benchmark)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from helpers import REPO, randomize_bn

MINI_CFG = REPO / 'configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py'


def label_val_with(data: Path, detect: Callable[[torch.Tensor], dict[str, Any]], size: tuple[int, int],
                   pre: dict[str, Any], per_image: int = 5) -> int:
    """Replace the validation ground truth of the mini COCO in ``data`` by ``detect``'s ``per_image`` best boxes
    per image (``detect``: a normalised ``(1, 3, H, W)`` input at ``size`` -> ``boxes`` and ``labels`` in input
    pixels, best first): the model's float detections then score a high mAP, so an accuracy loss shows. Returns the
    number of annotations written."""
    from shufflenet_det.deploy.images import prepare_image, read_image
    ann_file = data / 'annotations' / 'instances_val2017.json'
    ann = json.loads(ann_file.read_text())
    anns: list[dict[str, Any]] = []
    for im in ann['images']:
        x, scale = prepare_image(read_image(data / 'val2017' / im['file_name']), size, pre)
        dets = detect(x)
        for box, label in zip(dets['boxes'][:per_image] / scale, dets['labels'][:per_image]):
            x1, y1, x2, y2 = (float(v) for v in box)
            anns.append(dict(id=len(anns) + 1, image_id=im['id'], category_id=ann['categories'][int(label)]['id'],
                             iscrowd=0, bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1)))
    ann['annotations'] = anns
    ann_file.write_text(json.dumps(ann))
    return len(anns)


def backbone(widen_factor: float = 1.0, out_indices=(1, 2, 3), seed: int = 0) -> torch.nn.Module:
    """A ShuffleNetV2 with random BN statistics, in eval mode."""
    from mmdet.registry import MODELS

    import shufflenet_det  # noqa: F401
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='ShuffleNetV2', widen_factor=widen_factor, out_indices=out_indices))
    model.init_weights()
    return randomize_bn(model, seed).eval()


def spread_retinanet(seed: int = 0, **cfg_options) -> torch.nn.Module:
    """The mini RetinaNet, untrained but with a classifier whose scores spread from ~0 to ~1.

    An untrained RetinaNet scores every anchor ~0.01 (its prior), which leaves nothing above the test threshold
    and only near-ties below it; scaling the classifier gives well separated scores and real detections to compare.
    """
    from shufflenet_det.utils import build_detector
    torch.manual_seed(seed)
    model = build_detector(MINI_CFG, cfg_options=cfg_options or None)
    randomize_bn(model, seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cls = model.bbox_head.retina_cls
        cls.weight.mul_(40)
        cls.bias.copy_(torch.rand(cls.bias.shape, generator=gen) * 3 - 3)
    return model.eval()


#: The mini lite detector (ShuffleNetV2 + GhostPAN + GFL head); :func:`spread_lite` makes it small for tests.
LITE_CFG = REPO / 'configs/mini/lite-m_shufflenetv2-1x_mini-coco.py'
#: ``cfg_options`` of a small lite detector: ShuffleNetV2 0.5x, 32-channel GhostPAN and head, a tiny auxiliary head.
SMALL_LITE = {'model.backbone.widen_factor': 0.5, 'model.neck.in_channels': [48, 96, 192],
              'model.neck.out_channels': 32, 'model.bbox_head.in_channels': 32, 'model.bbox_head.feat_channels': 32,
              'model.aux_head.in_channels': 64, 'model.aux_head.feat_channels': 32}


def spread_lite(seed: int = 0, **cfg_options) -> torch.nn.Module:
    """A small lite detector (mini config, :data:`SMALL_LITE`), untrained but with spread scores and distances.

    Like :func:`spread_retinanet`: the untrained GFL head scores every point at its 0.01 prior and predicts flat
    distance distributions, so the class logits are scaled (scores spread over (0, 1)) and the distribution logits
    too (boxes of varied sizes), giving real, well separated detections to compare.
    """
    from shufflenet_det.utils import build_detector
    torch.manual_seed(seed)
    model = build_detector(LITE_CFG, cfg_options={**SMALL_LITE, **cfg_options})
    randomize_bn(model, seed, with_weights=True)  # every conv random (fan-in scaled): features of order 1
    gen = torch.Generator().manual_seed(seed)
    head = model.bbox_head
    nc = head.num_classes
    with torch.no_grad():
        for conv in head.gfl_cls:
            scale = 1.0 / conv.weight[0].numel() ** 0.5
            conv.weight[:nc].copy_(torch.randn(conv.weight[:nc].shape, generator=gen) * 4 * scale)
            conv.bias[:nc].copy_(torch.rand(nc, generator=gen) * 2 - 3)
            conv.weight[nc:].copy_(torch.randn(conv.weight[nc:].shape, generator=gen) * 3 * scale)
    return model.eval()


#: The mini PP-PicoDet-S (ESNet-S + CSPPAN + PicoHead, 4 classes); :func:`spread_pico` spreads its outputs.
PICO_CFG = REPO / 'configs/mini/picodet-s_esnet_mini-coco.py'


def spread_pico(seed: int = 0, **cfg_options) -> torch.nn.Module:
    """A tiny random PicoDet-S (mini config, 4 classes) with spread scores and distances (as :func:`spread_lite`)."""
    from shufflenet_det.utils import build_detector
    torch.manual_seed(seed)
    model = build_detector(PICO_CFG, cfg_options=cfg_options)
    randomize_bn(model, seed, with_weights=True)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in model.bbox_head.head_cls:
            scale = 1.0 / conv.weight[0].numel() ** 0.5
            conv.weight[:4].copy_(torch.randn(conv.weight[:4].shape, generator=gen) * 4 * scale)
            conv.bias[:4].copy_(torch.rand(4, generator=gen) * 2 - 3)
            conv.weight[4:].copy_(torch.randn(conv.weight[4:].shape, generator=gen) * 3 * scale)
    return model.eval()


def images(model: torch.nn.Module, size=(128, 160), num: int = 2, seed: int = 0) -> list[torch.Tensor]:
    """Normalised generated pictures of ``size`` (H, W) for ``model``."""
    from shufflenet_det.deploy.images import check_images
    return check_images(model, size, None, num, seed)[0]


def parity_args(detector: torch.nn.Module, x: torch.Tensor) -> dict:
    """``test_cfg`` and ``scale`` of :func:`shufflenet_det.deploy.parity.compare_detections` for ``detector`` on the
    one image ``x``, as the exports pass them.

    Two computations of the same detections (another runtime, a folded BN, a numpy decoder, another op order) round
    differently, by a few float32 eps (1.2e-7) of the magnitude ``S`` of the raw head outputs per layer: ``scale``
    and ``box_scale`` (class logits, box outputs) make the score / box tolerances follow ``S``; ``test_cfg`` lets a
    detection lying at the score threshold, the ``max_per_img`` cut or an NMS IoU boundary be kept on one side only
    (detection counts may differ there, by rounding, on another CPU). Anything else unmatched still fails.
    """
    from shufflenet_det.deploy.detector import head_output_scales, postprocess_meta
    scale, box_scale = head_output_scales(detector, x)[0]
    return dict(test_cfg=postprocess_meta(detector)['test_cfg'], scale=scale, box_scale=box_scale)


#: The steps of mmdeploy's tools/deploy.py for an ONNX Runtime deploy config, through its API (mmdeploy 1.3.1's PyPI
#: wheel ships no tools/ and has no source archive on PyPI): ``torch2onnx`` in a spawned process, as deploy.py runs it.
MMDEPLOY_DRIVER = '''
import sys
from torch.multiprocessing import set_start_method
from mmdeploy.apis import torch2onnx
from mmdeploy.apis.core import PIPELINE_MANAGER
from mmdeploy.utils import get_ir_config, load_config

if __name__ == '__main__':
    deploy_cfg, model_cfg, checkpoint, image, work_dir = sys.argv[1:6]
    set_start_method('spawn', force=True)
    PIPELINE_MANAGER.enable_multiprocess(True, [torch2onnx])
    save_file = get_ir_config(load_config(deploy_cfg)[0])['save_file']
    torch2onnx(image, work_dir, save_file, deploy_cfg, model_cfg, checkpoint, device='cpu')
'''


def mmdeploy_tools_deploy() -> Path | None:
    """mmdeploy's own tools/deploy.py: ``MMDEPLOY_DEPLOY_PY``, or beside the package of a source install."""
    import mmdeploy
    env = os.environ.get('MMDEPLOY_DEPLOY_PY')
    candidates = [Path(env)] if env else []
    candidates.append(Path(mmdeploy.__file__).resolve().parents[1] / 'tools' / 'deploy.py')
    return next((p for p in candidates if p.is_file()), None)


def run_mmdeploy_pipeline(deploy_cfg: Path, model_cfg: Path, checkpoint: Path, image: Path, work: Path,
                          cwd: Path) -> subprocess.CompletedProcess:
    """mmdeploy's pipeline in a child process run in ``cwd`` (a user's folder), with ``shufflenet_det`` as installed
    (no ``PYTHONPATH``): its tools/deploy.py when there is one (:func:`mmdeploy_tools_deploy`), otherwise
    :data:`MMDEPLOY_DRIVER`; the ONNX file goes to ``work``."""
    tool = mmdeploy_tools_deploy()
    args = [str(deploy_cfg), str(model_cfg), str(checkpoint), str(image)]
    if tool is not None:
        cmd = [sys.executable, str(tool), *args, '--work-dir', str(work), '--device', 'cpu']
    else:
        driver = work.parent / 'deploy_driver.py'
        driver.write_text(MMDEPLOY_DRIVER)
        cmd = [sys.executable, str(driver), *args, str(work)]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}  # shufflenet_det as installed, not the tree
    return subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=600, env=env)
