"""ncnn's model files read and written byte for byte: the ``.param`` text and the ``.bin`` cut into the weight blobs of
each layer, in the order the layers' ``load_model`` read them.

The ``.param`` (ncnn docs/developer-guide/param-and-model-file-structure.md, src/paramdict.cpp): the magic ``7767517``,
``layer_count blob_count``, then one line per layer: ``type name bottom_count top_count bottoms... tops... k=v ...``;
a key ``-23300 - id`` holds the array ``count,v1,...`` of parameter ``id``. Layers are kept as their text lines, and
only a changed layer's line is rewritten, so read -> write gives the same bytes.

The ``.bin`` (src/modelbin.cpp ``ModelBinFromDataReader::load``): the blobs of the layers one after another, no
header. ``load(w, 0)`` reads a 4-byte flag first: ``0`` raw float32 (4w bytes), ``0x01306B47`` float16 (2w, padded to
4), ``0x000D4B38`` int8 (w, padded to 4), ``0x0002C056`` float32 with extra scaling (4w), any other non-zero flag a
256-entry float table then w uint8 indices (padded to 4); ``load(w, 1)`` reads 4w bytes of raw float32. Which layer
loads what is read from its ``load_model`` (src/layer/convolution.cpp, convolutiondepthwise.cpp, innerproduct.cpp,
deconvolution*.cpp, batchnorm.cpp, scale.cpp, prelu.cpp, bias.cpp, memorydata.cpp, padding.cpp): :data:`WEIGHTLESS`
are the types that load nothing; a layer of any other type is refused (:class:`NcnnFormatError`) rather than guessed,
and the blobs must use the ``.bin`` exactly (the sizes are checked against its length).
"""
from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path
from typing import Callable

import numpy as np

from .ncnn_param import PARAM_MAGIC

TAG_FP32 = 0
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_SCALED = 0x0002C056
#: Array parameters are written with the key ``-(ARRAY_KEY + id)``.
ARRAY_KEY = 23300

#: Layer types whose ``load_model`` reads nothing from the ``.bin`` (ncnn's base ``Layer::load_model``).
WEIGHTLESS = frozenset((
    'AbsVal', 'ArgMax', 'BinaryOp', 'BNLL', 'Cast', 'Clip', 'Concat', 'Crop', 'DeepCopy', 'Dropout', 'ELU', 'Eltwise',
    'Erf', 'Exp', 'ExpandDims', 'Flatten', 'GELU', 'GLU', 'HardSigmoid', 'HardSwish', 'Input', 'Interp', 'Log', 'LRN',
    'MatMul', 'Mish', 'MVN', 'Noop', 'Permute', 'PixelShuffle', 'Pooling', 'Power', 'ReLU', 'Reduction', 'Reorg',
    'Reshape', 'SELU', 'ShuffleChannel', 'Sigmoid', 'Slice', 'Softmax', 'Softplus', 'Split', 'Squeeze', 'Swish',
    'TanH', 'Threshold', 'Tile', 'UnaryOp'))


class NcnnFormatError(ValueError):
    """A ``.param`` / ``.bin`` pair this module cannot read (the message names the file and the layer)."""


def align4(n: int) -> int:
    """``n`` rounded up to a multiple of 4 (every blob of the ``.bin`` is padded so)."""
    return (n + 3) & ~3


@dataclasses.dataclass
class WeightBlob:
    """One ``ModelBin::load`` of a layer: ``count`` elements, ``tagged`` (``load(w, 0)``: a flag word first) or raw
    float32 (``load(w, 1)``); ``data`` holds its bytes as in the file (flag and padding included)."""

    count: int
    tagged: bool
    data: bytes

    @property
    def tag(self) -> int | None:
        """The flag word of a tagged blob (None for a raw one)."""
        return struct.unpack('<I', self.data[:4])[0] if self.tagged else None

    def values(self) -> np.ndarray:
        """The stored values: float32 for fp32 / fp16 / scaled blobs, int8 for int8 ones (quantized tables decoded)."""
        if not self.tagged:
            return np.frombuffer(self.data, '<f4', self.count).copy()
        tag, body = self.tag, self.data[4:]
        if tag == TAG_FP16:
            return np.frombuffer(body, '<f2', self.count).astype(np.float32)
        if tag == TAG_INT8:
            return np.frombuffer(body, np.int8, self.count).copy()
        if tag == TAG_FP32_SCALED or tag == TAG_FP32:
            return np.frombuffer(body, '<f4', self.count).copy()
        table = np.frombuffer(body, '<f4', 256)
        return table[np.frombuffer(body, np.uint8, self.count, offset=1024)].astype(np.float32)

    @staticmethod
    def raw(values: np.ndarray) -> WeightBlob:
        """A raw float32 blob (``load(w, 1)``)."""
        arr = np.ascontiguousarray(values, '<f4').ravel()
        return WeightBlob(arr.size, False, arr.tobytes())

    @staticmethod
    def int8(values: np.ndarray) -> WeightBlob:
        """A tagged int8 blob (``load(w, 0)`` with flag 0x000D4B38), zero-padded to 4 bytes."""
        arr = np.ascontiguousarray(values, np.int8).ravel()
        body = arr.tobytes()
        return WeightBlob(arr.size, True, struct.pack('<I', TAG_INT8) + body + b'\0' * (align4(len(body)) - len(body)))


