"""PaddleDetection ``.pdparams`` -> PicoDet checkpoints (``convert_weights.py --src paddle --config CONFIG IN OUT``).

* the safe reader (:func:`shufflenet_det.converters.paddle.read_pdparams`): files written as ``paddle.save`` writes
  them (``pickle.dump`` of ``{name: ndarray}``, protocols 2 and 4, with and without ``StructuredToParameterName@@``,
  big arrays split into ``UnpackBigParamInfor@@`` slices) load on both stacks (numpy 2.x pinned, numpy 1.26
  openmmlab: ``compat``); pickles that would call ``os.system``, ``builtins.open`` / ``eval`` never run and are
  refused naming the file and the global;
* the key map (:func:`shufflenet_det.converters.paddle.convert_paddle`) against ``official_refs.paddle_picodet`` (the
  published PicoDet in Paddle's names, random weights): onto a PyTorch mirror of that network (mmcv-style BN buffers,
  ``bbox_head`` prefix, no unused GFLHead scales) the converted weights reproduce the raw head output and the decoded
  detections; an extra key, a missing key, a wrong shape and wrong integral bins are refused with messages naming them.

* the project's PicoDet (ESNet, CSPPAN, PicoHead; configs/picodet S / M / L / ShuffleNetV2): random official weights
  -> ``.pdparams`` -> convert (API and CLI) -> strict load: raw head outputs within 1e-4 of the output scale, decoded
  detections (``predict_by_feat`` vs Paddle's post-processing) equal; ``DetInferencer`` runs a converted checkpoint.
  Skipped where those modules or configs are missing.
"""
from __future__ import annotations

import copy
import io
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from helpers import REPO, assert_close_scaled
from official_refs.paddle_picodet import (
    PaddleBN,
    PicoDet,
    ScaleReg,
    TinyBackbone,
    detect,
    multiclass_nms,
    paddle_bytes,
    paddle_state_dict,
    randomize_paddle_,
)
from shufflenet_det.converters.paddle import (
    BIG_PARAM_KEY,
    convert_paddle,
    paddle_key,
    read_pdparams,
)
from shufflenet_det.utils.checkpoint import CheckpointError

RAW_ATOL = 1e-4


# ------------------------------------------------------------------------------------------------------ writers
def write_paddle_like(state: dict[str, np.ndarray], path: Path, protocol: int, name_table: bool) -> Path:
    """``paddle_bytes`` written to ``path``."""
    path.write_bytes(paddle_bytes(state, protocol, name_table))
    return path


def _canary_path(tmp_path: Path) -> Path:
    return tmp_path / 'executed'


