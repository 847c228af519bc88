"""The ncnn deploy rewrite (shufflenet_det/deploy/ncnn_pad.py): channel counts padded with zero channels where ncnn
cannot pack them, on hand-written .param / .bin files (known regions) and on the exports of every backbone family.

Exactness is checked by running ncnn before and after: the padded channels are exactly zero or never reach an
output, so the two differ only by the summation order of ncnn's packed and unpacked kernels (fp32 here: fp16 off),
bounded by 1e-5 of the output's magnitude.
"""
from __future__ import annotations

from pathlib import Path

import ncnn  # noqa: F401  (installed by tools/setup.sh: a missing package fails, never skips)
import numpy as np
import pytest
import torch

from helpers import assert_close_scaled, randomize_bn
from shufflenet_det.deploy.ncnn_export import export_backbone_ncnn, run_ncnn
from shufflenet_det.deploy.ncnn_pad import _plain_float, pad_ncnn_regions
from shufflenet_det.runtime.ncnn_file import TAG_FP16, TAG_FP32, NcnnLayer, WeightBlob, read_ncnn

#: in0 (3x12x12) -> conv_a 3x3 (6, ReLU fused) -> ReLU -> depthwise 3x3 (6) -> Split -> conv_b 1x1 (8) and conv_c
#: 1x1 (10); conv_b -> max pooling -> output ``bp``; conv_c -> Split -> conv_d 1x1 (6) and the Concat of conv_d's and
#: conv_c's outputs -> output ``out0``.
PARAM = '''7767517
11 14
Input            in0     0 1 in0 0=12 1=12 2=3
Convolution      conv_a  1 1 in0 a 0=6 1=3 4=1 5=1 6=162 9=1
ReLU             relu_a  1 1 a ar
ConvolutionDepthWise dw_a 1 1 ar d 0=6 1=3 4=1 5=1 6=54 7=6
Split            split_a 1 2 d d0 d1
Convolution      conv_b  1 1 d0 b 0=8 1=1 5=1 6=48
Convolution      conv_c  1 1 d1 c 0=10 1=1 5=1 6=60
Split            split_c 1 2 c c0 c1
Convolution      conv_d  1 1 c0 e 0=6 1=1 5=1 6=60
Pooling          pool_b  1 1 b bp 0=0 1=2 2=2
Concat           cat     2 1 e c1 out0
'''
#: conv_a's blobs count 6 * 3 * 9 = 162 weights + 6 biases; dw_a 6 * 9 + 6; conv_b 8 * 6 + 8; conv_c 10 * 6 + 10;
#: conv_d 6 * 10 + 6. conv_c (10) feeds conv_d and the Concat, conv_d (6) feeds the Concat: neither is a region;
#: conv_b (8) ends in a pooling layer whose output is a graph output: not a region either.
COUNTS = [(162, True), (6, False), (54, True), (6, False), (48, True), (8, False), (60, True), (10, False),
          (60, True), (6, False)]


def _write(folder: Path, fp16: bool = False) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    data = b''
    for count, tagged in COUNTS:
        values = rng.standard_normal(count).astype(np.float32)
        if tagged and fp16:
            body = values.astype('<f2').tobytes()
            data += np.uint32(TAG_FP16).tobytes() + body + b'\0' * (-len(body) % 4)
        else:
            data += (np.uint32(TAG_FP32).tobytes() if tagged else b'') + values.tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'm.param').write_text(PARAM)
    (folder / 'm.bin').write_bytes(data)
    return folder / 'm.param', folder / 'm.bin'


def _outputs(param: Path, weights: Path, x: np.ndarray) -> list[np.ndarray]:
    return run_ncnn(param, weights, {'in0': x}, ['out0', 'bp'], fp16=False)


