"""DetNAS backbone search inside mmdet (Chen et al., arXiv 1903.10979; Single Path One-Shot, Guo et al., arXiv
1904.00420): the library behind ``tools/nas/``.

* the search space and the supernet backbone live in :mod:`shufflenet_det.models.backbones.detnas_supernet`
  (``DetNASSupernet``, :class:`SearchSpace`), the path sampler of supernet training in
  :mod:`shufflenet_det.engine.nas_hooks`;
* :mod:`.data` - a held-out split of a COCO training set (search scoring never sees the final validation set);
* :mod:`.evolution` - the SPOS evolution (top-k, mutation, crossover, budget filter) and its resumable state;
* :mod:`.flops` - multiply-adds of a path with the project's counter;
* :mod:`.evaluate` - BN recalibration and COCO mAP of a path;
* :mod:`.export` - the found path as an ordinary ``DetNAS`` detector config and a strictly loading checkpoint;
* :mod:`.plot` - mAP against multiply-adds over the generations.

The application (``tools/nas/search.py``) is :mod:`shufflenet_det.apps.nas_search`.
"""
from ..models.backbones.detnas_supernet import SEARCH_SPACES, SearchSpace
from .evolution import EvolutionarySearch, EvolutionSettings, SearchState, key_path, path_key

__all__ = ['SEARCH_SPACES', 'SearchSpace', 'EvolutionarySearch', 'EvolutionSettings', 'SearchState', 'key_path',
           'path_key']
