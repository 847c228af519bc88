"""Latency and throughput of ShuffleNet backbones and detectors across deployment paths, one run, one machine.

Backends (see shufflenet_det/benchmark/backends.py): torch-plain (eager NCHW with BN: the torchvision formulation,
baseline), torch-folded, torch-cl (BN folded + channels_last + inference_mode), torch-jit (trace + freeze +
optimize_for_inference), torch-compile (opt-in), ort-plain (ONNX Runtime on the plain export: baseline), ort-deploy
(BN folded + onnxslim + tuned session), ncnn, and on a GPU ort-cuda / cuda-fp32 / cuda-fp16 (skipped with a message
when there is no CUDA device). The ncnn rows are timed by the torch-free runtime's ncnn runner (python -m
shufflenet_det.runtime ncnn) in a child process, as on a board. A backbone run also lists the ShuffleNetV2 1.0x of
torchvision and mmpretrain when they import (reported as unavailable otherwise, never emulated). Results: a table on
stdout, JSON (--out), and a PNG with --plot (latency vs input size, or mAP vs latency with --map).

Peer mode: --peer-onnx FILE and/or --peer-ncnn PARAM BIN put another project's export of the same network (e.g.
NanoDet-Plus-m exported by nanodet's tools/export_onnx.py, torchvision's ShuffleNetV2) next to this project's export
in the same run, same input size, threads, runs and rounds: the ONNX peer in ONNX Runtime with the session options of
the ort-deploy / ort-raw rows, in the same rounds (rows 'peer:<file stem>' / ort-peer); the ncnn peer in the child
process of the ncnn row, interleaved with it, with the same ncnn options (rows ncnn-peer). Compared is the network
alone: with --config (a detector) the ort-raw row (no NMS) and the ncnn-raw row (the ncnn network without the numpy
post-processing, timed in the same child); with --backbone (or --what backbone) the ort-deploy and ncnn rows. The
compared rows are added to --backends when missing. Printed per size: '<model> HxW: ort-raw / peer onnx = 0.87x
(median a ms / b ms, ...)', stored as peer_ratios in the JSON. The peer files are checked before any timing (a
valid model, one NCHW input, its static dimensions equal to the benchmarked input: one --sizes for a static peer).

Examples::

    # ShuffleNetV2 1.0x backbone at 224x224, batch 1, 2 threads: every deploy path and the peers side by side
    python tools/analysis_tools/benchmark.py --backbone ShuffleNetV2 --backbone-args '{"out_indices": [4]}' \\
        --sizes 224 --threads 2 --runs 200 --warmup 20 --out work_dirs/bench/shufflenetv2_224.json
    # RetinaNet-ShuffleNetV2 1.0x next to mmdet's RetinaNet-R18 at 320x320, ONNX Runtime
    python tools/analysis_tools/benchmark.py --config configs/retinanet_shufflenetv2.py \\
        mmdet::retinanet/retinanet_r18_fpn_1x_coco.py --sizes 320 --backends ort-plain ort-deploy \\
        --out work_dirs/bench/retinanet_320.json
    # mAP against latency, the mAPs from tools/main_job.py
    python tools/analysis_tools/benchmark.py --config configs/mini/retinanet_shufflenetv2-1x_fpn_mini-coco.py \
        --sizes 256 --backends ort-deploy --results work_dirs/main_job/*/results.json --plot map_latency.png
    # latency against input size, as a picture
    python tools/analysis_tools/benchmark.py --backbone ShuffleNetV2 --sizes 224 320 416 --plot bench.png
    # peer mode: lite-m next to NanoDet-Plus-m as nanodet exports it (tests/official_refs/export_peers.py makes the
    # files from the test re-implementation; with a nanodet checkout, pass nanodet's own export)
    (cd tests && ../.venv/bin/python -m official_refs.export_peers --what nanodet-plus-m_320 \
        --onnx ../work_dirs/peers/nanodet-plus-m_320.onnx --ncnn ../work_dirs/peers/nanodet-plus-m_320)
    python tools/analysis_tools/benchmark.py --config configs/lite/lite-m_shufflenetv2-1x_300e_coco-320.py \
        --sizes 320 --backends ort-raw ncnn --peer-onnx work_dirs/peers/nanodet-plus-m_320.onnx \
        --peer-ncnn work_dirs/peers/nanodet-plus-m_320.param work_dirs/peers/nanodet-plus-m_320.bin \
        --runs 300 --warmup 30 --rounds 30 --out work_dirs/bench/lite-m_vs_nanodet_320.json
    # peer mode: the ShuffleNetV2 1.0x backbone (stages 2-4) next to torchvision's modules up to the same point
    (cd tests && ../.venv-openmmlab/bin/python -m official_refs.export_peers \
        --what torchvision-shufflenetv2-1.0x --onnx ../work_dirs/peers/torchvision_shufflenetv2_224.onnx)
    python tools/analysis_tools/benchmark.py --backbone ShuffleNetV2 --sizes 224 --backends ort-deploy \
        --no-peers --peer-onnx work_dirs/peers/torchvision_shufflenetv2_224.onnx --runs 300 --warmup 30 --rounds 30
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from shufflenet_det.utils.cli import (
    add_config_arg,
    check_output_path,
    fail,
    refuse_input_overwrite,
    run_main,
    tool_parser,
)

#: Where tools/main_job.py writes a config's results by default (work_dirs/main_job/<config name>/results.json).
MAIN_JOB_DIR = Path(__file__).resolve().parents[2] / 'work_dirs' / 'main_job'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from shufflenet_det.benchmark import ALL_BACKENDS, DEFAULT_BACKENDS
    parser = tool_parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_argument_group('models (one of)')
    src.add_argument('--backbone', metavar='TYPE', help='a registered backbone type, e.g. ShuffleNetV2')
    src.add_argument('--backbone-args', default='{}', metavar='JSON',
                     help='backbone keyword arguments as JSON (default: the type\'s defaults)')
    add_config_arg(src, 'detector config(s), e.g. configs/retinanet_shufflenetv2.py '
                        'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py (weights: random init)',
                   option=True, nargs='+', metavar='CFG')
    src.add_argument('--what', choices=['detector', 'backbone'], default='detector',
                     help='with --config: time the whole detector (default) or its backbone')
    src.add_argument('--add-backbone', metavar='TYPE',
                     help='with --config: also time this registered backbone (with --backbone-args) in the same run, '
                          'e.g. the bare backbone a detector is compared with; the ratios of each detector\'s '
                          'ort-raw / ncnn rows to its ort-deploy / ncnn rows are printed and stored')
    run = parser.add_argument_group('run')
    run.add_argument('--backends', nargs='+', default=list(DEFAULT_BACKENDS), choices=list(ALL_BACKENDS),
                     metavar='BACKEND', help=f'subset of {", ".join(ALL_BACKENDS)} (default: all but torch-compile)')
    run.add_argument('--sizes', nargs='+', default=None, metavar='S',
                     help='input sizes, S or HxW (default 224 for backbones, 320 for detectors)')
    run.add_argument('--batch', type=int, default=1)
    run.add_argument('--threads', type=int, default=2, help='threads of every backend (default 2)')
    run.add_argument('--runs', type=int, default=100, help='timed runs per row (default 100)')
    run.add_argument('--warmup', type=int, default=10, help='untimed runs first (default 10)')
    run.add_argument('--rounds', type=int, default=5,
                     help='the runs of every backend are split into this many rounds, so that a load change hits '
                          'all backends alike; each block is re-warmed (default 5)')
    run.add_argument('--no-peers', action='store_true', help='do not list torchvision / mmpretrain models')
    run.add_argument('--peer-backends', nargs='+', default=['torch-plain', 'torch-cl'], choices=list(ALL_BACKENDS),
                     metavar='BACKEND', help='backends of the torchvision / mmpretrain ShuffleNetV2 1.0x rows '
                     '(default: torch-plain torch-cl; ort-plain times their plain ONNX export)')
    run.add_argument('--no-progress', action='store_true', help='no progress bar')
    peer = parser.add_argument_group('peer mode (see above)')
    peer.add_argument('--peer-onnx', nargs='+', default=[], metavar='FILE',
                      help='other ONNX exports of the same network (another project\'s; also variants of it or of '
                           'this project\'s export), each timed next to the ort-raw row (--config) or the ort-deploy '
                           'row (--backbone) in the same rounds and session options; that row is added to '
                           '--backends when missing; the files\' names (without extension) must differ')
    peer.add_argument('--peer-ncnn', nargs=2, metavar=('PARAM', 'BIN'),
                      help='another project\'s ncnn export (.param and .bin) of the same network, timed in the ncnn '
                           'row\'s child process interleaved with it; compared with ncnn-raw (--config: the network '
                           'without post-processing) or ncnn (--backbone); ncnn is added to --backends when missing')
    out = parser.add_argument_group('output')
    out.add_argument('--out', help='JSON results file')
    out.add_argument('--plot', help='PNG: latency vs input size (or mAP vs latency with --map)')
    out.add_argument('--map', nargs='+', default=[], metavar='MODEL=MAP',
                     help='mAP per model name (as in the table) for the mAP-vs-latency plot')
    out.add_argument('--results', nargs='+', default=[], metavar='JSON',
                     help='results.json files of tools/main_job.py: their config name and bbox_mAP feed the '
                          'mAP-vs-latency plot (benchmark the same configs with --config); a --config without one '
                          'uses work_dirs/main_job/<config name>/results.json when present')
    args = parser.parse_args(argv)
    if bool(args.backbone) == bool(args.config):
        parser.error('give exactly one of --backbone and --config')
    if args.add_backbone and not args.config:
        parser.error('--add-backbone goes with --config (with --backbone, time that backbone alone)')
    for name, value in (('--batch', args.batch), ('--threads', args.threads), ('--runs', args.runs),
                        ('--rounds', args.rounds)):
        if value < 1:
            parser.error(f'{name} must be >= 1, got {value}')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    try:
        args.sizes = [_size(s) for s in (args.sizes or ['224' if args.backbone or args.what == 'backbone'
                                                         else '320'])]
    except ValueError as exc:
        parser.error(str(exc))
    try:
        args.maps = {k: float(v) for k, v in (item.rsplit('=', 1) for item in args.map)}
    except ValueError:
        parser.error(f'--map entries must be MODEL=NUMBER, got {args.map}')
    for path in args.results:
        try:
            with open(path) as f:
                res = json.load(f)
            name = os.path.splitext(os.path.basename(res['config']))[0]
            args.maps[name] = float(res['metrics']['bbox_mAP'])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f'--results {path!r}: not a tools/main_job.py results file ({type(exc).__name__}: {exc})')
    args.maps_found = {}
    for cfg in args.config or []:
        name = os.path.splitext(os.path.basename(cfg))[0]
        found = MAIN_JOB_DIR / name / 'results.json'
        if name not in args.maps and found.is_file():
            try:
                args.maps[name] = float(json.loads(found.read_text())['metrics']['bbox_mAP'])
                args.maps_found[name] = str(found)
            except (OSError, ValueError, KeyError, TypeError):
                pass  # an unreadable file of an interrupted job: no mAP for that model
    return args


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unwritable outputs and outputs over inputs before any timing (a run can take many minutes)."""
    if args.out and args.plot and Path(args.out).resolve() == Path(args.plot).resolve():
        fail(f'--out and --plot are the same file {args.out!r}')
    inputs = [('--config', c) for c in args.config or []] + [('--results', r) for r in args.results]
    inputs += [('--peer-onnx', f) for f in args.peer_onnx] + [('--peer-ncnn', f) for f in args.peer_ncnn or []]
    refuse_input_overwrite([('--out', args.out), ('--plot', args.plot)], inputs)
    check_output_path(args.out, '--out')
    check_output_path(args.plot, '--plot')


