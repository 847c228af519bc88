"""The board runners' command lines: run (and time) an exported model with numpy + ncnn or numpy + onnxruntime.

``python -m shufflenet_det.runtime ncnn MODEL.param ...`` and ``python -m shufflenet_det.runtime onnx MODEL.onnx ...``
(``tools/deploy/ncnn_runner.py`` and ``onnx_runner.py`` are the same commands); on a board, with this folder copied
alone as ``runtime/``, ``python -m runtime ncnn ...``. Detector exports without NMS are decoded in numpy with the
parameters of the model's report (:mod:`.postprocess`); backbone exports (ncnn) print their feature shapes.

Inputs: ``--image`` (``.ppm`` / ``.pgm`` / ``.npy`` read with numpy, other formats with OpenCV or Pillow when
installed; resized keeping the ratio, normalised and padded bottom/right with 0 as mmdet's test pipeline does),
``--tensor`` (an already normalised ``.npy``, fed as it is: detections in input pixels), ``--generate`` (ncnn: write
a synthetic test picture and use it), or by default a generated picture of the input size.

Errors (a missing or malformed file, a size the static model was not exported at, an output over an input) end as
one ``error:`` line with exit status 2, SIGTERM / SIGINT with 143 / 130 and no half-written output
(:mod:`.errors`; ``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .images import load_tensor, make_test_picture, read_image, write_ppm
from .io import same_file, write_json_atomic
from .timing import compare_with_first, time_calls, time_in_rounds

NCNN_HELP = '''Run (and time) an ncnn model exported by tools/deploy/export_ncnn.py: numpy + the ncnn wheel, no torch.

Detector models (raw head outputs) are post-processed in numpy - priors, box decoding, class-aware NMS, as mmdet's
RetinaHead or the lite detectors' GFL head - with the parameters of the .json report next to the model; backbone
models print their feature shapes.

examples:
  %(prog)s work_dirs/deploy/retinanet_mini.param --image demo.ppm --out-json dets.json
  %(prog)s work_dirs/deploy/shufflenetv2_backbone.param --bench 100 --threads 4
  %(prog)s work_dirs/deploy/lite-m.param --bench 300 --rounds 30 --peer nanodet.param nanodet.bin

--peer times another ncnn model (any .param / .bin pair, e.g. another project's export of the same network) on
the same input with the same options, interleaved with this one in --rounds rounds of consecutive, re-warmed calls;
for a detector the model's network alone (no post-processing) is timed in the same rounds too ("network_latency"
in --out-json). The benchmark's peer mode runs this.
'''
MAIN_HELP = '''Run (and time) a model exported by tools/deploy/export_ncnn.py or export_onnx.py with numpy + ncnn or
numpy + onnxruntime only: no torch, mmcv or mmdet; profile any ncnn model layer by layer (ncnn-profile). On a board,
copy the folder shufflenet_det/runtime/ alone and run it as python -m runtime ncnn|onnx|ncnn-profile ... from the
folder that holds it.

Errors end as one "error:" line with exit status 2 (--debug shows the traceback); SIGTERM / SIGINT exit with
143 / 130 and leave no half-written output.

examples:
  %(prog)s ncnn work_dirs/deploy/lite-m.param --image demo.ppm --out-json dets.json
  %(prog)s onnx work_dirs/deploy/lite-m_raw.onnx --threads 2 --bench 100
  %(prog)s ncnn-profile work_dirs/deploy/lite-m.param work_dirs/deploy/lite-m.bin --shape 3 320 320
'''
PROFILE_HELP = '''Where an ncnn model spends its time, layer by layer, with this machine's ncnn (any .param / .bin
pair; numpy + ncnn, no torch).

Each layer is timed as a network of its own on the blobs the whole network gives it (packed and stored as there),
in rounds interleaved with the whole network (shufflenet_det/runtime/ncnn_profile.py); the layer times add up to
the network's within a few per cent, which the output states. Printed: the time in convolutions (and their
multiply-adds and rate), data movement (Concat, Slice, ShuffleChannel, Reshape, Permute, Interp, ...) and the
rest, per layer type, the slowest layers. With --peer (another model of the same network): the ratio of the
networks' times, and that ratio with every layer of the model outside its convolutions removed.

examples:
  %(prog)s work_dirs/deploy/lite-m.param work_dirs/deploy/lite-m.bin --shape 3 320 320 --threads 2
  %(prog)s lite-m.param lite-m.bin --shape 3 320 320 --peer nanodet.param nanodet.bin --out profile.json
'''
ONNX_HELP = '''Run (and time) a detector exported by tools/deploy/export_onnx.py in ONNX Runtime: numpy +
onnxruntime, no torch.

Exports without NMS (--no-nms) are decoded in numpy - priors, box decoding, class-aware NMS, as mmdet does - with the
parameters of the model's .onnx.json report; exports with NMS in the graph are only unpadded.

examples:
  %(prog)s work_dirs/deploy/lite_raw.onnx --image demo.ppm --score-thr 0.3
  %(prog)s work_dirs/deploy/lite_raw.onnx --threads 2 --bench 100 --out-json r.json
'''


# ---------------------------------------------------------------------------------------------------- arguments
def _add_common(parser: argparse.ArgumentParser, threads_help: str, threads_default: int) -> Any:
    source = parser.add_mutually_exclusive_group()  # one input: a picture, a ready tensor, or a generated picture
    source.add_argument('--image', help='input image (.ppm/.pgm/.npy, others with OpenCV or Pillow; default: a '
                        'generated test picture of the input size)')
    source.add_argument('--tensor', metavar='NPY',
                        help='an already normalised float input, (3, H, W) or (1, 3, H, W) .npy, fed as it is (no '
                             'resize / normalisation; detections in input pixels); a dynamic export takes H and W '
                             'that are multiples of its padding divisor')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size for a dynamic export (default: the export size); a static export only '
                             'accepts its own size (recorded in its report)')
    parser.add_argument('--threads', type=int, default=threads_default, help=threads_help)
    parser.add_argument('--score-thr', type=float, help='print/keep only detections with at least this score')
    parser.add_argument('--out-json', help='write the detections (or feature shapes) and timings here')
    parser.add_argument('--bench', type=int, default=0, metavar='RUNS',
                        help='time RUNS calls (detectors: network + numpy post-processing)')
    parser.add_argument('--warmup', type=int, default=10, help='untimed calls before --bench (default 10)')
    return source


def add_ncnn_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the ncnn runner."""
    parser.add_argument('model', help='the .param file (its .bin and .json must sit next to it)')
    source = _add_common(parser, 'ncnn threads (default 1)', 1)
    source.add_argument('--generate', metavar='PPM', help='write a synthetic test picture to this .ppm and use it')
    parser.add_argument('--no-fp16', action='store_true', help='disable fp16 storage/arithmetic')
    parser.add_argument('--peer', nargs=2, metavar=('PARAM', 'BIN'),
                        help='with --bench: also time this other ncnn model (any .param / .bin pair, no report; '
                             'its input and output blobs read from the .param) on the same input with the same '
                             'options, interleaved with the model in --rounds rounds (the benchmark\'s peer mode)')
    parser.add_argument('--rounds', type=int, default=5,
                        help='with --peer: rounds of consecutive, re-warmed calls per model (default 5)')


