"""Any ncnn model as a ``.param`` / ``.bin`` pair, without an export report: its blobs read from the ``.param``.

The runtime's own exports carry a ``.json`` report (:class:`.ncnn_model.NcnnModel`); a model converted elsewhere
(another project's pnnx or onnx2ncnn output, e.g. the peer model of the benchmark's peer mode) has only the two files.
:func:`read_param` reads what running it needs from the text ``.param``: the ``Input`` layer's blob (and the
``0=w 1=h 2=c`` shape when the converter wrote one) and the outputs, the blobs produced but never consumed.
:func:`new_net` is the one place the ncnn options of the runtime are set, for both kinds of models; :func:`load_net`
opens a pair with them and :func:`extract_blobs` runs it (every ncnn model of the project is run through these).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Optional, Sequence

import numpy as np

from .io import PathLike

#: The first line of every text ``.param`` file.
PARAM_MAGIC = '7767517'


@dataclasses.dataclass
class ParamInfo:
    """What a text ``.param`` says about running the model: ``input_shape`` is ``(c, h, w)`` with None for every
    dimension the ``Input`` layer leaves open (0 or not written: pnnx writes none)."""

    path: str
    input_blob: str
    input_shape: tuple[Optional[int], Optional[int], Optional[int]]
    output_blobs: list[str]
    layers: int

    @property
    def static_hw(self) -> bool:
        """True when the ``.param`` fixes the input height or width."""
        return self.input_shape[1] is not None or self.input_shape[2] is not None


def _input_shape(params: list[str]) -> tuple[Optional[int], Optional[int], Optional[int]]:
    """``(c, h, w)`` from an ``Input`` layer's ``0=w 1=h 2=c`` parameters; None where not given or 0."""
    values: dict[str, int] = {}
    for item in params:
        key, _, value = item.partition('=')
        if key in ('0', '1', '2'):
            try:
                values[key] = int(value)
            except ValueError:
                raise ValueError(f'Input layer parameter {item!r} is not an integer') from None

    def dim(key: str) -> Optional[int]:
        v = values.get(key, 0)
        return v if v > 0 else None
    return dim('2'), dim('1'), dim('0')


