# mmdet's default runtime plus what every shufflenet_det config shares (use it instead of
# mmdet::_base_/default_runtime.py in a config's _base_ list).
_base_ = 'mmdet::_base_/default_runtime.py'

# Registers the ShuffleNet-family backbones and AtomicCheckpointHook in mmdet's registries and applies the torch
# 2.13 compatibility fixes (shufflenet_det/compat.py) in whatever tool loads the config.
custom_imports = dict(imports=['shufflenet_det'], allow_failed_imports=False)

# Checkpoints are written to a temporary file and renamed into place, and `last_checkpoint` only ever names a
# complete file, so `tools/train.py --resume` works after a kill at any moment (shufflenet_det/engine/).
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1))

# No find_unused_parameters: a backbone keeps the modules after its last output index (e.g. ShuffleNet V2's conv5
# with out_indices=(1, 2, 3)) so that ImageNet checkpoints load key for key, but freezes them (they never run), and
# DDP only tracks parameters that require grad (shufflenet_det/models/backbones/base.py).
