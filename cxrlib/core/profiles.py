"""Run profiles: every setting of a run, defined once.

The command line, the papermill notebooks, the book and the tests all take a profile by name
from :data:`PROFILES` (optionally with overrides), so a number such as the learning rate or the
image size lives in exactly one place. A profile is stored beside its results
(``profile.json``), so a result always says how it was made.

The paper leaves optimiser, learning rate, batch size, epochs and stopping rule unreported; the
choices below are ours and the book's methods chapter states them (read from here).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from cxrlib.core.paper import CLASSES

#: The eight configurations of the paper, in the order its tables list them.
PAPER_CONFIGS: tuple[str, ...] = (
    "off_the_shelf",
    "fine_tune_1", "fine_tune_3", "fine_tune_5", "fine_tune_7", "fine_tune_9", "fine_tune_11",
    "from_scratch",
)
#: The classes the real bundle in ``shared/data`` supports at usable counts (see PROVENANCE.md):
#: Edema (10), Emphysema (3) and Fibrosis (11) are too few for 10-fold cross-validation.
BUNDLE_CLASSES: tuple[str, ...] = ("COVID-19", "Effusion", "Pneumonia", "Normal")
#: Since the bundle's third NIH pass (PROVENANCE.md 3d) Fibrosis joins them: 734 single-label NIH
#: images, from which curation draws the paper's 280. Edema (10) and Emphysema (3) stay out.
BUNDLE5_CLASSES: tuple[str, ...] = ("COVID-19", "Effusion", "Fibrosis", "Pneumonia", "Normal")


def parse_config(config: str) -> tuple[str, int]:
    """``"fine_tune_7"`` -> ``("fine_tune", 7)``; other configurations have 0 trainable blocks."""
    if config in ("off_the_shelf", "from_scratch"):
        return config, 0
    prefix = "fine_tune_"
    if config.startswith(prefix) and config[len(prefix):].isdigit():
        return "fine_tune", int(config[len(prefix):])
    raise ValueError(
        f"unknown configuration {config!r}: use off_the_shelf, from_scratch or fine_tune_<n> "
        f"(the paper's are {', '.join(PAPER_CONFIGS)})"
    )


def config_name(strategy: str, trainable_blocks: int = 0) -> str:
    """Inverse of :func:`parse_config`."""
    return f"fine_tune_{trainable_blocks}" if strategy == "fine_tune" else strategy


@dataclass(frozen=True)
class Profile:
    """All settings of one run. Frozen: derive variants with :meth:`replace`."""

    name: str
    description: str
    #: ``"synthetic"`` (built-in generator) or ``"real"`` (sources in the paper's layouts, see
    #: :func:`cxrlib.data.sources.default_data_dir`).
    dataset: str = "synthetic"
    classes: tuple[str, ...] = CLASSES
    image_size: int = 200
    #: Synthetic images per class (ignored for real data, which uses the paper's counts).
    synthetic_per_class: int = 80
    #: For synthetic data: ``"paper"`` (each class from its own collection, the planted
    #: shortcut) or ``"external"`` (every class from one neutral collection: no shortcut, the
    #: audit's negative control; :mod:`cxrlib.data.synthetic`).
    collection_style: str = "paper"
    #: For real data: how NIH images carrying several of the target findings are labelled:
    #: ``"exclude"`` (default; see the book's data chapter) or ``"first"`` (the first target
    #: finding in the paper's class order).
    multilabel: str = "exclude"
    n_folds: int = 10
    #: ``"image"`` (the paper: stratified by class) or ``"patient"`` (stratified, grouped by
    #: reconciled patient id so that no patient is on both sides of a fold).
    grouping: str = "image"
    configs: tuple[str, ...] = PAPER_CONFIGS
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    #: Learning rate per strategy: pretrained weights are moved gently, new layers fast.
    learning_rates: dict = field(default_factory=lambda: {
        "from_scratch": 1e-3, "off_the_shelf": 1e-3, "fine_tune": 1e-4})
    #: Early stopping on the validation loss (validation data come from the training folds),
    #: restoring the best epoch's weights.
    patience: int = 5
    val_fraction: float = 0.1
    #: Momentum of every BatchNormalization layer's moving statistics (MobileNetV2's own is
    #: 0.999, tuned for long ImageNet training: after a few hundred steps its statistics would
    #: still be mostly their starting values, and a trained block would be evaluated with
    #: statistics that do not match its weights). Frozen layers keep theirs regardless.
    batchnorm_momentum: float = 0.9
    #: Augmentation, as the paper describes it at 200 px; shifts scale with the image size.
    rotation_degrees: float = 10.0
    shift_pixels_at_200: float = 20.0
    mixed_precision: bool = False
    seed: int = 2020
    # --- settings of the audit's retrainings (cxrlib.audit); the defaults are the paper's run.
    #: What the network learns to predict: ``"label"`` (the disease class) or ``"source"`` (the
    #: collection each image comes from: the audit's source probe).
    target: str = "label"
    #: What the network sees (:mod:`cxrlib.data.regions`): ``"none"``, ``"border_only"`` (lung
    #: fields blacked out) or ``"lung_only"`` (the lung fields cut out, the rest black).
    input_mask: str = "none"
    #: The manifest label whose images form the Normal class: ``"Normal"`` (the paper's
    #: children) or ``"No Finding"`` (adult NIH images: the audit's age and source swap).
    normal_label: str = "Normal"
    #: Resolution harmonisation (the audit's ``harmonised`` retrainings): when above 0, curation
    #: first reduces every image whose long side exceeds this many pixels to that long side, and
    #: only then letterboxes it to ``image_size``, so that every source reaches the model through
    #: the same resolution at most (248: NIH's smallest images, its Fibrosis ones). 0: off.
    harmonise_px: int = 0

    def replace(self, **changes) -> "Profile":
        return dataclasses.replace(self, **changes)

    def learning_rate(self, config: str) -> float:
        return float(self.learning_rates[parse_config(config)[0]])

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # Audit settings at their defaults are left out, so runs stored before they existed
        # still match their profile.json (and resume).
        for name in AUDIT_FIELDS:
            if d[name] == _FIELD_DEFAULTS[name]:
                del d[name]
        d["classes"] = list(self.classes)
        d["configs"] = list(self.configs)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown profile setting(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        for key in ("classes", "configs"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


#: Profile fields that only the audit's retrainings change (see :meth:`Profile.to_dict`).
AUDIT_FIELDS: tuple[str, ...] = ("target", "input_mask", "normal_label", "harmonise_px",
                                 "collection_style")
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Profile)}


def _validate(p: Profile) -> Profile:
    unknown = [c for c in p.classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"profile {p.name!r}: unknown class(es) {unknown}; classes are {CLASSES}")
    for c in p.configs:
        parse_config(c)
    if p.grouping not in ("image", "patient"):
        raise ValueError(f"profile {p.name!r}: grouping must be 'image' or 'patient'")
    if p.dataset not in ("synthetic", "real"):
        raise ValueError(f"profile {p.name!r}: dataset must be 'synthetic' or 'real'")
    if p.multilabel not in ("exclude", "first"):
        raise ValueError(f"profile {p.name!r}: multilabel must be 'exclude' or 'first'")
    if p.target not in ("label", "source"):
        raise ValueError(f"profile {p.name!r}: target must be 'label' or 'source'")
    if p.input_mask not in ("none", "border_only", "lung_only"):
        raise ValueError(f"profile {p.name!r}: input_mask must be 'none', 'border_only' or "
                         f"'lung_only'")
    if p.normal_label not in ("Normal", "No Finding"):
        raise ValueError(f"profile {p.name!r}: normal_label must be 'Normal' or 'No Finding'")
    if p.harmonise_px != 0 and p.harmonise_px < 16:
        raise ValueError(f"profile {p.name!r}: harmonise_px must be 0 (off) or at least 16")
    if p.collection_style not in ("paper", "external"):
        raise ValueError(f"profile {p.name!r}: collection_style must be 'paper' or 'external'")
    if p.image_size < 32:
        raise ValueError(f"profile {p.name!r}: MobileNetV2 needs images of at least 32 px")
    return p


_PAPER = Profile(
    name="paper",
    description=("The paper's protocol on the full seven classes (needs the full NIH download): "
                 "real data, 200x200, image-level stratified 10-fold CV, all 8 configurations. "
                 "GPU work."),
    dataset="real", image_size=200, n_folds=10, epochs=20, patience=5, mixed_precision=True,
)

PROFILES: dict[str, Profile] = {p.name: _validate(p) for p in [
    Profile(
        name="tiny",
        description="For tests: a few synthetic images at 32 px, 2 folds, 1 epoch.",
        dataset="synthetic", image_size=32, synthetic_per_class=6, n_folds=2, epochs=1,
        batch_size=8, patience=1,
    ),
    Profile(
        name="default",
        description=("The demonstration run on the built-in synthetic data, sized for a CPU: "
                     "64 px, 3-fold CV, every configuration."),
        dataset="synthetic", image_size=64, synthetic_per_class=80, n_folds=3, epochs=6,
        # Batches of 16 and patience 3: from random weights, 6 epochs of 32-image batches
        # (about 60 steps) leave the model at chance; twice the steps do not.
        patience=3, batch_size=16,
    ),
    # The audit's negative control (cxrlib.audit.controls): the default run without its planted
    # shortcut (one neutral collection for every class), the same size and training, and only
    # the audit's configuration on its one test fold, so that it adds a few minutes to the book.
    Profile(
        name="default-no-shortcut",
        description=("The audit's negative control: the default profile's synthetic images "
                     "without the planted shortcut (every class from one neutral collection), "
                     "fine-tuning one block only (the controls' configuration)."),
        dataset="synthetic", image_size=64, synthetic_per_class=80, n_folds=3, epochs=6,
        patience=3, batch_size=16, configs=("fine_tune_1",), collection_style="external",
    ),
    _PAPER,
    _PAPER.replace(
        name="paper-bundle",
        description=("The paper's protocol on the classes the shared real bundle supports "
                     "(COVID-19, Effusion, Pneumonia, Normal); Edema, Emphysema and Fibrosis are "
                     "left out (10, 3 and 11 images). GPU work."),
        classes=BUNDLE_CLASSES,
    ),
    # What two CPU cores can do with the real bundle: every configuration at a third of the
    # paper's resolution and half its epochs (measured: 15 s to 2.5 min a fold, the whole
    # 80-fold grid 76 minutes of training on two shared cores), and the audit's retrainings (whose comparisons need a main run made the
    # same way; its audit, AUDIT_SETTINGS, cross-validates one test fold). Not comparable with
    # the paper's figures.
    _PAPER.replace(
        name="paper-bundle-cpu",
        description=("A reduced CPU profile of paper-bundle: the same images, classes and 10 "
                     "folds at 64 px and 10 epochs, for where no GPU is at hand (run a subset of "
                     "folds for a quicker look). Not comparable with the paper."),
        classes=BUNDLE_CLASSES, image_size=64, epochs=10, patience=3, mixed_precision=False,
    ),
    _PAPER.replace(
        name="paper-bundle5",
        description=("The paper's protocol on the five classes the shared real bundle supports "
                     "(COVID-19, Effusion, Fibrosis, Pneumonia, Normal); Edema and Emphysema are "
                     "left out (10 and 3 images). GPU work."),
        classes=BUNDLE5_CLASSES,
    ),
    # The five-class twin of paper-bundle-cpu, for two CPU cores. Not comparable with the paper.
    _PAPER.replace(
        name="paper-bundle5-cpu",
        description=("A reduced CPU profile of paper-bundle5: the same five classes and 10 folds "
                     "at 64 px and 10 epochs, for where no GPU is at hand. Not comparable with "
                     "the paper."),
        classes=BUNDLE5_CLASSES, image_size=64, epochs=10, patience=3, mixed_precision=False,
    ),
]}


def get_profile(name: str, **overrides) -> Profile:
    """The named profile, with ``overrides`` applied (e.g. ``n_folds=5``)."""
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; profiles are: {', '.join(PROFILES)}")
    return _validate(PROFILES[name].replace(**overrides)) if overrides else PROFILES[name]


@dataclass(frozen=True)
class AuditSettings:
    """How big the audit chapter's experiments are for a profile (:mod:`cxrlib.audit`).

    Kept apart from :class:`Profile` because they change no stored result of the main run: the
    audit's retrainings are runs of their own (``<run>-patient``, ...), each with its profile.
    """

    #: The configuration every audit retraining uses and compares with (the paper reads its
    #: possible biomarkers from the network trained from scratch).
    config: str = "from_scratch"
    #: Test folds the retrainings cross-validate (None: all); comparisons use the same folds of
    #: the main run.
    test_folds: tuple[int, ...] | None = None
    #: Test images per class whose Grad-CAM maps are summarised, and images for the
    #: randomisation check.
    saliency_per_class: int = 12
    randomisation_images: int = 16
    #: Synthetic "external" images per class (real data: whatever the bundle has unused).
    external_per_class: int = 40
    #: Common long sides (px) the harmonised retraining and its source probe are repeated at,
    #: beside 248 (cxrlib.audit.retrain.HARMONISE_PX): at a small image_size, 248 px is finer
    #: than what the model sees, so a lower common resolution is the stronger test.
    harmonise_also_px: tuple[int, ...] = ()


#: Audit sizes per profile name; profiles not listed get the full audit (every fold).
AUDIT_SETTINGS: dict[str, AuditSettings] = {
    "tiny": AuditSettings(test_folds=(0,), saliency_per_class=2, randomisation_images=3,
                          external_per_class=4, harmonise_also_px=(16,)),
    # The default run must stay within 15 minutes on two cores with the audit: its five
    # retrainings cross-validate one of the three test folds. The default run and its twin
    # without the shortcut are the audit's controls (cxrlib.audit.controls), and a control
    # must be a network that learned: from scratch, six epochs on 560 synthetic images reach
    # 27% over seven classes (chance 14%), fine-tuning one block about 70%. So their audit
    # retrains and tests fine_tune_1; the real runs' audit stays on from_scratch.
    "default": AuditSettings(config="fine_tune_1", test_folds=(0,), saliency_per_class=8,
                             randomisation_images=12, external_per_class=30),
    "default-no-shortcut": AuditSettings(config="fine_tune_1", test_folds=(0,),
                                         saliency_per_class=8, randomisation_images=12,
                                         external_per_class=30),
    # On two CPU cores each retraining's fold takes about four minutes.
    "paper-bundle-cpu": AuditSettings(test_folds=(0,)),
    # 48 px: the shortest short side curation admits at 64 px (3/4 of it), so every image
    # reaches the network through the coarsest resolution any of them may have.
    "paper-bundle5-cpu": AuditSettings(test_folds=(0,), harmonise_also_px=(48,)),
}


def audit_settings(profile: Profile | str) -> AuditSettings:
    name = profile if isinstance(profile, str) else profile.name
    return AUDIT_SETTINGS.get(name, AuditSettings())
