"""Stored results -> what they say: Grad-CAM (explain), the per-run tables (tables)
and the paper beside ours (comparison). The audit is cxrlib.audit.
"""
