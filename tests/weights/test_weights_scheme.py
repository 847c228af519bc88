"""``shufflenet_det://<publisher>/<model>``: published weights by name (shufflenet_det.weights).

A local HTTP server on 127.0.0.1 (``weights_server.py``) stands in for download.pytorch.org, download.openmmlab.com
and github.com, serving generated checkpoints in each publisher's layout under the publishers' URL paths; the
scheme's URLs point at it through ``SHUFFLENET_DET_WEIGHTS_MIRROR`` and the served files' hashes are given through
``SHUFFLENET_DET_WEIGHTS_TABLE``. Each test gets an empty torch hub cache (``TORCH_HOME``). Covered: every way of
naming a checkpoint (init_cfg with and without prefix, load_from, DetInferencer, the tools), the entry-vs-backbone
check, the offline recipe, and every failure case (no network, HTTP 404 / 500, a truncated download, a hash
mismatch, a cache damaged afterwards, concurrent downloads, an unknown name, a Megvii file not in place).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import REPO, build_backbone
from official_refs import randomize_
from shufflenet_det.utils.checkpoint import CheckpointError, read_checkpoint, read_state_dict
from shufflenet_det.weights import (
    MIRROR_ENV,
    TABLE_ENV,
    DownloadError,
    UnknownWeightsError,
    WeightsMismatchError,
    converted_path,
    get_entry,
    manifest_path,
    resolve,
    source_path,
)
from tiny_mini_coco import run_tool, write_config
from weights_server import WeightsServer, closed_port_url, publisher_files, sha256, url_path, write_table
from zygote import run_python

pytestmark = [pytest.mark.compat, pytest.mark.slow]

TV05 = 'torchvision/shufflenet_v2_x0_5'
TV10 = 'torchvision/shufflenet_v2_x1_0'
NANODET = 'nanodet/nanodet-plus-m_416'
PICODET_S = 'paddle/picodet_s_320_coco'


@pytest.fixture(scope='module')
def published() -> dict[str, bytes]:
    """Entry name -> the bytes the local server publishes for it."""
    return dict(publisher_files())


@pytest.fixture(scope='module')
def server(published):
    srv = WeightsServer()
    for name, data in published.items():
        srv.files[url_path(get_entry(name).url)] = data
    yield srv
    srv.close()


@pytest.fixture
def hub(tmp_path, monkeypatch, server, published) -> Path:
    """An empty torch hub cache, the scheme's URLs on the local server, the served files' hashes; returns the
    cache folder (``$TORCH_HOME/hub/checkpoints``)."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv(MIRROR_ENV, server.url)
    monkeypatch.setenv(TABLE_ENV, str(write_table(tmp_path / 'table.json',
                                                  {n: sha256(d) for n, d in published.items()})))
    server.hits.clear()
    server.behaviour.clear()
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def cached_files(hub: Path) -> list[str]:
    """What the cache holds besides the (empty) lock files."""
    return sorted(p.name for p in hub.iterdir() if not p.name.endswith('.lock')) if hub.exists() else []


def served_path(name: str) -> str:
    return url_path(get_entry(name).url)


def tensors_equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------ the happy paths
@pytest.mark.parametrize('name', [TV05, 'mmpretrain/shufflenet_v1_g3_x1_0', 'mmpretrain/shufflenet_v2_x1_0'])
def test_download_verify_convert_cache_then_offline(name, hub, server, published, monkeypatch):
    entry = get_entry(name)
    out = resolve(name)
    assert out == converted_path(entry) and out.parent == hub
    assert server.hits[served_path(name)] == 1
    backbone = build_backbone(entry.backbone)
    backbone.load_state_dict(read_state_dict(out), strict=True)  # every key and shape of the backbone
    manifest = json.loads(manifest_path(entry).read_text())
    assert manifest['source_sha256'] == sha256(published[name]) == sha256(source_path(entry).read_bytes())
    assert manifest['name'] == name and manifest['backbone'] == entry.backbone
    assert read_checkpoint(out)['meta']['backbone'] == entry.backbone  # the converted file records the arch
    if name == TV05:  # torchvision's layout is the backbone's: every tensor kept, the classifier dropped
        source = torch.load(source_path(entry), weights_only=True)
        assert tensors_equal(read_state_dict(out), {k: v for k, v in source.items() if not k.startswith('fc.')})

    monkeypatch.setenv(MIRROR_ENV, closed_port_url())  # the second use needs no network
    assert resolve('shufflenet_det://' + name) == out
    assert server.hits[served_path(name)] == 1


