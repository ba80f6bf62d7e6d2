"""Tables and figures -> the book: figures, glued numbers (glue), the chapters'
helpers (chapters, provenance, curation_figures), the vendored JavaScript (vendor),
the book build (book) and the one command that runs the notebooks and builds it
(pipeline).
"""