def add_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the ONNX Runtime runner."""
    parser.add_argument('model', help='the .onnx detector (its .onnx.json report must sit next to it)')
    _add_common(parser, 'ONNX Runtime threads (0: its default)', 0)


def _parser(kind: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=NCNN_HELP if kind == 'ncnn' else ONNX_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    (add_ncnn_arguments if kind == 'ncnn' else add_onnx_arguments)(parser)
    return parser


def check_arguments(args: argparse.Namespace, min_threads: int) -> None:
    """ValueError naming the option for a count, size or threshold out of range."""
    if args.threads < min_threads:
        raise ValueError(f'--threads must be >= {min_threads}, got {args.threads}')
    if args.bench < 0 or args.warmup < 0:
        raise ValueError(f'--bench and --warmup must be >= 0, got {args.bench} and {args.warmup}')
    if args.size is not None and min(args.size) <= 0:
        raise ValueError(f'--size must be two positive integers H W, got {args.size[0]} {args.size[1]}')
    if args.score_thr is not None and not 0.0 <= args.score_thr <= 1.0:  # also refuses nan
        raise ValueError(f'--score-thr must be a score in [0, 1], got {args.score_thr}')
    if getattr(args, 'peer', None) and (args.bench < 1 or args.rounds < 1):
        raise ValueError(f'--peer times two models: it needs --bench >= 1 and --rounds >= 1, got --bench '
                         f'{args.bench} and --rounds {args.rounds}')


def check_outputs(outputs: Sequence[tuple[str, Optional[str]]], inputs: Sequence[tuple[str, Optional[str]]]) -> None:
    """Before any work (``--bench`` can be long): ValueError naming the option when an output is one of the
    ``inputs`` or another output, a folder, or cannot be created (missing or read-only folder)."""
    given = [(option, path) for option, path in outputs if path]
    for i, (option, out) in enumerate(given):
        for what, path in inputs:
            if path and same_file(out, path):
                raise ValueError(f'{option} {out!r} is the same file as {what} {path!r}: refusing to overwrite '
                                 'an input')
        for other, path in given[:i]:
            if same_file(out, path):
                raise ValueError(f'{other} and {option} are the same file {out!r}: give two paths')
        folder = os.path.dirname(os.path.abspath(out))
        why = ('it is a folder' if os.path.isdir(out) else
               f'{folder!r} is a file' if os.path.exists(folder) and not os.path.isdir(folder) else
               f'folder {folder!r} does not exist' if not os.path.isdir(folder) else
               f'folder {folder!r} is not writable' if not os.access(folder, os.W_OK | os.X_OK) else None)
        if why:
            raise ValueError(f'{option} {out!r} cannot be written: {why}')


def check_size(size: Optional[Sequence[int]], dynamic: bool, export_hw: Sequence[int], model: str,
               report: str) -> None:
    """ValueError unless ``--size`` is omitted, or a static model's own export size."""
    if size is not None and not dynamic and list(size) != list(export_hw):
        raise ValueError(f'--size {size[0]} {size[1]} does not match the static model {model!r}, exported at '
                         f'{export_hw[0]}x{export_hw[1]} (see {report!r}); omit --size, or export with --dynamic')


