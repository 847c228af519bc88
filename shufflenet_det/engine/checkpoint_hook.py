"""A ``CheckpointHook`` whose checkpoints survive being killed at any moment."""
from __future__ import annotations

import os.path as osp
from typing import TYPE_CHECKING, Optional

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from ..utils.io import write_text_atomic
from .atomic_io import ATOMIC_BACKEND

if TYPE_CHECKING:
    from mmengine.runner import Runner


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) with crash-safe saving on local disks.

    * every checkpoint (``epoch_N.pth``, ``best_*.pth``) is written to a temporary file and renamed into place;
    * ``last_checkpoint`` is updated the same way, and only after its checkpoint is complete;
    * checkpoints beyond ``max_keep_ckpts`` are removed only after the new one and ``last_checkpoint`` exist (the
      parent removes first, so a kill in between left ``last_checkpoint`` naming a deleted file).

    So ``--resume`` (``resume=True``) always finds a complete checkpoint. Remote ``out_dir`` backends keep their
    own semantics.
    """

    backend_args: Optional[dict]  # set by CheckpointHook.__init__ (declared for the type checker: mmengine is untyped)

    def before_train(self, runner: Runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if self.file_client_args is None and self.backend_args is None and '://' not in str(out_dir):
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)

    def _save_checkpoint_with_step(self, runner: Runner, step: int, meta: dict) -> None:
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            while len(self.keep_ckpt_ids) >= self.max_keep_ckpts:  # the deque has maxlen=max_keep_ckpts
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        write_text_atomic(str(self.last_ckpt), osp.join(runner.work_dir, 'last_checkpoint'), what='last_checkpoint')
        for old in stale:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by DeepSpeed are folders
                self.file_backend.rmtree(path)
