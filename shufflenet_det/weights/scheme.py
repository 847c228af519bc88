"""``shufflenet_det://<publisher>/<model>``: published weights by name, fetched, verified, converted and cached.

:func:`resolve` turns a name into the path of a converted checkpoint in the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, where torchvision and mmengine keep their downloads too):

1. a cached conversion is used when its manifest (``<converted>.json``: the entry, the SHA-256 of the source file
   and of the converted file) still matches: no network, nothing converted;
2. otherwise, holding a lock on the entry (:func:`~.fetch.cache_lock`; the ranks of a distributed job wait for the
   one that fetches), the source file is taken from the cache when its hash fits the publisher's, else downloaded
   (:func:`~.fetch.download`: progress bar, hash and size checked, written atomically). A cached source or
   conversion that was damaged afterwards fails its hash and is fetched / converted again;
3. the source is converted with :mod:`shufflenet_det.converters` (strict: every key and shape verified) next to it,
   atomically, then the manifest is written.

Files that cannot be downloaded (Megvii's OneDrive / BaiduYun links) are read from the path the error names; such a
file may be the original checkpoint or one converted by ``convert_weights.py``: the layout is detected.

:func:`register_scheme` makes mmengine's ``CheckpointLoader`` resolve the prefix (``import shufflenet_det`` calls
it), so the name works wherever mmengine takes a checkpoint: ``init_cfg=dict(type='Pretrained', checkpoint=...)``
(with ``prefix`` too), ``load_from``, ``tools/test.py``'s CHECKPOINT, mmdet's ``DetInferencer(weights=...)``.
:func:`check_backbone` compares the entry with the backbone being built (type, width, groups, arch, layout).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from torch import nn

from ..utils.checkpoint import CheckpointError, register_pretrained_check
from ..utils.io import file_sha256
from .entries import SCHEME, WeightEntry, get_entry, known_names
from .fetch import DownloadError, cache_lock, download, hash_matches

#: Bumped when conversions change: older cached conversions are redone.
CACHE_FORMAT = 1
#: Backbone attributes that tell published variants apart.
ARCH_ATTRS = ('widen_factor', 'groups', 'layout', 'arch')


class WeightsMismatchError(CheckpointError):
    """Named weights of another architecture than the backbone they are loaded into."""


def _log(message: str, level: int = logging.INFO) -> None:
    from mmengine.logging import print_log
    print_log(message, logger='current', level=level)


# ---------------------------------------------------------------------------------------------- cache layout
def cache_dir() -> Path:
    """``<torch hub dir>/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/...``)."""
    import torch.hub
    return Path(torch.hub.get_dir()) / 'checkpoints'


def source_path(entry: WeightEntry) -> Path:
    """Where the publisher's file is (downloaded to, or to be put by hand)."""
    return cache_dir() / entry.filename


def converted_path(entry: WeightEntry) -> Path:
    """The converted checkpoint, next to the source file."""
    stem = entry.filename
    for suffix in ('.pth.tar', '.ckpt', '.pth', '.tar'):
        if stem.endswith(suffix):
            stem = stem[:-len(suffix)]
            break
    return cache_dir() / f'{stem}.shufflenet_det.pth'


def manifest_path(entry: WeightEntry) -> Path:
    return converted_path(entry).with_suffix('.json')


def manual_command(entry: WeightEntry, in_path: str = 'IN', out_path: str = 'OUT') -> str:
    """The ``convert_weights.py`` command doing the same conversion by hand."""
    cmd = f'python tools/model_converters/convert_weights.py --src {entry.source}'
    if entry.config:
        return f"{cmd} --config {entry.config.replace('shufflenet_det::', 'configs/')} {in_path} {out_path}"
    cmd += f" --type {entry.backbone['type']}"
    flags = {'widen_factor': '--widen-factor', 'groups': '--groups', 'arch': '--arch'}
    options = []
    for key, value in entry.backbone_kwargs.items():
        if key in flags:
            cmd += f' {flags[key]} {value}'
        elif not (key == 'layout' and value == 'torchvision'):  # the backbone default
            options.append(f'{key}={value}')
    cmd += f' {in_path} {out_path}'
    return cmd + (f' --cfg-options {" ".join(options)}' if options else '')