def test_pretrained_init_cfg_with_and_without_prefix(hub, published):
    backbone = build_backbone(dict(type='ShuffleNetV2', widen_factor=0.5,
                                   init_cfg=dict(type='Pretrained', checkpoint=f'shufflenet_det://{TV05}')))
    backbone.init_weights()
    assert tensors_equal(backbone.state_dict(), read_state_dict(converted_path(get_entry(TV05))))

    # the backbone of a whole-detector entry, through mmengine's prefix (NanoDet-Plus: no conv5, LeakyReLU)
    lite = build_backbone(dict(type='ShuffleNetV2', widen_factor=1.0, out_indices=(1, 2, 3), with_conv5=False,
                               act_cfg=dict(type='LeakyReLU', negative_slope=0.1),
                               init_cfg=dict(type='Pretrained', prefix='backbone.',
                                             checkpoint=f'shufflenet_det://{NANODET}')))
    lite.init_weights()
    source = torch.load(source_path(get_entry(NANODET)), weights_only=True)['state_dict']
    expected = {k[len('avg_model.backbone.'):]: v for k, v in source.items() if k.startswith('avg_model.backbone.')}
    assert tensors_equal(lite.state_dict(), expected)


def test_load_from_and_det_inferencer(hub, tmp_path):
    import numpy as np
    from mmdet.apis import DetInferencer
    from mmengine.runner import load_checkpoint

    from shufflenet_det.apps.launch import check_start_checkpoint
    from shufflenet_det.utils.build import build_detector, load_config

    config = REPO / 'configs' / 'lite' / 'lite-m_shufflenetv2-1x_300e_coco-416.py'
    detector = build_detector(config)
    checkpoint = load_checkpoint(detector, f'shufflenet_det://{NANODET}', map_location='cpu', strict=True)
    assert len(checkpoint['meta']['dataset_meta']['classes']) == 80

    cfg = load_config(config)
    cfg.load_from = f'shufflenet_det://{NANODET}'  # what tools/test.py sets from its CHECKPOINT argument
    assert check_start_checkpoint(cfg) == str(converted_path(get_entry(NANODET)))

    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    for model in (str(config), None):  # without a config: the one the checkpoint's meta carries
        inferencer = DetInferencer(model=model, weights=f'shufflenet_det://{NANODET}', device='cpu',
                                   show_progress=False)
        result = inferencer(image, return_datasamples=True)
        assert result['predictions'][0].pred_instances.bboxes.shape[-1] == 4


def test_paddle_entry_loads_strictly_and_runs(hub, tmp_path):
    """A PicoDet ``.pdparams`` by name: downloaded, read as arrays only, converted strictly, DetInferencer runs it."""
    import numpy as np
    from mmdet.apis import DetInferencer
    from mmengine.runner import load_checkpoint

    from shufflenet_det.utils.build import build_detector

    config = REPO / 'configs' / 'picodet' / 'picodet-s_esnet_300e_coco-320.py'
    checkpoint = load_checkpoint(build_detector(config), f'shufflenet_det://{PICODET_S}', map_location='cpu',
                                 strict=True)
    assert checkpoint['meta']['source'] == 'paddle' and len(checkpoint['meta']['dataset_meta']['classes']) == 80
    inferencer = DetInferencer(model=str(config), weights=f'shufflenet_det://{PICODET_S}', device='cpu',
                               show_progress=False)
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    assert inferencer(image, return_datasamples=True)['predictions'][0].pred_instances.bboxes.shape[-1] == 4


def test_entry_of_another_width_or_groups_is_an_error_naming_both(hub, server):
    backbone = build_backbone(dict(type='ShuffleNetV2', widen_factor=0.5,
                                   init_cfg=dict(type='Pretrained', checkpoint=f'shufflenet_det://{TV10}')))
    with pytest.raises(WeightsMismatchError) as exc:
        backbone.init_weights()
    msg = str(exc.value)
    assert f'shufflenet_det://{TV10} holds the weights of ShuffleNetV2(widen_factor=1.0' in msg
    assert 'the backbone being built is ShuffleNetV2(widen_factor=0.5)' in msg
    assert f'shufflenet_det://{TV05}' in msg  # the weights that fit
    v1 = build_backbone(dict(type='ShuffleNetV1', groups=8, init_cfg=dict(
        type='Pretrained', checkpoint='shufflenet_det://mmpretrain/shufflenet_v1_g3_x1_0')))
    with pytest.raises(WeightsMismatchError, match=r'groups=3.*ShuffleNetV1\(groups=8\)'):
        v1.init_weights()
    v2plus = build_backbone(dict(type='ShuffleNetV2Plus', arch='Small', init_cfg=dict(
        type='Pretrained', checkpoint='shufflenet_det://megvii/shufflenet_v2_plus_large')))
    with pytest.raises(WeightsMismatchError, match=r"ShuffleNetV2Plus\(arch='Large'\).*ShuffleNetV2Plus\(arch="):
        v2plus.init_weights()
    assert not server.hits and cached_files(hub) == []  # checked before anything is fetched


