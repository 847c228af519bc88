"""The built-in deploy forms (:mod:`..forms`), registered on import of this package.

* :mod:`.anchor` - mmdet's ``AnchorHead`` family (``RetinaHead`` ...): :class:`~.anchor.AnchorForm`;
* :mod:`.gfl` - the project's ``LiteGFLHead``: :class:`~.gfl.GFLForm`;
* :mod:`.pico` - PP-PicoDet's ``PicoHead``: :class:`~.pico.PicoForm`.

A new head's form goes into a module here, imported below (or is registered by the head's own package with
:func:`..forms.register_deploy_form` before the export).
"""
from .anchor import AnchorExportWrapper, AnchorForm
from .gfl import GFLExportWrapper, GFLForm, gfl_candidates
from .pico import PicoExportWrapper, PicoForm

__all__ = ['AnchorExportWrapper', 'AnchorForm', 'GFLExportWrapper', 'GFLForm', 'gfl_candidates', 'PicoExportWrapper',
           'PicoForm']
