"""Applications built on the library, each the body of a command-line tool (the tools are thin parsers over them).

* :mod:`.launch` - the checks and settings ``tools/train.py`` / ``tools/test.py`` apply before mmengine's Runner
  (data present, pretrained weights present, gloo without CUDA) and the run config (:func:`~.launch.load_run_config`);
* :mod:`.mini_job` - the mini-COCO job of ``tools/main_job.py``: dataset, CPU training, COCO evaluation, picture,
  ``results.json``;
* :mod:`.side_by_side` - two mini jobs compared (``tools/analysis_tools/side_by_side.py``);
* :mod:`.nas_search` - the DetNAS evolutionary search over a trained supernet (``tools/nas/search.py``); its
  settings (the config's ``nas_search`` section) are :mod:`.nas_settings`.

Import the submodules directly; this package imports nothing on its own.
"""
