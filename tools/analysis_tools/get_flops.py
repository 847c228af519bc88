"""Multiply-adds ("FLOPs") and parameters of ShuffleNet backbones, published variants and whole detectors.

Counting uses mmengine's analysis (fvcore's JIT-trace counter); by default only convolutions and matrix products
are counted (one multiply-add = 1), as the ShuffleNet papers do. See ``shufflenet_det.analysis.complexity``.

Examples (from the repository root)::

    # a backbone as the ImageNet classifier the papers report (global pool + 1000-way linear), 224x224
    python tools/analysis_tools/get_flops.py --backbone ShuffleNetV2 --cfg-options widen_factor=1.0 --shape 224
    # the raw backbone, every output
    python tools/analysis_tools/get_flops.py --backbone ShuffleNetV1 --cfg-options groups=8 --no-classifier
    # a whole detector config (backbone + neck + head forward, no post-processing)
    python tools/analysis_tools/get_flops.py configs/<detector>.py --shape 320 320
    # the same as deployed: training-only modules (the lite detectors' auxiliary head) and never-run backbone
    # stages dropped, BN folded
    python tools/analysis_tools/get_flops.py configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py --deploy
    # every published variant as a markdown table, saved to JSON too
    python tools/analysis_tools/get_flops.py --table --json work_dirs/flops.json
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional, Sequence

from shufflenet_det.utils.cli import (
    add_cfg_options_arg,
    add_config_arg,
    check_output_path,
    refuse_input_overwrite,
    run_main,
    tool_parser,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = tool_parser(
        'Count multiply-adds and parameters of a ShuffleNet backbone (as an ImageNet classifier by '
        'default), of every published variant (--table), or of a detector config.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog='Examples' + __doc__.split('Examples', 1)[1])
    add_config_arg(parser, 'detector config file (mmdet); omit with --backbone or --table', nargs='?')
    parser.add_argument('--backbone', help='backbone type registered in mmdet MODELS, e.g. ShuffleNetV2')
    add_cfg_options_arg(parser, 'with --backbone: backbone kwargs (widen_factor=1.0 groups=3); with a config: '
                                'overrides merged into the config (model.backbone.widen_factor=0.5)', default={})
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='input size: S or H W (default 224 for backbones and --table, 320 320 for detectors); '
                             'at most 4096, multiples of the coarsest backbone stride (32) for the lite detectors')
    parser.add_argument('--no-classifier', action='store_true',
                        help='with --backbone: count the raw backbone (its out_indices, settable with --cfg-options '
                             'out_indices="(0,1,2,3)") instead of the classifier')
    parser.add_argument('--num-classes', type=int, default=1000, help='classifier outputs (default 1000)')
    parser.add_argument('--classifier-bias', choices=['yes', 'no'], default='yes',
                        help='whether the classifier linear layer has a bias (default yes)')
    parser.add_argument('--op-set', choices=['macs', 'mmengine'], default='macs',
                        help="'macs': conv + matmul multiply-adds only (papers' convention, default); "
                             "'mmengine': mmengine's default handles (adds BN, norms, upsample, pooling)")
    parser.add_argument('--deploy', action='store_true',
                        help='with a config: count the model as exported (switch_to_deploy: training-only modules '
                             'and never-run backbone stages dropped, every BN folded into its conv)')
    parser.add_argument('--table', action='store_true',
                        help='markdown table of every published variant vs. its reference counts')
    parser.add_argument('--families', nargs='+', default=None,
                        help='with --table: only these backbone types (e.g. ShuffleNetV1 ShuffleNetV2)')
    parser.add_argument('--json', dest='json_out', default=None, help='also save the results to this JSON file')
    args = parser.parse_args(argv)

    modes = sum([args.config is not None, args.backbone is not None, args.table])
    if modes != 1:
        parser.error('give exactly one of: a detector config, --backbone TYPE, --table')
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes S or H W (positive ints), got {args.shape}')
    from shufflenet_det.deploy.cli import check_shape_arg
    check_shape_arg(args.shape)  # positive, at most MAX_INPUT_SIDE: a typo must not allocate tens of GB
    if args.num_classes <= 0:
        parser.error(f'--num-classes must be positive, got {args.num_classes}')
    if args.no_classifier and args.backbone is None:
        parser.error('--no-classifier only applies with --backbone')
    if args.deploy and args.config is None:
        parser.error('--deploy only applies with a detector config')
    if args.families is not None and not args.table:
        parser.error('--families only applies with --table')
    if args.config is not None and not os.path.isfile(args.config):
        parser.error(f'config file {args.config!r} does not exist')
    if args.json_out:  # before the counting: a bad output path fails at once
        refuse_input_overwrite([('--json', args.json_out)], [('config', args.config)])
        check_output_path(args.json_out, '--json')
    return args


def _fmt(value: float, unit: float = 1e6, digits: int = 1) -> str:
    return f'{value / unit:.{digits}f}'


def run_table(args: argparse.Namespace) -> tuple[str, list[dict]]:
    """Count every published variant; return the markdown table and the per-variant results."""
    from shufflenet_det.analysis import classifier_complexity, published_variants

    rows = []
    lines = ['| variant | out channels | strides | FLOPs (M) | ref FLOPs (M) | params (M) | ref params (M) |',
             '|---|---|---|---:|---:|---:|---:|']
    for v in published_variants(args.families):
        size = tuple(args.shape) if args.shape else v.input_size
        res = classifier_complexity(v.backbone, size, num_classes=v.num_classes, classifier_bias=v.classifier_bias,
                                    op_set=args.op_set)
        rows.append(dict(name=v.name, backbone=v.backbone, input_shape=list(res['input_shape']),
                         out_channels=list(res['out_channels']), out_strides=list(res['out_strides']),
                         flops=res['flops'], params=res['params'], ref_flops=v.flops, ref_params=v.params,
                         flops_rel_err=res['flops'] / v.flops - 1, params_rel_err=res['params'] / v.params - 1,
                         source=v.source, op_set=args.op_set, extra=v.extra))
        lines.append(f"| {v.name} | {'/'.join(map(str, res['out_channels']))} | "
                     f"{'/'.join(map(str, res['out_strides']))} | {_fmt(res['flops'])} | {_fmt(v.flops)} | "
                     f"{_fmt(res['params'], digits=2)} | {_fmt(v.params, digits=2)} |")
    return '\n'.join(lines), rows


def run_backbone(args: argparse.Namespace) -> dict:
    """Count ``--backbone`` as the ImageNet classifier, or (``--no-classifier``) the raw backbone."""
    from shufflenet_det.analysis import classifier_complexity, model_complexity
    from shufflenet_det.utils.build import build_backbone

    cfg = dict(args.cfg_options, type=args.backbone)
    shape = tuple(args.shape) if args.shape else (224,)
    if args.no_classifier:
        backbone = build_backbone(cfg)
        res = model_complexity(backbone, shape, op_set=args.op_set)
        res.update(out_channels=backbone.out_channels, out_strides=backbone.out_strides, mode='backbone')
    else:
        res = classifier_complexity(cfg, shape, num_classes=args.num_classes,
                                    classifier_bias=args.classifier_bias == 'yes', op_set=args.op_set)
        res.update(mode=f'classifier ({args.num_classes} classes)')
    res['backbone'] = cfg
    return res


def run_detector(args: argparse.Namespace) -> dict:
    """Count the detector of the config (backbone + neck + head forward, no post-processing)."""
    from mmdet.models.detectors import BaseDetector
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope

    from shufflenet_det.analysis import model_complexity
    from shufflenet_det.deploy.cli import check_input_size
    from shufflenet_det.utils.build import ConfigError, build_detector, load_config, switch_to_deploy

    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = revert_sync_batchnorm(build_detector(cfg))  # ConfigError for a model it cannot build
    if not isinstance(model, BaseDetector):
        raise ConfigError(f'config {args.config!r} describes a {type(model).__name__}, not an mmdet detector; count '
                          'a backbone with --backbone TYPE --cfg-options ...')
    training_only = sum(p.numel() for name in getattr(model, 'training_only_modules', ())
                        for p in getattr(model, name).parameters())
    mode = 'detector (extract_feat + head forward)'
    if args.deploy:
        switch_to_deploy(model.eval())
        mode = 'deployed detector (switch_to_deploy; extract_feat + head forward)'
    shape = tuple(args.shape) if args.shape else (320, 320)
    check_input_size(model, shape, '--shape' if args.shape else 'the default shape')  # before any tracing
    res = model_complexity(model, shape, op_set=args.op_set)
    res.update(config=args.config, mode=mode, training_only_params=0 if args.deploy else training_only)
    return res


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from shufflenet_det.utils.io import write_json_atomic
    try:
        if args.table:
            table, rows = run_table(args)
            print(table)
            result: Any = rows
        else:
            result = run_backbone(args) if args.backbone else run_detector(args)
            result['input_shape'] = list(result['input_shape'])
            for key in ('out_channels', 'out_strides'):
                if key in result:
                    result[key] = list(result[key])
            print(f"mode: {result['mode']}\ninput shape: {tuple(result['input_shape'])}\n"
                  f"op set: {result['op_set']}\n"
                  + (f"out channels: {result['out_channels']}  strides: {result['out_strides']}\n"
                     if 'out_channels' in result else '')
                  + f"FLOPs (multiply-adds): {_fmt(result['flops'], 1e9, 3)} G ({result['flops']:,})\n"
                    f"params: {_fmt(result['params'], 1e6, 3)} M ({result['params']:,})"
                  + (f"\n  of which training-only: {_fmt(result['training_only_params'], 1e6, 3)} M (absent with "
                     '--deploy)' if result.get('training_only_params') else ''))
        if args.json_out:
            print(f'saved {write_json_atomic(result, args.json_out, what="--json output")}')
    except ValueError as exc:  # bad backbone arguments, a broken config (ConfigError), an unwritable --json
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