def _tagged_size(data: bytes, offset: int, count: int) -> int:
    """Bytes of a ``load(count, 0)`` blob starting at ``offset`` (flag included); -1 past the end of ``data``."""
    if offset + 4 > len(data):
        return -1
    tag = struct.unpack_from('<I', data, offset)[0]
    if tag == TAG_FP16:
        return 4 + align4(2 * count)
    if tag == TAG_INT8:
        return 4 + align4(count)
    if tag in (TAG_FP32, TAG_FP32_SCALED):
        return 4 + 4 * count
    return 4 + 1024 + align4(count)  # quantized: 256 float table + uint8 indices


@dataclasses.dataclass
class NcnnLayer:
    """One layer line: type, name, bottom and top blob names, parameters (``{id: raw text}``; arrays as the text after
    ``=``), the line itself and the weight blobs it loads."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str]
    line: str
    blobs: list[WeightBlob] = dataclasses.field(default_factory=list)

    def get_int(self, key: int, default: int = 0) -> int:
        """Integer parameter ``key`` (``default`` when absent)."""
        return int(float(self.params[key])) if key in self.params else default

    def set_param(self, key: int, value: int) -> None:
        """Set integer parameter ``key`` and rewrite the line (the other tokens keep their text)."""
        tokens = self.line.split(' ')
        text = f'{key}={int(value)}'
        for i, tok in enumerate(tokens):
            if tok.partition('=')[0] == str(key) and '=' in tok:
                tokens[i] = text
                break
        else:
            tokens.append(text)
        self.params[key] = str(int(value))
        self.line = ' '.join(tokens)


def _parse_layer(line: str, where: str) -> NcnnLayer:
    parts = line.split()
    try:
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
    except (IndexError, ValueError):
        raise NcnnFormatError(f'{where}: expected "type name bottom_count top_count ...", got {line[:80]!r}') from None
    if n_in < 0 or n_out < 0 or len(parts) < 4 + n_in + n_out:
        raise NcnnFormatError(f'{where}: layer {name!r} lists fewer blobs than its counts {n_in} {n_out}')
    params: dict[int, str] = {}
    for tok in parts[4 + n_in + n_out:]:
        key, eq, value = tok.partition('=')
        try:
            k = int(key)
        except ValueError:
            raise NcnnFormatError(f'{where}: layer {name!r} has a parameter {tok!r} that is not id=value') from None
        if not eq:
            raise NcnnFormatError(f'{where}: layer {name!r} has a parameter {tok!r} that is not id=value')
        params[-k - ARRAY_KEY if k <= -ARRAY_KEY else k] = value
    return NcnnLayer(kind, name, parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out], params, line)


def _conv_blobs(layer: NcnnLayer, kind: str) -> list[tuple[int, bool]]:
    """The ``load_model`` of Convolution / ConvolutionDepthWise / InnerProduct / Deconvolution*."""
    if kind == 'InnerProduct':
        num_output, bias_term, size = layer.get_int(0), layer.get_int(1), layer.get_int(2)
    else:
        if layer.get_int(28 if kind.startswith('Deconvolution') else 19):  # dynamic_weight: a second input
            return []
        num_output, bias_term, size = layer.get_int(0), layer.get_int(5), layer.get_int(6)
    out = [(size, True)] + ([(num_output, False)] if bias_term else [])
    term = layer.get_int(8)
    if kind.startswith('Deconvolution') or not term:
        return out
    if kind == 'ConvolutionDepthWise':
        group = layer.get_int(7, 1)
        out += [(group if term in (1, 101) else 1, False), (1, False)]
    else:
        out += [(num_output, False), (1, False)]
    if term > 100 and kind != 'InnerProduct':
        out.append((1, False))  # top_blob_int8_scales of a fused requantize
    return out


def _memorydata_blobs(layer: NcnnLayer) -> list[tuple[int, bool]]:
    dims = [layer.get_int(k) for k in (0, 1, 11, 2)]
    load_type = layer.get_int(21, 1)  # ModelBin::load's type: 0 flagged, 1 raw float32
    if load_type not in (0, 1):
        raise NcnnFormatError(f'MemoryData layer {layer.name!r} has load type 21={load_type}; only 0 and 1 are read')
    return [(int(np.prod([d for d in dims if d])), load_type == 0)] if any(dims) else []


def _scale_blobs(layer: NcnnLayer) -> list[tuple[int, bool]]:
    size = layer.get_int(0)
    if size == -233:  # the scale is a second input
        return []
    return [(size, False)] + ([(size, False)] if layer.get_int(1) else [])


#: Layer type -> the ``(count, tagged)`` loads of its ``load_model``, from its parameters.
WEIGHT_LAYOUTS: dict[str, Callable[[NcnnLayer], list[tuple[int, bool]]]] = {
    'Convolution': lambda lay: _conv_blobs(lay, 'Convolution'),
    'ConvolutionDepthWise': lambda lay: _conv_blobs(lay, 'ConvolutionDepthWise'),
    'InnerProduct': lambda lay: _conv_blobs(lay, 'InnerProduct'),
    'Deconvolution': lambda lay: _conv_blobs(lay, 'Deconvolution'),
    'DeconvolutionDepthWise': lambda lay: _conv_blobs(lay, 'DeconvolutionDepthWise'),
    'BatchNorm': lambda lay: [(lay.get_int(0), False)] * 4,  # slope, mean, var, bias
    'Scale': _scale_blobs,
    'PReLU': lambda lay: [(lay.get_int(0), False)],
    'Bias': lambda lay: [(lay.get_int(0), False)],
    'MemoryData': _memorydata_blobs,
    'Padding': lambda lay: [(lay.get_int(6), False)] if lay.get_int(6) else [],
}


@dataclasses.dataclass
class NcnnModelFile:
    """A ``.param`` / ``.bin`` pair in memory: the header lines, the layers (with their weight blobs) and the text
    after the last layer line (a trailing newline)."""

    header: list[str]
    layers: list[NcnnLayer]
    tail: str

    def layer(self, name: str) -> NcnnLayer:
        """The layer called ``name`` (KeyError when there is none)."""
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(name)

    def param_text(self) -> str:
        """The ``.param`` text."""
        return '\n'.join(self.header + [lay.line for lay in self.layers]) + self.tail

    def bin_bytes(self) -> bytes:
        """The ``.bin`` bytes."""
        return b''.join(b.data for lay in self.layers for b in lay.blobs)

    def write(self, param: str | os.PathLike, bin_path: str | os.PathLike) -> None:
        """Write both files (plainly: callers write into temporary paths of ``utils.io.atomic_outputs``)."""
        Path(param).write_text(self.param_text())
        Path(bin_path).write_bytes(self.bin_bytes())


def read_ncnn(param: str | os.PathLike, bin_path: str | os.PathLike) -> NcnnModelFile:
    """Parse ``param`` and cut ``bin_path`` into the layers' weight blobs; :class:`NcnnFormatError` naming the file
    for a file that is missing, not an ncnn ``.param``, holds a layer type whose weights are unknown here, or whose
    ``.bin`` does not have the size the ``.param`` describes."""
    param, bin_path = Path(param), Path(bin_path)
    for path, what in ((param, '.param'), (bin_path, '.bin')):
        if not path.is_file():
            raise NcnnFormatError(f'ncnn {what} {str(path)!r} does not exist')
    try:
        text = param.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise NcnnFormatError(f'{str(param)!r} is not an ncnn .param text file ({exc})') from None
    lines = text.split('\n')
    if not lines or lines[0].strip() != PARAM_MAGIC:
        raise NcnnFormatError(f'{str(param)!r} is not an ncnn .param file: its first line is not the magic '
                              f'{PARAM_MAGIC} (old-format or binary .param files are not read)')
    try:
        n_layers, _n_blobs = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise NcnnFormatError(f'{str(param)!r}: line 2 must be "layer_count blob_count"') from None
    body = lines[2:]
    tail_start = len(body)
    while tail_start > 0 and not body[tail_start - 1].strip():
        tail_start -= 1
    if tail_start != n_layers:
        raise NcnnFormatError(f'{str(param)!r} declares {n_layers} layers but holds {tail_start} layer lines')
    layers = [_parse_layer(line, f'{str(param)!r} line {i + 3}') for i, line in enumerate(body[:tail_start])]
    data = bin_path.read_bytes()
    offset = 0
    for lay in layers:
        if lay.type in WEIGHTLESS:
            continue
        layout = WEIGHT_LAYOUTS.get(lay.type)
        if layout is None:
            raise NcnnFormatError(f'{str(param)!r}: layer {lay.name!r} has type {lay.type!r}, whose weights this '
                                  f'reader does not know; known types: {sorted(WEIGHTLESS | set(WEIGHT_LAYOUTS))}')
        for count, tagged in layout(lay):
            size = _tagged_size(data, offset, count) if tagged else 4 * count
            if count < 0 or size < 0 or offset + size > len(data):
                raise NcnnFormatError(f'{str(bin_path)!r} ends inside the weights of layer {lay.name!r} '
                                      f'({len(data)} bytes): it is not the .bin of {str(param)!r}')
            lay.blobs.append(WeightBlob(count, tagged, data[offset:offset + size]))
            offset += size
    if offset != len(data):
        raise NcnnFormatError(f'{str(bin_path)!r} has {len(data)} bytes but {str(param)!r} describes {offset}: '
                              'they are not one model')
    return NcnnModelFile(lines[:2], layers, '\n' + '\n'.join(body[tail_start:]) if tail_start < len(body) else '')
