"""Convert a classification checkpoint (torchvision, Megvii ShuffleNet-Series, mmpretrain) into backbone weights, or a
published detector checkpoint (NanoDet-Plus) into the weights of a whole detector.

The output is ``{'state_dict': <backbone state dict>, 'meta': {...}}``, verified by loading it with ``strict=True``
into the backbone built from ``--type`` and its arguments, and written atomically (nothing is left behind on error).
Use it in a detector config as::

    backbone=dict(type='ShuffleNetV2', widen_factor=1.0,
                  init_cfg=dict(type='Pretrained', checkpoint='OUT.pth'))

Examples (from the repository root)::

    python tools/model_converters/convert_weights.py --src torchvision --type ShuffleNetV2 --widen-factor 1.0 \\
        shufflenetv2_x1-5666bf0f80.pth work_dirs/pretrained/shufflenetv2_1.0x_tv.pth
    python tools/model_converters/convert_weights.py --src megvii --type ShuffleNetV1 --groups 3 \\
        --widen-factor 1.0 Group3/models/snetv1_group3_1.0x.pth.tar work_dirs/pretrained/shufflenetv1_g3_1.0x.pth
    python tools/model_converters/convert_weights.py --src megvii --type ShuffleNetV2 --widen-factor 1.0 \\
        megvii_shufflenetv2_1.0x.pth.tar work_dirs/pretrained/shufflenetv2_1.0x_megvii.pth --cfg-options layout=megvii
    python tools/model_converters/convert_weights.py --src megvii --type DetNAS --arch COCO-FPN-300M IN OUT
    python tools/model_converters/convert_weights.py --src megvii --type ShuffleNetV2Large --arch ExLarge IN OUT

Whole detectors: ``--src nanodet --config CONFIG`` (no ``--type``) converts a NanoDet-Plus file (the Lightning
``*_checkpoint.ckpt``: its EMA weights; or the ``*.pth`` weight file) for the detector of CONFIG and checks it with a
strict load; ``--cfg-options`` then apply to CONFIG (e.g. ``model.aux_head=None`` to drop the training-only branch)::

    python tools/model_converters/convert_weights.py --src nanodet \\
        --config configs/lite/lite-m_shufflenetv2-1x_300e_coco-416.py \\
        nanodet-plus-m_416_checkpoint.ckpt checkpoints/lite-m_416_nanodet.pth

``--src paddle --config CONFIG`` converts a PaddleDetection ``.pdparams`` weight file (PicoDet) for the detector of
CONFIG; the file is a pickle of numpy arrays, read without PaddlePaddle by a restricted unpickler that resolves only
numpy's array globals (:func:`shufflenet_det.converters.paddle.read_pdparams`)::

    python tools/model_converters/convert_weights.py --src paddle --config configs/picodet/CONFIG.py \\
        picodet_s_320_coco.pdparams checkpoints/picodet_s_320_paddle.pth

Official Megvii ShuffleNetV2 checkpoints need ``--cfg-options layout=megvii`` (and ``layout='megvii'`` in the
detector's backbone config) at 1.0x / 1.5x / 2.0x: their first stage-2 unit splits its channels unevenly, which only
the official formulation computes; without it the conversion is refused with that hint. At 0.5x both layouts work
(``layout='torchvision'`` through channel permutations). The layout is never chosen implicitly, so the config that
loads the file always states the formulation it was converted for (it is also recorded in the output's ``meta``).

``--src`` / ``--type`` accept every converter registered with
:func:`shufflenet_det.converters.register_converter`; extra backbone arguments go through ``--arch`` or
``--cfg-options key=value``. Checkpoints are read with ``torch.load(weights_only=True)`` only
(:func:`shufflenet_det.utils.checkpoint.read_checkpoint`).

OUT must not be IN (however spelled: ``./x.pth``, a symlink, a hard link) and an existing OUT is only replaced with
``--overwrite``; both are checked before anything is read or written.
Exit status: 0 on success, 1 when the conversion is refused (message on stderr), 2 for command-line errors (an
existing OUT, OUT = IN, a bad flag); ``--debug`` shows the traceback of an error.
"""
from __future__ import annotations

