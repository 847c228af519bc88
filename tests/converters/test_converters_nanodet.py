"""NanoDet-Plus checkpoints -> the lite detectors (``convert_weights.py --src nanodet --config CONFIG IN OUT``).

The source networks are ``official_refs.nanodet_plus`` (nanodet's names and wiring) with random weights, saved in both
layouts nanodet publishes: the Lightning training checkpoint (trained weights ``model.*``, their average
``avg_model.*``, and pickled non-tensor state: hyper-parameters, optimizer / scheduler / loop state, a callback class
of a framework that is not installed and a canary object that would write a file if anything from the pickle ran)
and the inference weight file (``{'state_dict': ...}`` with the network's own names). Both must give the same mmdet
checkpoint, whose detector reproduces the official raw head output, the auxiliary branch and the demo's detections.
"""
from __future__ import annotations

import copy
import io
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO, assert_close_scaled, load_script
from official_refs import randomize_
from official_refs.nanodet_plus import MODELS, NanoDetPlus, postprocess
from shufflenet_det.converters import convert_detector_checkpoint
from shufflenet_det.converters.nanodet import nanodet_key
from shufflenet_det.utils.build import build_detector
from shufflenet_det.utils.checkpoint import CheckpointError
from tiny_mini_coco import run_tool, write_config

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

CONFIGS = {
    'nanodet-plus-m_320': REPO / 'configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py',
    'nanodet-plus-m_416': REPO / 'configs/lite/lite-m_shufflenetv2-1x_300e_coco-416.py',
    'nanodet-plus-m-1.5x_320': REPO / 'configs/lite/lite-l_shufflenetv2-1.5x_300e_coco-320.py',
    'nanodet-plus-m-1.5x_416': REPO / 'configs/lite/lite-l_shufflenetv2-1.5x_300e_coco-416.py',
}
CLI = 'tools/model_converters/convert_weights.py'
MEAN, STD = (103.53, 116.28, 123.675), (57.375, 57.12, 58.395)  # nanodet's normalize, BGR
#: nanodet's post-processing (NanoDetPlusHead.get_bboxes): the settings the configs must reproduce
NANODET_TEST_CFG = dict(score_thr=0.05, iou_threshold=0.6, max_per_img=100)
#: Raw outputs: the converted detector runs the official operations in the official order, in float32; only the
#: kernels' summation order may differ between two runs (eps 1.2e-7 per layer, ~60 layers: ~1e-5 of the output
#: magnitude S). Allowed: 1e-4 of max(1, S) (assert_close_scaled), the parity rule's 1e-4; a wrong or misplaced
#: weight changes outputs by O(S).
RAW_ATOL = 1e-4
#: Detections (the issue's rule): boxes within 0.5 px, scores within 1e-3, same labels; a detection may be unmatched
#: only at the score threshold, the 100-detection cut or an NMS IoU boundary (compare_detections), where the
#: 1e-5-relative rounding above could move it across on another CPU.
BOX_ATOL, SCORE_ATOL = 0.5, 1e-3


# ------------------------------------------------------------------------------------------------------ fixtures
def _touch(path: str) -> None:  # what the canary would run if the reader executed anything from the pickle
    Path(path).write_text('executed')


class Canary:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204
        return _touch, (self.path,)


def foreign_class(module: str, name: str, base: type = object) -> type:
    """A class that pickles under ``module.name`` although no such module exists once saving is done."""
    return type(name, (base,), {'__module__': module, '__qualname__': name})


def save_with_foreign_modules(obj: object, path: Path, classes: list[type], save=torch.save) -> None:  # noqa: ANN001
    """``save(obj, path)`` while the classes' modules exist (pickle checks that), then remove them again."""
    added = []
    for cls in classes:
        parts = cls.__module__.split('.')
        for i in range(1, len(parts) + 1):
            name = '.'.join(parts[:i])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
        setattr(sys.modules[cls.__module__], cls.__name__, cls)
    try:
        save(obj, path)
    finally:
        for name in added:
            sys.modules.pop(name, None)


