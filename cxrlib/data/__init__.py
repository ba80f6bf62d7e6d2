"""Sources -> curation: one reader per public source (sources, external_sources), their
download, the built-in synthetic set, decoding and letterboxing (imaging), the
examination and selection rules (screening), curation (curate), the curated folder
on disk (dataset) and the lung-field regions of an image (regions).
"""