def test_tool_checks_compare_then_fetch_and_list_unused_weights(hub, server, monkeypatch):
    from shufflenet_det.apps import launch

    other = dict(model=dict(backbone=dict(type='ShuffleNetV2', widen_factor=1.5, init_cfg=dict(
        type='Pretrained', checkpoint=f'shufflenet_det://{TV10}'))))
    with pytest.raises(launch.ModelCheckError, match=r'widen_factor=1.0.*built is ShuffleNetV2\(widen_factor=1.5'):
        launch.check_pretrained_files(other)
    assert not server.hits and cached_files(hub) == []  # refused before anything was fetched

    messages: list[str] = []
    monkeypatch.setattr(launch, 'print_log', lambda msg, **kwargs: messages.append(msg))
    no_conv5 = dict(model=dict(backbone=dict(type='ShuffleNetV2', widen_factor=1.0, with_conv5=False, init_cfg=dict(
        type='Pretrained', checkpoint=f'shufflenet_det://{TV10}'))))
    launch.check_pretrained_files(no_conv5)
    assert any('weights are not used by this ShuffleNetV2' in m and 'conv5.0.weight' in m for m in messages)
    assert server.hits[served_path(TV10)] == 1


# ------------------------------------------------------------------------------------------------ failure cases
def test_no_network_names_url_and_cache_path_then_offline_recipe(hub, published, monkeypatch):
    entry = get_entry(TV05)
    dead = closed_port_url()
    monkeypatch.setenv(MIRROR_ENV, dead)
    with pytest.raises(DownloadError) as exc:
        resolve(TV05)
    msg = str(exc.value)
    assert f'cannot download shufflenet_det://{TV05} from {dead}/models/shufflenetv2_x0.5-f707e7126e.pth' in msg
    assert 'no connection' in msg and f'put the file at {hub / entry.filename}' in msg
    assert 'convert_weights.py --src torchvision --type ShuffleNetV2 --widen-factor 0.5' in msg
    assert cached_files(hub) == []
    # the offline recipe: the publisher's file put where the message says is verified and converted
    (hub / entry.filename).write_bytes(published[TV05])
    assert resolve(TV05).is_file()


@pytest.mark.parametrize('behaviour,reason', [('404', 'HTTP 404'), ('500', 'HTTP 500'),
                                              ('truncate', 'truncated download')])
def test_http_errors_and_truncation_leave_nothing(behaviour, reason, hub, server):
    server.behaviour[served_path(TV05)] = behaviour
    with pytest.raises(DownloadError, match=reason) as exc:
        resolve(TV05)
    assert f'put the file at {hub / get_entry(TV05).filename}' in str(exc.value)
    assert cached_files(hub) == []
    server.behaviour.clear()  # the next try succeeds
    assert resolve(TV05).is_file()


def test_hash_mismatch_leaves_nothing(hub, server, monkeypatch):
    monkeypatch.delenv(TABLE_ENV)  # the mirror serves another file than torchvision's (prefix f707e7126e)
    with pytest.raises(DownloadError, match='hash mismatch.*starts with f707e7126e'):
        resolve(TV05)
    assert cached_files(hub) == [] and server.hits[served_path(TV05)] == 1


def test_damaged_cache_is_detected_and_fetched_again(hub, server):
    entry = get_entry(TV05)
    out = resolve(TV05)
    reference = read_state_dict(out)
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside the tensors: still a readable file
    out.write_bytes(bytes(data))
    assert resolve(TV05) == out and tensors_equal(read_state_dict(out), reference)
    assert server.hits[served_path(TV05)] == 1  # converted again from the cached download

    source_path(entry).write_bytes(b'garbage')  # both damaged: downloaded again
    out.write_bytes(out.read_bytes()[:100])
    assert tensors_equal(read_state_dict(resolve(TV05)), reference)
    assert server.hits[served_path(TV05)] == 2


