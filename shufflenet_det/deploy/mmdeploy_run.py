"""Deploy a detector with mmdeploy 1.3.1 and check the backend it exported: the body of
``tools/deploy/mmdeploy_deploy.py``.

Steps (:func:`deploy`): mmdeploy's ``torch2onnx`` with its rewriters (post-processing + ONNX NonMaxSuppression in the
graph, settings from the deploy config's ``codebase_config.post_processing``) into a scratch folder; the same
rewritten model run in PyTorch on the same input as the parity reference; inference through mmdeploy's backend model
(``build_task_processor(...).build_backend_model``) on every image; files renamed into the work dir only when the
parity check passes, with ``end2end.json`` (parity + detections) next to ``end2end.onnx``.

The backend's detections are also compared with mmdet's own ``predict`` (no rewriter) on the same input tensor
(``mmdet_parity`` in the report). For the lite and PicoDet detectors this check must pass too (their deploy forms'
``mmdeploy_matches_mmdet``): their heads' rewriters (:mod:`.mmdeploy_lite`, :mod:`.mmdeploy_pico`) reproduce mmdet's
post-processing exactly; mmdeploy's generic rewriter of RetinaNet-like heads selects candidates differently
(``pre_top_k`` by best class), so there it is informational.

Everything a user can get wrong (a missing file, the two configs swapped, mmdeploy's ncnn backend with a lite or
PicoDet detector, a device that is not there, an unwritable work dir) is refused by :func:`check_request` before any
work.
The mmdeploy fixes this needs are :mod:`.compat_mmdeploy`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..utils.cli import check_output_path, fail


@dataclass(frozen=True)
class DeployRequest:
    """What to deploy: the two configs, the weights (None: a random initialisation), the images (the first is the
    export example; all are run), the output folder, the device and the parity tolerances."""

    deploy_cfg: str
    model_cfg: str
    checkpoint: Optional[str]
    images: Sequence[str]
    work_dir: str
    device: str = 'cpu'
    box_atol: float = 1e-2
    score_atol: float = 1e-4
    cfg_options: Mapping[str, Any] = field(default_factory=dict)


def _check_device(device_name: str) -> None:
    """End the tool unless ``device_name`` is cpu or an existing CUDA device."""
    import torch
    try:
        device = torch.device(device_name)
    except (RuntimeError, ValueError) as exc:
        fail(f'--device {device_name!r} is not a device ({exc}); use cpu or cuda[:N]')
    if device.type not in ('cpu', 'cuda'):
        fail(f'--device {device_name!r}: mmdeploy exports and runs on cpu or cuda[:N]')
    if device.type == 'cuda' and not torch.cuda.is_available():
        fail(f'--device {device_name}: CUDA is not available on this machine (torch.cuda.is_available() is False); '
             'use --device cpu')
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        fail(f'--device {device_name}: this machine has {torch.cuda.device_count()} CUDA device(s)')


def _check_config_kinds(req: DeployRequest, deploy_cfg: Any, model_cfg: Any) -> None:
    """End the tool when the configs are swapped or of the wrong kind."""
    is_deploy = [any(k in c for k in ('onnx_config', 'backend_config', 'codebase_config'))
                 for c in (deploy_cfg, model_cfg)]
    has_model = [isinstance(c.get('model'), dict) for c in (deploy_cfg, model_cfg)]
    if is_deploy[1] and has_model[0]:
        fail(f'the configs are swapped: deploy_cfg (1st argument) {req.deploy_cfg!r} is a model config and '
             f'model_cfg (2nd argument) {req.model_cfg!r} is an mmdeploy deploy config; give the deploy config '
             '(configs/deploy/...) first, then the model config')
    if not is_deploy[0]:
        fail(f'deploy_cfg (1st argument) {req.deploy_cfg!r} is not an mmdeploy deploy config (it has no '
             'onnx_config / backend_config / codebase_config); give one of configs/deploy/*.py first')
    if not has_model[1]:
        fail(f'model_cfg (2nd argument) {req.model_cfg!r} is not a model config (it has no model); give the '
             "detector's config second, e.g. configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py")


def _check_backend_fits(req: DeployRequest, deploy_cfg: Any, model_cfg: Any) -> None:
    """End the tool for mmdeploy's ncnn backend with a head whose deploy form says it cannot go there
    (``mmdeploy_ncnn`` False: the lite and PicoDet heads predict distances from points)."""
    from mmdet.registry import MODELS

    from . import heads  # noqa: F401  (registers the built-in deploy forms)
    from .forms import deploy_form_of
    backend = (deploy_cfg.get('backend_config') or {}).get('type')
    head = (model_cfg.model.get('bbox_head') or {}).get('type')
    head_cls = MODELS.get(head) if isinstance(head, str) else head
    if backend != 'ncnn' or not isinstance(head_cls, type):
        return
    try:
        form = deploy_form_of(head_cls)
    except ValueError:
        return  # no deploy form of the project: mmdeploy decides
    if not form.mmdeploy_ncnn:
        fail(f'deploy config {req.deploy_cfg!r} (mmdeploy\'s ncnn backend) with the detector of {req.model_cfg!r} '
             f'({head}, {form.name!r} deploy form) is not supported: mmdeploy\'s ncnn end2end models end in ncnn\'s '
             'DetectionOutput layer, which decodes anchor boxes, and this head predicts distances from points; '
             'export it to ncnn with tools/deploy/export_ncnn.py, or use an ONNX Runtime / TensorRT deploy config '
             'here')


def check_request(req: DeployRequest) -> int:
    """Refuse what would otherwise fail deep inside mmdeploy, before any work: a missing file (exit status 2,
    returned), a work dir that cannot be written, a file that is no picture, the two configs swapped or of the wrong
    kind, mmdeploy's ncnn backend with a point head (lite, PicoDet), a device that does not exist here (the tool
    ends); 0: fine.
    """
    from ..utils.build import load_config
    from .images import read_image
    for path in [req.deploy_cfg, req.model_cfg, *req.images] + ([req.checkpoint] if req.checkpoint else []):
        if not Path(path).is_file():
            print(f'error: {path!r} does not exist', file=sys.stderr)
            return 2
    work_dir = Path(req.work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        fail(f'--work-dir {req.work_dir!r} is a file, not a folder')
    check_output_path(work_dir / 'end2end.json', '--work-dir')
    for image in req.images:
        read_image(image)  # a file that is no picture fails here, naming it, not deep inside mmdeploy
    _check_device(req.device)
    deploy_cfg, model_cfg = load_config(req.deploy_cfg), load_config(req.model_cfg, req.cfg_options)
    _check_config_kinds(req, deploy_cfg, model_cfg)
    _check_backend_fits(req, deploy_cfg, model_cfg)
    return 0


def _load_configs(req: DeployRequest) -> tuple[Any, Any]:
    """mmdeploy's ``(deploy_cfg, model_cfg)`` with ``--cfg-options`` merged and the backbone's init_cfg dropped; a
    checkpoint is first loaded strictly (mmdeploy loads non-strictly: another width or class count would be exported
    half random and pass its own parity check), which names every missing / mismatched weight."""
    from mmdeploy.utils import load_config

    from ..utils.build import build_detector
    try:
        deploy_cfg, model_cfg = load_config(req.deploy_cfg, req.model_cfg)
    except Exception as exc:  # noqa: BLE001 - mmengine raises many types for a broken config
        fail(f'cannot load {req.deploy_cfg!r} / {req.model_cfg!r}: {type(exc).__name__}: {exc}')
    if req.cfg_options:
        model_cfg.merge_from_dict(req.cfg_options)
    model_cfg.model.backbone['init_cfg'] = None  # weights come from the checkpoint (or stay random)
    if req.checkpoint is not None:
        build_detector(model_cfg, req.checkpoint)
    return deploy_cfg, model_cfg


def _dets(dets: Any, labels: Any) -> dict[str, Any]:
    """The first image's detections of mmdeploy's ``(dets, labels)`` outputs as numpy boxes / scores / labels."""
    import numpy as np
    dets = np.asarray(dets.detach().cpu() if hasattr(dets, 'detach') else dets)[0]
    labels = np.asarray(labels.detach().cpu() if hasattr(labels, 'detach') else labels)[0]
    return dict(boxes=dets[:, :4], scores=dets[:, 4], labels=labels)


@dataclass
class _Export:
    """The scratch export: the task processor, backend, IR file name, input shape, backend files and the
    checkpoint exported (the random initialisation's file when the request has none)."""

    task: Any
    backend: str
    ir_file: str
    input_shape: Any
    backend_files: list[str]
    checkpoint: str


def _export(req: DeployRequest, deploy_cfg: Any, model_cfg: Any, scratch: Path) -> _Export:
    """mmdeploy's ``torch2onnx`` (and ``to_backend`` for other backends) into ``scratch``."""
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import build_task_processor, to_backend
    from mmdeploy.utils import get_backend, get_input_shape, get_ir_config

    from ..utils.build import build_model
    from ..utils.io import save_torch_atomic
    backend = get_backend(deploy_cfg).value
    ir_file = get_ir_config(deploy_cfg)['save_file']
    task = build_task_processor(model_cfg, deploy_cfg, req.device)
    checkpoint = req.checkpoint
    if checkpoint is None:  # freeze one random initialisation for the export and the reference alike
        from mmdet.utils import register_all_modules
        register_all_modules()
        model = build_model(model_cfg.model, init=True)  # not task.build_pytorch_model: that one folds BN already
        checkpoint = str(save_torch_atomic({'state_dict': model.state_dict()}, scratch / 'random_init.pth'))
    torch2onnx(req.images[0], str(scratch), ir_file, deploy_cfg, model_cfg, checkpoint, req.device)
    backend_files = [str(scratch / ir_file)]
    if backend != 'onnxruntime':
        backend_files = to_backend(backend, backend_files, work_dir=str(scratch), deploy_cfg=deploy_cfg,
                                   device=req.device)
    return _Export(task, backend, ir_file, get_input_shape(deploy_cfg), list(backend_files), checkpoint)


class _BackendCheck:
    """The exported backend against the rewritten PyTorch model and mmdet's own ``predict``, one image at a time."""

    def __init__(self, req: DeployRequest, export: _Export, deploy_cfg: Any, model_cfg: Any) -> None:
        from mmdeploy.core import patch_model
        from mmdeploy.utils import get_onnx_config

        from .detector import deploy_form, postprocess_meta
        self.req, self.export, self.deploy_cfg = req, export, deploy_cfg
        self.torch_model = export.task.build_pytorch_model(export.checkpoint)
        self.patched = patch_model(self.torch_model, cfg=deploy_cfg, backend=export.backend)
        self.backend_model = export.task.build_backend_model(export.backend_files)
        self.opset = get_onnx_config(deploy_cfg).get('opset_version', 11)
        self.exact = deploy_form(self.torch_model).mmdeploy_matches_mmdet  # e.g. the lite head's rewriter
        self.test_cfg = postprocess_meta(self.torch_model)['test_cfg']  # the boundaries rounding may move dets
        self.score_thr = model_cfg.model.test_cfg.get('score_thr', 0.05)

    def run(self, image: str) -> tuple[dict, dict, dict]:
        """``(parity check, check against mmdet's predict, detections above score_thr)`` of ``image``."""
        import torch
        from mmdeploy.core import RewriterContext

        from ..utils.predict import predict_detections
        from .detector import head_output_scales
        from .parity import compare_detections
        task, backend = self.export.task, self.export.backend
        data, model_inputs = task.create_input(image, self.export.input_shape,
                                               data_preprocessor=getattr(self.torch_model, 'data_preprocessor', None))
        inputs = model_inputs[0] if isinstance(model_inputs, (list, tuple)) else model_inputs
        with RewriterContext(cfg=self.deploy_cfg, backend=backend, opset=self.opset), torch.no_grad():
            ref = _dets(*self.patched(inputs, data_samples=data['data_samples'], mode='predict'))
        with torch.no_grad():
            out = self.backend_model.wrapper({self.backend_model.input_name: inputs})  # the raw backend outputs
        got = _dets(out['dets'], out['labels'])
        scales = head_output_scales(self.torch_model, inputs)[0]
        check = compare_detections(ref, got, self.req.box_atol, self.req.score_atol, self.test_cfg, *scales)
        real = got['scores'] > 0  # rows of score 0 pad the outputs (mmdeploy's backend model drops them)
        mm = compare_detections(predict_detections(self.torch_model, inputs)[0],
                                {k: v[real] for k, v in got.items()}, self.req.box_atol, self.req.score_atol,
                                self.test_cfg, *scales)
        check['image'] = mm['image'] = image
        return check, mm, self._detections(image, got)

    def _detections(self, image: str, got: Mapping[str, Any]) -> dict[str, Any]:
        """The backend model's full path (its own preprocessing, boxes in original-image pixels) on ``image``."""
        import torch
        raw_data, _ = self.export.task.create_input(image, self.export.input_shape)  # test_step preprocesses
        with torch.no_grad():
            result = self.backend_model.test_step(raw_data)[0].pred_instances
        keep = result.scores > self.score_thr
        raw_max = float(got['scores'].max()) if len(got['scores']) else None
        return dict(image=image, raw_max_score=raw_max, boxes=result.bboxes[keep].tolist(),
                    scores=result.scores[keep].tolist(), labels=result.labels[keep].tolist())


def _write_outputs(req: DeployRequest, export: _Export, report: dict[str, Any]) -> list[Path]:
    """Copy the backend files into the work dir and write the report next to them, all renamed together."""
    from ..utils.io import atomic_outputs
    work_dir = Path(req.work_dir)
    final = [work_dir / Path(f).name for f in export.backend_files]
    report['files'] = [str(f) for f in final]
    report_path = work_dir / (Path(export.ir_file).stem + '.json')
    with atomic_outputs(final + [report_path], 'mmdeploy output') as tmps:
        for src, tmp in zip(export.backend_files, tmps):
            shutil.copyfile(src, tmp)
        tmps[-1].write_text(json.dumps(report, indent=2) + '\n')
    return final


def _deploy_into(req: DeployRequest, deploy_cfg: Any, model_cfg: Any, scratch: Path, t0: float) -> int:
    """Export into ``scratch``, check every image, write the outputs when the checks pass; the exit status."""
    import mmdeploy
    import torch

    from .parity import format_report, summarize
    export = _export(req, deploy_cfg, model_cfg, scratch)
    checker = _BackendCheck(req, export, deploy_cfg, model_cfg)
    checks: list[dict] = []
    mmdet_checks: list[dict] = []
    detections: list[dict] = []
    for image in req.images:
        check, mmdet_check, found = checker.run(image)
        checks.append(check)
        mmdet_checks.append(mmdet_check)
        detections.append(found)
    parity, mmdet_parity = summarize(checks), summarize(mmdet_checks)
    mmdet_parity['required'] = checker.exact
    print(f'[mmdeploy] {export.ir_file} ({export.backend}): {format_report(parity)}')
    print(f"[mmdeploy] against mmdet's predict ({'required' if checker.exact else 'informational'}): "
          f'{format_report(mmdet_parity)}')
    if not parity['passed']:
        print('error: backend outputs differ from the rewritten PyTorch model; nothing written', file=sys.stderr)
        return 1
    if checker.exact and not mmdet_parity['passed']:
        print("error: backend detections differ from mmdet's predict; nothing written", file=sys.stderr)
        return 1
    report = dict(deploy_cfg=req.deploy_cfg, model_cfg=req.model_cfg, checkpoint=req.checkpoint,
                  backend=export.backend, files=[], input_shape=export.input_shape, mmdeploy=mmdeploy.__version__,
                  torch=torch.__version__, seconds=round(time.perf_counter() - t0, 2), parity=parity,
                  mmdet_parity=mmdet_parity, detections=detections)
    final = _write_outputs(req, export, report)
    for det in detections:
        print(f"[mmdeploy] {det['image']}: {len(det['scores'])} detections above score_thr"
              + (f", best {max(det['scores']):.3f}" if det['scores'] else ''))
    print(f'[mmdeploy] wrote {", ".join(str(f) for f in final)} and '
          f'{Path(req.work_dir) / (Path(export.ir_file).stem + ".json")}')
    return 0


def deploy(req: DeployRequest) -> int:
    """Check the request, export, check the backend and write the outputs (module docstring); the exit status:
    0 written, 1 a parity check failed (nothing written), 2 a bad input or mmdeploy missing (errors the tool
    reports itself end it through :func:`shufflenet_det.utils.cli.fail`)."""
    status = check_request(req)
    if status:
        return status
    from . import compat_mmdeploy
    if not compat_mmdeploy.mmdeploy_available():
        print('error: mmdeploy is not installed (pip install --no-deps -c requirements/constraints.txt '
              '-r requirements/deploy.txt)', file=sys.stderr)
        return 2
    compat_mmdeploy.apply(import_mmdeploy=True)
    deploy_cfg, model_cfg = _load_configs(req)
    work_dir = Path(req.work_dir)
    created = not work_dir.exists()
    work_dir.mkdir(parents=True, exist_ok=True)
    # named like shufflenet_det.utils.io's temporaries: the next write into the folder removes it if this process
    # is killed outright; SIGTERM / SIGINT (shufflenet_det.utils.cli) and errors remove it below
    scratch = Path(tempfile.mkdtemp(prefix=f'.mmdeploy.{os.getpid()}.', suffix='.tmpdir', dir=work_dir))
    t0 = time.perf_counter()
    status = 1
    try:
        status = _deploy_into(req, deploy_cfg, model_cfg, scratch, t0)
        return status
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if created and status != 0:
            with contextlib.suppress(OSError):
                work_dir.rmdir()  # only when still empty
