"""The table of published weights known by name (``shufflenet_det://<publisher>/<model>``).

Each :class:`WeightEntry` says where a file comes from (its URL, or none for files only obtainable by hand), how it
is checked (the publisher's SHA-256 or the SHA-256 prefix in its file name), which converter of
:mod:`shufflenet_det.converters` turns it into this project's layout and for which backbone (or detector config), and
what the publisher reports for it (ImageNet top-1, or COCO box mAP for a detector).

Two settings change the table for a run, never the files' checks unless asked to:

* ``SHUFFLENET_DET_WEIGHTS_MIRROR=http://host[:port][/base]`` replaces the scheme and host of every URL (the path is
  kept): an internal mirror of download.pytorch.org, download.openmmlab.com and github.com (the tests serve one on
  127.0.0.1). The files are still checked against the publisher's hashes;
* ``SHUFFLENET_DET_WEIGHTS_TABLE=FILE.json``: ``{"<name>": {"url": ..., "sha256": ...}}`` replaces those fields of
  known entries, for a mirror whose files differ from the publisher's (weights re-trained in-house, test files).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Optional

#: The checkpoint prefix mmengine dispatches to this package (``CheckpointLoader.register_scheme``).
SCHEME = 'shufflenet_det://'
MIRROR_ENV = 'SHUFFLENET_DET_WEIGHTS_MIRROR'
TABLE_ENV = 'SHUFFLENET_DET_WEIGHTS_TABLE'
#: torch.hub's convention: ``name-<sha256 prefix>.ext`` (torchvision's and OpenMMLab's file names).
HASH_IN_NAME = re.compile(r'-([a-f0-9]{8,64})\.')

MEGVII_HOME = 'https://github.com/megvii-model/ShuffleNet-Series (README: OneDrive / BaiduYun links per model)'
TORCHVISION_DOCS = 'https://pytorch.org/vision/stable/models/shufflenetv2.html'
MMPRETRAIN_DOCS = 'https://github.com/open-mmlab/mmpretrain/tree/main/configs'
PADDLE_PICODET = 'https://github.com/PaddlePaddle/PaddleDetection/blob/release/2.6/configs/picodet/legacy_model/README.md'


class UnknownWeightsError(ValueError):
    """A ``shufflenet_det://`` name that is not in the table (the message lists the known ones)."""


@dataclass(frozen=True)
class WeightEntry:
    """One published checkpoint known by name.

    ``backbone``: ``dict(type=..., **kwargs)`` of the backbone the weights convert into (for a detector entry, the
    backbone of its config, used to check ``prefix='backbone.'`` loads). ``config``: the detector config of a
    whole-detector entry (``shufflenet_det::`` name), None for backbone entries. ``sha256``: the publisher's full
    SHA-256, else the prefix in the URL's file name is checked; None with no prefix either: nothing published.
    """

    name: str
    source: str
    filename: str
    backbone: dict[str, Any]
    url: Optional[str] = None
    sha256: Optional[str] = None
    config: Optional[str] = None
    top1: Optional[float] = None
    metric: str = 'ImageNet-1k top-1'
    homepage: str = ''
    notes: str = ''
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``'detector'`` (a whole detector, for ``load_from`` / inference) or ``'backbone'``."""
        return 'detector' if self.config else 'backbone'

    @property
    def uri(self) -> str:
        return SCHEME + self.name

    @property
    def expected_hash(self) -> Optional[str]:
        """The SHA-256 (or prefix) the downloaded file must have; None when the publisher gives none."""
        if self.sha256:
            return self.sha256.lower()
        match = HASH_IN_NAME.search(self.filename)
        return match.group(1) if match else None

    @property
    def backbone_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.backbone.items() if k != 'type'}

    def describe(self) -> str:
        """What the weights are for: ``the detector of CONFIG`` or ``Type(arg=value, ...)``."""
        return f'the detector of {self.config}' if self.config else self.describe_backbone()

    def describe_backbone(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in self.backbone_kwargs.items())
        return f"{self.backbone['type']}({args})"


def _tv(width: str, filename: str, widen_factor: float, top1: float) -> WeightEntry:
    return WeightEntry(
        name=f'torchvision/shufflenet_v2_x{width}', source='torchvision', filename=filename,
        url=f'https://download.pytorch.org/models/{filename}', top1=top1, homepage=TORCHVISION_DOCS,
        backbone=dict(type='ShuffleNetV2', widen_factor=widen_factor, layout='torchvision'))


def _mmpretrain(name: str, folder: str, filename: str, backbone: dict[str, Any], top1: float) -> WeightEntry:
    return WeightEntry(
        name=f'mmpretrain/{name}', source='mmpretrain', filename=filename, backbone=backbone, top1=top1,
        url=f'https://download.openmmlab.com/mmclassification/v0/{folder}/{filename}', homepage=MMPRETRAIN_DOCS)


def _paddle(name: str, config: str, backbone: dict[str, Any], mAP: float) -> WeightEntry:
    """A PP-PicoDet detector of PaddleDetection's legacy model zoo (2021.10), a ``.pdparams`` file."""
    return WeightEntry(
        name=f'paddle/{name}', source='paddle', filename=f'{name}.pdparams',
        url=f'https://paddledet.bj.bcebos.com/models/{name}.pdparams', config=f'shufflenet_det::picodet/{config}',
        backbone=backbone, top1=mAP, metric='COCO val2017 mAP', homepage=PADDLE_PICODET,
        notes='PaddleDetection publishes no hash: the SHA-256 of the first download is recorded and checked afterwards')