def official(name: str, seed: int = 0, num_classes: int = 80) -> NanoDetPlus:
    """A reproducible random NanoDet-Plus whose class scores are calibrated so that about 0.5% of the (point, class)
    pairs pass nanodet's 0.05 threshold (real, overlapping candidates for NMS) and whose distances are varied."""
    ref = randomize_(NanoDetPlus(name, num_classes), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in ref.head.gfl_cls:
            conv.bias[:num_classes].zero_()
            conv.weight[num_classes:].mul_(3)
        logits = ref(torch.randn(1, 3, 64, 64, generator=gen))[0, :, :num_classes]
        shift = float(np.log(0.05 / 0.95)) - float(torch.quantile(logits.flatten(), 0.995))
        for conv in ref.head.gfl_cls:
            conv.bias[:num_classes].copy_(shift + 0.3 * torch.randn(num_classes, generator=gen))
        for module in ref.aux_head.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.uniform_(-0.1, 0.1, generator=gen)
        for scale in ref.aux_head.scales:
            scale.scale.uniform_(0.5, 1.5, generator=gen)
    return ref.eval()


def write_lightning(ref: NanoDetPlus, path: Path, canary: Path) -> None:
    """nanodet's training checkpoint: ``avg_model.*`` = ``ref``, ``model.*`` = other (the trained) weights."""
    trained = randomize_(copy.deepcopy(ref), seed=99).state_dict()
    state = {f'model.{k}': v for k, v in trained.items()}
    state.update({f'avg_model.{k}': v for k, v in ref.state_dict().items()})
    callback = foreign_class('pytorch_lightning.callbacks.model_checkpoint', 'ModelCheckpoint')
    ckpt = {'epoch': 299, 'global_step': 366_000, 'pytorch-lightning_version': '1.9.0', 'state_dict': state,
            'loops': {'fit_loop': {'epoch_progress': {'total': {'ready': 300}}}},
            'callbacks': {callback: {'best_model_score': torch.tensor(0.27), 'dirpath': 'workspace/model_best'}},
            'optimizer_states': [{'state': {0: {'step': torch.tensor(1.0)}}, 'param_groups': [{'lr': 5e-5}]}],
            'lr_schedulers': [{'T_max': 300, 'eta_min': 5e-5, 'last_epoch': 299}],
            'hyper_parameters': {'cfg': {'save_dir': 'workspace/nanodet-plus-m_320', 'weight_averager': 0.9998}},
            'canary': Canary(canary)}
    save_with_foreign_modules(ckpt, path, [callback])


@pytest.fixture(scope='module')
def converted(tmp_path_factory) -> dict:
    """Per model: the reference, both source files and their conversions (out paths, notes)."""
    out = {}
    for name, config in CONFIGS.items():
        folder = tmp_path_factory.mktemp(name)
        ref = official(name, seed=len(out))
        ckpt, weights, canary = folder / f'{name}_checkpoint.ckpt', folder / f'{name}.pth', folder / 'executed'
        write_lightning(ref, ckpt, canary)
        torch.save({'state_dict': ref.state_dict()}, weights)
        out_ckpt, notes_ckpt = convert_detector_checkpoint('nanodet', config, ckpt, folder / 'from_ckpt.pth')
        out_pth, notes_pth = convert_detector_checkpoint('nanodet', config, weights, folder / 'from_pth.pth')
        assert not canary.exists()
        out[name] = dict(ref=ref, ckpt=ckpt, weights=weights, out_ckpt=out_ckpt, out_pth=out_pth,
                         notes_ckpt=notes_ckpt, notes_pth=notes_pth)
    return out


def _load(path: Path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)


def _normalize(img_bgr: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img_bgr.astype(np.float32)).permute(2, 0, 1)[None]
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


# ------------------------------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize('name', list(CONFIGS))
def test_both_layouts_convert_to_the_averaged_weights(name, converted):
    """The Lightning checkpoint's avg_model.* and the weight file give the same checkpoint, a key-for-key copy of
    the official tensors; nothing from the pickle ran or was imported."""
    case = converted[name]
    a, b = _load(case['out_ckpt']), _load(case['out_pth'])
    assert set(a['state_dict']) == set(b['state_dict'])
    assert all(torch.equal(a['state_dict'][k], b['state_dict'][k]) for k in a['state_dict'])  # exact: copies
    src = case['ref'].state_dict()
    copied = {k: v for k, v in a['state_dict'].items() if k != 'bbox_head.integral.project'}
    assert all(torch.equal(v, src[nanodet_key(k)]) for k, v in copied.items())
    assert any(k.startswith('aux_head.') for k in copied) and any(k.startswith('aux_neck.') for k in copied)
    assert 'pytorch_lightning' not in sys.modules
    notes = ' '.join(case['notes_ckpt'])
    assert 'avg_model.*' in notes and 'pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint' in notes
    assert 'distribution_project.project checked' in notes and 'auxiliary branch' in notes
    assert a['meta']['source'] == 'nanodet' and len(a['meta']['dataset_meta']['classes']) == 80


@pytest.mark.parametrize('name', list(CONFIGS))
def test_raw_outputs_equal_the_official_network(name, converted):
    """Strict load into the config's detector; the raw export tensor (sigmoid scores + distance logits) and the
    training-only auxiliary head's output equal nanodet's (64x64 input: every level, small and fast)."""
    case = converted[name]
    det = build_detector(CONFIGS[name], case['out_pth'])  # strict: every key and shape
    ref = case['ref']
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (maps,) = det.bbox_head(det.extract_feat(x))
        assert_close_scaled(det.bbox_head.flatten_outputs(maps), ref.forward_onnx(x), atol=RAW_ATOL)
        feats = det.backbone(x)
        dual = [torch.cat([m, a], 1) for m, a in zip(det.neck(feats), det.aux_neck(feats))]
        ours = torch.cat([o.flatten(2) for o in det.aux_head(dual)], 2)
        b = ref.backbone
        stages = []
        y = b.maxpool(b.conv1(x))
        for stage in (b.stage2, b.stage3, b.stage4):
            y = stage(y)
            stages.append(y)
        ref_dual = [torch.cat([m, a], 1) for m, a in zip(ref.fpn(tuple(stages)), ref.aux_fpn(tuple(stages)))]
        h = ref.aux_head
        theirs = []
        for f, scale in zip(ref_dual, h.scales):
            cls, reg = f, f
            for conv in h.cls_convs:
                cls = conv(cls)
            for conv in h.reg_convs:
                reg = conv(reg)
            theirs.append(torch.cat([h.gfl_cls(cls), h.gfl_reg(reg) * scale.scale], 1).flatten(2))
        assert_close_scaled(ours, torch.cat(theirs, 2), atol=RAW_ATOL)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_inference_detector_gives_the_demo_detections(name, converted):
    """mmdet's init_detector + inference_detector on a BGR image of the input size = nanodet's demo (normalize,
    forward, decode, multiclass NMS)."""
    from mmdet.apis import inference_detector, init_detector

    from shufflenet_det.deploy.parity import compare_detections
    case = converted[name]
    size = MODELS[name][2]
    img = np.random.default_rng(2).integers(0, 256, (size, size, 3), dtype=np.uint8)
    model = init_detector(str(CONFIGS[name]), str(case['out_ckpt']), device='cpu')
    ours = inference_detector(model, img).pred_instances
    with torch.no_grad():
        dets, labels = postprocess(case['ref'](_normalize(img)), (size, size))[0]
    assert len(dets) > 5
    res = compare_detections(dict(boxes=dets[:, :4], scores=dets[:, 4], labels=labels),
                             dict(boxes=ours.bboxes, scores=ours.scores, labels=ours.labels),
                             BOX_ATOL, SCORE_ATOL, NANODET_TEST_CFG)
    assert res['passed'], res


# ------------------------------------------------------------------------------------------------------ options
def test_aux_branch_is_dropped_and_reported_without_aux_head(converted, tmp_path):
    case = converted['nanodet-plus-m_320']
    options = {'model.aux_head': None}
    out, notes = convert_detector_checkpoint('nanodet', CONFIGS['nanodet-plus-m_320'], case['weights'],
                                             tmp_path / 'no_aux.pth', options)
    assert any(n.startswith('dropped the training-only auxiliary branch') for n in notes)
    state = _load(out)['state_dict']
    assert not any(k.startswith(('aux_head.', 'aux_neck.')) for k in state)
    build_detector(CONFIGS['nanodet-plus-m_320'], out, cfg_options=options)  # strict


def test_cli_end_to_end(converted, tmp_path, capsys):
    case = converted['nanodet-plus-m_320']
    out = tmp_path / 'cli.pth'
    cli = load_script(CLI)
    assert cli.main(['--src', 'nanodet', '--config', str(CONFIGS['nanodet-plus-m_320']), str(case['ckpt']),
                     str(out)]) == 0
    text = capsys.readouterr().out
    assert 'avg_model.*' in text and 'wrote' in text
    ref = _load(case['out_ckpt'])['state_dict']
    assert all(torch.equal(v, ref[k]) for k, v in _load(out)['state_dict'].items())
    with pytest.raises(SystemExit) as exc:
        cli.main(['--src', 'nanodet', '--config', str(CONFIGS['nanodet-plus-m_320']), '--type', 'ShuffleNetV2',
                  str(case['ckpt']), str(tmp_path / 'x.pth')])
    assert exc.value.code == 2 and '--type' in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ refusals
def _refused(src: Path, tmp_path: Path, config: Path = CONFIGS['nanodet-plus-m_320']) -> str:
    out = tmp_path / 'out.pth'
    with pytest.raises(CheckpointError) as exc:
        convert_detector_checkpoint('nanodet', config, src, out)
    assert not out.exists() and not list(tmp_path.glob('*.tmp*'))
    return str(exc.value)


@pytest.mark.parametrize('case', ['other_width', 'bins', 'extra_key', 'missing_key'])
def test_mismatches_are_errors(case, converted, tmp_path):
    state = dict(converted['nanodet-plus-m_320']['ref'].state_dict())
    config, expected = CONFIGS['nanodet-plus-m_320'], ''
    if case == 'other_width':
        config, expected = CONFIGS['nanodet-plus-m-1.5x_320'], 'pick the config of that model'
    elif case == 'bins':
        state['head.distribution_project.project'] = torch.linspace(0, 16, 8)
        expected = 'integral bins'
    elif case == 'extra_key':
        state['head.gfl_reg.0.weight'] = torch.zeros(1)
        expected = 'head.gfl_reg.0.weight'
    else:
        del state['fpn.reduce_layers.1.bn.running_var']
        expected = 'fpn.reduce_layers.1.bn.running_var'
    src = tmp_path / f'{case}.pth'
    torch.save({'state_dict': state}, src)
    message = _refused(src, tmp_path, config)
    assert expected in message and src.name in message, message


@pytest.mark.compat
def test_unrebuildable_foreign_object_is_refused_with_a_way_out(converted, tmp_path):
    """A pickled dict subclass of an unknown framework: torch's weights-only reader (torch >= 2.4) cannot fill an
    inert stand-in for it, so the file is refused, the message naming the class and how to get a plain weight file;
    the restricted unpickler of older torch (no add_safe_globals) reads it as an inert stand-in, never importing the
    class, and the weights convert. A pickled os call is refused on both and never runs."""
    from shufflenet_det.utils.checkpoint import HAS_SAFE_GLOBALS
    cfg_class = foreign_class('yacs_like.config', 'CfgNode', dict)
    src = tmp_path / 'cfgnode.ckpt'
    save_with_foreign_modules({'state_dict': converted['nanodet-plus-m_320']['ref'].state_dict(),
                               'hyper_parameters': cfg_class(lr=0.001)}, src, [cfg_class])
    if HAS_SAFE_GLOBALS:
        message = _refused(src, tmp_path)
        assert 'yacs_like.config.CfgNode' in message and 'weight file' in message, message
    else:
        out, notes = convert_detector_checkpoint('nanodet', CONFIGS['nanodet-plus-m_320'], src, tmp_path / 'o.pth')
        assert 'yacs_like.config.CfgNode' in ' '.join(notes) and 'yacs_like' not in sys.modules
        out.unlink()

    class Bomb:
        def __reduce__(self):  # noqa: ANN204
            import os
            return os.system, (f'touch {tmp_path / "executed"}',)

    bomb = tmp_path / 'bomb.ckpt'
    with open(bomb, 'wb') as f:
        pickle.dump({'state_dict': {}, 'x': Bomb()}, f)
    _refused(bomb, tmp_path)
    assert not (tmp_path / 'executed').exists()


@pytest.mark.compat
def test_lightning_checkpoint_reads_inert_on_this_stack(tmp_path):
    """On either stack (torch's weights-only unpickler with stand-ins, or the restricted unpickler of torch without
    add_safe_globals) the training checkpoint converts and nothing from its pickle runs."""
    ref = official('nanodet-plus-m_320', seed=5)
    src, canary = tmp_path / 'm_checkpoint.ckpt', tmp_path / 'executed'
    write_lightning(ref, src, canary)
    out, notes = convert_detector_checkpoint('nanodet', CONFIGS['nanodet-plus-m_320'], src, tmp_path / 'o.pth')
    assert not canary.exists() and 'pytorch_lightning' not in sys.modules
    assert any('never imported' in n for n in notes)
    state = _load(out)['state_dict']
    assert torch.equal(state['bbox_head.gfl_cls.0.weight'], ref.state_dict()['head.gfl_cls.0.weight'])


def test_restricted_unpickler_path_uses_stand_ins(tmp_path):
    """The reader of torch without add_safe_globals (the openmmlab stack's torch 2.1), driven here through plain
    pickle: foreign classes become stand-ins, the canary's reduce is never called, os globals are refused."""
    from shufflenet_det.utils.checkpoint import UnresolvedObject, _inert_pickle_module
    callback = foreign_class('pytorch_lightning.callbacks.model_checkpoint', 'ModelCheckpoint')
    obj = callback()
    obj.best_model_score = 0.27
    src, canary = tmp_path / 'state.pkl', tmp_path / 'executed'
    save_with_foreign_modules({'callbacks': {callback: {'x': 1}}, 'cb': obj, 'canary': Canary(canary), 'w': [1.5]},
                              src, [callback], save=lambda o, p: p.write_bytes(pickle.dumps(o, protocol=2)))
    found: set[str] = set()
    with open(src, 'rb') as f:
        loaded = _inert_pickle_module(found).load(f)
    assert isinstance(loaded['cb'], UnresolvedObject) and loaded['cb'].state == {'best_model_score': 0.27}
    assert loaded['w'] == [1.5] and not canary.exists() and 'pytorch_lightning' not in sys.modules
    assert 'pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint' in found
    assert isinstance(loaded['canary'], UnresolvedObject)  # the canary's function became a stand-in, not called

    class Bomb:
        def __reduce__(self):  # noqa: ANN204
            import os
            return os.system, (f'touch {canary}',)

    with pytest.raises(pickle.UnpicklingError):
        _inert_pickle_module(set()).load(io.BytesIO(pickle.dumps(Bomb())))
    assert not canary.exists()


# ------------------------------------------------------------------------------------------------------ downstream
def test_det_inferencer_draws_a_converted_checkpoint(converted, tmp_path):
    from mmdet.apis import DetInferencer
    case = converted['nanodet-plus-m_320']
    img = np.random.default_rng(3).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    inferencer = DetInferencer(model=str(CONFIGS['nanodet-plus-m_320']), weights=str(case['out_ckpt']),
                               device='cpu', show_progress=False)
    result = inferencer(img, out_dir=str(tmp_path), return_vis=True, no_save_pred=True)
    assert result['visualization'][0].shape == (320, 320, 3)
    assert len(result['predictions'][0]['labels']) > 0
    assert list((tmp_path / 'vis').glob('*.jpg')) or list((tmp_path / 'vis').glob('*.png'))


@pytest.mark.parametrize('with_nms', [False, True])
def test_onnx_exports_accept_a_converted_checkpoint(with_nms, converted, tmp_path):
    from shufflenet_det.deploy.onnx_export import export_detector_onnx, ort_session
    case = converted['nanodet-plus-m_320']
    det = build_detector(CONFIGS['nanodet-plus-m_320'], case['out_ckpt'])
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    path = tmp_path / f'lite_{with_nms}.onnx'
    report = export_detector_onnx(det, path, [x], with_nms=with_nms, verbose=False)
    assert report['parity']['passed'], report['parity']
    if not with_nms:  # ONNX Runtime against the official network itself (BN folded: rounding only, see RAW_ATOL)
        (got,) = ort_session(path).run(None, {'input': x.numpy()})
        with torch.no_grad():
            assert_close_scaled(got, case['ref'].forward_onnx(x), atol=RAW_ATOL)


def test_tools_test_evaluates_a_converted_checkpoint(tmp_path):
    """tools/test.py on the tiny mini COCO (4 classes) with a converted 4-class NanoDet-Plus: a smoke run."""
    from tiny_mini_coco import make_dataset
    data = make_dataset(tmp_path / 'data')
    cfg = write_config(tmp_path / 'tiny_nanodet.py', data, base=CONFIGS['nanodet-plus-m_320'])
    with open(cfg, 'a') as f:  # the generator's 4 classes (configs/mini/_base_/mini_coco.py)
        f.write("model = dict(bbox_head=dict(num_classes=4), aux_head=dict(num_classes=4))\n"
                "val_dataloader['dataset']['metainfo'] = dict(classes=('circle', 'square', 'triangle', 'cross'))\n")
    src = tmp_path / 'tiny.pth'
    torch.save({'state_dict': official('nanodet-plus-m_320', seed=7, num_classes=4).state_dict()}, src)
    out, _ = convert_detector_checkpoint('nanodet', cfg, src, tmp_path / 'tiny_lite.pth')
    assert _load(out)['meta']['dataset_meta']['classes'] == ['circle', 'square', 'triangle', 'cross']
    proc = run_tool(['tools/test.py', str(cfg), str(out), '--work-dir', str(tmp_path / 'work')], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr


def test_ncnn_export_accepts_a_converted_checkpoint(converted, tmp_path):
    # the ncnn path of the board runner: pnnx conversion and its own half-precision parity check (deploy.parity)
    from shufflenet_det.deploy.ncnn_export import export_detector_ncnn
    det = build_detector(CONFIGS['nanodet-plus-m_320'], converted['nanodet-plus-m_320']['out_ckpt'])
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    report = export_detector_ncnn(det, tmp_path / 'lite', [x], verbose=False)
    assert report['parity']['passed'], report['parity']
    assert (tmp_path / 'lite.param').is_file() and (tmp_path / 'lite.bin').is_file()


def test_mmdeploy_accepts_a_converted_checkpoint(converted, tmp_path):
    # mmdeploy's ONNX Runtime deploy at 320 (the lite head's rewriter): tools/deploy/mmdeploy_deploy.py checks the
    # backend against the rewritten model and against mmdet's predict (required for lite detectors)
    img = tmp_path / 'demo.png'
    from PIL import Image
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (320, 320, 3), dtype=np.uint8)).save(img)
    work = tmp_path / 'mmdeploy'
    deploy_cfg = REPO / 'configs/deploy/detection_onnxruntime_static-320x320.py'
    proc = run_tool(['tools/deploy/mmdeploy_deploy.py', str(deploy_cfg), str(CONFIGS['nanodet-plus-m_320']),
                     str(converted['nanodet-plus-m_320']['out_ckpt']), str(img), '--work-dir', str(work)],
                    timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (work / 'end2end.onnx').is_file() and 'PASSED' in proc.stdout