# ---------------------------------------------------------------------------------------------------- results
def detection_rows(dets: dict[str, np.ndarray], scale: float, score_thr: Optional[float],
                   names: Optional[Sequence[str]]) -> list[dict[str, Any]]:
    """Detections as JSON rows (boxes divided by the resize ``scale``: original-image pixels), those below
    ``score_thr`` left out."""
    keep = dets['scores'] >= (score_thr if score_thr is not None else -1.0)
    return [dict(label=int(lab), name=(names[int(lab)] if names else None), score=round(float(s), 5),
                 box=[round(float(v) / scale, 2) for v in b])
            for b, s, lab in zip(dets['boxes'][keep], dets['scores'][keep], dets['labels'][keep])]


def print_detections(rows: Sequence[dict[str, Any]], limit: int = 20) -> None:
    """The count and the first ``limit`` detections on stdout."""
    print(f'{len(rows)} detections')
    for d in rows[:limit]:
        print(f"  label {d['label']}{' ' + d['name'] if d['name'] else ''} score {d['score']:.3f} box {d['box']}")


def _bench(result: dict[str, Any], fn: Callable[[], Any], args: argparse.Namespace, what: str) -> None:
    if args.bench:
        lat = result['latency'] = time_calls(fn, args.bench, args.warmup)
        print(f"latency over {args.bench} runs ({what}): median {lat['median_ms']:.2f} ms, "
              f"p90 {lat['p90_ms']:.2f} ms, min {lat['min_ms']:.2f} ms")


def _bench_with_peer(result: dict[str, Any], model: Any, forward: Callable[[], Any], peer: Any, mat: Any,
                     args: argparse.Namespace, threads: str) -> None:
    """``--peer``: the model (detectors: also its network alone) and the peer timed in ``--rounds`` rounds
    (:func:`.timing.time_in_rounds`); ``latency``, ``network_latency`` (detectors) and ``peer`` in ``result``."""
    fns = [forward] + ([lambda: model.run(mat)] if model.is_detector else []) + [lambda: peer.run(mat)]
    timed: list[dict[str, float]] = []
    for stats in time_in_rounds(fns, args.bench, args.warmup, rounds=args.rounds):
        if isinstance(stats, Exception):
            raise stats
        timed.append(stats)
    counts = dict(runs=args.bench, warmup=args.warmup, rounds=min(args.rounds, args.bench))
    result['latency'] = dict(timed[0], **counts)
    labels = ['model' + (' (network + post-processing)' if model.is_detector else '')]
    if model.is_detector:
        result['network_latency'] = dict(timed[1], **counts)
        labels.append('model network alone')
    result['peer'] = dict(model=os.path.basename(peer.param), weights=os.path.basename(peer.bin),
                          input_blob=peer.info.input_blob, output_blobs=peer.info.output_blobs,
                          latency=dict(timed[-1], **counts))
    labels.append(f'peer {os.path.basename(peer.param)}')
    print(f'latency over {args.bench} runs in {counts["rounds"]} interleaved rounds ({threads}):')
    for label, stats in zip(labels, timed):
        print(f"  {label}: median {stats['median_ms']:.2f} ms, p90 {stats['p90_ms']:.2f} ms, "
              f"min {stats['min_ms']:.2f} ms")