@pytest.mark.parametrize('fp16', [False, True], ids=['fp32-weights', 'fp16-weights'])
def test_region_padded_exactly(tmp_path: Path, fp16: bool) -> None:
    param, weights = _write(tmp_path / 'src', fp16)
    model = read_ncnn(param, weights)
    assert pad_ncnn_regions(model, 8) == 1  # conv_a -> relu -> depthwise -> split -> conv_b, conv_c
    out = tmp_path / 'out'
    out.mkdir()
    model.write(out / 'm.param', out / 'm.bin')
    padded = read_ncnn(out / 'm.param', out / 'm.bin')  # the .bin sizes agree with the new .param
    a, dw, b, c = (padded.layer(n) for n in ('conv_a', 'dw_a', 'conv_b', 'conv_c'))
    assert (a.get_int(0), a.get_int(6), len(a.blobs[1].values())) == (8, 8 * 27, 8)
    assert (dw.get_int(0), dw.get_int(7), dw.get_int(6)) == (8, 8, 8 * 9)
    assert (b.get_int(0), b.get_int(6), c.get_int(0), c.get_int(6)) == (8, 8 * 8, 10, 10 * 8)
    assert padded.layer('conv_d').line == read_ncnn(param, weights).layer('conv_d').line  # outside: untouched
    assert all(blob.tag == (TAG_FP16 if fp16 else TAG_FP32) for lay in (a, dw, b, c) for blob in lay.blobs[:1])
    # the added filters, kernels and input columns are zero; the old ones are kept
    old = read_ncnn(param, weights)
    np.testing.assert_array_equal(a.blobs[0].values().reshape(8, 27)[:6], old.layer('conv_a').blobs[0].values()
                                  .reshape(6, 27))
    assert not a.blobs[0].values().reshape(8, 27)[6:].any() and not a.blobs[1].values()[6:].any()
    assert not b.blobs[0].values().reshape(8, 8)[:, 6:].any()
    x = np.random.default_rng(1).standard_normal((3, 12, 12)).astype(np.float32)
    for got, ref in zip(_outputs(out / 'm.param', out / 'm.bin', x), _outputs(param, weights, x)):
        assert got.shape == ref.shape
        assert_close_scaled(got, ref, atol=1e-5)


def test_multiples_and_what_is_left_alone(tmp_path: Path) -> None:
    param, weights = _write(tmp_path)
    assert pad_ncnn_regions(read_ncnn(param, weights), 2) == 0  # 6 is a multiple of 2
    model = read_ncnn(param, weights)
    assert pad_ncnn_regions(model, 16) == 1 and model.layer('conv_a').get_int(0) == 16
    # a region whose blob is also a graph output is not padded
    (tmp_path / 'o.param').write_text(PARAM.replace('11 14\n', '12 15\n') + 'Noop keep 1 1 ar kept\n')
    assert pad_ncnn_regions(read_ncnn(tmp_path / 'o.param', weights), 8) == 0
    # quantized or dynamic-weight convolutions do not start a region
    layer = NcnnLayer('Convolution', 'q', ['x'], ['y'], {0: '6', 8: '1'}, '', [WeightBlob.int8(np.zeros(6))])
    assert not _plain_float(layer)


#: One member per backbone family (at 64x64) and how many regions the rewrite pads in it: V2 1.0x's branch middles
#: of 58 (stage 2, 4 units) and 116 channels (stage 3, 8 units; stage 4's 232 is a multiple of 8), in either layout;
#: V2+ Small's odd widths; DetNAS's, ESNet S's and V1 g3 0.5x's widths are all multiples of 8 (and V1's 1x1
#: convolutions are grouped: no region starts there).
FAMILIES = {
    'v2': (dict(type='ShuffleNetV2', widen_factor=1.0), 12),
    'v2-megvii': (dict(type='ShuffleNetV2', widen_factor=1.0, layout='megvii'), 12),
    'v2plus': (dict(type='ShuffleNetV2Plus', arch='Small'), 9),
    'detnas': (dict(type='DetNAS', arch='COCO-FPN-300M'), 0),
    'esnet': (dict(type='ESNet', arch='S'), 0),
    'v1': (dict(type='ShuffleNetV1', groups=3, widen_factor=0.5), 0),
}


@pytest.mark.slow
@pytest.mark.parametrize('family', list(FAMILIES))
def test_exports_of_every_family(tmp_path: Path, family: str) -> None:
    """The export pads (graph_opt, the default) and its parity check passes; the outputs equal those of the export
    without the rewrite (fp32) on a third input."""
    from mmdet.registry import MODELS

    import shufflenet_det  # noqa: F401
    cfg, expected = FAMILIES[family]
    torch.manual_seed(0)
    model = MODELS.build(dict(cfg, out_indices=(1, 2, 3)))
    model.init_weights()
    model = randomize_bn(model, 0).eval()
    report = export_backbone_ncnn(model, tmp_path / 'pad', (1, 3, 64, 64), verbose=False)
    plain = export_backbone_ncnn(model, tmp_path / 'plain', (1, 3, 64, 64), verbose=False, graph_opt=False)
    assert report['parity']['passed'] and plain['graph_rewrites'] is None
    assert report['graph_rewrites']['channel_padding'] == expected
    x = np.random.default_rng(2).standard_normal((3, 64, 64)).astype(np.float32)
    outs = report['output_blobs']
    got = run_ncnn(tmp_path / 'pad.param', tmp_path / 'pad.bin', {report['input_blob']: x}, outs, fp16=False)
    ref = run_ncnn(tmp_path / 'plain.param', tmp_path / 'plain.bin', {plain['input_blob']: x}, outs, fp16=False)
    for g, r in zip(got, ref):
        assert_close_scaled(g, r, atol=1e-5)
