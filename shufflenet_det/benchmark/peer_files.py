"""Peer mode: another project's export of the same network, given as a file, timed next to this project's export.

A peer is an ONNX file (``--peer-onnx``) or an ncnn ``.param`` / ``.bin`` pair (``--peer-ncnn``) of the network a
run's model is (e.g. NanoDet-Plus-m exported by nanodet's own tools next to the lite-m config, torchvision's
ShuffleNetV2 next to the ShuffleNetV2 backbone). Its rows are named :attr:`PeerFile.name` (``peer:<file stem>``) with
the backends of :data:`PEER_BACKENDS`, and each is compared with one row of its partner model
(:func:`compared_backend`): the network alone on both sides.

* :func:`check_peer_onnx` / :func:`check_peer_ncnn` - the file checks (existence, extension, a valid model, one
  input), before any timing;
* :func:`check_peer_shape` - the peer's input against the benchmarked input shape (static dimensions must match,
  dynamic ones take any size);
* :func:`compared_backend` / :func:`required_backend` - which of the partner's rows a peer is compared with, and
  which backend produces it.

Errors are ValueErrors naming the option and the file; tools turn them into their ``error:`` line (exit status 2).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional, Sequence

from ..runtime.ncnn_param import read_param

#: The backends of peer rows: ONNX Runtime with the ``ort-deploy`` session options, and ncnn timed in the child
#: process of the partner's ``ncnn`` row.
ORT_PEER, NCNN_PEER = 'ort-peer', 'ncnn-peer'
PEER_BACKENDS = (ORT_PEER, NCNN_PEER)
#: The partner detector's ncnn network alone (no numpy post-processing), timed with the ncnn peer.
NCNN_RAW = 'ncnn-raw'

Dim = Optional[int]


@dataclasses.dataclass
class PeerFile:
    """A checked peer model: ``kind`` ``'onnx'`` or ``'ncnn'``, its file(s), its input and outputs.

    ``input_shape`` is NCHW for ONNX and CHW for ncnn (ncnn models take one image), None for a dynamic dimension.
    """

    kind: str
    option: str
    path: Path
    weights: Optional[Path]
    input_name: str
    input_shape: tuple[Dim, ...]
    output_names: list[str]

    @property
    def name(self) -> str:
        """The model name of the peer's rows: ``peer:<file stem>``."""
        return f'peer:{self.path.stem}'

    @property
    def backend(self) -> str:
        """``ort-peer`` or ``ncnn-peer``."""
        return ORT_PEER if self.kind == 'onnx' else NCNN_PEER

    @property
    def static_hw(self) -> bool:
        """True when the file fixes the input height or width."""
        return any(d is not None for d in self.input_shape[-2:])

    def shape_text(self) -> str:
        """The input shape with ``?`` for dynamic dimensions, e.g. ``1x3x320x320``."""
        return 'x'.join('?' if d is None else str(d) for d in self.input_shape)


def compared_backend(kind: str, detector: bool) -> str:
    """The partner's row a peer of ``kind`` is compared with: the network alone - ``ort-raw`` / ``ncnn-raw`` for a
    detector (no NMS, no post-processing: what a detector's network export holds), ``ort-deploy`` / ``ncnn`` for a
    backbone."""
    if kind == 'onnx':
        return 'ort-raw' if detector else 'ort-deploy'
    return NCNN_RAW if detector else 'ncnn'


def required_backend(kind: str, detector: bool) -> str:
    """The backend the partner must run for :func:`compared_backend`'s row (``ncnn`` also makes ``ncnn-raw``)."""
    return 'ncnn' if kind == 'ncnn' else compared_backend(kind, detector)


def _readable_file(path: str, option: str, what: str, suffix: str) -> Path:
    if not path.endswith(suffix):
        raise ValueError(f'{option} {path!r}: the {what} must be a {suffix} file')
    if not os.path.exists(path):
        raise ValueError(f'{option} {path!r}: the {what} does not exist')
    if not os.path.isfile(path):
        raise ValueError(f'{option} {path!r}: the {what} is not a file')
    if not os.access(path, os.R_OK):
        raise ValueError(f'{option} {path!r}: the {what} is not readable (permission denied)')
    if os.path.getsize(path) == 0:
        raise ValueError(f'{option} {path!r}: the {what} is empty')
    return Path(path)


def check_peer_onnx(path: str, option: str = '--peer-onnx') -> PeerFile:
    """A readable ``.onnx`` file that the ONNX checker accepts, with one graph input (initializers kept as inputs,
    as ``keep_initializers_as_inputs=True`` writes them, do not count) of rank 4."""
    import onnx
    file = _readable_file(path, option, 'ONNX model', '.onnx')
    try:
        model = onnx.load(str(file), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - protobuf and the checker raise their own types for a corrupt file
        raise ValueError(f'{option} {path!r} is not a valid ONNX model ({type(exc).__name__}: '
                         f'{str(exc).strip()[:200]})') from None
    if not model.graph.node or not model.graph.output:
        raise ValueError(f'{option} {path!r} is not a valid ONNX model: its graph has no nodes or no outputs')
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f'{option} {path!r} has {len(inputs)} inputs ({[i.name for i in inputs]}): a peer model '
                         'takes one image tensor')
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ValueError(f'{option} {path!r}: its input {inputs[0].name!r} has rank {len(dims)}, not 4 (NCHW)')
    shape = tuple(int(d.dim_value) if d.HasField('dim_value') and d.dim_value > 0 else None for d in dims)
    return PeerFile('onnx', option, file, None, inputs[0].name, shape, [o.name for o in model.graph.output])


def check_peer_ncnn(param: str, weights: str, option: str = '--peer-ncnn') -> PeerFile:
    """A text ncnn ``.param`` (one ``Input`` layer, at least one output blob) and its non-empty ``.bin``."""
    param_path = _readable_file(param, option, 'ncnn .param', '.param')
    try:
        bin_path = _readable_file(weights, option, 'ncnn weights (.bin)', '.bin')
    except ValueError as exc:
        raise ValueError(f'{exc} (the weights of {param!r})') from None
    info = read_param(param_path, option)
    return PeerFile('ncnn', option, param_path, bin_path, info.input_blob, info.input_shape, info.output_blobs)


def check_peer_shape(peer: PeerFile, sizes: Sequence[tuple[int, int]], batch: int, detector: bool) -> None:
    """ValueError unless the peer takes the benchmarked input at every size: ``(1 if detector else batch, 3, H,
    W)`` for ONNX (detectors are called once per image, as their ``ort-raw`` row), ``(3, H, W)`` for ncnn. Static
    dimensions must match; a peer with a static height or width cannot be timed at several sizes."""
    if peer.static_hw and len(sizes) > 1:
        raise ValueError(f'{peer.option} {str(peer.path)!r} is static-shaped (input {peer.shape_text()}): it '
                         f'runs at one size only, but --sizes gives {len(sizes)}; give one --sizes')
    for h, w in sizes:
        expected: tuple[int, ...] = (3, h, w) if peer.kind == 'ncnn' else (1 if detector else batch, 3, h, w)
        if any(d is not None and d != e for d, e in zip(peer.input_shape, expected)):
            raise ValueError(f'{peer.option} {str(peer.path)!r} takes input {peer.input_name!r} of shape '
                             f'{peer.shape_text()}, but the benchmark runs {"x".join(map(str, expected))} '
                             f'(--sizes {h}x{w}, batch {batch}{", one image per call" if detector else ""}); '
                             'give the --sizes / --batch the peer was exported at, or a peer with dynamic dimensions')