# ---------------------------------------------------------------------------------------------------- runners
def run_ncnn(args: argparse.Namespace) -> int:
    """The ncnn runner on parsed arguments (:func:`add_ncnn_arguments`); 0 on success, ValueError for bad input."""
    from .ncnn_model import NcnnModel
    from .ncnn_param import NcnnNet
    check_arguments(args, min_threads=1)
    model = NcnnModel(args.model, threads=args.threads, fp16=not args.no_fp16)
    peer = NcnnNet(args.peer[0], args.peer[1], threads=args.threads, fp16=not args.no_fp16,
                   what='--peer') if args.peer else None
    check_outputs([('--out-json', args.out_json), ('--generate', args.generate)],
                  [('the model', model.param), ('its weights', model.bin), ('its report', model.meta_path),
                   ('--image', args.image), ('--tensor', args.tensor), ('--peer', peer.param if peer else None),
                   ('--peer', peer.bin if peer else None)])
    check_size(args.size, model.dynamic, model.export_hw, model.param, model.meta_path)
    keep: Any
    if args.tensor:
        x = load_tensor(args.tensor, '--tensor')
        model.check_input_hw(x.shape[2:], f'--tensor {args.tensor!r}')
        (mat, keep), scale = model.tensor_mat(x), 1.0
    else:
        if args.image:
            img = read_image(args.image, '--image')
        else:
            shape = args.size or model.export_hw
            img = make_test_picture(int(shape[0]), int(shape[1]))
            if args.generate:
                write_ppm(args.generate, img, '--generate')
        mat, scale, keep = model.preprocess(img, args.size)
    hw = (mat.h, mat.w)
    result: dict[str, Any] = dict(model=os.path.basename(model.param),
                                  image=args.tensor or args.image or args.generate or 'generated',
                                  threads=args.threads, fp16=not args.no_fp16)

    def forward() -> Any:
        outs = model.run(mat)
        return model.decode(outs, hw) if model.is_detector else outs

    if model.is_detector:
        result['detections'] = detection_rows(forward(), scale, args.score_thr, model.meta.get('classes'))
        print_detections(result['detections'])
    else:
        result['outputs'] = {name: list(o.shape) for name, o in zip(model.output_blobs, forward())}
        print('outputs: ' + ', '.join(f'{k} {v}' for k, v in result['outputs'].items()))
    threads = f"{args.threads} thread{'s' if args.threads > 1 else ''}"
    if peer is None:
        _bench(result, forward, args, threads)
    else:
        peer.check_input_chw((mat.c, mat.h, mat.w), 'the input')
        _bench_with_peer(result, model, forward, peer, mat, args, threads)
    del keep
    if args.out_json:
        write_json_atomic(result, args.out_json, '--out-json')
    return 0


def run_onnx(args: argparse.Namespace) -> int:
    """The ONNX Runtime runner on parsed arguments (:func:`add_onnx_arguments`); 0 on success."""
    from .onnx_model import OnnxModel
    check_arguments(args, min_threads=0)
    model = OnnxModel(args.model, args.threads)
    check_outputs([('--out-json', args.out_json)], [('the model', model.path), ('its report', model.meta_path),
                                                    ('--image', args.image), ('--tensor', args.tensor)])
    check_size(args.size, model.dynamic, model.export_hw, model.path, model.meta_path)
    if args.tensor:
        x, scale = load_tensor(args.tensor, '--tensor'), 1.0
        model.check_input_hw(x.shape[2:], f'--tensor {args.tensor!r}')
    else:
        shape = args.size or model.export_hw
        img = read_image(args.image, '--image') if args.image else make_test_picture(int(shape[0]), int(shape[1]))
        x, scale = model.preprocess(img, args.size)
    result: dict[str, Any] = dict(model=os.path.basename(model.path), image=args.tensor or args.image or 'generated',
                                  threads=args.threads, with_nms=model.with_nms)
    result['detections'] = detection_rows(model.detect(x), scale, args.score_thr, model.meta.get('classes'))
    print_detections(result['detections'])
    threads = {0: 'default threads', 1: '1 thread'}.get(args.threads, f'{args.threads} threads')
    _bench(result, lambda: model.detect(x), args, f'{threads}, network + post-processing')
    if args.out_json:
        write_json_atomic(result, args.out_json, '--out-json')
    return 0


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('param', help='the model .param')
    parser.add_argument('bin', help='its .bin')
    parser.add_argument('--shape', type=int, nargs=3, metavar=('C', 'H', 'W'),
                        help='input shape where the .param leaves it open (pnnx writes none)')
    parser.add_argument('--peer', nargs=2, action='append', default=[], metavar=('PARAM', 'BIN'),
                        help='another ncnn model profiled in the same way and compared (repeatable)')
    parser.add_argument('--threads', type=int, default=1, help='ncnn threads (default 1)')
    parser.add_argument('--runs', type=int, default=100, help='timed runs of the network and of each layer')
    parser.add_argument('--warmup', type=int, default=10, help='untimed runs first, spread over the rounds')
    parser.add_argument('--rounds', type=int, default=10, help='interleaved rounds (default 10)')
    parser.add_argument('--no-fp16', action='store_true', help="turn ncnn's fp16 storage and arithmetic off")
    parser.add_argument('--top', type=int, default=10, help='slowest layers listed (default 10; 0: none)')
    parser.add_argument('--out', help='JSON file for the profiles')