def _check_peers(args: argparse.Namespace) -> list:
    """The checked peer files (``shufflenet_det.benchmark.PeerFile``), before any model is built or timed; the
    compared backends added to ``args.backends`` (with a line saying so). Ends the tool naming the option and the
    file for a bad one."""
    from shufflenet_det.benchmark import check_peer_ncnn, check_peer_onnx, check_peer_shape, compared_backend
    if not (args.peer_onnx or args.peer_ncnn):
        return []
    if args.config and len(args.config) > 1:
        fail(f'--peer-onnx / --peer-ncnn compare the peer with one model: give one --config, not {len(args.config)}')
    stems = [Path(f).stem for f in args.peer_onnx]
    if len(set(stems)) < len(stems):
        fail('--peer-onnx: the files name their rows (peer:<file name without its extension>), so those names must '
             f'differ: {args.peer_onnx}')
    detector = bool(args.config) and args.what == 'detector'
    try:
        peers = [check_peer_onnx(f) for f in args.peer_onnx] + \
            ([check_peer_ncnn(*args.peer_ncnn)] if args.peer_ncnn else [])
        for peer in peers:
            check_peer_shape(peer, args.sizes, args.batch, detector)
    except ValueError as exc:
        fail(str(exc))
    for peer in peers:
        needed = 'ncnn' if peer.kind == 'ncnn' else compared_backend(peer.kind, detector)
        if needed not in args.backends:
            args.backends = [*args.backends, needed]
            print(f'[benchmark] {peer.option}: added the {needed} row to --backends (the peer is compared with '
                  f'{compared_backend(peer.kind, detector)})')
    return peers


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split('x')
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise ValueError(f'--sizes: {text!r} is not S or HxW') from None
    if h < 32 or w < 32 or len(parts) > 2:
        raise ValueError(f'--sizes: {text!r} must be S or HxW with sizes >= 32')
    return h, w


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    _check_outputs(args)
    peer_files = _check_peers(args)
    from shufflenet_det.benchmark import (
        backbone_ratios,
        environment,
        format_peer_ratio,
        format_summary,
        format_table,
        peer_models,
        peer_ratios,
        plot,
        run_benchmark,
        summarize,
    )
    from shufflenet_det.deploy.cli import backbone_from_args, parse_backbone_args
    from shufflenet_det.utils import build_detector, write_json_atomic

    models = []
    if args.backbone:
        bb_args = parse_backbone_args(args.backbone_args)
        try:
            model = backbone_from_args(args.backbone, bb_args)
        except ValueError as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        label = args.backbone + (f' {bb_args}' if bb_args else '')
        models.append((f'shufflenet_det {label}', model))
        peers = [] if args.no_peers or args.backbone != 'ShuffleNetV2' or \
            float(bb_args.get('widen_factor', 1.0)) != 1.0 else peer_models()
    else:
        peers = []
        if args.add_backbone:
            try:
                bb_args = parse_backbone_args(args.backbone_args)
                model = backbone_from_args(args.add_backbone, bb_args)
            except ValueError as exc:
                print(f'error: {exc}', file=sys.stderr)
                return 2
            models.append((f'shufflenet_det {args.add_backbone}' + (f' {bb_args}' if bb_args else ''), model))
        for cfg in args.config:
            try:
                det = build_detector(cfg)
            except ValueError as exc:
                print(f'error: {exc}', file=sys.stderr)
                return 2
            name = os.path.splitext(os.path.basename(cfg))[0]
            models.append((name if args.what == 'detector' else f'{name} backbone',
                           det if args.what == 'detector' else det.backbone))
    env = environment()
    t0 = time.time()
    rows = run_benchmark(models, args.sizes, args.backends, batch=args.batch, threads=args.threads,
                         runs=args.runs, warmup=args.warmup, peers=peers, peer_backends=args.peer_backends,
                         progress=not args.no_progress,
                         rounds=args.rounds, peer_files=peer_files, peer_partner=models[-1][0])
    env['loadavg_1m_end'] = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    print(format_table(rows))
    summary = summarize(rows)
    if summary:
        print(format_summary(summary))
    versus = backbone_ratios(rows, models[0][0]) if args.add_backbone else []
    for v in versus:
        print(f"[benchmark] {v['model']} {v['size'][0]}x{v['size'][1]}: {v['backend']} {v['median_ms']:.2f} ms = "
              f"{v['ratio']:.2f}x {v['reference']} {v['reference_backend']} ({v['reference_ms']:.2f} ms)")
    detector = bool(args.config) and args.what == 'detector'
    ratios = peer_ratios(rows, peer_files, models[-1][0], detector)
    for v in ratios:
        print(f'[benchmark] {format_peer_ratio(v)}')
    print(f'[benchmark] {len(rows)} rows in {time.time() - t0:.0f} s; batch {args.batch}, {args.threads} threads, '
          f'{args.runs} runs after {args.warmup} warm-up; load average {env.get("loadavg_1m")} -> '
          f'{env.get("loadavg_1m_end")} (other processes on the machine make absolute numbers noisy; the ratios '
          'within this run are the comparable part)')
    if args.out:
        settings = dict(sizes=[list(s) for s in args.sizes], batch=args.batch, threads=args.threads, runs=args.runs,
                        warmup=args.warmup, rounds=args.rounds, backends=args.backends,
                        peer_onnx=args.peer_onnx, peer_ncnn=args.peer_ncnn)
        write_json_atomic(dict(command=sys.argv, environment=env, settings=settings,
                               rows=[r.as_dict() for r in rows], summary=summary, versus_backbone=versus,
                               peer_ratios=ratios),
                          args.out, 'benchmark results')
        print(f'[benchmark] wrote {args.out}')
    for name, found in args.maps_found.items():
        print(f'[benchmark] mAP of {name}: {args.maps[name]:.3f} from {found}')
    if args.plot:
        plot(rows, args.plot, args.maps or None)
        print(f'[benchmark] wrote {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