class _Reduce:
    """Pickles as ``func(*args)``: what a malicious file contains."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


# ------------------------------------------------------------------------------------------------------ reader
@pytest.mark.compat
@pytest.mark.parametrize('protocol', [2, 4])
@pytest.mark.parametrize('name_table', [False, True])
def test_paddle_like_files_load(protocol, name_table, tmp_path):
    state = {'backbone.conv1._conv.weight': np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32),
             'backbone.conv1._batch_norm._mean': np.arange(4, dtype=np.float32),
             'head.p3_feat.scale_reg': np.ones(1, np.float32),
             'x.int': np.arange(6, dtype=np.int64).reshape(2, 3), 'x.half': np.ones(2, np.float16)}
    path = write_paddle_like(state, tmp_path / 'm.pdparams', protocol, name_table)
    got = read_pdparams(path)
    assert set(got) == set(state)  # the name table is bookkeeping, not a weight
    for k, v in state.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k


@pytest.mark.compat
def test_big_params_split_by_paddle_are_reassembled(tmp_path):
    full = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    flat = full.reshape(-1)
    obj = {'a@@.0': flat[:10], 'a@@.1': flat[10:], 'b': np.ones(2, np.float32),
           BIG_PARAM_KEY: {'a': {'OriginShape': (2, 3, 4), 'slices': ['a@@.0', 'a@@.1']}}}
    path = tmp_path / 'big.pdparams'
    path.write_bytes(pickle.dumps(obj, protocol=2))
    got = read_pdparams(path)
    assert set(got) == {'a', 'b'} and np.array_equal(got['a'], full)


@pytest.mark.compat
@pytest.mark.parametrize('attack', ['os.system', 'builtins.open', 'builtins.eval', 'subprocess', 'paddle_eval'])
def test_malicious_pickles_never_run(attack, tmp_path):
    canary = _canary_path(tmp_path)
    if attack == 'os.system':
        payload: Any = _Reduce(os.system, f'touch {canary}')
    elif attack == 'builtins.open':
        payload = _Reduce(open, str(canary), 'w')
    elif attack == 'builtins.eval':
        payload = _Reduce(eval, f'open({str(canary)!r}, "w")')
    elif attack == 'subprocess':
        payload = _Reduce(subprocess.call, ['touch', str(canary)])
    else:  # paddle's own LoDTensor reducer: eval('data', {'data': array}) - refused too
        payload = _Reduce(eval, 'data', {'data': np.ones(2, np.float32)})
    path = tmp_path / 'evil.pdparams'
    for protocol in (2, 4):
        path.write_bytes(pickle.dumps({'w': np.ones(2, np.float32), 'evil': payload}, protocol=protocol))
        with pytest.raises(CheckpointError) as exc:
            read_pdparams(path)
        message = str(exc.value)
        assert str(path) in message and 'refusing global' in message, message
        assert any(n in message for n in ('system', 'open', 'eval', '.call')), message
        assert not canary.exists()


@pytest.mark.compat
@pytest.mark.parametrize('case', ['empty', 'missing', 'text', 'truncated', 'list', 'not_array', 'object_array',
                                  'torch_file'])
def test_unreadable_files_name_the_file(case, tmp_path):
    path = tmp_path / f'{case}.pdparams'
    expected = 'not a readable .pdparams'
    if case == 'empty':
        path.write_bytes(b'')
        expected = 'empty'
    elif case == 'missing':
        expected = 'does not exist'
    elif case == 'text':
        path.write_text('hello')
    elif case == 'truncated':
        path.write_bytes(pickle.dumps({'w': np.ones(100, np.float32)}, protocol=4)[:-40])
    elif case == 'list':
        path.write_bytes(pickle.dumps([np.ones(2)], protocol=2))
        expected = 'not a dict'
    elif case == 'not_array':
        path.write_bytes(pickle.dumps({'w': [1.0, 2.0]}, protocol=2))
        expected = 'not named numpy arrays'
    elif case == 'object_array':
        path.write_bytes(pickle.dumps({'w': np.array([1.0, 'x'], dtype=object)}, protocol=2))
        expected = 'not numeric'
    else:
        torch.save({'w': torch.ones(2)}, path)
    with pytest.raises(CheckpointError) as exc:
        read_pdparams(path)
    assert str(path) in str(exc.value) and expected in str(exc.value), str(exc.value)


def test_reader_refuses_globals_from_a_stream():
    """The unpickler itself (not only the file wrapper) refuses: a pickle naming ``os.system`` fails in find_class."""
    from shufflenet_det.converters.paddle import NumpyOnlyUnpickler
    data = pickle.dumps(_Reduce(os.system, 'true'), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing global '(os|posix).system'"):
        NumpyOnlyUnpickler(io.BytesIO(data)).load()


# ------------------------------------------------------------------------------------------------------ reference
def tiny_reference(seed: int = 0, share_cls_reg: bool = True, num_features: int = 4, num_classes: int = 5) -> PicoDet:
    strides = (8, 16, 32, 64)[:num_features]
    ref = PicoDet(TinyBackbone((8, 16, 24)), (8, 16, 24), num_classes=num_classes, neck_out=16,
                  num_features=num_features, num_convs=2, reg_max=7, share_cls_reg=share_cls_reg, strides=strides)
    return randomize_paddle_(ref, seed)


def test_reference_has_the_paddle_names():
    keys = set(paddle_state_dict(tiny_reference()))
    for key in ('backbone.stage0._batch_norm._mean', 'neck.conv_t.convs.0.bn._variance',
                'neck.top_down_blocks.0.blocks.0.conv2.dwconv.weight', 'neck.first_top_conv.bn2.weight',
                'head.conv_feat.cls_conv_dw0.0.conv.weight', 'head.conv_feat.cls_conv_pw3.1.norm._mean',
                'head.head_cls0.bias', 'head.p3_feat.scale_reg', 'head.p6_feat.scale_reg',
                'head.distribution_project.project'):
        assert key in keys, key
    assert not any('running_' in k or 'num_batches_tracked' in k for k in keys)
    split = set(paddle_state_dict(tiny_reference(share_cls_reg=False)))
    assert 'head.head_reg0.weight' in split and 'head.conv_feat.reg_conv_dw0.0.conv.weight' in split


def test_reference_nms_is_per_class_and_keeps_the_best():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.7], [0.5, 0.01]])
    dets, labels = multiclass_nms(boxes, scores, score_threshold=0.025, nms_threshold=0.6)
    assert labels.tolist() == [0, 1, 0] and dets[:, 4].tolist() == pytest.approx([0.9, 0.7, 0.5])


# ------------------------------------------------------------------------------------------------------ key map
def torch_mirror(ref: PicoDet, drop_scales: bool = True) -> PicoDet:
    """The reference with PyTorch's BN buffers (``running_mean`` / ``running_var`` / ``num_batches_tracked``) and
    (by default) without GFLHead's unused scales: the layout of a converted detector."""
    mirror = copy.deepcopy(ref)

    def swap(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, PaddleBN):
                setattr(module, name, nn.BatchNorm2d(child.num_features, eps=child.eps).eval())
            elif isinstance(child, ScaleReg) and drop_scales:
                delattr(module, name)
            else:
                swap(child)

    swap(mirror)
    return mirror.eval()


