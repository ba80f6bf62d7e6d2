"""The audit: does the network read disease, or the collection an image comes from?

The paper's classes come from different collections (COVID-19 from publications and websites,
Pneumonia and Normal from one children's hospital, the other findings from NIH), so a network
can score well by recognising the collection, the patients' age, the frame or burned-in text.
Following the critiques of such studies (DeGrave, Janizek & Lee 2021; Roberts et al. 2021;
Maguolo & Nanni 2021), eight experiments look for that, all on one configuration
(:attr:`cxrlib.core.profiles.AuditSettings.config`, training from scratch, whose features the paper
reads as possible biomarkers):

1. patient-grouped folds against image-level ones (:func:`.experiments.patient_folds`);
2. a source probe, and the accuracy inside each collection (:mod:`.experiments`);
3. the lung fields blacked out, and the lung fields alone (:func:`.experiments.masked_inputs`);
4. trivial image statistics, same folds (:mod:`.statistics`);
5. Grad-CAM shares inside the lung fields, and the randomisation check (:mod:`.saliency`);
6. a trained fold's network on images from elsewhere (:mod:`.external`);
7. the paediatric Normal class replaced by adult images (:func:`.experiments.age_swap`);
8. every headline figure with its interval, trivial rules beside
   (:func:`.experiments.headline_uncertainty`).

The package, in the order data flows through it: :mod:`.retrain` makes the retrainings (runs
of their own, ``<run>-<variant>``); :mod:`.scoring` scores and compares predictions with
patient-level bootstrap intervals; the experiment modules compute each table; :mod:`.store`
keeps them under ``results/<run>/audit/``; :mod:`.verdict` says by explicit rules which of the
paper's claims they support; :mod:`.figures` and :mod:`.numbers` draw them and give the
chapter its figures. :func:`run_audit` (:mod:`.run`) does all of it for a run.
"""
from cxrlib.audit.run import run_audit

__all__ = ["run_audit"]
