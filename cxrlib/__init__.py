"""cxrlib: a rerunnable reproduction of Apostolopoulos et al. (2020), MobileNetV2 on chest X-rays.

Data flows one way, and each step is a subpackage that imports only from itself and below:

- ``core``: errors, paths, the paper's vocabulary and figures, the run profiles, the metrics;
- ``data``: sources -> curation (one reader per source, download, synthetic set, imaging,
  screening, ``curate``, the curated folder ``dataset``, lung regions);
- ``experiment``: cross-validation -> stored results (``model``, ``training``, ``cv``,
  ``results``, ``runs``: one home for a run, ``cluster``);
- ``analysis``: Grad-CAM (``explain``), per-run ``tables``, the paper beside ours
  (``comparison``); ``audit``: the shortcut tests and the verdict;
  ``models``: export, predict, evaluate;
- ``report``: figures, glued numbers, the book build and the one command (``pipeline``);
  ``explore``: the interactive explorers;
- on top, the command line: ``arguments`` (checked run arguments) and ``cli``.
"""
__version__ = "0.1.0"

from cxrlib.core.paper import CLASSES  # noqa: E402,F401