class _Detector(nn.Module):
    """A mirror under mmdet's top-level names (``backbone``, ``neck``, ``bbox_head``); ``full`` runs it."""

    def __init__(self, mirror: PicoDet) -> None:
        super().__init__()
        self.backbone, self.neck, self.bbox_head = mirror.backbone, mirror.neck, mirror.head
        object.__setattr__(self, 'full', mirror)


def converted_mirror(ref: PicoDet, source: dict[str, Any] | None = None) -> tuple[_Detector, list[str]]:
    det = _Detector(torch_mirror(ref))
    with torch.no_grad():  # other weights, so that only the conversion can make the outputs equal
        for key, value in det.state_dict().items():
            if value.is_floating_point() and not key.endswith('project'):
                value.copy_(torch.rand(value.shape) + 0.5)
    state, notes = convert_paddle(paddle_state_dict(ref) if source is None else source, [], det)
    det.load_state_dict(state, strict=True)
    return det, notes


@pytest.mark.slow
@pytest.mark.parametrize('share_cls_reg', [True, False])
@pytest.mark.parametrize('num_features', [3, 4])
def test_converted_weights_reproduce_the_reference(share_cls_reg, num_features, tmp_path):
    ref = tiny_reference(seed=3, share_cls_reg=share_cls_reg, num_features=num_features)
    path = write_paddle_like(paddle_state_dict(ref), tmp_path / 'tiny.pdparams', 2, True)
    det, notes = converted_mirror(ref, read_pdparams(path))
    assert any('unused GFLHead scales' in n for n in notes) and any('integral bins' in n for n in notes)
    x = torch.randn(2, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = det.full(x), ref(x)
    for (oc, orr), (tc, tr) in zip(ours, theirs):
        assert_close_scaled(oc, tc, atol=RAW_ATOL)
        assert_close_scaled(orr, tr, atol=RAW_ATOL)
    for (od, ol), (td, tl) in zip(detect(det.full, x, score_threshold=0.3), detect(ref, x, score_threshold=0.3)):
        assert len(td) > 0
        assert torch.equal(ol, tl)
        assert_close_scaled(od, td, atol=1e-4)


@pytest.mark.parametrize('case', ['extra_key', 'missing_key', 'wrong_shape', 'bins'])
def test_strictness(case):
    ref = tiny_reference()
    source = paddle_state_dict(ref)
    if case == 'extra_key':
        source['head.head_cls9.weight'] = np.zeros(1, np.float32)
        expected = ['1 unknown keys', 'head.head_cls9.weight']
    elif case == 'missing_key':
        del source['neck.conv_t.convs.1.bn._variance']
        expected = ['1 missing keys', 'neck.conv_t.convs.1.bn._variance']
    elif case == 'wrong_shape':
        source['head.head_cls0.bias'] = np.zeros(3, np.float32)
        expected = ["'head.head_cls0.bias' has shape (3,)", "'bbox_head.head_cls0.bias'", 'another model']
    else:
        source['head.distribution_project.project'] = np.linspace(0, 16, 8).astype(np.float32)
        expected = ['integral bins']
    with pytest.raises(CheckpointError) as exc:
        converted_mirror(ref, source)
    assert all(e in str(exc.value) for e in expected), str(exc.value)


def test_key_map_rules():
    assert paddle_key('backbone.conv1.bn.running_mean') == 'backbone.conv1.bn._mean'
    assert paddle_key('neck.x.bn2.running_var') == 'neck.x.bn2._variance'
    assert paddle_key('bbox_head.head_cls0.weight') == 'head.head_cls0.weight'
    renames = {'backbone.': [(r'\.bn\.', '._batch_norm.'), (r'\.conv\.', '._conv.')]}
    assert paddle_key('backbone.conv1.bn.running_var', renames) == 'backbone.conv1._batch_norm._variance'
    assert paddle_key('backbone.conv1.conv.weight', renames) == 'backbone.conv1._conv.weight'


def test_linear_weights_are_transposed():
    class Det(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.neck, self.bbox_head = nn.Linear(3, 2), nn.Identity(), nn.Identity()

    det = Det()
    w = np.arange(6, dtype=np.float32).reshape(3, 2)  # Paddle's [in, out]
    state, _ = convert_paddle({'backbone.weight': w, 'backbone.bias': np.zeros(2, np.float32)}, [], det)
    assert torch.equal(state['backbone.weight'], torch.from_numpy(w).t())


# ------------------------------------------------------------------------------------------------------ project
PICODET_ARCH = {'S': dict(width=96, convs=2), 'M': dict(width=128, convs=4), 'L': dict(width=160, convs=4)}


class _ProjectPicoDet(nn.Module):
    """The project's ESNet + CSPPAN + PicoHead under mmdet's names (what a configs/picodet detector holds)."""

    def __init__(self, variant: str, num_classes: int) -> None:
        from mmdet.registry import MODELS
        super().__init__()
        arch = PICODET_ARCH[variant]
        self.backbone = MODELS.build(dict(type='ESNet', arch=variant))
        self.neck = MODELS.build(dict(type='CSPPAN', in_channels=self.backbone.out_channels, out_channels=arch['width'],
                                      num_features=4))
        self.bbox_head = MODELS.build(dict(type='PicoHead', num_classes=num_classes, in_channels=arch['width'],
                                           stacked_convs=arch['convs'], strides=(8, 16, 32, 64), reg_max=7,
                                           share_cls_reg=True, cell_offset=0.5))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.bbox_head(self.neck(self.backbone(x)))[0]


@pytest.mark.slow
@pytest.mark.parametrize('variant', ['S', 'M', 'L'])
def test_project_picodet_reproduces_the_reference(variant, tmp_path):
    """Random official weights -> .pdparams -> convert -> the project's modules: raw head outputs within 1e-4 of
    the output scale."""
    from official_refs.paddle_picodet import picodet
    ref = randomize_paddle_(picodet(variant, num_classes=4), seed=5)
    path = write_paddle_like(paddle_state_dict(ref), tmp_path / f'picodet_{variant}.pdparams', 4, True)
    det = _ProjectPicoDet(variant, 4).eval()
    state, notes = convert_paddle(read_pdparams(path), [], det)
    det.load_state_dict(state, strict=True)
    assert any('unused GFLHead scales' in n for n in notes)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = det(x), ref(x)
    for o, (c, r) in zip(ours, theirs):
        assert_close_scaled(o, torch.cat([c, r], 1), atol=RAW_ATOL)
    # decoded detections: the project's predict_by_feat vs Paddle's post_process (threshold: ~1% of the pairs)
    from mmengine.config import ConfigDict
    _, ref_scores = ref.decode(theirs)
    thr = float(torch.quantile(ref_scores.flatten(), 0.99))
    cfg = ConfigDict(nms_pre=1000, score_thr=thr, nms=dict(type='nms', iou_threshold=0.6), nms_top_k=1000,
                     max_per_img=100)
    mine = det.bbox_head.predict_by_feat(ours, [dict(img_shape=(96, 128), scale_factor=(1.0, 1.0))], cfg)[0]
    (dets, labels), = detect(ref, x, clip=True, score_threshold=thr, nms_threshold=0.6, nms_top_k=1000,
                             keep_top_k=100)
    assert len(dets) > 3
    assert mine.labels.tolist() == labels.tolist()
    assert torch.allclose(mine.bboxes, dets[:, :4], atol=1e-3) and torch.allclose(mine.scores, dets[:, 4], atol=1e-5)


ESNET_CONFIGS = {'S': REPO / 'configs/picodet/picodet-s_esnet_300e_coco-320.py',
                 'M': REPO / 'configs/picodet/picodet-m_esnet_300e_coco-416.py',
                 'L': REPO / 'configs/picodet/picodet-l_esnet_250e_coco-640.py',
                 'ShuffleNetV2': REPO / 'configs/picodet/picodet_shufflenetv2-1x_300e_coco-416.py'}
#: The leaky_relu slope of the ShuffleNetV2 config's backbone (ppdet's ConvBNLayer calls ``F.leaky_relu``: 0.01)
SHUFFLENET_SLOPE = 0.01


@pytest.fixture(scope='module')
def converted_configs(tmp_path_factory) -> dict[str, Any]:
    """Per ESNet config: the random official network, its .pdparams (protocol 2, with the name table) and the
    conversion through ``convert_detector_checkpoint('paddle', ...)`` (the CLI's path)."""
    from official_refs.paddle_picodet import picodet, picodet_shufflenetv2
    from shufflenet_det.converters import convert_detector_checkpoint
    out = {}
    for variant, config in ESNET_CONFIGS.items():
        folder = tmp_path_factory.mktemp(f'picodet_{variant}')
        model = picodet_shufflenetv2(SHUFFLENET_SLOPE) if variant == 'ShuffleNetV2' else picodet(variant)
        ref = randomize_paddle_(model, seed=len(out) + 10)
        src = write_paddle_like(paddle_state_dict(ref), folder / f'picodet_{variant}.pdparams', 2, True)
        path, notes = convert_detector_checkpoint('paddle', config, src, folder / 'converted.pth')
        out[variant] = dict(ref=ref, src=src, out=path, notes=notes)
    return out


@pytest.mark.slow
@pytest.mark.parametrize('variant', ['S', 'M', 'L', 'ShuffleNetV2'])
def test_config_conversions_reproduce_the_reference(variant, converted_configs):
    from shufflenet_det.utils.build import build_detector
    case = converted_configs[variant]
    det = build_detector(ESNET_CONFIGS[variant], case['out'])  # strict: every key and shape
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        (ours,), theirs = det.bbox_head(det.extract_feat(x)), case['ref'](x)
    for o, (c, r) in zip(ours, theirs):
        assert_close_scaled(o, torch.cat([c, r], 1), atol=RAW_ATOL)
    meta = torch.load(case['out'], map_location='cpu', weights_only=True)['meta']
    assert meta['source'] == 'paddle' and len(meta['dataset_meta']['classes']) == 80


@pytest.mark.slow
def test_cli_converts_and_refuses_to_overwrite(converted_configs, tmp_path, capsys):
    from helpers import load_script
    case = converted_configs['S']
    cli = load_script('tools/model_converters/convert_weights.py')
    out = tmp_path / 'cli.pth'
    args = ['--src', 'paddle', '--config', str(ESNET_CONFIGS['S']), str(case['src']), str(out)]
    assert cli.main(args) == 0
    assert 'unused GFLHead scales' in capsys.readouterr().out
    a = torch.load(out, map_location='cpu', weights_only=True)['state_dict']
    b = torch.load(case['out'], map_location='cpu', weights_only=True)['state_dict']
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    from shufflenet_det.runtime.errors import ToolError
    with pytest.raises(ToolError, match='--overwrite'):  # an existing OUT needs --overwrite (exit status 2)
        cli.main(args)
    assert cli.main(args[:-2] + ['--overwrite'] + args[-2:]) == 0


@pytest.mark.slow
def test_cli_names_the_culprit_of_a_refused_file(converted_configs, tmp_path, capsys):
    from helpers import load_script
    cli = load_script('tools/model_converters/convert_weights.py')
    evil = tmp_path / 'evil.pdparams'
    evil.write_bytes(pickle.dumps({'w': _Reduce(os.system, f'touch {_canary_path(tmp_path)}')}, protocol=2))
    assert cli.main(['--src', 'paddle', '--config', str(ESNET_CONFIGS['S']), str(evil), str(tmp_path / 'o.pth')]) == 1
    err = capsys.readouterr().err
    assert str(evil) in err and 'system' in err and not _canary_path(tmp_path).exists()
    assert not (tmp_path / 'o.pth').exists()
    # another model's file: the M weights for the S config
    other = converted_configs['M']['src']
    assert cli.main(['--src', 'paddle', '--config', str(ESNET_CONFIGS['S']), str(other), str(tmp_path / 'o.pth')]) == 1
    err = capsys.readouterr().err  # M has 4 tower convs per level, S 2: the extra ones are listed
    assert 'unknown keys' in err and 'cls_conv_dw0.3' in err and not (tmp_path / 'o.pth').exists()


@pytest.mark.slow
def test_det_inferencer_runs_a_converted_checkpoint(converted_configs, tmp_path):
    from mmdet.apis import DetInferencer
    case = converted_configs['S']
    img = np.random.default_rng(3).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    inferencer = DetInferencer(model=str(ESNET_CONFIGS['S']), weights=str(case['out']), device='cpu',
                               show_progress=False)
    result = inferencer(img, out_dir=str(tmp_path), return_vis=True, no_save_pred=True)
    assert result['visualization'][0].shape == (320, 320, 3)
    assert len(result['predictions'][0]['labels']) > 0