def test_concurrent_processes_download_once(hub, server):
    server.behaviour[served_path(TV10)] = 'slow'  # about 7 s: the processes overlap
    code = 'import shufflenet_det.weights as w; print("RESOLVED", w.resolve("torchvision/shufflenet_v2_x1_0"))'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    procs = [subprocess.Popen([sys.executable, '-c', code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    paths = {line.split('RESOLVED ', 1)[1] for out, _ in outputs for line in out.splitlines() if 'RESOLVED' in line}
    assert paths == {str(converted_path(get_entry(TV10)))}
    assert server.hits[served_path(TV10)] == 1
    build_backbone(get_entry(TV10).backbone).load_state_dict(read_state_dict(paths.pop()), strict=True)


def test_unknown_name_lists_the_known_ones(hub):
    from mmengine.runner import CheckpointLoader
    for load in (resolve, lambda n: CheckpointLoader.load_checkpoint(n)):
        with pytest.raises(UnknownWeightsError) as exc:
            load('shufflenet_det://torchvision/shufflenet_v2_x3_0')
        msg = str(exc.value)
        assert 'unknown weights shufflenet_det://torchvision/shufflenet_v2_x3_0' in msg
        assert f'shufflenet_det://{TV05}' in msg and f'shufflenet_det://{NANODET}' in msg
    assert cached_files(hub) == []


def test_megvii_entry_takes_a_local_file_and_detects_its_layout(hub, server, tmp_path):
    from official_refs.megvii_v1 import MegviiShuffleNetV1
    from shufflenet_det.converters import convert_checkpoint

    name = 'megvii/shufflenet_v1_g3_x1_0'
    entry = get_entry(name)
    with pytest.raises(CheckpointError) as exc:
        resolve(name)
    msg = str(exc.value)
    assert 'no direct download link' in msg and 'megvii-model/ShuffleNet-Series' in msg
    assert f'put it at {hub / entry.filename}' in msg and not server.hits

    hub.mkdir(parents=True, exist_ok=True)
    ref = randomize_(MegviiShuffleNetV1(3, '1.0x'), seed=5)
    torch.save({'state_dict': {f'module.{k}': v for k, v in ref.state_dict().items()}}, hub / entry.filename)
    out = resolve(name)
    assert json.loads(manifest_path(entry).read_text())['detected_layout'] == 'megvii'
    build_backbone(entry.backbone).load_state_dict(read_state_dict(out), strict=True)

    # a file converted by hand (convert_weights.py) is recognised as this project's layout
    converted = convert_checkpoint('megvii', 'ShuffleNetV1', hub / entry.filename, tmp_path / 'by_hand.pth',
                                   entry.backbone_kwargs)
    (hub / entry.filename).write_bytes(converted.read_bytes())
    assert tensors_equal(read_state_dict(resolve(name)), read_state_dict(converted))
    assert json.loads(manifest_path(entry).read_text())['detected_layout'] == 'shufflenet_det'

    # the file of another variant (g8) converts into none of the layouts: an error, the old conversion untouched
    torch.save({'state_dict': randomize_(MegviiShuffleNetV1(8, '1.0x')).state_dict()}, hub / entry.filename)
    with pytest.raises(CheckpointError, match='none of the known layouts'):
        resolve(name)


# ------------------------------------------------------------------------------------------------ the tools
def test_named_weights_train_with_mmdet_and_tools_then_offline(hub, server, tiny_coco, tmp_path):
    """A fresh cache: mmdet's own train fetches the weights against the server (inside the Runner's
    init_weights); then tools/train.py trains with the server unreachable, from the cache."""
    project = tmp_path / 'project'
    project.mkdir()
    cfg = write_config(project / 'named.py', tiny_coco, max_epochs=1)
    cfg.write_text(cfg.read_text() + f'''
model = dict(backbone=dict(widen_factor=0.5,
                           init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='shufflenet_det://{TV05}')),
             neck=dict(in_channels=[48, 96, 192], out_channels=32),
             bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))
''')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    first = run_python(['-m', 'shufflenet_det.apps.mmdet_tool', 'train', str(cfg), '--work-dir',
                        str(project / 'mmdet')], cwd=project, env=env, timeout=600)
    log = first.stdout + first.stderr
    assert first.returncode == 0, log[-3000:]
    assert f'load model from: shufflenet_det://{TV05}' in log and 'converted (torchvision layout)' in log
    assert server.hits[served_path(TV05)] == 1 and (project / 'mmdet' / 'epoch_1.pth').is_file()

    env[MIRROR_ENV] = closed_port_url()  # the server is gone: the cache serves
    second = run_tool(['tools/train.py', str(cfg), '--work-dir', str(project / 'tools')], env=env, timeout=600)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    assert f'load model from: shufflenet_det://{TV05}' in log and 'downloading' not in log
    assert server.hits[served_path(TV05)] == 1 and (project / 'tools' / 'epoch_1.pth').is_file()


def test_every_entry_has_a_manual_command_the_converter_accepts():
    """The offline alternative the errors print: a valid convert_weights.py command line for every entry."""
    import shlex

    from helpers import load_script
    from shufflenet_det.weights import ENTRIES, manual_command

    converter = load_script('tools/model_converters/convert_weights.py')
    for entry in ENTRIES:
        argv = shlex.split(manual_command(entry))[2:]  # without `python tools/...py`
        args = converter.parse_args(argv)
        assert args.src == entry.source and (args.config or args.backbone_type == entry.backbone['type'])
        if not entry.config:
            assert converter.backbone_kwargs(args) == {k: v for k, v in entry.backbone_kwargs.items()
                                                       if not (k == 'layout' and v == 'torchvision')}