import argparse
import ast
import copy
import inspect
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from mmengine.config import DictAction

from shufflenet_det.converters import ConversionError, available_converters, convert_checkpoint, get_converter
from shufflenet_det.converters.core import (
    available_detector_converters,
    convert_detector_checkpoint,
    get_detector_converter,
)
from shufflenet_det.utils.checkpoint import CheckpointError
from shufflenet_det.utils.cli import (
    add_cfg_options_arg,
    add_config_arg,
    add_overwrite_arg,
    check_output_path,
    fail,
    run_main,
    tool_parser,
)
from shufflenet_det.utils.io import same_file


class KeyValueAction(DictAction):
    """mmengine's ``DictAction`` (values parsed as Python literals), with a usage error instead of a traceback.

    A value in braces is a dict literal (``arch={'base': 'Large', ...}``, a dict encoding of the backbone), read with
    ``ast.literal_eval``: mmengine's parser only knows lists and tuples (it recursed without end on dicts).
    """

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        bad = [v for v in values if '=' not in v]
        if bad:
            parser.error(f'{option_string} expects KEY=VALUE items, got {bad}; put IN and OUT before '
                         f'{option_string}')
        options = copy.copy(getattr(namespace, self.dest, None) or {})
        for item in values:
            key, text = item.split('=', 1)
            try:
                if text.lstrip().startswith('{'):
                    value = ast.literal_eval(text)
                    if not isinstance(value, dict):
                        raise ValueError('not a dict')
                else:
                    value = self._parse_iterable(text)
            except (ValueError, SyntaxError, TypeError, AssertionError, RecursionError, MemoryError) as exc:
                parser.error(f'{option_string} {item!r}: the value is not a Python literal ({type(exc).__name__}: '
                             f'{str(exc)[:200]}); quote it for the shell, e.g. \'{key}={{"a": [1, 2], "b": "x"}}\'')
            options[key] = value
        setattr(namespace, self.dest, options)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    pairs = available_converters()
    sources = sorted({s for s, _ in pairs} | set(available_detector_converters()))
    types = sorted({t for _, t in pairs})
    parser = tool_parser(
        'Convert a classification checkpoint into weights of a shufflenet_det backbone (verified with '
        'a strict load, written atomically). Available --src -> --type pairs: '
        + ', '.join(f'{s} -> {t}' for s, t in pairs) + '.',
        epilog='example: convert_weights.py --src torchvision --type ShuffleNetV2 --widen-factor 1.0 '
               'shufflenetv2_x1-5666bf0f80.pth work_dirs/pretrained/shufflenetv2_1.0x.pth; whole detectors: '
               'convert_weights.py --src nanodet --config CONFIG nanodet-plus-m_320_checkpoint.ckpt OUT')
    parser.add_argument('src_path', metavar='IN', help='input checkpoint (read with weights_only=True)')
    parser.add_argument('dst_path', metavar='OUT', help='output checkpoint, written atomically; must not be IN and '
                                                       'must not exist unless --overwrite')
    add_overwrite_arg(parser, 'replace an existing OUT (atomically: it is only replaced by a verified conversion)')
    parser.add_argument('--src', required=True, choices=sources, help='layout of the input checkpoint')
    parser.add_argument('--type', choices=types, dest='backbone_type',
                        help='registered backbone type the weights are for (backbone conversions)')
    add_config_arg(parser, 'detector config the weights are for (whole-detector conversions: --src '
                   + ' / '.join(available_detector_converters()) + '); replaces --type', option=True)
    parser.add_argument('--widen-factor', type=float, default=None,
                        help='backbone widen_factor (must match the checkpoint); backbone default when omitted')
    parser.add_argument('--groups', type=int, default=None, help='ShuffleNetV1 groups (must match the checkpoint)')
    parser.add_argument('--arch', default=None, help='backbone arch name, for backbones that take one')
    add_cfg_options_arg(parser, 'further backbone arguments (Python literals), e.g. --cfg-options model_size=Large; '
                                'with --config: options of that config; give it after IN and OUT',
                        default={}, metavar='KEY=VALUE', action=KeyValueAction)
    args = parser.parse_args(argv)
    if args.config is None and args.backbone_type is None:
        parser.error('--type is required (or --config for a whole-detector conversion)')
    if args.config is not None:
        given = [f for f, v in (('--type', args.backbone_type), ('--widen-factor', args.widen_factor),
                                ('--groups', args.groups), ('--arch', args.arch)) if v is not None]
        if given:
            parser.error(f'--config converts a whole detector: {", ".join(given)} do not apply (the config '
                         'describes the model)')
    return args


