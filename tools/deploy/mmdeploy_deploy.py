"""Deploy a detector with mmdeploy 1.3.1 (torch 2.13 fixes applied) and run it with the exported backend.

Steps: mmdeploy's ``torch2onnx`` with its rewriters (post-processing + ONNX NonMaxSuppression in the graph, settings
from the deploy config's ``codebase_config.post_processing``) into a scratch folder; the same rewritten model run in
PyTorch on the same input as the parity reference; ONNX Runtime inference through mmdeploy's backend model
(``build_task_processor(...).build_backend_model``) on every image; files renamed into ``--work-dir`` only when the
parity check passes, with ``end2end.json`` (parity + detections) next to ``end2end.onnx``.

The backend's detections are also compared with mmdet's own ``predict`` (no rewriter) on the same input tensor
(``mmdet_parity`` in the report). For the lite detectors this check must pass too: their head's rewriter
(``shufflenet_det/deploy/mmdeploy_lite.py``) reproduces mmdet's post-processing exactly; mmdeploy's generic rewriter
of RetinaNet-like heads selects candidates differently (``pre_top_k`` by best class), so there it is informational.

Deploy configs: configs/deploy/detection_onnxruntime_*.py run here. TensorRT configs export the ONNX and build the
engine when TensorRT is installed (a GPU machine); mmdeploy's own ncnn backend needs an mmdeploy source build - use
tools/deploy/export_ncnn.py (pnnx) for ncnn instead.

Example (the mini RetinaNet, after ``python tools/train.py configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py``)::

    python tools/deploy/mmdeploy_deploy.py configs/deploy/detection_onnxruntime_static-256x256.py \\
        configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py \\
        work_dirs/retinanet_shufflenetv2-1x_fpn_mini-coco/epoch_12.pth \\
        data/mini_coco/val2017/000000000001.png --work-dir work_dirs/mmdeploy_mini_ort
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402

from shufflenet_det.deploy.cli import add_tolerance_args  # noqa: E402
from shufflenet_det.utils.cli import fail, run_main  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('deploy_cfg', help='mmdeploy deploy config (configs/deploy/...)')
    parser.add_argument('model_cfg', help='mmdet model config')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='model checkpoint (weights_only=True); omit to deploy the randomly initialised model')
    parser.add_argument('images', nargs='+', help='image(s): the first is the export example, all are run')
    parser.add_argument('--work-dir', required=True, help='output folder (end2end.onnx, end2end.json)')
    parser.add_argument('--device', default='cpu', help='device for the export and the backend (default cpu)')
    add_tolerance_args(parser, atol=None, rtol=None, box_atol=1e-2, score_atol=1e-4)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, metavar='KEY=VALUE',
                        help='model config overrides, e.g. model.test_cfg.score_thr=0.3')
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not args.checkpoint.endswith(('.pth', '.pt', '.ckpt')):
        args.images.insert(0, args.checkpoint)
        args.checkpoint = None
    return args


def _check_setup(args: argparse.Namespace) -> None:
    """Refuse what would otherwise fail deep inside mmdeploy, before any work: the two configs swapped or of the
    wrong kind, mmdeploy's ncnn backend with a lite detector, a --device that does not exist here."""
    import torch

    from shufflenet_det.utils.build import load_config
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError) as exc:
        fail(f'--device {args.device!r} is not a device ({exc}); use cpu or cuda[:N]')
    if device.type not in ('cpu', 'cuda'):
        fail(f'--device {args.device!r}: mmdeploy exports and runs on cpu or cuda[:N]')
    if device.type == 'cuda' and not torch.cuda.is_available():
        fail(f'--device {args.device}: CUDA is not available on this machine (torch.cuda.is_available() is False); '
             'use --device cpu')
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        fail(f'--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s)')
    deploy_cfg, model_cfg = load_config(args.deploy_cfg), load_config(args.model_cfg, args.cfg_options)
    is_deploy = [any(k in c for k in ('onnx_config', 'backend_config', 'codebase_config'))
                 for c in (deploy_cfg, model_cfg)]
    has_model = [isinstance(c.get('model'), dict) for c in (deploy_cfg, model_cfg)]
    if is_deploy[1] and has_model[0]:
        fail(f'the configs are swapped: deploy_cfg (1st argument) {args.deploy_cfg!r} is a model config and '
             f'model_cfg (2nd argument) {args.model_cfg!r} is an mmdeploy deploy config; give the deploy config '
             '(configs/deploy/...) first, then the model config')
    if not is_deploy[0]:
        fail(f'deploy_cfg (1st argument) {args.deploy_cfg!r} is not an mmdeploy deploy config (it has no '
             'onnx_config / backend_config / codebase_config); give one of configs/deploy/*.py first')
    if not has_model[1]:
        fail(f'model_cfg (2nd argument) {args.model_cfg!r} is not a model config (it has no model); give the '
             "detector's config second, e.g. configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py")
    from mmdet.registry import MODELS

    from shufflenet_det.models.dense_heads import LiteGFLHead
    backend = (deploy_cfg.get('backend_config') or {}).get('type')
    head = (model_cfg.model.get('bbox_head') or {}).get('type')
    head_cls = MODELS.get(head) if isinstance(head, str) else head
    if backend == 'ncnn' and isinstance(head_cls, type) and issubclass(head_cls, LiteGFLHead):
        fail(f'deploy config {args.deploy_cfg!r} (mmdeploy\'s ncnn backend) with the lite detector of '
             f'{args.model_cfg!r} ({head}) is not supported: mmdeploy\'s ncnn end2end models end in ncnn\'s '
             'DetectionOutput layer, which decodes anchor boxes, and the lite head predicts distances from points; '
             'export lite detectors to ncnn with tools/deploy/export_ncnn.py, or use an ONNX Runtime / TensorRT '
             'deploy config here')