def run_profile(args: argparse.Namespace) -> int:
    """``ncnn-profile``: profile the model (and each ``--peer``), print, write ``--out``."""
    from .ncnn_profile import format_ncnn_profile, ncnn_floor, profile_ncnn_models
    for name, low in (('threads', 1), ('runs', 1), ('warmup', 0), ('rounds', 1), ('top', 0)):
        if getattr(args, name) < low:
            raise ValueError(f'--{name} must be >= {low}, got {getattr(args, name)}')
    if args.rounds > args.runs:
        raise ValueError(f'--rounds ({args.rounds}) must not exceed --runs ({args.runs})')
    pairs = [('the model', args.param, args.bin)] + [('--peer', p, b) for p, b in args.peer]
    for i, (what, param, weights) in enumerate(pairs):
        for path in (param, weights):
            if not os.path.isfile(path):
                raise ValueError(f'{what} {path!r} does not exist')
        for other, earlier, _ in pairs[:i]:
            if same_file(param, earlier):
                raise ValueError(f'{what} {param!r} is the same file as {other} {earlier!r}: give each model once')
    check_outputs([('--out', args.out)], [(what, path) for what, param, weights in pairs for path in (param, weights)])
    profiles = profile_ncnn_models([(param, weights) for _, param, weights in pairs], args.shape, args.threads,
                                   args.runs, args.warmup, args.rounds, fp16=not args.no_fp16)
    for profile in profiles:
        print(format_ncnn_profile(profile, args.top))
    comparisons = compare_with_first([p.param for p in profiles], [p.net_ms for p in profiles],
                                     [ncnn_floor(profiles[0], p) for p in profiles[1:]])
    if args.out:
        write_json_atomic(dict(profiles=[p.to_json(args.top) for p in profiles], comparisons=comparisons,
                               fp16=not args.no_fp16), args.out, what='--out profile')
        print(f'saved {args.out}')
    return 0


def profile_main(argv: Optional[Sequence[str]] = None) -> int:
    """``ncnn_profile`` (``tools/analysis_tools/ncnn_profile.py``): run it under :func:`.errors.run_main`."""
    parser = argparse.ArgumentParser(description=PROFILE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser)
    return run_profile(parser.parse_args(argv))


def ncnn_main(argv: Optional[Sequence[str]] = None) -> int:
    """``ncnn_runner`` (``tools/deploy/ncnn_runner.py``): run it under :func:`.errors.run_main`."""
    return run_ncnn(_parser('ncnn').parse_args(argv))


def onnx_main(argv: Optional[Sequence[str]] = None) -> int:
    """``onnx_runner`` (``tools/deploy/onnx_runner.py``): run it under :func:`.errors.run_main`."""
    return run_onnx(_parser('onnx').parse_args(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m <runtime package> {ncnn,onnx,ncnn-profile} MODEL ...``: run it under :func:`.errors.run_main`."""
    package = __package__ or 'runtime'
    parser = argparse.ArgumentParser(prog=f'python -m {package}', description=MAIN_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True, metavar='{ncnn,onnx,ncnn-profile}')
    for kind, add, description, short in (
            ('ncnn', add_ncnn_arguments, NCNN_HELP, 'run an ncnn export'),
            ('onnx', add_onnx_arguments, ONNX_HELP, 'run an ONNX export in ONNX Runtime'),
            ('ncnn-profile', add_profile_arguments, PROFILE_HELP, 'time an ncnn model layer by layer')):
        add(commands.add_parser(kind, description=description, help=short,
                                formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    return {'ncnn': run_ncnn, 'onnx': run_onnx, 'ncnn-profile': run_profile}[args.command](args)