def read_param(path: PathLike, what: str = 'the model') -> ParamInfo:
    """The input blob, its shape and the output blobs of a text ``.param`` file.

    ValueError naming ``what`` and the file when it is missing or unreadable, not a text ncnn ``.param`` (magic
    number, counts, layer lines), or has not exactly one ``Input`` layer or no output.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f'{what} {path!r} does not exist')
    try:
        with open(path, encoding='utf-8') as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f'{what} {path!r} cannot be read as a text ncnn .param ({type(exc).__name__}: '
                         f'{exc})') from None
    bad = f'{what} {path!r} is not a text ncnn .param file'
    if not lines or lines[0].strip() != PARAM_MAGIC:
        raise ValueError(f'{bad}: its first line must be the magic number {PARAM_MAGIC}')
    try:
        layer_count, _ = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise ValueError(f'{bad}: its second line must be "<layer count> <blob count>"') from None
    if layer_count != len(lines) - 2:
        raise ValueError(f'{bad}: it announces {layer_count} layers and holds {len(lines) - 2} layer lines')
    produced: list[str] = []
    consumed: set[str] = set()
    inputs: list[tuple[str, tuple[Optional[int], Optional[int], Optional[int]]]] = []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        try:
            n_in, n_out = int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            n_in = n_out = -1
        if n_in < 0 or n_out < 0 or len(parts) < 4 + n_in + n_out:
            raise ValueError(f'{bad}: line {number} is not "<type> <name> <inputs> <outputs> <blobs> ..."')
        ins, outs = parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]
        consumed.update(ins)
        produced.extend(outs)
        if parts[0] == 'Input':
            if n_out != 1:
                raise ValueError(f'{bad}: its Input layer on line {number} has {n_out} blobs, not 1')
            try:
                inputs.append((outs[0], _input_shape(parts[4 + n_in + n_out:])))
            except ValueError as exc:
                raise ValueError(f'{bad}: line {number}: {exc}') from None
    if len(inputs) != 1:
        raise ValueError(f'{what} {path!r} has {len(inputs)} Input layers ({[b for b, _ in inputs]}): one input '
                         'is supported')
    outputs = [b for b in produced if b not in consumed and b != inputs[0][0]]
    if not outputs:
        raise ValueError(f'{bad}: no blob is produced without being consumed (no output)')
    if all(re.fullmatch(r'out\d+', b) for b in outputs):  # pnnx names graph outputs out0, out1, ... in order
        outputs.sort(key=lambda b: int(b[3:]))
    return ParamInfo(path, inputs[0][0], inputs[0][1], outputs, layer_count)


def new_net(threads: int, fp16: bool = True) -> Any:
    """An ``ncnn.Net`` with the runtime's options: ``threads`` threads, ncnn's fp16 defaults unless ``fp16`` is
    False (then fp16 storage, packing and arithmetic are off)."""
    import ncnn
    net = ncnn.Net()
    net.opt.num_threads = int(threads)
    if not fp16:
        net.opt.use_fp16_storage = net.opt.use_fp16_packed = False
        net.opt.use_fp16_arithmetic = False
    return net


def load_net(param: PathLike, weights: PathLike, threads: int = 1, fp16: bool = True, what: str = '') -> Any:
    """A :func:`new_net` with ``param`` / ``weights`` loaded; ValueError ``[what: ]ncnn cannot load ...`` when ncnn
    refuses them."""
    net = new_net(threads, fp16)
    if net.load_param(os.fspath(param)) != 0 or net.load_model(os.fspath(weights)) != 0:
        raise ValueError(f'{what + ": " if what else ""}ncnn cannot load {os.fspath(param)!r} / '
                         f'{os.fspath(weights)!r}')
    return net


def extract_blobs(net: Any, inputs: dict[str, Any], names: Sequence[str], param: PathLike,
                  keep_intermediate: bool = False) -> list[np.ndarray]:
    """One forward pass of ``net`` on ``inputs`` (blob name -> ``ncnn.Mat``; the caller keeps the arrays behind them
    alive) and copies of the blobs ``names`` (no batch axis). ``keep_intermediate`` turns ncnn's light mode off, so
    that blobs consumed inside the network can be extracted too. RuntimeError naming ``param`` when an extraction
    fails."""
    ex = net.create_extractor()
    if keep_intermediate:
        ex.set_light_mode(False)
    for blob, mat in inputs.items():
        ex.input(blob, mat)
    outs = []
    for name in names:
        ret, out = ex.extract(name)
        if ret != 0:
            raise RuntimeError(f'ncnn extract({name!r}) of {os.fspath(param)!r} failed with code {ret}')
        outs.append(np.array(out, copy=True))
    return outs


class NcnnNet:
    """A ``.param`` / ``.bin`` pair with the blobs of :func:`read_param`, opened with :func:`new_net`'s options.

    ValueError naming ``what`` when a file is missing, the ``.param`` is not one or ncnn cannot load the pair.
    """

    def __init__(self, param: PathLike, weights: PathLike, threads: int = 1, fp16: bool = True,
                 what: str = 'the model') -> None:
        self.info = read_param(param, what)
        self.param, self.bin = os.fspath(param), os.fspath(weights)
        if not os.path.isfile(self.bin):
            raise ValueError(f'{what}: the weights {self.bin!r} of {self.param!r} do not exist')
        self.what = what
        self.net = load_net(self.param, self.bin, threads, fp16, what)

    def check_input_chw(self, chw: tuple[int, int, int], source: str) -> None:
        """ValueError naming ``source`` when the ``.param`` fixes an input dimension other than ``chw``'s."""
        want = self.info.input_shape
        if any(w is not None and w != int(g) for w, g in zip(want, chw)):
            shown = 'x'.join('?' if v is None else str(v) for v in want)
            raise ValueError(f'{source} is {"x".join(str(int(v)) for v in chw)} (CxHxW), but {self.what} '
                             f'{self.param!r} takes {shown} inputs')

    def run(self, mat: Any) -> list[np.ndarray]:
        """One forward pass on an ``ncnn.Mat``; the outputs of :func:`read_param` in order (no batch axis)."""
        return extract_blobs(self.net, {self.info.input_blob: mat}, self.info.output_blobs, self.param)