def _dets(dets: Any, labels: Any) -> dict[str, Any]:
    import numpy as np
    dets = np.asarray(dets.detach().cpu() if hasattr(dets, 'detach') else dets)[0]
    labels = np.asarray(labels.detach().cpu() if hasattr(labels, 'detach') else labels)[0]
    return dict(boxes=dets[:, :4], scores=dets[:, 4], labels=labels)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    for path in [args.deploy_cfg, args.model_cfg] + args.images + ([args.checkpoint] if args.checkpoint else []):
        if not Path(path).is_file():
            print(f'error: {path!r} does not exist', file=sys.stderr)
            return 2
    work_dir = Path(args.work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        fail(f'--work-dir {args.work_dir!r} is a file, not a folder')
    from shufflenet_det.deploy.cli import check_output_path
    from shufflenet_det.deploy.images import read_image
    check_output_path(work_dir / 'end2end.json', '--work-dir')
    for image in args.images:
        read_image(image)  # a file that is no picture fails here, naming it, not deep inside mmdeploy
    _check_setup(args)
    import torch

    import shufflenet_det  # noqa: F401  - registers the backbones, safe checkpoint loading
    from shufflenet_det.deploy import compat_mmdeploy
    from shufflenet_det.deploy.parity import compare_detections, format_report, summarize
    from shufflenet_det.utils import atomic_outputs, save_torch_atomic
    if not compat_mmdeploy.mmdeploy_available():
        print('error: mmdeploy is not installed (pip install --no-deps -c requirements/constraints.txt '
              '-r requirements/deploy.txt)', file=sys.stderr)
        return 2
    compat_mmdeploy.apply(import_mmdeploy=True)
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import build_task_processor, to_backend
    from mmdeploy.core import RewriterContext, patch_model
    from mmdeploy.utils import get_backend, get_input_shape, get_ir_config, get_onnx_config, load_config

    from shufflenet_det.utils import build_detector
    try:
        deploy_cfg, model_cfg = load_config(args.deploy_cfg, args.model_cfg)
    except Exception as exc:  # noqa: BLE001 - mmengine raises many types for a broken config
        fail(f'cannot load {args.deploy_cfg!r} / {args.model_cfg!r}: {type(exc).__name__}: {exc}')
    if args.cfg_options:
        model_cfg.merge_from_dict(args.cfg_options)
    model_cfg.model.backbone['init_cfg'] = None  # weights come from the checkpoint (or stay random)
    if args.checkpoint is not None:
        # mmdeploy loads checkpoints non-strictly (another width or class count would be exported half random and
        # pass its own parity check): load it strictly here first, which names every missing / mismatched weight
        build_detector(model_cfg, args.checkpoint)
    backend = get_backend(deploy_cfg).value
    ir_file = get_ir_config(deploy_cfg)['save_file']
    input_shape = get_input_shape(deploy_cfg)
    created = not work_dir.exists()
    work_dir.mkdir(parents=True, exist_ok=True)
    # named like shufflenet_det.utils.io's temporaries: the next write into the folder removes it if this process
    # is killed outright; SIGTERM / SIGINT (shufflenet_det.utils.cli) and errors remove it below
    scratch = Path(tempfile.mkdtemp(prefix=f'.mmdeploy.{os.getpid()}.', suffix='.tmpdir', dir=work_dir))
    t0 = time.perf_counter()
    ok = False
    try:
        task = build_task_processor(model_cfg, deploy_cfg, args.device)
        checkpoint = args.checkpoint
        if checkpoint is None:  # freeze one random initialisation for the export and the reference alike
            from mmdet.registry import MODELS
            from mmdet.utils import register_all_modules
            register_all_modules()
            model = MODELS.build(model_cfg.model)  # not task.build_pytorch_model: that one folds BN already
            model.init_weights()
            checkpoint = str(save_torch_atomic({'state_dict': model.state_dict()}, scratch / 'random_init.pth'))
        torch2onnx(args.images[0], str(scratch), ir_file, deploy_cfg, model_cfg, checkpoint, args.device)
        onnx_path = scratch / ir_file
        backend_files = [str(onnx_path)]
        if backend != 'onnxruntime':
            backend_files = to_backend(backend, [str(onnx_path)], work_dir=str(scratch), deploy_cfg=deploy_cfg,
                                       device=args.device)
        torch_model = task.build_pytorch_model(checkpoint)
        patched = patch_model(torch_model, cfg=deploy_cfg, backend=backend)
        backend_model = task.build_backend_model(backend_files)
        checks, detections, mmdet_checks = [], [], []
        opset = get_onnx_config(deploy_cfg).get('opset_version', 11)
        from shufflenet_det.deploy.detector import head_output_scales, postprocess_meta
        from shufflenet_det.deploy.lite import is_lite
        from shufflenet_det.utils.predict import predict_detections
        exact = is_lite(torch_model)  # the lite head's rewriter is mmdet's post-processing in graph form
        test_cfg = postprocess_meta(torch_model)['test_cfg']  # the boundaries rounding may move detections across
        for image in args.images:
            data, model_inputs = task.create_input(image, input_shape,
                                                   data_preprocessor=getattr(torch_model, 'data_preprocessor', None))
            inputs = model_inputs[0] if isinstance(model_inputs, (list, tuple)) else model_inputs
            with RewriterContext(cfg=deploy_cfg, backend=backend, opset=opset), torch.no_grad():
                ref = _dets(*patched(inputs, data_samples=data['data_samples'], mode='predict'))
            with torch.no_grad():
                out = backend_model.wrapper({backend_model.input_name: inputs})  # the raw backend outputs
            got = _dets(out['dets'], out['labels'])
            scales = head_output_scales(torch_model, inputs)[0]
            res = compare_detections(ref, got, args.box_atol, args.score_atol, test_cfg, *scales)
            res['image'] = image
            checks.append(res)
            real = got['scores'] > 0  # rows of score 0 pad the outputs (mmdeploy's backend model drops them)
            mm = compare_detections(predict_detections(torch_model, inputs)[0],
                                    {k: v[real] for k, v in got.items()}, args.box_atol, args.score_atol, test_cfg,
                                    *scales)
            mm['image'] = image
            mmdet_checks.append(mm)
            raw_data, _ = task.create_input(image, input_shape)  # test_step runs the preprocessor itself
            with torch.no_grad():
                result = backend_model.test_step(raw_data)[0].pred_instances
            keep = result.scores > model_cfg.model.test_cfg.get('score_thr', 0.05)
            raw_max = float(got['scores'].max()) if len(got['scores']) else None
            detections.append(dict(image=image, raw_max_score=raw_max, boxes=result.bboxes[keep].tolist(),
                                   scores=result.scores[keep].tolist(), labels=result.labels[keep].tolist()))
        parity = summarize(checks)
        mmdet_parity = summarize(mmdet_checks)
        mmdet_parity['required'] = exact
        print(f'[mmdeploy] {ir_file} ({backend}): {format_report(parity)}')
        print(f"[mmdeploy] against mmdet's predict ({'required' if exact else 'informational'}): "
              f'{format_report(mmdet_parity)}')
        if not parity['passed']:
            print('error: backend outputs differ from the rewritten PyTorch model; nothing written',
                  file=sys.stderr)
            return 1
        if exact and not mmdet_parity['passed']:
            print("error: backend detections differ from mmdet's predict; nothing written", file=sys.stderr)
            return 1
        final = [work_dir / Path(f).name for f in backend_files]
        report_path = work_dir / (Path(ir_file).stem + '.json')
        report = dict(deploy_cfg=args.deploy_cfg, model_cfg=args.model_cfg, checkpoint=args.checkpoint,
                      backend=backend, files=[str(f) for f in final], input_shape=input_shape,
                      mmdeploy=__import__('mmdeploy').__version__, torch=torch.__version__,
                      seconds=round(time.perf_counter() - t0, 2), parity=parity, mmdet_parity=mmdet_parity,
                      detections=detections)
        with atomic_outputs(final + [report_path], 'mmdeploy output') as tmps:  # all renamed together
            for src, tmp in zip(backend_files, tmps):
                shutil.copyfile(src, tmp)
            tmps[-1].write_text(json.dumps(report, indent=2) + '\n')
        for det in detections:
            print(f"[mmdeploy] {det['image']}: {len(det['scores'])} detections above score_thr"
                  + (f", best {max(det['scores']):.3f}" if det['scores'] else ''))
        print(f'[mmdeploy] wrote {", ".join(str(f) for f in final)} and {work_dir / (Path(ir_file).stem + ".json")}')
        ok = True
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if created and not ok:
            with contextlib.suppress(OSError):
                work_dir.rmdir()  # only when still empty


if __name__ == '__main__':
    sys.exit(run_main(main))