def _megvii(name: str, backbone: dict[str, Any], top1: Optional[float], notes: str = '') -> WeightEntry:
    return WeightEntry(name=f'megvii/{name}', source='megvii', filename=f'megvii_{name}.pth.tar', backbone=backbone,
                       top1=top1, homepage=MEGVII_HOME, notes=notes)


#: Published top-1 as given by each publisher: torchvision's weight tables (acc@1), mmpretrain's metafiles, the
#: ShuffleNet-Series tables (100 - top-1 error); NanoDet's README (COCO val2017 mAP).
ENTRIES: tuple[WeightEntry, ...] = (
    _tv('0_5', 'shufflenetv2_x0.5-f707e7126e.pth', 0.5, 60.552),
    _tv('1_0', 'shufflenetv2_x1-5666bf0f80.pth', 1.0, 69.362),
    _tv('1_5', 'shufflenetv2_x1_5-3c479a10.pth', 1.5, 72.996),
    _tv('2_0', 'shufflenetv2_x2_0-8be3c8ee.pth', 2.0, 76.230),
    _mmpretrain('shufflenet_v1_g3_x1_0', 'shufflenet_v1', 'shufflenet_v1_batch1024_imagenet_20200804-5d6cec73.pth',
                dict(type='ShuffleNetV1', groups=3, widen_factor=1.0), 68.13),
    _mmpretrain('shufflenet_v2_x1_0', 'shufflenet_v2', 'shufflenet_v2_batch1024_imagenet_20200812-5bf4721e.pth',
                dict(type='ShuffleNetV2', widen_factor=1.0, layout='torchvision'), 69.55),
    WeightEntry(
        name='nanodet/nanodet-plus-m_416', source='nanodet', filename='nanodet-plus-m_416_checkpoint.ckpt',
        url='https://github.com/RangiLyu/nanodet/releases/download/v1.0.0-alpha-1/nanodet-plus-m_416_checkpoint.ckpt',
        config='shufflenet_det::lite/lite-m_shufflenetv2-1x_300e_coco-416.py', top1=30.4, metric='COCO val2017 mAP',
        homepage='https://github.com/RangiLyu/nanodet',
        backbone=dict(type='ShuffleNetV2', widen_factor=1.0, layout='torchvision'),
        notes='NanoDet publishes no hash: the SHA-256 of the first download is recorded and checked afterwards'),
    _megvii('shufflenet_v1_g3_x1_0', dict(type='ShuffleNetV1', groups=3, widen_factor=1.0), 67.8),
    _megvii('shufflenet_v1_g8_x1_0', dict(type='ShuffleNetV1', groups=8, widen_factor=1.0), 68.0),
    _megvii('shufflenet_v2_plus_small', dict(type='ShuffleNetV2Plus', arch='Small'), 74.1),
    _megvii('shufflenet_v2_plus_medium', dict(type='ShuffleNetV2Plus', arch='Medium'), 75.7),
    _megvii('shufflenet_v2_plus_large', dict(type='ShuffleNetV2Plus', arch='Large'), 77.1),
    _megvii('shufflenet_v2_large', dict(type='ShuffleNetV2Large', arch='Large'), 81.44),
    _megvii('shufflenet_v2_exlarge', dict(type='ShuffleNetV2Large', arch='ExLarge'), 84.48),
    _megvii('detnas_coco-fpn-300m', dict(type='DetNAS', arch='COCO-FPN-300M'), None),
    _megvii('detnas_coco-fpn-1.3g', dict(type='DetNAS', arch='COCO-FPN-1.3G'), None),
    _megvii('detnas_coco-fpn-3.8g', dict(type='DetNAS', arch='COCO-FPN-3.8G'), None),
    _megvii('detnas_coco-retinanet-300m', dict(type='DetNAS', arch='COCO-RetinaNet-300M'), None),
    _paddle('picodet_s_320_coco', 'picodet-s_esnet_300e_coco-320.py', dict(type='ESNet', arch='S'), 27.1),
    _paddle('picodet_m_416_coco', 'picodet-m_esnet_300e_coco-416.py', dict(type='ESNet', arch='M'), 34.8),
    _paddle('picodet_l_640_coco', 'picodet-l_esnet_250e_coco-640.py', dict(type='ESNet', arch='L'), 40.9),
    _paddle('picodet_shufflenetv2_1x_416_coco', 'picodet_shufflenetv2-1x_300e_coco-416.py',
            dict(type='ShuffleNetV2', widen_factor=1.0, with_conv5=False), 30.0),
)


