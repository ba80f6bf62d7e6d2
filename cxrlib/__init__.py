"""cxrlib: a rerunnable reproduction of Apostolopoulos et al. (2020), MobileNetV2 on chest X-rays.

Data flow, one way: ``sources`` -> ``curate`` (-> ``dataset`` on disk) -> ``cv`` (``model``,
``results``) -> ``metrics`` -> ``tables``, ``figures``, ``comparison``, ``glue`` -> the book.
``profiles`` holds every setting, ``paper`` the paper's reported figures, ``runs`` what a stored
run is and which run the book shows.
"""
__version__ = "0.1.0"

from .paper import CLASSES  # noqa: E402,F401
