"""Cross-validation -> stored results: the network (model, training), the CV loop
(cv, local only), the atomic results store (results), one home for a run
(runs), and the Dask cluster runner on top of the loop (cluster,
dask_clusters).
"""
