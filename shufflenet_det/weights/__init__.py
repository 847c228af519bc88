"""Published weights by name: ``shufflenet_det://<publisher>/<model>`` (see :mod:`.scheme`, the table in
:mod:`.entries`).

``import shufflenet_det`` registers the prefix with mmengine's ``CheckpointLoader``, so a config may say
``init_cfg=dict(type='Pretrained', checkpoint='shufflenet_det://torchvision/shufflenet_v2_x1_0')`` (or
``load_from='shufflenet_det://nanodet/nanodet-plus-m_416'``) and the file is downloaded, verified, converted and
cached on first use.
"""
from .entries import ENTRIES, MIRROR_ENV, SCHEME, TABLE_ENV, UnknownWeightsError, WeightEntry, get_entry, known_names
from .fetch import DownloadError
from .scheme import (
    WeightsMismatchError,
    cache_dir,
    check_backbone,
    check_init_cfg,
    converted_path,
    is_named,
    load_named_checkpoint,
    manifest_path,
    manual_command,
    named_pretrained,
    register_scheme,
    resolve,
    source_path,
)

__all__ = ['ENTRIES', 'MIRROR_ENV', 'SCHEME', 'TABLE_ENV', 'DownloadError', 'UnknownWeightsError', 'WeightEntry',
           'WeightsMismatchError', 'cache_dir', 'check_backbone', 'check_init_cfg', 'converted_path', 'get_entry',
           'is_named', 'known_names', 'load_named_checkpoint', 'manifest_path', 'manual_command', 'named_pretrained',
           'register_scheme', 'resolve', 'source_path']
