"""ncnn int8 written by the project (shufflenet_det.runtime.ncnn_file, deploy.quantize.ncnn_int8 / ncnn_gate, and
``tools/deploy/quantize.py --backend ncnn``): the .param / .bin round trip, ncnn's int8 format, the error bounds of
int8 against fp32 ncnn, the gate and the refusals.

Every comparison runs both models with fp16 storage and arithmetic off, so the only differences are int8 rounding
(and fp32 summation order, ~1e-6 relative).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mmdet  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import ncnn  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import numpy as np
import pnnx  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import pytest
import torch
from torch import nn

import deploy_fixtures as fx
from helpers import load_script, tree_snapshot
from shufflenet_det.deploy.ncnn_export import export_backbone_ncnn, export_detector_ncnn, pnnx_convert, run_ncnn
from shufflenet_det.deploy.quantize import ncnn_int8 as q8
from shufflenet_det.runtime.ncnn_file import TAG_FP16, TAG_FP32, TAG_INT8, NcnnFormatError, read_ncnn
from shufflenet_det.utils.cli import run_main
from tiny_mini_coco import make_dataset, write_config

SIZE = (64, 64)


def _tool():
    return load_script('tools/deploy/quantize.py', 'quantize_tool_ncnn')


def _inputs(n: int, seed: int = 0, shape=(1, 3, *SIZE)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def _quantize(param: Path, bin_path: Path, out: Path, tensors, exclude=(), input_blob='in0'):
    """fp32 model -> int8 model (minmax on ``tensors``), the lower-level API the gate uses."""
    model = read_ncnn(param, bin_path)
    layers = [lay for lay in q8.quantizable_layers(model) if lay['name'] not in exclude]
    thresholds = q8.calibrate(q8.fp32_blob_runner(param, bin_path, input_blob), tensors,
                              [lay['bottom'] for lay in layers])
    int8, _ = q8.quantize_model(model, {lay['name']: q8.blob_scale(thresholds[lay['bottom']]) for lay in layers})
    int8.write(out.with_suffix('.param'), out.with_suffix('.bin'))
    return model, int8, layers


@pytest.fixture(scope='module')
def backbone_export(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('bb')
    model = fx.backbone(widen_factor=0.5, out_indices=(2, 3))
    report = export_backbone_ncnn(model, root / 'bb', (1, 3, *SIZE), verbose=False)
    return dict(root=root, param=root / 'bb.param', bin=root / 'bb.bin', report=report)


def test_param_bin_round_trip_is_byte_identical(backbone_export, tmp_path) -> None:
    files = [(backbone_export['param'], backbone_export['bin'])]
    half = export_backbone_ncnn(fx.backbone(widen_factor=0.5, out_indices=(3,)), tmp_path / 'half', (1, 3, 32, 32),
                                fp16_weights=True, verbose=False)
    assert half['fp16_weights']
    files.append((tmp_path / 'half.param', tmp_path / 'half.bin'))
    for param, bin_path in files:
        model = read_ncnn(param, bin_path)
        assert model.param_text() == param.read_text() and model.bin_bytes() == bin_path.read_bytes()
        model.write(tmp_path / 'copy.param', tmp_path / 'copy.bin')
        assert (tmp_path / 'copy.param').read_bytes() == param.read_bytes()
        assert (tmp_path / 'copy.bin').read_bytes() == bin_path.read_bytes()
        kinds = {lay.type for lay in model.layers if lay.blobs}
        assert kinds == {'Convolution', 'ConvolutionDepthWise'}
    tags = {lay.blobs[0].tag for lay in read_ncnn(*files[1]).layers if lay.blobs}
    assert tags == {TAG_FP16} and {lay.blobs[0].tag for lay in read_ncnn(*files[0]).layers if lay.blobs} == {TAG_FP32}
    # an fp16 blob decodes to the fp32 export's weights up to half precision (2^-11 relative)
    conv = next(lay for lay in read_ncnn(*files[1]).layers if lay.type == 'Convolution')
    assert conv.blobs[0].values().dtype == np.float32 and conv.blobs[1].count == conv.get_int(0)


def test_reader_refuses_what_it_cannot_cut(backbone_export, tmp_path) -> None:
    param, bin_path = backbone_export['param'], backbone_export['bin']
    with pytest.raises(NcnnFormatError, match='does not exist'):
        read_ncnn(param, tmp_path / 'none.bin')
    bad = tmp_path / 'bad.param'
    bad.write_text('not ncnn\n')
    with pytest.raises(NcnnFormatError, match='magic 7767517'):
        read_ncnn(bad, bin_path)
    short = tmp_path / 'short.bin'
    short.write_bytes(bin_path.read_bytes()[:-8])
    with pytest.raises(NcnnFormatError, match='not the .bin of|describes'):
        read_ncnn(param, short)
    long = tmp_path / 'long.bin'
    long.write_bytes(bin_path.read_bytes() + b'\0' * 4)
    with pytest.raises(NcnnFormatError, match='not one model'):
        read_ncnn(param, long)
    unknown = tmp_path / 'unknown.param'
    lines = param.read_text().split('\n')
    lines[3] = 'LSTM' + lines[3][len(lines[3].split()[0]):]
    unknown.write_text('\n'.join(lines))
    with pytest.raises(NcnnFormatError, match="type 'LSTM'"):
        read_ncnn(unknown, bin_path)


class _One(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


@pytest.mark.parametrize('layer,shape,ncnn_type', [
    (nn.Conv2d(8, 16, 3, stride=2, padding=1), (1, 8, 12, 12), 'Convolution'),
    (nn.Conv2d(16, 16, 3, padding=1, groups=16), (1, 16, 10, 10), 'ConvolutionDepthWise'),
    (nn.Conv2d(8, 16, 3, padding=1, groups=4), (1, 8, 10, 10), 'ConvolutionDepthWise'),  # grouped (ShuffleNetV1)
    (nn.Linear(24, 10), (1, 24), 'InnerProduct'),
])
def test_one_layer_within_the_bound_of_its_scales(layer, shape, ncnn_type, tmp_path) -> None:
    """One int8 layer against fp32, bounded element by element from the scales in the file.

    With x the fp32 input, w the fp32 weights and the int8 values dequantized as w' = q_w / s_w (per output channel
    / group) and x' = q_x / s_x: ncnn computes sum(w' x') + b (int32 sums, then one float rescale), so
    |y' - y| <= sum_k |w'_k| |x'_k - x_k| + |x_k| |w'_k - w_k| <= d_x sum_k |w'_k| + d_w sum_k |x_k|, with
    d_x = 1 / (2 s_x) (minmax calibration on this very x: nothing is clipped) and d_w = 1 / (2 s_w) per channel.
    That bound holds on any CPU; 1e-5 of the output magnitude covers fp32 summation order.
    """
    torch.manual_seed(0)
    model = _One(layer).eval()
    x = torch.randn(shape)
    param, bin_path = tmp_path / 'one.param', tmp_path / 'one.bin'
    work = tmp_path / 'pnnx'
    work.mkdir()
    pnnx_convert(model, x, param, bin_path, work)
    model_file, int8, layers = _quantize(param, bin_path, tmp_path / 'one8', [x.numpy()])
    assert [lay['type'] for lay in layers] == [ncnn_type]
    lay = int8.layer(layers[0]['name'])
    assert lay.get_int(8) == q8.INT8_SCALE_TERM[ncnn_type] and lay.blobs[0].tag == TAG_INT8
    s_w, s_x = lay.blobs[-2].values(), float(lay.blobs[-1].values()[0])
    w_hat = torch.from_numpy(q8.dequantized_weights(lay)).reshape(layer.weight.shape)
    d_w = torch.from_numpy(1 / (2 * s_w)).repeat_interleave(w_hat.shape[0] // len(s_w))  # per group -> per output
    xs = x if ncnn_type != 'InnerProduct' else x[0]
    ref = run_ncnn(param, bin_path, {'in0': xs.numpy() if ncnn_type == 'InnerProduct' else x.numpy()[0]},
                   ['out0'], fp16=False)[0]
    got = run_ncnn(tmp_path / 'one8.param', tmp_path / 'one8.bin',
                   {'in0': xs.numpy() if ncnn_type == 'InnerProduct' else x.numpy()[0]}, ['out0'], fp16=False)[0]
    with torch.no_grad():
        if ncnn_type == 'InnerProduct':
            bound = (w_hat.abs().sum(1) / (2 * s_x) + d_w * x.abs().sum()).numpy().reshape(got.shape)
        else:
            kw = dict(stride=layer.stride, padding=layer.padding, groups=layer.groups)
            ones = torch.nn.functional.conv2d(torch.ones_like(x), w_hat.abs(), **kw)  # sum |w'| over valid taps
            absx = torch.nn.functional.conv2d(x.abs(), torch.ones_like(w_hat), **kw)  # sum |x| over the taps
            bound = (ones / (2 * s_x) + absx * d_w.reshape(1, -1, 1, 1))[0].numpy()
    err = np.abs(got - ref)
    slack = 1e-5 * max(1.0, float(np.abs(ref).max()))
    assert err.max() > 0  # int8 really ran
    assert np.all(err <= bound + slack), float((err - bound).max())
    # the bound is a worst case (the rounding errors of all K <= 72 taps aligned) and still small against the output:
    # about K * 2 max|w| max|x| / 254 against outputs of order sqrt(K) max|w| max|x| (6 % of max|y| for the conv)
    assert bound.max() < 0.1 * np.abs(ref).max()


def test_int8_backbone_format_weights_and_parity(backbone_export, tmp_path) -> None:
    param, bin_path, report = backbone_export['param'], backbone_export['bin'], backbone_export['report']
    calib = _inputs(4)
    model = read_ncnn(param, bin_path)
    all_layers = q8.quantizable_layers(model)
    first = all_layers[0]['name']
    fp32, int8, layers = _quantize(param, bin_path, tmp_path / 'bb8', calib, exclude=(first,))
    assert len(layers) == len(all_layers) - 1 > 30
    # the file: excluded layer byte for byte fp32, the others ncnn's int8 layout (load_model order)
    kept = int8.layer(first)
    assert kept.line == fp32.layer(first).line and [b.data for b in kept.blobs] == [b.data for b in
                                                                                   fp32.layer(first).blobs]
    assert kept.get_int(8) == 0 and kept.blobs[0].tag == TAG_FP32
    reread = read_ncnn(tmp_path / 'bb8.param', tmp_path / 'bb8.bin')  # its .bin cuts where ncnn's load_model reads
    for lay in layers:
        q, f = reread.layer(lay['name']), fp32.layer(lay['name'])
        groups = q8.weight_groups(q)
        assert q.blobs[0].tag == TAG_INT8 and q.blobs[0].count == f.blobs[0].count
        assert q.get_int(8) == (1 if q.type == 'ConvolutionDepthWise' else 2)
        assert q.blobs[1].data == f.blobs[1].data  # bias unchanged, raw fp32
        assert q.blobs[2].count == groups and q.blobs[3].count == 1
        scales = q.blobs[2].values()
        w = f.blobs[0].values().reshape(groups, -1)
        # |dequantized - fp32| <= half a step (1 / (2 s)) of the channel; float32 rounding of w * s only
        step = (1 / scales)[:, None]
        assert np.all(np.abs(q8.dequantized_weights(q).reshape(groups, -1) - w) <= step / 2 * (1 + 1e-5))
        limit = 31 if q8.weight_bits(q) == 6 else 127
        assert np.abs(q.blobs[0].values()).max() == limit or np.abs(w).max() == 0
    assert {q8.weight_bits(reread.layer(lay['name'])) for lay in layers} == {8}  # no 3x3 stride-1 conv here
    # parity with fp32 ncnn. Each int8 layer adds rounding noise: uniform, of RMS d / sqrt(3) with d = 1 / (2 s)
    # for its input blob (s its bottom scale) and for each weight (s its channel's scale); relative to the RMS of
    # what it rounds that is e_l. Independent sources add in quadrature, and a layer passes relative noise on with
    # a gain <= 1 on average (BN folded into the weights, ReLU only removes energy), so the relative L2 error of an
    # output is expected below E = sqrt(sum_l e_l^2) summed over every int8 layer (a path holds fewer). E is
    # computed from the scales in the file and the fp32 activations; a wrong scale or layout moves outputs by O(1).
    runner = q8.fp32_blob_runner(param, bin_path, 'in0')
    acts = runner(calib[0], [lay['bottom'] for lay in layers])
    e2 = 0.0
    for lay, x in zip(layers, acts):
        q = reread.layer(lay['name'])
        s_x, s_w = float(q.blobs[3].values()[0]), q.blobs[2].values()
        w = fp32.layer(lay['name']).blobs[0].values()
        e2 += (1 / (2 * s_x) / np.sqrt(3) / np.sqrt(np.mean(x ** 2))) ** 2
        e2 += float(np.mean((1 / (2 * s_w)) ** 2 / 3) / np.mean(w ** 2))
    bound = float(np.sqrt(e2))
    assert bound < 0.15  # "a few %": int8 of this net is usable at all
    for x in calib[:2] + _inputs(2, seed=7):  # calibration and fresh inputs
        ref = run_ncnn(param, bin_path, {'in0': x[0]}, report['output_blobs'], fp16=False)
        got = run_ncnn(tmp_path / 'bb8.param', tmp_path / 'bb8.bin', {'in0': x[0]}, report['output_blobs'],
                       fp16=False)
        for r, g in zip(ref, got):
            rel = float(np.linalg.norm(g - r) / np.linalg.norm(r))
            assert 0 < rel <= bound, (rel, bound)
            assert np.abs(g - r).max() <= 2 * bound * np.abs(r).max()
    # ncnn reads the scales written: bottom scales 100x too large clip every int8 layer's input to 1/100 of its
    # range, which changes the outputs by O(1)
    wrong = read_ncnn(tmp_path / 'bb8.param', tmp_path / 'bb8.bin')
    for lay in (wrong.layer(entry['name']) for entry in layers):
        lay.blobs[3] = type(lay.blobs[3]).raw(lay.blobs[3].values() * 100)
    wrong.write(tmp_path / 'wrong.param', tmp_path / 'wrong.bin')
    ref = run_ncnn(param, bin_path, {'in0': calib[0][0]}, report['output_blobs'], fp16=False)[0]
    bad = run_ncnn(tmp_path / 'wrong.param', tmp_path / 'wrong.bin', {'in0': calib[0][0]}, report['output_blobs'],
                   fp16=False)[0]
    assert np.linalg.norm(bad - ref) / np.linalg.norm(ref) > 5 * bound


def test_kl_threshold_cuts_a_long_tail() -> None:
    # |x| of 1e5 values: a half-normal bulk (sigma 1) and a few outliers at 50. The KL threshold stays near the bulk
    # (a few sigma), far below the max that minmax would take.
    rng = np.random.default_rng(0)
    a = np.concatenate([np.abs(rng.standard_normal(100_000)), np.full(5, 50.0)])
    hist = np.bincount(np.minimum((a / a.max() * q8.HISTOGRAM_BINS).astype(int), q8.HISTOGRAM_BINS - 1),
                       minlength=q8.HISTOGRAM_BINS)
    t = q8.kl_threshold(hist, float(a.max()))
    assert 2.0 < t < 10.0
    assert q8.kl_threshold(np.zeros(q8.HISTOGRAM_BINS, np.int64), 0.0) == 0.0 and q8.blob_scale(0.0) == 1.0


@pytest.fixture(scope='module')
def det_setup(tmp_path_factory) -> dict:
    """The tiny mini COCO whose validation ground truth is the fp32 ncnn detector's own 5 best boxes per image (high
    fp32 mAP, so a loss shows), its config and the ncnn export."""
    from shufflenet_det.runtime import postprocess
    from shufflenet_det.utils.predict import preprocess_meta
    root = tmp_path_factory.mktemp('ncnn_q')
    data = make_dataset(root / 'mini')
    cfg = write_config(root / 'tiny.py', data)
    detector = fx.spread_retinanet()
    models = root / 'models'
    models.mkdir()
    report = export_detector_ncnn(detector, models / 'det', fx.images(detector, SIZE, 1), verbose=False)
    pre = preprocess_meta(detector)

    def detect(x: torch.Tensor) -> dict:
        outs = run_ncnn(models / 'det.param', models / 'det.bin', {'in0': x.numpy()[0]}, report['output_blobs'],
                        fp16=False)
        return postprocess.decode_outputs(outs, report['postprocess'], SIZE)
    assert fx.label_val_with(data, detect, SIZE, pre) >= 10
    return dict(root=root, data=data, cfg=cfg, models=models, param=models / 'det.param')


@pytest.fixture()
def scratch(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / 'tmp'
    folder.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(folder))
    return folder


@pytest.mark.slow
def test_tool_ncnn_backend_end_to_end(det_setup, scratch, capsys) -> None:
    import subprocess
    import sys
    out = det_setup['models'] / 'det.int8'
    rc = run_main(_tool().main, [str(det_setup['param']), '--backend', 'ncnn', '--config', str(det_setup['cfg']),
                                 '--num-calib', '8', '--bench-runs', '3', '--threads', '1', '--exclude-final-convs',
                                 '--max-map-drop', '0.12'])
    text = capsys.readouterr()
    assert rc == 0, text.err[-2000:]
    assert 'bbox mAP on 4 validation images' in text.out and f'wrote {out}.param' in text.out
    report = json.loads(out.with_name('det.int8.json').read_text())
    acc, quant = report['accuracy'], report['quantization']
    # fp32 mAP ~1 against its own boxes; int8 of the same net on the same images: < 0.12 lost, as the ORT path's
    # test argues for its random-weight detector (near-tie scores reorder under any perturbation)
    assert acc['passed'] and acc['float']['bbox_mAP'] > 0.8 and acc['map_drop'] <= 0.12
    assert abs(acc['map_drop'] - (acc['float']['bbox_mAP'] - acc['int8']['bbox_mAP'])) < 1e-9
    assert set(acc['parity']) == {'out0', 'out1', 'out2', 'out3', 'out4', 'out5'}
    assert all(0 < p['relative_max'] < 0.5 for p in acc['parity'].values())
    assert len(quant['kept_in_float']['final conv']) == 6 and quant['quantized_convs'] > 60
    assert report['latency']['int8_ms'] > 0 and report['postprocess'] == json.loads(
        det_setup['models'].joinpath('det.json').read_text())['postprocess']
    model = read_ncnn(out.with_name('det.int8.param'), out.with_name('det.int8.bin'))
    for name in quant['kept_in_float']['final conv']:
        assert model.layer(name).get_int(8) == 0 and model.layer(name).blobs[0].tag == TAG_FP32
    assert list(scratch.iterdir()) == []
    # the torch-free runner loads and runs the int8 model (ncnn picks int8 from the .param / .bin)
    ppm = det_setup['root'] / 'g.ppm'
    proc = subprocess.run([sys.executable, '-m', 'shufflenet_det.runtime', 'ncnn', str(out.with_name('det.int8.param')),
                           '--generate', str(ppm), '--threads', '1'], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and 'detections' in proc.stdout, proc.stderr[-2000:]
    # an existing output is not replaced unasked
    before = tree_snapshot(det_setup['models'])
    rc = run_main(_tool().main, [str(det_setup['param']), '--backend', 'ncnn', '--config', str(det_setup['cfg'])])
    assert rc == 2 and '--overwrite' in capsys.readouterr().err
    assert tree_snapshot(det_setup['models']) == before
    for suffix in ('.param', '.bin', '.json'):
        out.with_name('det.int8' + suffix).unlink()


@pytest.mark.slow
def test_gate_refuses_and_leaves_nothing(det_setup, scratch, tmp_path, capsys) -> None:
    before = tree_snapshot(det_setup['root'])
    out = tmp_path / 'out' / 'refused'
    rc = run_main(_tool().main, [str(det_setup['param']), '--backend', 'ncnn', '--config', str(det_setup['cfg']),
                                 '--num-calib', '2', '--bench-runs', '0', '--threads', '1', '--out', str(out),
                                 '--method', 'percentile', '--percentile', '50', '--max-output-error', '0'])
    err = capsys.readouterr().err
    assert rc == 1, err[-2000:]
    assert 'refused, nothing written' in err and '--max-output-error 0' in err and 'Traceback' not in err
    assert tree_snapshot(det_setup['root']) == before
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert list(scratch.iterdir()) == []


def test_tool_refuses_bad_inputs(det_setup, tmp_path, capsys) -> None:
    tool = _tool()
    param, cfg = str(det_setup['param']), str(det_setup['cfg'])
    base = [param, '--backend', 'ncnn', '--config', cfg]
    garbage = tmp_path / 'g.param'
    garbage.write_text('hello\n')
    (tmp_path / 'g.bin').write_bytes(b'\0' * 8)
    (tmp_path / 'g.json').write_text(json.dumps(dict(json.loads((det_setup['models'] / 'det.json').read_text()))))
    nobin = tmp_path / 'nobin.param'
    nobin.write_text(det_setup['param'].read_text())
    (tmp_path / 'nobin.json').write_text((det_setup['models'] / 'det.json').read_text())
    before = tree_snapshot(det_setup['root'])
    cases = (
        ([str(nobin), '--backend', 'ncnn', '--config', cfg], "nobin.bin"),
        ([str(garbage), '--backend', 'ncnn', '--config', cfg], 'magic 7767517'),
        ([str(det_setup['models'] / 'det.onnx'), '--backend', 'ncnn', '--config', cfg], 'takes the .param'),
        (base + ['--exclude', 'no_such_layer'], '--exclude'),
        (base + ['--num-calib', '0'], '--num-calib'),
        (base + ['--percentile', '150', '--method', 'percentile'], '--percentile'),
        (base + ['--max-map-drop', '-1'], '--max-map-drop'),
        (base + ['--threads', '0'], '--threads'),
        (base + ['--activation-type', 'int8'], '--activation-type'),
        (base + ['--exclude-sensitive', '2'], '--exclude-sensitive'),
        (base + ['--out', param], 'same file'),
        (base + ['--out', str(tmp_path / 'x.bin')], '--out'),
    )
    for argv, needle in cases:
        rc = run_main(tool.main, argv)
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and 'Traceback' not in err, (argv, err)
    rc = run_main(tool.main, base + ['--list-nodes'])
    listed = capsys.readouterr().out
    assert rc == 0 and 'Convolution conv  final' in listed and 'ConvolutionDepthWise depthwise' in listed
    assert tree_snapshot(det_setup['root']) == before

