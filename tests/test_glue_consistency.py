"""Every glued name of the book means one thing: the chapters use only names they glue, a name
glued by two chapters has one value, and a legend names only columns its tables show.

The glued values come from running each chapter's own glue cells (every code cell up to the
last one that glues) on the committed real-data runs, with ``myst_nb.glue`` replaced by a
recorder: the same library calls the book makes, without building it.
"""
from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from cxrlib.analysis import tables
from cxrlib.core import metrics
from cxrlib.experiment import runs
from cxrlib.report import glue as glue_module

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
#: The committed runs the chapters show (the book's run and the audit chapter's run).
BOOK_RUN = ROOT / "results" / "paper-bundle"
AUDIT_RUN = ROOT / "results" / "paper-bundle5-cpu"

#: ``{glue}`name```, ``{glue:}`name```, ``{glue:text}`name:.2f```, ...: the name before any format.
ROLE = re.compile(r"\{glue(?::[a-z]*)?\}`([^`:]+)(?::[^`]*)?`")
#: ``{glue:figure} name``, ``{glue:math} name`` and ``{glue} name`` directives.
DIRECTIVE = re.compile(r"^[`:]{3,}\{glue(?::[a-z]*)?\}[ \t]+(\S+)", re.M)
CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
#: An inline code span in prose that reads as a column label (no command, path or code).
LABEL_SPAN = re.compile(r"(?<![`}])`([A-Za-z][\w ,'%-]*)`(?!`)")


def used_names(markdown: str) -> set[str]:
    """The glue names a chapter's Markdown refers to (roles and directives)."""
    prose = CODE_CELL.sub("", markdown)
    return set(ROLE.findall(prose)) | set(DIRECTIVE.findall(prose))


def cell_source(cell: str) -> str:
    """A code cell's code, without its ``:key: value`` options or ``---`` YAML header."""
    if cell.startswith("---\n"):
        cell = cell[cell.index("\n---\n", 3) + 5:]
    lines = cell.splitlines()
    while lines and (lines[0].startswith(":") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines)


def glue_cells(markdown: str) -> list[str]:
    """The chapter's code cells up to the last one that glues, in order."""
    cells = [cell_source(c) for c in CODE_CELL.findall(markdown)]
    gluing = [i for i, c in enumerate(cells) if re.search(r"\bglue(\.\w+)?\(", c)]
    return cells[: gluing[-1] + 1] if gluing else []


def glued_values(markdown: str, monkeypatch) -> dict:
    """Run a chapter's glue cells and return what they glue, by name."""
    recorded: dict = {}

    def record(name, value, display=True):
        recorded[name] = value

    monkeypatch.setattr(glue_module, "glue", record)
    namespace: dict = {"__name__": "__chapter__"}
    for source in glue_cells(markdown):
        exec(compile(source, "<chapter>", "exec"), namespace)  # noqa: S102 - the book's own cells
    return recorded


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (int, float, str, bool)) and isinstance(b, (int, float, str, bool)):
        return a == b
    return type(a) is type(b)  # figures and tables: one name, one kind of output


def inconsistencies(glued: dict[str, dict], used: dict[str, set[str]]) -> list[str]:
    """What breaks "one name, one meaning": a name used but glued by no chapter of its own,
    and a name glued with different values by two chapters."""
    problems = [f"{chapter}: uses {name!r}, which it does not glue"
                for chapter, names in used.items() for name in sorted(names - set(glued[chapter]))]
    first: dict[str, tuple[str, object]] = {}
    for chapter, values in glued.items():
        for name, value in values.items():
            if name in first and not _same(first[name][1], value):
                problems.append(f"{name!r} is {first[name][1]!r} in {first[name][0]} but "
                                f"{value!r} in {chapter}")
            first.setdefault(name, (chapter, value))
    return problems


def shown_labels(values: dict) -> set[str]:
    """Every column and index label of the glued tables (DataFrames or Stylers)."""
    labels: set[str] = set()
    for value in values.values():
        frame = getattr(value, "data", value)
        if isinstance(frame, pd.DataFrame):
            for axis in (frame.columns, frame.index):
                labels.update(str(n) for n in axis.names if n is not None)
                for level in range(axis.nlevels):
                    labels.update(str(v) for v in axis.get_level_values(level))
    return labels


def unshown_columns(markdown: str, labels: set[str]) -> list[str]:
    """Column names a legend mentions (inline code in the prose) that no table shows."""
    prose = FENCE.sub("", markdown)
    prose = ROLE.sub("", prose)
    return sorted({span for span in LABEL_SPAN.findall(prose) if span not in labels})