def _overrides() -> dict[str, dict[str, Any]]:
    path = os.environ.get(TABLE_ENV)
    if not path:
        return {}
    try:
        with open(os.path.expanduser(path), encoding='utf-8') as f:
            table = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f'{TABLE_ENV}={path!r}: cannot read it as JSON ({exc})') from exc
    allowed = {'url', 'sha256'}
    if not isinstance(table, dict) or not all(isinstance(v, dict) and set(v) <= allowed for v in table.values()):
        raise ValueError(f'{TABLE_ENV}={path!r}: expected {{"<name>": {{"url": ..., "sha256": ...}}}} '
                         f'(fields {sorted(allowed)})')
    return table


def apply_mirror(url: str, mirror: Optional[str] = None) -> str:
    """``url`` with its scheme and host replaced by the mirror's (:data:`MIRROR_ENV`), path kept."""
    mirror = os.environ.get(MIRROR_ENV) if mirror is None else mirror
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    return mirror.rstrip('/') + parts.path + (f'?{parts.query}' if parts.query else '')


def known_names() -> list[str]:
    return [entry.name for entry in ENTRIES]


def strip_scheme(name: str) -> str:
    return name[len(SCHEME):] if name.startswith(SCHEME) else name


def get_entry(name: str) -> WeightEntry:
    """The entry of ``name`` (with or without ``shufflenet_det://``), the URL mirrored and overrides applied;
    :class:`UnknownWeightsError` listing the known names otherwise."""
    key = strip_scheme(name).strip('/')
    entry = next((e for e in ENTRIES if e.name == key), None)
    if entry is None:
        raise UnknownWeightsError(f'unknown weights {SCHEME}{key}; known names: '
                                  + ', '.join(SCHEME + n for n in known_names()))
    override = _overrides().get(key, {})
    url = override.get('url', entry.url)
    return dataclasses.replace(entry, url=apply_mirror(url) if url else None,
                               sha256=override.get('sha256', entry.sha256))