# ---------------------------------------------------------------------------------------------- resolving
def _manifest(entry: WeightEntry) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(manifest_path(entry).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _cache_ok(entry: WeightEntry) -> bool:
    """Whether the cached conversion of ``entry`` exists, is complete and is what the manifest recorded."""
    out = converted_path(entry)
    if not out.is_file():
        return False
    manifest = _manifest(entry)
    expected = entry.expected_hash
    if manifest is None or manifest.get('format') != CACHE_FORMAT or manifest.get('name') != entry.name \
            or not hash_matches(str(manifest.get('source_sha256', '')), expected):
        return False
    if entry.url is None and _stamp(source_path(entry)) not in (None, manifest.get('source_stamp')):
        return False  # a file put in place by hand was replaced since it was converted
    if file_sha256(out) != manifest.get('sha256'):
        _log(f'{entry.uri}: the cached conversion {out} was changed or damaged since it was written; converting '
             'again', logging.WARNING)
        return False
    return True


def _stamp(path: Path) -> Optional[list[int]]:
    """Size and modification time of ``path`` (None when it does not exist)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _missing_local_file(entry: WeightEntry, path: Path) -> CheckpointError:
    return CheckpointError(
        f'{entry.uri}: these weights have no direct download link (published at {entry.homepage}); download the '
        f'{entry.describe()} checkpoint there and put it at {path} (the original file, or one converted '
        f'by convert_weights.py: its layout is detected). It is verified and converted on first use. By hand: '
        f'{manual_command(entry, str(path))}')


def _download_failed(entry: WeightEntry, path: Path, exc: DownloadError) -> DownloadError:
    check = f'checked against SHA-256 {entry.expected_hash}' if entry.expected_hash else 'checked by a strict load'
    return DownloadError(
        f'cannot download {entry.uri} from {entry.url}: {exc}. Nothing was written to the cache. Without network, '
        f'download that URL on another machine and put the file at {path} ({check}, converted on first use); or '
        f'convert it by hand ({manual_command(entry)}) and point the config at OUT')


def _fetch_source(entry: WeightEntry, recorded: Optional[str], progress: bool) -> str:
    """The publisher's file in the cache (checked, else fetched again); its SHA-256."""
    path = source_path(entry)
    # no published hash: the one recorded at the first download (files put in place by hand: whatever is there)
    expected = entry.expected_hash or (recorded if entry.url else None)
    if path.is_file():
        actual = file_sha256(path)
        if hash_matches(actual, expected):
            return actual
        _log(f'{entry.uri}: the cached download {path} is damaged (SHA-256 {actual}, expected {expected}); '
             'fetching it again', logging.WARNING)
        path.unlink()
    if entry.url is None:
        raise _missing_local_file(entry, path)
    _log(f'{entry.uri}: downloading {entry.url} to {path}')
    try:
        return download(entry.url, path, expected, f'download of {entry.uri}', progress=progress)
    except DownloadError as exc:
        raise _download_failed(entry, path, exc) from exc


def resolve(name: str, progress: bool = True) -> Path:
    """The converted checkpoint of ``name`` (``shufflenet_det://...``), fetched and converted if needed.

    Raises :class:`~.entries.UnknownWeightsError` (the known names listed), :class:`~.fetch.DownloadError` (the URL
    and the cache path to put the file at), or a :class:`CheckpointError` when the file does not convert.
    """
    entry = get_entry(name)
    out = converted_path(entry)
    if _cache_ok(entry):
        return out
    lock = cache_dir() / f'.{entry.filename}.lock'
    with cache_lock(lock, lambda: _log(f'{entry.uri}: waiting for another process that is fetching it')):
        if _cache_ok(entry):  # filled by the process we waited for
            return out
        previous = _manifest(entry) or {}
        source_sha = _fetch_source(entry, previous.get('source_sha256') if previous.get('name') == entry.name
                                   else None, progress)
        layout = _convert(entry, source_path(entry), out)
        from ..utils.io import write_json_atomic
        write_json_atomic(dict(format=CACHE_FORMAT, name=entry.name, source=entry.source, url=entry.url,
                               source_file=entry.filename, source_sha256=source_sha,
                               source_stamp=_stamp(source_path(entry)), detected_layout=layout,
                               sha256=file_sha256(out), backbone=entry.backbone, config=entry.config),
                          manifest_path(entry), what='weights manifest')
        _log(f'{entry.uri}: converted ({layout} layout) and cached at {out}')
    return out


# ---------------------------------------------------------------------------------------------- converting
def _convert(entry: WeightEntry, src: Path, out: Path) -> str:
    """Convert ``src`` for the entry into ``out`` (strict, atomic); return the layout it was read in."""
    from ..converters import convert_checkpoint, convert_detector_checkpoint
    try:
        if entry.config:
            convert_detector_checkpoint(entry.source, entry.config, src, out)
            return entry.source
        if entry.url is None:
            return _convert_detected(entry, src, out)
        convert_checkpoint(entry.source, entry.backbone['type'], src, out, entry.backbone_kwargs)
        return entry.source
    except CheckpointError as exc:
        raise CheckpointError(f'{entry.uri}: {src} does not convert into {entry.describe()}: {exc}') \
            from exc


def _convert_detected(entry: WeightEntry, src: Path, out: Path) -> str:
    """A file put in place by hand: already in this project's layout (written by convert_weights.py), or in the
    layout of one of the converters registered for the backbone type (the entry's publisher first)."""
    from ..converters import available_converters, convert_checkpoint, target_backbone
    from ..utils.checkpoint import check_state_dict_fits, extract_state_dict, read_checkpoint
    from ..utils.io import save_torch_atomic

    obj = read_checkpoint(src, what=f'{entry.uri} file')
    state = extract_state_dict(obj, f'{entry.uri} file {str(src)!r}')
    model = target_backbone(entry.backbone['type'], entry.backbone_kwargs)
    try:
        check_state_dict_fits(model, state, str(src))
    except CheckpointError:
        pass
    else:
        model.load_state_dict(state, strict=True)
        meta = dict(obj.get('meta') or {}) if isinstance(obj, dict) and isinstance(obj.get('meta'), dict) else {}
        meta.update(backbone=dict(entry.backbone), input=src.name)
        save_torch_atomic({'state_dict': state, 'meta': meta}, out, what='converted checkpoint')
        return 'shufflenet_det'
    sources = [entry.source] + [s for s, t in available_converters() if t == entry.backbone['type']
                                and s != entry.source]
    errors = []
    for source in sources:
        try:
            convert_checkpoint(source, entry.backbone['type'], src, out, entry.backbone_kwargs)
            return source
        except CheckpointError as exc:
            errors.append(f'as {source}: {exc}')
    raise CheckpointError('it is in none of the known layouts (this project\'s, ' + ', '.join(sources) + '): '
                          + '; '.join(errors))


# ---------------------------------------------------------------------------------------------- the backbone check
def _describe(module: nn.Module, attrs: tuple[str, ...]) -> str:
    def show(value: Any) -> str:
        if hasattr(value, 'stage_channels'):  # a parsed arch encoding
            return f'<arch with stage channels {list(value.stage_channels)}>'
        return repr(value)
    args = ', '.join(f'{a}={show(getattr(module, a))}' for a in attrs if hasattr(module, a))
    return f'{type(module).__name__}({args})'


def check_backbone(module: nn.Module, name: str, prefix: Optional[str] = None) -> None:
    """:class:`WeightsMismatchError` naming both when the weights of ``name`` are for another backbone than
    ``module`` (type, width, groups, arch, layout). Detector entries are checked for ``prefix='backbone.'`` only."""
    from ..converters import target_backbone

    entry = get_entry(name)
    if entry.kind == 'detector' and prefix != 'backbone.':
        return
    import torch
    with torch.device('meta'):  # only its attributes are compared: no memory, no initialisation
        reference = target_backbone(entry.backbone['type'], entry.backbone_kwargs)
    same_type = type(reference) is type(module)
    differ = [a for a in ARCH_ATTRS if hasattr(reference, a) and hasattr(module, a)
              and getattr(reference, a) != getattr(module, a)]
    if same_type and not differ:
        return
    fits = [n for n in known_names() if _plain_match(get_entry(n), module)]
    hint = f'; weights for it: {", ".join(SCHEME + n for n in fits)}' if fits else ''
    part = f'{entry.uri} (its backbone.* part)' if entry.kind == 'detector' else entry.uri
    raise WeightsMismatchError(
        f'{part} holds the weights of {entry.describe_backbone()}, but the backbone being built is '
        f'{_describe(module, tuple(differ) or ARCH_ATTRS)}: name the weights of this backbone, or change the '
        f'backbone to {entry.describe_backbone()}{hint}')


def _plain_match(entry: WeightEntry, module: nn.Module) -> bool:
    """A cheap check (no model built) that ``entry`` has the type and plain arguments of ``module``."""
    if entry.kind != 'backbone' or entry.backbone['type'] != type(module).__name__:
        return False
    return all(getattr(module, k, v) == v for k, v in entry.backbone_kwargs.items() if k != 'arch')


def named_pretrained(init_cfg: Any) -> list[tuple[str, Optional[str]]]:
    """``(name, prefix)`` of every ``Pretrained`` item of an ``init_cfg`` (dict or list) naming weights by name."""
    items = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return [(item['checkpoint'], item.get('prefix')) for item in items
            if hasattr(item, 'get') and item.get('type') == 'Pretrained'
            and isinstance(item.get('checkpoint'), str) and item['checkpoint'].startswith(SCHEME)]


def check_init_cfg(module: nn.Module) -> None:
    """:func:`check_backbone` for every named checkpoint of ``module.init_cfg`` (the backbones call it in
    ``init_weights``, before mmengine loads anything)."""
    for name, prefix in named_pretrained(getattr(module, 'init_cfg', None)):
        check_backbone(module, name, prefix)


# ---------------------------------------------------------------------------------------------- mmengine
def load_named_checkpoint(filename: str, map_location: Any = None) -> Any:
    """mmengine's loader for ``shufflenet_det://`` (read with the project's safe reader). A detector entry's
    checkpoint also carries its config text in ``meta.cfg``, so ``DetInferencer(weights=NAME)`` needs no model."""
    from ..utils.checkpoint import torch_load_safe
    entry = get_entry(filename)
    obj = torch_load_safe(resolve(filename), map_location)
    if entry.config and isinstance(obj, dict) and isinstance(obj.get('meta'), dict) and 'cfg' not in obj['meta']:
        from ..utils.build import ConfigError, load_config
        try:
            obj['meta']['cfg'] = load_config(entry.config).pretty_text
        except (ConfigError, SyntaxError, TypeError, KeyError):  # only inference without a model config needs it
            pass
    return obj


def register_scheme() -> None:
    """Register :func:`load_named_checkpoint` for ``shufflenet_det://`` with mmengine and :func:`check_init_cfg` as a
    pretrained check of the backbones (idempotent)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes=SCHEME, loader=load_named_checkpoint, force=True)
    register_pretrained_check(check_init_cfg)


def is_named(checkpoint: Any) -> bool:
    return isinstance(checkpoint, str) and checkpoint.startswith(SCHEME)


__all__ = ['CACHE_FORMAT', 'WeightsMismatchError', 'cache_dir', 'check_backbone', 'check_init_cfg', 'converted_path',
           'is_named', 'load_named_checkpoint', 'manifest_path', 'manual_command', 'named_pretrained',
           'register_scheme', 'resolve', 'source_path']