@pytest.fixture(scope="module")
def chapters():
    return {p.stem: p.read_text() for p in sorted(BOOK.glob("*.md"))}


@pytest.fixture(scope="module")
def glued(chapters):
    if not (BOOK_RUN / "profile.json").is_file():
        pytest.skip(f"the committed run {BOOK_RUN} is not in this checkout")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXRLIB_BOOK_RUN", str(BOOK_RUN))
        if (AUDIT_RUN / "profile.json").is_file():
            patch.setenv("CXRLIB_AUDIT_RUN", str(AUDIT_RUN))
        return {name: glued_values(text, patch) for name, text in chapters.items()}


def test_every_glued_name_has_one_value_and_every_used_name_is_glued(chapters, glued):
    used = {name: used_names(text) for name, text in chapters.items()}
    assert sum(map(len, used.values())) > 50, "the parser found the chapters' glue roles"
    assert "cmp_overview" in used["comparison"] and "run_name" in used["comparison"]
    assert inconsistencies(glued, used) == []


def test_legends_name_only_columns_the_tables_show(chapters, glued):
    for name in ("comparison", "results"):
        labels = shown_labels(glued[name])
        assert labels, f"{name} glues its tables"
        assert unshown_columns(chapters[name], labels) == [], name


def test_a_planted_inconsistency_fails(tmp_path, monkeypatch):
    """Two chapters gluing one name with two values, a name nobody glues, a legend naming a
    column no table shows: each is found (the checks above can fail)."""
    def chapter(setup: str, prose: str) -> str:
        return f"# A chapter\n\n```{{code-cell}} ipython3\n:tags: [remove-cell]\n\n" \
               f"{textwrap.dedent(setup)}\n```\n\n{prose}\n"
    frame = "pd.DataFrame({'ours': [1.0], 'paper': [2.0]})"
    one = chapter(f"""
        import pandas as pd
        from cxrlib.report import glue
        glue.glue_numbers({{"ours_from_scratch_acc_nclass": 89.7}})
        glue.glue_outputs({{"tbl": {frame}}})""",
                  "Ours {glue:text}`ours_from_scratch_acc_nclass:.1f`%; see `ours` and `ci_low`.")
    two = chapter("""
        from cxrlib.report import glue
        glue.glue_numbers({"ours_from_scratch_acc_nclass": 89.5})""",
                  "Ours {glue:text}`ours_from_scratch_acc_nclass:.1f`, {glue:}`nobody_glues`.\n\n"
                  "```{glue:figure} no_figure\nA caption.\n```")
    texts = {"one": one, "two": two}
    glued = {name: glued_values(text, monkeypatch) for name, text in texts.items()}
    used = {name: used_names(text) for name, text in texts.items()}
    assert used["two"] == {"ours_from_scratch_acc_nclass", "nobody_glues", "no_figure"}
    problems = inconsistencies(glued, used)
    assert any("'ours_from_scratch_acc_nclass' is 89.7 in one but 89.5 in two" in p
               for p in problems)
    assert "two: uses 'nobody_glues', which it does not glue" in problems
    assert "two: uses 'no_figure', which it does not glue" in problems
    assert len(problems) == 3
    assert unshown_columns(one, shown_labels(glued["one"])) == ["ci_low"]


@pytest.mark.parametrize("run", [BOOK_RUN, AUDIT_RUN], ids=lambda p: p.name)
def test_the_audit_headline_pools_the_folds_the_other_chapters_pool(run):
    """The audit stores its headline figures when it runs (``audit/uncertainty.csv``); a
    configuration that gained folds since then would be quoted from fewer folds there than in
    the results and comparison chapters (one quantity, two values: from scratch 89.7% from 8
    folds in one chapter, 89.5% from 10 in another). Each stored figure must pool exactly the
    stored predictions the other chapters read."""
    stored = run / "audit" / "uncertainty.csv"
    if not stored.is_file():
        pytest.skip(f"{run.name} has no stored audit")
    headline = pd.read_csv(stored)
    networks = headline[(headline["kind"] == "network") & (headline["metric"] == "accuracy")]
    assert len(networks), "the audit names its networks"
    for _, row in networks.iterrows():
        pred = tables.predictions(run, row["model"])
        assert row["n"] == len(pred), (f"{run.name} {row['model']}: the audit pools {row['n']} "
                                       f"test images, the stored folds hold {len(pred)}; rerun "
                                       f"the audit (python -m cxrlib audit)")
        pooled = metrics.pooled_metrics(pred, runs.run_classes(run))["accuracy"]
        assert row["value"] == pytest.approx(pooled, abs=1e-5)
