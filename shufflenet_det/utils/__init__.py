"""The shared layer every other package and every tool builds on.

* :mod:`.io` - the one atomic writer (temporary sibling, fsync, rename; stale temporaries of killed writers removed);
* :mod:`.checkpoint` - the one safe checkpoint reader and loading policy (:class:`CheckpointError`);
* :mod:`.build` - configs and models (``load_config``, ``build_backbone``, ``build_detector``,
  ``prepare_for_export``);
* :mod:`.predict` - running mmdet models on plain tensors and the preprocessing description.
"""
from .build import (
                    ConfigError,
                    build_backbone,
                    build_detector,
                    load_config,
                    prepare_for_export,
                    quiet_init_weights,
                    resolve_config_path,
                    switch_to_deploy,
)
from .checkpoint import CheckpointError, load_weights, read_checkpoint, read_state_dict
from .io import (
                    atomic_directory,
                    atomic_outputs,
                    check_writable_dir,
                    save_torch_atomic,
                    write_bytes_atomic,
                    write_json_atomic,
                    write_text_atomic,
)

__all__ = ['ConfigError', 'build_backbone', 'build_detector', 'switch_to_deploy', 'load_config', 'prepare_for_export',
           'quiet_init_weights', 'resolve_config_path', 'CheckpointError', 'load_weights', 'read_checkpoint',
           'read_state_dict', 'atomic_directory', 'atomic_outputs', 'check_writable_dir', 'save_torch_atomic',
           'write_bytes_atomic', 'write_json_atomic', 'write_text_atomic']