def main_detector(args: argparse.Namespace) -> int:
    """``--config``: a whole-detector conversion; notes on what was converted or dropped go to stdout."""
    try:
        get_detector_converter(args.src)
        out, notes = convert_detector_checkpoint(args.src, args.config, args.src_path, args.dst_path,
                                                 dict(args.cfg_options) or None)
    except (CheckpointError, ValueError, TypeError, KeyError) as exc:
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        if args.src_path not in message:
            message = f'{args.src_path}: {message}'
        print(f'error: {message}', file=sys.stderr)
        return 1
    for note in notes:
        print(f'  {note}')
    print(f'wrote {out} ({args.src} -> the detector of {args.config})')
    return 0


def backbone_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Backbone arguments from the command line: only those given, so the backbone defaults apply otherwise."""
    kwargs: dict[str, Any] = {}
    for flag, name in (('widen_factor', 'widen_factor'), ('groups', 'groups'), ('arch', 'arch')):
        value = getattr(args, flag)
        if value is not None:
            kwargs[name] = value
    for key, value in dict(args.cfg_options).items():
        if key in kwargs:
            raise ConversionError(f'--cfg-options {key}=... repeats an argument given by its own flag')
        kwargs[key] = value
    return kwargs


def check_backbone_arguments(backbone_type: str, kwargs: dict[str, Any]) -> None:
    """Every argument must be a parameter of the backbone's ``__init__`` (unless it takes ``**kwargs``)."""
    from mmdet.registry import MODELS

    import shufflenet_det  # noqa: F401  (registers the backbones)
    cls = MODELS.get(backbone_type)
    if cls is None:
        raise ConversionError(f'--type {backbone_type}: not a registered backbone')
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n in params if n != 'self']
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        flags = ', '.join(f'--{k.replace("_", "-")}' if k in ('widen_factor', 'groups', 'arch') else k
                          for k in unknown)
        raise ConversionError(f'{flags}: not an argument of {backbone_type}; it accepts {accepted}')


def check_paths(src_path: str, dst_path: str, overwrite: bool) -> None:
    """Command-line errors about IN and OUT (exit status 2), before anything is read or written."""
    if same_file(src_path, dst_path):
        fail(f'OUT {dst_path!r} is the input checkpoint {src_path!r} ({Path(src_path).expanduser().resolve()}): '
             'refusing to write over the file being converted; give another output path')
    if Path(dst_path).expanduser().is_dir():
        fail(f'OUT {dst_path!r} is a directory; give a file path')
    check_output_path(dst_path, 'OUT', overwrite=overwrite)  # exists without --overwrite; its folder unwritable


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    check_paths(args.src_path, args.dst_path, args.overwrite)
    if args.config is not None:
        return main_detector(args)
    try:  # argument errors first: they do not depend on the input file
        get_converter(args.src, args.backbone_type)
        kwargs = backbone_kwargs(args)
        check_backbone_arguments(args.backbone_type, kwargs)
    except ConversionError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    try:
        out = convert_checkpoint(args.src, args.backbone_type, args.src_path, args.dst_path, kwargs)
    except (CheckpointError, ValueError, TypeError, KeyError) as exc:  # unreadable input, refused conversion, ...
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        if args.src_path not in message:  # CheckpointErrors about the file name it already
            message = f'{args.src_path}: {message}'
        print(f'error: {message}', file=sys.stderr)
        return 1
    print(f'wrote {out} ({args.src} -> {args.backbone_type}({", ".join(f"{k}={v!r}" for k, v in kwargs.items())}))')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
