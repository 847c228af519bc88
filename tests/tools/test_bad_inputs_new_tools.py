"""The tools added after the first bad-input probe (issue 12) fail safely too.

Covered: tools/deploy/quantize.py, tools/deploy/onnx_runner.py, tools/nas/search.py, tools/nas/split_coco.py,
tools/main_job.py (the lite models), tools/analysis_tools/side_by_side.py (--models), get_flops.py --deploy,
benchmark.py --add-backbone / the new backends, and convert_weights.py with the Megvii ShuffleNetV2.Large converter.

Each case gives one bad argument or file a user really produces and checks what the tool error policy promises
(:mod:`shufflenet_det.utils.cli`): a non-zero exit, one ``error:`` line naming the culprit, no traceback, and the work
folder exactly as it was (:func:`helpers.assert_clean_failure`). The cases run in-process through the tool's own
``run_main`` (an unexpected exception escapes it and fails the test, as a traceback would show); a subprocess per case
would pay the mmdet import (~5 s) a hundred times. Two SIGINT cases run the real command line in a subprocess. The
models are tiny (ShuffleNetV2 0.5x backbone and a small lite detector at 64x64), exported once for the module.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

from bad_inputs import EXLARGE, LARGE, run_in_process
from helpers import REPO, assert_clean_failure, load_script, tree_snapshot

pytestmark = pytest.mark.slow  # tool runs, exports, training: make test-fast leaves these out

TOOLS = {'quantize': 'tools/deploy/quantize.py', 'runner': 'tools/deploy/onnx_runner.py',
         'search': 'tools/nas/search.py', 'split': 'tools/nas/split_coco.py', 'main_job': 'tools/main_job.py',
         'side_by_side': 'tools/analysis_tools/side_by_side.py', 'flops': 'tools/analysis_tools/get_flops.py',
         'benchmark': 'tools/analysis_tools/benchmark.py', 'convert': 'tools/model_converters/convert_weights.py'}


@pytest.fixture(scope='module')
def tools() -> dict[str, ModuleType]:
    return {name: load_script(path, f'bad_new_{name}') for name, path in TOOLS.items()}


@pytest.fixture()
def read_only(ws: Path, monkeypatch) -> None:
    """``ws/ro`` is read-only (mode 0555); root passes every permission check, so there the check the tools make
    (``os.access``) is answered as for any other user."""
    ro = ws / 'ro'
    if os.access(ro, os.W_OK):
        real = os.access
        monkeypatch.setattr(os, 'access', lambda p, mode, *a, **k: False if Path(p).resolve() == ro.resolve()
                            and mode & os.W_OK else real(p, mode, *a, **k))


# ------------------------------------------------------------------------------------------------------ the cases
def _cases() -> list[tuple[str, str, list[str], list[str]]]:
    """``(id, tool, argv ({ws} = the work folder), strings the message must name)``."""
    q_fast = ['--num-calib', '2', '--sensitivity-images', '0', '--bench-runs', '0']
    lite, cfg = '{ws}/lite.onnx', ['--config', '{ws}/tiny.py']
    ann = '{ws}/mini/annotations/instances_train2017.json'
    split_outs = ['--out-train', '{ws}/t.json', '--out-val', '{ws}/v.json']
    search = ['{ws}/search.py', '{ws}/supernet.pth']
    conv = ['--src', 'megvii', '--type', 'ShuffleNetV2Large']
    as_large = ['--cfg-options', f'arch={json.dumps(LARGE)}']
    as_exlarge = ['--cfg-options', f'arch={json.dumps(EXLARGE)}']
    job = ['--work-dir', '{ws}/job', '--data-root', '{ws}/no_data']
    sbs = ['--out', '{ws}/s.json', '--data-root', '{ws}/no_data', '--runs-dir', '{ws}/runs']
    bench = ['--backends', 'ort-raw', '--sizes', '64', '--runs', '1', '--warmup', '0', '--rounds', '1']
    return [
        # quantize: models and reports
        ('q-missing-model', 'quantize', ['{ws}/nope.onnx', *cfg], ['nope.onnx']),
        ('q-text-named-onnx', 'quantize', ['{ws}/text.onnx', *cfg, *q_fast], ['text.onnx', 'cannot be loaded']),
        ('q-text-named-onnx-list-nodes', 'quantize', ['{ws}/text.onnx', *cfg, '--list-nodes'], ['text.onnx']),
        ('q-no-report', 'quantize', ['{ws}/lone.onnx', *cfg], ['lone.onnx.json']),
        ('q-backbone-for-detector', 'quantize', ['{ws}/bb.onnx', *cfg, *q_fast],
         ['bb.onnx', 'backbone export', '--max-output-error']),
        ('q-int8-again', 'quantize', ['{ws}/bb.int8.onnx', *cfg, *q_fast, '--max-output-error', '1'],
         ['bb.int8.onnx', 'already quantized']),
        ('q-int8-with-float-report', 'quantize', ['{ws}/sneaky.onnx', *cfg, *q_fast, '--max-output-error', '1',
                                                  '--out', '{ws}/x.onnx'], ['sneaky.onnx', 'already quantized']),
        ('q-corrupt-report', 'quantize', ['{ws}/badrep.onnx', *cfg], ['badrep.onnx.json']),
        ('q-report-not-an-export', 'quantize', ['{ws}/norep.onnx', *cfg], ['norep.onnx.json', 'what']),
        # quantize: numbers and names
        ('q-num-calib-0', 'quantize', [lite, *cfg, '--num-calib', '0'], ['--num-calib']),
        ('q-num-calib-negative', 'quantize', [lite, *cfg, '--num-calib', '-4'], ['--num-calib']),
        ('q-num-calib-not-int', 'quantize', [lite, *cfg, '--num-calib', 'ten'], ['--num-calib']),
        ('q-num-calib-more-than-images', 'quantize', [lite, *cfg, *q_fast[2:], '--num-calib', '500'],
         ['--num-calib', 'instances_train2017.json', 'has 16 images']),
        ('q-max-map-drop-negative', 'quantize', [lite, *cfg, '--max-map-drop', '-0.01'], ['--max-map-drop']),
        ('q-max-map-drop-nan', 'quantize', [lite, *cfg, '--max-map-drop', 'nan'], ['--max-map-drop']),
        ('q-max-output-error-negative', 'quantize', ['{ws}/bb.onnx', *cfg, '--max-output-error', '-1'],
         ['--max-output-error']),
        ('q-percentile-0', 'quantize', [lite, *cfg, '--method', 'percentile', '--percentile', '0'],
         ['--percentile', '(0, 100]']),
        ('q-percentile-above-100', 'quantize', [lite, *cfg, '--method', 'percentile', '--percentile', '100.5'],
         ['--percentile']),
        ('q-percentile-negative', 'quantize', [lite, *cfg, '--percentile', '-5'], ['--percentile']),
        ('q-percentile-nan', 'quantize', [lite, *cfg, '--percentile', 'nan'], ['--percentile']),
        ('q-method-unknown', 'quantize', [lite, *cfg, '--method', 'kl'], ['--method', 'minmax']),
        ('q-calib-split-unknown', 'quantize', [lite, *cfg, '--calib-split', 'holdout'], ['--calib-split']),
        ('q-exclude-not-a-node', 'quantize', [lite, *cfg, *q_fast, '--exclude', 'not_a_node'],
         ['--exclude', 'not_a_node', '--list-nodes']),
        ('q-op-types-unknown', 'quantize', [lite, *cfg, *q_fast, '--op-types', 'Convv'], ['--op-types', 'Convv']),
        ('q-op-types-absent', 'quantize', [lite, *cfg, *q_fast, '--op-types', 'ConvTranspose'],
         ['--op-types', 'ConvTranspose', 'nothing would be quantized']),
        ('q-eval-limit-0', 'quantize', [lite, *cfg, '--eval-limit', '0'], ['--eval-limit']),
        ('q-eval-limit-negative', 'quantize', [lite, *cfg, '--eval-limit', '-2'], ['--eval-limit']),
        ('q-exclude-sensitive-negative', 'quantize', [lite, *cfg, '--exclude-sensitive', '-1'],
         ['--exclude-sensitive']),
        ('q-exclude-sensitive-without-report', 'quantize', [lite, *cfg, '--exclude-sensitive', '2',
                                                            '--sensitivity-images', '0'],
         ['--exclude-sensitive', '--sensitivity-images']),
        ('q-sensitivity-images-negative', 'quantize', [lite, *cfg, '--sensitivity-images', '-1'],
         ['--sensitivity-images']),
        ('q-threads-0', 'quantize', [lite, *cfg, '--threads', '0'], ['--threads']),
        ('q-bench-runs-negative', 'quantize', [lite, *cfg, '--bench-runs', '-1'], ['--bench-runs']),
        ('q-shape-not-the-static-size', 'quantize', [lite, *cfg, *q_fast, '--shape', '96', '96'], ['--shape', '64x64']),
        ('q-shape-zero', 'quantize', [lite, *cfg, '--shape', '0', '64'], ['--shape']),
        # quantize: outputs and configs
        ('q-out-below-a-file', 'quantize', [lite, *cfg, '--out', '{ws}/a_file/x.onnx'], ['--out', 'a_file']),
        ('q-out-not-onnx', 'quantize', [lite, *cfg, '--out', '{ws}/x.int8'], ['--out', '.onnx']),
        ('q-out-is-the-model', 'quantize', [lite, *cfg, '--out', lite], ['--out', 'lite.onnx']),
        ('q-out-read-only', 'quantize', [lite, *cfg, '--out', '{ws}/ro/x.onnx'], ['--out', 'not writable']),
        ('q-config-missing', 'quantize', [lite, '--config', '{ws}/none.py', *q_fast], ['--config', 'none.py']),
        ('q-config-missing-list-nodes', 'quantize', [lite, '--config', '{ws}/none.py', '--list-nodes'],
         ['--config', 'none.py']),
        ('q-config-not-python', 'quantize', [lite, '--config', '{ws}/broken.py', *q_fast], ['broken.py']),
        ('q-config-is-an-onnx', 'quantize', [lite, '--config', '{ws}/bb.onnx', *q_fast],
         ['bb.onnx', 'not a config file']),
        ('q-config-data-missing', 'quantize', [lite, '--config', '{ws}/nodata.py', *q_fast], ['nowhere']),
        ('q-config-without-datasets', 'quantize', [lite, '--config', '{ws}/nodataset.py', *q_fast],
         ['train_dataloader']),
        # the torch-free ONNX runner
        ('r-missing-model', 'runner', ['{ws}/nope.onnx'], ['nope.onnx']),
        ('r-text-named-onnx', 'runner', ['{ws}/text.onnx'], ['text.onnx', 'cannot be loaded']),
        ('r-no-report', 'runner', ['{ws}/lone.onnx'], ['lone.onnx.json']),
        ('r-backbone-export', 'runner', ['{ws}/bb.onnx'], ['bb.onnx.json', 'not a detector export']),
        ('r-int8-backbone', 'runner', ['{ws}/bb.int8.onnx'], ['bb.int8.onnx.json']),
        ('r-corrupt-report', 'runner', ['{ws}/badrep.onnx'], ['badrep.onnx.json']),
        ('r-report-not-an-export', 'runner', ['{ws}/norep.onnx'], ['norep.onnx.json']),
        ('r-unknown-decoder', 'runner', ['{ws}/lite_decoder.onnx'], ['lite_decoder.onnx.json', "'foo'"]),
        ('r-report-lacks-reg-max', 'runner', ['{ws}/lite_regmax.onnx'], ['lite_regmax.onnx.json', 'reg_max']),
        ('r-report-other-classes', 'runner', ['{ws}/lite_classes.onnx'], ['lite_classes.onnx.json', '7 classes']),
        ('r-size-not-the-static-size', 'runner', [lite, '--size', '96', '96'], ['--size', '64x64']),
        ('r-size-zero', 'runner', [lite, '--size', '0', '64'], ['--size']),
        ('r-threads-negative', 'runner', [lite, '--threads', '-1'], ['--threads']),
        ('r-bench-negative', 'runner', [lite, '--bench', '-5'], ['--bench']),
        ('r-score-thr-nan', 'runner', [lite, '--score-thr', 'nan'], ['--score-thr']),
        ('r-score-thr-above-1', 'runner', [lite, '--score-thr', '30'], ['--score-thr']),
        ('r-image-missing', 'runner', [lite, '--image', '{ws}/nope.png'], ['--image', 'nope.png']),
        ('r-image-not-a-picture', 'runner', [lite, '--image', '{ws}/tiny.py'], ['--image', 'tiny.py']),
        ('r-tensor-wrong-size', 'runner', [lite, '--tensor', '{ws}/t_wrong.npy'], ['--tensor', 't_wrong.npy']),
        ('r-tensor-not-numpy', 'runner', [lite, '--tensor', '{ws}/t_text.npy'], ['--tensor', 't_text.npy']),
        ('r-out-json-below-a-file', 'runner', [lite, '--out-json', '{ws}/a_file/r.json'], ['--out-json', 'a_file']),
        ('r-out-json-missing-folder', 'runner', [lite, '--out-json', '{ws}/newdir/r.json'],
         ['--out-json', 'newdir', 'does not exist']),
        ('r-out-json-is-a-folder', 'runner', [lite, '--out-json', '{ws}/mini'], ['--out-json', 'folder']),
        ('r-out-json-is-the-model', 'runner', [lite, '--out-json', lite], ['--out-json', 'lite.onnx']),
        ('r-out-json-is-the-report', 'runner', [lite, '--out-json', '{ws}/lite.onnx.json'],
         ['--out-json', 'lite.onnx.json']),
        ('r-out-json-read-only', 'runner', [lite, '--out-json', '{ws}/ro/r.json'], ['--out-json', 'not writable']),
        # the DetNAS search
        ('s-config-missing', 'search', ['{ws}/none.py', '{ws}/supernet.pth', '--work-dir', '{ws}/sw'], ['none.py']),
        ('s-config-without-nas-section', 'search', ['{ws}/tiny.py', '{ws}/supernet.pth', '--work-dir', '{ws}/sw'],
         ['tiny.py', 'nas_search']),
        ('s-config-not-python', 'search', ['{ws}/broken.py', '{ws}/supernet.pth', '--work-dir', '{ws}/sw'],
         ['broken.py']),
        ('s-checkpoint-missing', 'search', ['{ws}/search.py', '{ws}/none.pth', '--work-dir', '{ws}/sw'],
         ['none.pth']),
        ('s-checkpoint-is-text', 'search', ['{ws}/search.py', '{ws}/tiny.py', '--work-dir', '{ws}/sw'],
         ['tiny.py', 'not a readable PyTorch checkpoint']),
        ('s-checkpoint-other-architecture', 'search', ['{ws}/search.py', '{ws}/backbone.pth', '--work-dir',
                                                       '{ws}/sw'], ['backbone.pth', 'missing keys']),
        ('s-threads-0', 'search', [*search, '--threads', '0', '--work-dir', '{ws}/sw'], ['--threads']),
        ('s-resume-nothing', 'search', [*search, '--resume', '--work-dir', '{ws}/sw'], ['--resume', 'sw']),
        ('s-state-without-resume', 'search', [*search, '--work-dir', '{ws}/state_corrupt'],
         ['state_corrupt', '--resume']),
        ('s-resume-corrupt-state', 'search', [*search, '--resume', '--work-dir', '{ws}/state_corrupt'],
         ['state_corrupt/search_state.json', 'not a readable search state']),
        ('s-resume-empty-state', 'search', [*search, '--resume', '--work-dir', '{ws}/state_empty'],
         ['state_empty/search_state.json']),
        ('s-resume-old-state', 'search', [*search, '--resume', '--work-dir', '{ws}/state_old'],
         ['state_old/search_state.json', 'version 0']),
        ('s-work-dir-below-a-file', 'search', [*search, '--work-dir', '{ws}/a_file/sw'], ['--work-dir', 'a_file']),
        ('s-work-dir-is-a-file', 'search', [*search, '--work-dir', '{ws}/a_file'], ['--work-dir', 'a_file']),
        ('s-work-dir-read-only', 'search', [*search, '--work-dir', '{ws}/ro/sw'], ['--work-dir', 'not writable']),
        ('s-population-0', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                      'nas_search.population_size=0'], ['population_size']),
        ('s-generations-negative', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                              'nas_search.generations=-1'], ['generations']),
        ('s-misspelt-key', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                      'nas_search.populaton_size=4'], ['populaton_size']),
        ('s-mutation-prob-2', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                         'nas_search.mutation_prob=2.0'], ['mutation_prob']),
        ('s-flops-limit-negative', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                              'nas_search.flops_limit=-5'], ['flops_limit']),
        ('s-held-out-split-empty', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                              'nas_search.val_dataloader.dataset.ann_file={ws}/empty.json'],
         ['empty.json', 'empty']),
        ('s-held-out-split-missing', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                                'nas_search.val_dataloader.dataset.ann_file={ws}/none.json'],
         ['none.json']),
        ('s-reference-unknown', 'search', [*search, '--work-dir', '{ws}/sw', '--cfg-options',
                                           'nas_search.references=[COCO-FPN-9000M]'], ['COCO-FPN-9000M']),
        # the held-out split
        ('sp-missing', 'split', ['{ws}/none.json', '--num-val', '2'], ['none.json']),
        ('sp-a-folder', 'split', ['{ws}/mini', '--num-val', '2'], ['mini', 'folder']),
        ('sp-empty-file', 'split', ['{ws}/empty.json', '--num-val', '2'], ['empty.json']),
        ('sp-not-json', 'split', ['{ws}/tiny.py', '--num-val', '2'], ['tiny.py']),
        ('sp-json-list', 'split', ['{ws}/list.json', '--num-val', '2'], ['list.json']),
        ('sp-no-images', 'split', ['{ws}/noimages.json', '--num-val', '2'], ['noimages.json', 'no images']),
        ('sp-num-val-0', 'split', [ann, '--num-val', '0', *split_outs], ['--num-val', '[1, 15]']),
        ('sp-num-val-negative', 'split', [ann, '--num-val', '-3', *split_outs], ['--num-val']),
        ('sp-num-val-all-images', 'split', [ann, '--num-val', '16', *split_outs], ['--num-val', '16 images']),
        ('sp-num-val-a-ratio', 'split', [ann, '--num-val', '0.2', *split_outs], ['--num-val']),
        ('sp-seed-negative', 'split', [ann, '--num-val', '3', '--seed', '-1', *split_outs], ['--seed']),
        ('sp-out-is-the-input', 'split', [ann, '--num-val', '3', '--out-train', ann, '--out-val', '{ws}/v.json'],
         ['instances_train2017.json', 'input annotation file']),
        ('sp-outs-the-same', 'split', [ann, '--num-val', '3', '--out-train', '{ws}/t.json', '--out-val',
                                       '{ws}/t.json'], ['t.json']),
        ('sp-out-below-a-file', 'split', [ann, '--num-val', '3', '--out-train', '{ws}/a_file/t.json', '--out-val',
                                          '{ws}/v.json'], ['a_file']),
        ('sp-out-a-folder', 'split', [ann, '--num-val', '3', '--out-train', '{ws}/mini', '--out-val', '{ws}/v.json'],
         ['mini', 'folder']),
        ('sp-out-read-only', 'split', [ann, '--num-val', '3', '--out-train', '{ws}/ro/t.json', '--out-val',
                                       '{ws}/ro/v.json'], ['ro/t.json', 'not writable']),
        ('sp-another-split-exists', 'split', [ann, '--num-val', '3'], ['_nas-train.json', '--overwrite']),
        # the Megvii ShuffleNetV2.Large converter
        ('c-missing-input', 'convert', [*conv, '--arch', 'Large', '{ws}/none.pth', '{ws}/o.pth'], ['none.pth']),
        ('c-empty-input', 'convert', [*conv, '--arch', 'Large', '{ws}/empty.pth', '{ws}/o.pth'], ['empty.pth']),
        ('c-text-input', 'convert', [*conv, '--arch', 'Large', '{ws}/tiny.py', '{ws}/o.pth'], ['tiny.py']),
        ('c-unknown-arch', 'convert', [*conv, '--arch', 'Huge', '{ws}/official_Large.pth', '{ws}/o.pth'],
         ['Huge', 'ExLarge']),
        ('c-shallow-as-published-large', 'convert', [*conv, '--arch', 'Large', '{ws}/official_Large.pth',
                                                     '{ws}/o.pth'], ['official_Large.pth', "arch='Large'"]),
        ('c-large-as-exlarge', 'convert', [*conv, '{ws}/official_Large.pth', '{ws}/o.pth', *as_exlarge],
         ['official_Large.pth', 'does not match', 'ExLarge']),
        ('c-exlarge-as-large', 'convert', [*conv, '{ws}/official_ExLarge.pth', '{ws}/o.pth', *as_large],
         ['official_ExLarge.pth', 'does not match']),
        ('c-shufflenetv2-as-large', 'convert', [*conv, '{ws}/backbone.pth', '{ws}/o.pth', *as_large],
         ['backbone.pth', 'does not match']),
        ('c-a-tensor-missing', 'convert', [*conv, '{ws}/official_Large_missing.pth', '{ws}/o.pth', *as_large],
         ['official_Large_missing.pth', 'branch_main.0.conv.weight']),
        ('c-arch-not-a-literal', 'convert', [*conv, '{ws}/official_Large.pth', '{ws}/o.pth', '--cfg-options',
                                             'arch={base: Large}'], ['--cfg-options', 'arch={base: Large}']),
        ('c-widen-factor-not-an-argument', 'convert', [*conv, '--widen-factor', '1.0', '{ws}/official_Large.pth',
                                                       '{ws}/o.pth', *as_large], ['--widen-factor']),
        ('c-out-below-a-file', 'convert', [*conv, '{ws}/official_Large.pth', '{ws}/a_file/o.pth', *as_large],
         ['OUT', 'a_file']),
        ('c-out-read-only', 'convert', [*conv, '{ws}/official_Large.pth', '{ws}/ro/o.pth', *as_large],
         ['OUT', 'not writable']),
        ('c-out-exists', 'convert', [*conv, '{ws}/official_Large.pth', '{ws}/tiny.py', *as_large],
         ['tiny.py', '--overwrite']),
        ('c-no-converter', 'convert', ['--src', 'torchvision', '--type', 'ShuffleNetV2Large', '{ws}/official_Large.pth',
                                       '{ws}/o.pth'], ['torchvision', 'ShuffleNetV2Large']),
        # main job and side by side with the lite models
        ('mj-model-unknown', 'main_job', ['--model', 'lite-xl', *job], ['--model', 'lite-xl']),
        ('mj-work-dir-below-a-file', 'main_job', ['--model', 'lite', '--work-dir', '{ws}/a_file/job', '--data-root',
                                                  '{ws}/no_data'], ['--work-dir', 'a_file']),
        ('mj-work-dir-read-only', 'main_job', ['--model', 'lite-s', '--work-dir', '{ws}/ro/job', '--data-root',
                                               '{ws}/no_data'], ['--work-dir', 'not writable']),
        ('mj-config-is-an-onnx', 'main_job', ['--config', '{ws}/bb.onnx', *job], ['bb.onnx', 'not a config file']),
        ('mj-data-root-is-a-file', 'main_job', ['--model', 'lite-l', '--work-dir', '{ws}/job', '--data-root',
                                                '{ws}/a_file'], ['a_file']),
        ('mj-threads-0', 'main_job', ['--model', 'lite-detnas', '--threads', '0', *job], ['--threads']),
        ('sbs-same-model-twice', 'side_by_side', ['--models', 'lite', 'lite', *sbs], ['--models']),
        ('sbs-unknown-model', 'side_by_side', ['--models', 'lite', 'yolo', *sbs], ['--models', 'yolo']),
        ('sbs-one-model', 'side_by_side', ['--models', 'lite', *sbs], ['--models']),
        ('sbs-out-below-a-file', 'side_by_side', ['--models', 'lite', 'lite-s', '--out', '{ws}/a_file/s.json',
                                                  '--data-root', '{ws}/no_data', '--runs-dir', '{ws}/runs'],
         ['--out', 'a_file']),
        ('sbs-runs-dir-below-a-file', 'side_by_side', ['--models', 'lite', 'lite-s', '--out', '{ws}/s.json',
                                                       '--data-root', '{ws}/no_data', '--runs-dir', '{ws}/a_file/r'],
         ['--runs-dir', 'a_file']),
        ('sbs-timing-rounds-negative', 'side_by_side', ['--models', 'lite', 'lite-s', '--timing-rounds', '-1', *sbs],
         ['--timing-rounds']),
        # FLOPs as deployed, benchmark rows added last session
        ('flops-deploy-without-config', 'flops', ['--backbone', 'ShuffleNetV2', '--deploy'], ['--deploy']),
        ('flops-deploy-config-missing', 'flops', ['{ws}/none.py', '--deploy'], ['none.py']),
        ('flops-deploy-config-not-python', 'flops', ['{ws}/broken.py', '--deploy'], ['broken.py']),
        ('flops-deploy-config-is-an-onnx', 'flops', ['{ws}/bb.onnx', '--deploy'], ['bb.onnx', 'not a config file']),
        ('flops-deploy-model-incomplete', 'flops', ['{ws}/nodataset.py', '--deploy'],
         ['nodataset.py', 'cannot build its model']),
        ('flops-deploy-model-is-a-backbone', 'flops', ['{ws}/bbmodel.py', '--deploy', '--shape', '64'],
         ['bbmodel.py', 'not an mmdet detector']),
        ('flops-deploy-shape-0', 'flops', ['{ws}/tiny.py', '--deploy', '--shape', '0', '64'], ['--shape']),
        ('flops-deploy-json-below-a-file', 'flops', ['{ws}/tiny.py', '--deploy', '--json', '{ws}/a_file/f.json'],
         ['--json', 'a_file']),
        ('flops-deploy-json-is-the-config', 'flops', ['{ws}/tiny.py', '--deploy', '--json', '{ws}/tiny.py'],
         ['--json', 'tiny.py']),
        ('bench-add-backbone-without-config', 'benchmark', ['--backbone', 'ShuffleNetV2', '--add-backbone',
                                                            'ShuffleNetV2'], ['--add-backbone']),
        ('bench-add-backbone-unknown', 'benchmark', ['--config', '{ws}/tiny.py', '--add-backbone', 'NoSuchNet',
                                                     *bench], ['NoSuchNet']),
        ('bench-add-backbone-bad-args', 'benchmark', ['--config', '{ws}/tiny.py', '--add-backbone', 'ShuffleNetV2',
                                                      '--backbone-args', '{"widen_factor": 3.3}', *bench],
         ['widen_factor']),
        ('bench-add-backbone-args-not-json', 'benchmark', ['--config', '{ws}/tiny.py', '--add-backbone',
                                                           'ShuffleNetV2', '--backbone-args', '{widen_factor: 1}',
                                                           *bench], ['--backbone-args']),
        ('bench-backend-unknown', 'benchmark', ['--backbone', 'ShuffleNetV2', '--backends', 'ort-int4'],
         ['--backends', 'ort-int4']),
        ('bench-config-is-an-onnx', 'benchmark', ['--config', '{ws}/bb.onnx', '--backends', 'ort-int8', '--sizes',
                                                  '64'], ['bb.onnx', 'not a config file']),
        ('bench-config-missing', 'benchmark', ['--config', '{ws}/none.py', '--backends', 'ort-int8', '--sizes', '64'],
         ['none.py']),
    ]


@pytest.mark.parametrize('tool,argv,names', [pytest.param(t, a, n, id=i) for i, t, a, n in _cases()])
def test_bad_input_fails_cleanly(ws: Path, tools: dict[str, ModuleType], read_only, capsys, tool: str,
                                 argv: list[str], names: list[str]) -> None:
    before = tree_snapshot(ws)
    proc = run_in_process(tools[tool], [a.replace('{ws}', str(ws)) for a in argv], capsys)
    assert_clean_failure(proc, names, ws, before)
    errors = [line for line in proc.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 1, proc.stderr[-2000:]  # one message, not one per layer it passed through


def test_int8_guard_accepts_the_float_export(ws: Path) -> None:
    """The already-quantized check refuses the int8 graph only: the float export and its int8 copy differ in it."""
    import onnx

    from shufflenet_det.deploy import quantize as qz
    qz.check_float_model(onnx.load(str(ws / 'lite.onnx')), 'lite.onnx')
    with pytest.raises(qz.QuantizationError, match='already quantized'):
        qz.check_float_model(onnx.load(str(ws / 'bb.int8.onnx')), 'bb.int8.onnx')


def _interrupt(argv: list[str], ready: Callable[[str], bool], env: dict[str, str], delay: float
               ) -> subprocess.CompletedProcess:
    """Run ``python argv`` and send SIGINT once a line of its stdout satisfies ``ready`` (then ``delay`` s)."""
    proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while not (lines and ready(lines[-1])):
            line = proc.stdout.readline()
            assert line, f'the tool ended before the point of interruption: {proc.stderr.read()[-2000:]}'
            assert time.monotonic() < deadline
            lines.append(line)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, ''.join(lines) + out, err)


@pytest.mark.parametrize('case', ['quantize-calibrating', 'runner-benchmark'])
def test_ctrl_c_leaves_nothing(ws: Path, tmp_path: Path, case: str) -> None:
    """Ctrl-C while quantize calibrates (its scratch folder full of ONNX Runtime's augmented models) or while the
    runner times a model before writing --out-json: exit 130, one message, no output, no scratch folder left."""
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHONUNBUFFERED='1', TMPDIR=str(scratch))
    if case == 'quantize-calibrating':
        # the signal right after the line that starts calibration (all 16 training images): on a fast idle CPU the
        # whole quantization of this tiny model takes well under a second, so any fixed delay could let it finish
        argv = [TOOLS['quantize'], str(ws / 'lite.onnx'), '--config', str(ws / 'tiny.py'), '--num-calib', '16',
                '--sensitivity-images', '2', '--bench-runs', '0', '--out', str(ws / 'q.onnx')]
        ready, delay = (lambda line: 'calibrating on 16 tensors' in line), 0.0
    else:
        argv = [TOOLS['runner'], str(ws / 'lite.onnx'), '--bench', '1000000', '--out-json', str(ws / 'r.json')]
        ready, delay = (lambda line: 'detections' in line), 0.3
    before = tree_snapshot(ws)
    proc = _interrupt(argv, ready, env, delay)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr and 'error: interrupted by SIGINT' in proc.stderr, proc.stderr[-2000:]
    assert tree_snapshot(ws) == before
    # onnxruntime keeps a telemetry session id (.ses) in the temporary folder; no quantization scratch is left
    assert [p.name for p in scratch.iterdir() if p.name != '.ses'] == []
