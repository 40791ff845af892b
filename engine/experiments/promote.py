"""Promote an experiment's winning arm: rewrite the playbook so that arm gets all the weight.

The winner gets `weight: 100` and every other arm (a holdout too) `weight: 0`; the arms stay, so
the history and the report still make sense. The file is edited with ruamel.yaml's round-trip
mode, and only the lines that hold the changed weights are taken from its output: every other
byte of the file (comments, quoting, flow or block style, indentation, blank lines, `---`, line
endings) stays exactly as written. The result is parsed and validated again before an atomic
write; on any error the file is left untouched.
"""

from __future__ import annotations

import copy
import difflib
import io
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from engine.load import LoadedPlaybook, load_playbook_text, parse_yaml
from engine.problems import ProblemsFound, did_you_mean
from engine.spec import EmailStep, Playbook, step_ids
from engine.spec.steps import step_kind

__all__ = ["ArmWeight", "PromoteError", "PromoteResult", "promote"]

WINNER_WEIGHT = 100
"""The promoted arm's weight; every other arm gets 0."""

_BOM = "\ufeff"
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
"""What YAML (and so ruamel.yaml's line numbers) counts as a line break."""
_INDENTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 4, 0), (4, 6, 4), (2, 4, 0), (4, 6, 2), (3, 5, 2))
"""(mapping, sequence, offset) styles tried when matching ruamel.yaml's emitter to the file."""


class PromoteError(ValueError):
    """Promoting is not possible; the message says why, for the person running the command."""


@dataclass(frozen=True)
class ArmWeight:
    """One arm's weight before and after promoting."""

    arm: str
    old: float | None
    """The weight written in the file; None when the arm had no `weight` (the default, 1, applied)."""
    new: int
    holdout: bool = False

    @property
    def changed(self) -> bool:
        """Whether promoting changes this arm's line in the file."""
        return self.old is None or self.old != self.new


@dataclass(frozen=True)
class PromoteResult:
    """What `promote` did: the file, the step and arm promoted, and every arm's old → new weight."""

    path: Path
    step: str
    arm: str
    weights: tuple[ArmWeight, ...]

    @property
    def changed(self) -> bool:
        """False when the arm was already promoted: the file was not rewritten."""
        return any(w.changed for w in self.weights)

    def describe(self) -> str:
        """Human-readable lines for the CLI: one per arm, `a: 45 → 100`."""
        head = f"{self.path}: step '{self.step}', arm '{self.arm}' promoted"
        if not self.changed:
            head += " (it already had all the weight; the file is unchanged)"
        lines = [head]
        for w in self.weights:
            old = "unset (1)" if w.old is None else f"{w.old:g}"
            note = " (holdout)" if w.holdout else ""
            lines.append(f"  {w.arm}{note}: {old} → {w.new}")
        return "\n".join(lines)


def promote(path: Path, step: str, arm: str) -> PromoteResult:
    """Give arm `arm` of the experiment on step `step` all the weight, rewriting the playbook file.

    `step` is a step id, or the step's position as `<kind>-<position>` (e.g. `email-2`). The winner gets
    `weight: 100`, every other arm (a holdout too) `weight: 0`; arms without a `weight` get one.
    Only the weight lines change; the file is written atomically, and not at all when the arm
    already has all the weight. Raises PromoteError, leaving the file untouched, when the file is
    missing or not a valid playbook, the step or arm does not exist, the step has no experiment,
    or the rewritten file would not be a valid playbook.
    """
    shown = str(path)
    raw = _read(path, shown)
    loaded = _load(raw, shown)
    index = _find_step(loaded, step, shown)
    spec_step = loaded.spec.steps[index]
    name = step_ids(loaded.spec.steps)[index]
    line = loaded.located.where(("steps", index))[0]
    if not isinstance(spec_step, EmailStep):
        raise PromoteError(
            f"{shown}:{line}: step '{name}' is {_a(_kind(spec_step))} step; only email steps have experiments"
        )
    experiment = spec_step.email.experiment
    if experiment is None:
        raise PromoteError(f"{shown}:{line}: email step '{name}' has no experiment (no `experiment:` with arms)")
    arm_ids = [a.id for a in experiment.arms]
    if arm not in arm_ids:
        line = loaded.located.where(("steps", index, "email", "experiment", "arms"))[0]
        raise PromoteError(
            f"{shown}:{line}: the experiment of step '{name}' has no arm '{arm}'{did_you_mean(arm, arm_ids)}; "
            f"its arms: {', '.join(arm_ids)}"
        )
    weights = tuple(
        ArmWeight(
            arm=a.id,
            old=a.weight if "weight" in a.model_fields_set else None,
            new=WINNER_WEIGHT if a.id == arm else 0,
            holdout=a.holdout,
        )
        for a in experiment.arms
    )
    result = PromoteResult(path=path, step=name, arm=arm, weights=weights)
    if not result.changed:
        return result
    bom = _BOM if raw.startswith(_BOM.encode()) else ""
    new_text = _rewrite(loaded.source.removeprefix(_BOM), shown, index, name, weights)
    _check(loaded, new_text, shown, index, weights)
    _write_atomic(path, raw, (bom + new_text).encode("utf-8"), shown)
    return result


def _read(path: Path, shown: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PromoteError(f"{shown}: no such file (give the path of a playbook, e.g. playbooks/x.yaml)") from None
    except IsADirectoryError:
        raise PromoteError(f"{shown}: is a directory; give the path of one playbook file") from None
    except OSError as exc:
        raise PromoteError(f"{shown}: cannot read the file: {exc.strerror}") from None


def _load(raw: bytes, shown: str) -> LoadedPlaybook:
    try:
        return load_playbook_text(raw, shown)
    except ProblemsFound as exc:
        shown_problems = "\n".join(f"  {p.format()}" for p in exc.problems[:5])
        more = f"\n  … and {len(exc.problems) - 5} more" if len(exc.problems) > 5 else ""
        raise PromoteError(
            f"{shown} is not a valid playbook, so promote cannot rewrite it (fix it first; "
            f"`touchflow validate` shows every problem):\n{shown_problems}{more}"
        ) from None


def _kind(step: Any) -> str:
    return step_kind(step) or "unknown"


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _find_step(loaded: LoadedPlaybook, step: str, shown: str) -> int:
    steps = loaded.spec.steps
    ids = step_ids(steps)
    if step in ids:
        return ids.index(step)
    # A step with an id of its own may still be named by its position: `email-2`.
    defaults = [f"{_kind(s)}-{i + 1}" for i, s in enumerate(steps)]
    if step in defaults:
        return defaults.index(step)
    hint = did_you_mean(step, ids)
    raise PromoteError(f"{shown}: no step '{step}'{hint}; the steps of this playbook are: {', '.join(ids)}")


# -- rewriting ------------------------------------------------------------------------------------


def _yaml(indent: tuple[int, int, int]) -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 1_000_000  # never re-wrap a long line
    mapping, sequence, offset = indent
    rt.indent(mapping=mapping, sequence=sequence, offset=offset)
    return rt


def _round_trip(text: str, indent: tuple[int, int, int]) -> tuple[YAML, Any]:
    rt = _yaml(indent)
    return rt, rt.load(text)


def _dump(rt: YAML, data: Any) -> str:
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def _guess_indent(text: str) -> tuple[int, int, int]:
    """The emitter indentation whose plain round trip of `text` keeps the most lines unchanged."""
    lines = text.splitlines()
    best, best_score = _INDENTS[0], -1
    for indent in _INDENTS:
        rt, data = _round_trip(text, indent)  # a fresh load each time: dumping marks comments as done
        dumped = _dump(rt, data)
        if dumped == text:
            return indent
        matcher = difflib.SequenceMatcher(None, lines, dumped.splitlines(), autojunk=False)
        score = sum(block.size for block in matcher.get_matching_blocks())
        if score > best_score:
            best, best_score = indent, score
    return best


def _split_lines(text: str) -> list[str]:
    """Lines with their line break, split where YAML (and ruamel.yaml's line numbers) does."""
    lines: list[str] = []
    start = 0
    for match in _LINE_BREAK.finditer(text):
        lines.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        lines.append(text[start:])
    return lines


def _body(line: str) -> str:
    match = _LINE_BREAK.search(line)
    return line[: match.start()] if match else line


def _arms(data: Any, index: int, shown: str, name: str) -> CommentedSeq:
    """The experiment's arms in a round-trip document, refusing what cannot be edited in one place."""
    try:
        step = data["steps"][index]
        email = step["email"]
        experiment = email["experiment"]
        arms = experiment["arms"]
    except (KeyError, IndexError, TypeError):
        raise PromoteError(f"{shown}: cannot find the experiment of step '{name}' in the file's YAML") from None
    if not isinstance(arms, CommentedSeq) or not all(isinstance(a, CommentedMap) for a in arms):
        raise PromoteError(f"{shown}: the experiment of step '{name}' is not written as plain mappings and lists")
    shared = _shared_nodes(data)
    for node in [step, email, experiment, arms, *arms]:
        if id(node) in shared:
            line = node.lc.line + 1
            raise PromoteError(
                f"{shown}:{line}: the experiment of step '{name}' is shared with another part of the file through a "
                "YAML anchor and alias (&name / *name); promote would change both. Write it out in full first."
            )
    for arm in arms:
        if getattr(arm, "merge", None):
            raise PromoteError(
                f"{shown}:{arm.lc.line + 1}: arm '{arm.get('id')}' of step '{name}' uses a YAML merge key (<<); "
                "promote cannot tell where its weight is written. Write the arm out in full first."
            )
        weight = arm.get("weight")
        anchor = getattr(weight, "anchor", None)
        if anchor is not None and anchor.value is not None:
            raise PromoteError(
                f"{shown}:{arm.lc.line + 1}: the weight of arm '{arm.get('id')}' of step '{name}' is a YAML "
                f"anchor or alias (&{anchor.value} / *{anchor.value}); write the number out first."
            )
    return arms


def _shared_nodes(data: Any) -> set[int]:
    """ids of the mappings and lists reached more than once (through aliases)."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if not isinstance(node, CommentedMap | CommentedSeq):
            continue
        if id(node) in seen:
            shared.add(id(node))
            continue
        seen.add(id(node))
        stack.extend(node.values() if isinstance(node, CommentedMap) else node)
    return shared


@dataclass
class _Segment:
    """Lines [old_start, old_end) of the file become lines [new_start, new_end) of ruamel's output;
    the first line keeps the file's text before `old_col` and takes ruamel's from `new_col`."""

    old_start: int
    old_end: int
    new_start: int
    new_end: int
    old_col: int
    new_col: int
    indent_only: bool = False
    """The old prefix is not on an old line (an inserted line): `old_col` spaces."""


def _arm_ends(text: str, index: int) -> list[int]:
    """The line after each arm of step `index` ends (ruamel.yaml records where nodes start, not end)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    for key in ("steps", index, "email", "experiment", "arms"):
        if isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key]
        elif isinstance(node, yaml.MappingNode):
            node = next(v for k, v in node.value if k.value == key)
        else:
            raise LookupError(key)
    if not isinstance(node, yaml.SequenceNode):
        raise LookupError("arms")
    return [arm.end_mark.line + 1 for arm in node.value]


def _old_segment(arm: CommentedMap, end: int) -> _Segment:
    """Where the arm's weight is (or will be inserted) in the file; new_* filled in later."""
    if arm.fa.flow_style():  # the whole `{...}`, which may span lines
        return _Segment(arm.lc.line, end, 0, 0, arm.lc.col, 0)
    if "weight" in arm.lc.data:
        k_line, k_col, v_line, _ = arm.lc.data["weight"]
        return _Segment(k_line, v_line + 1, 0, 0, k_col, 0)
    _, id_key_col, id_line, _ = arm.lc.data["id"]
    return _Segment(id_line + 1, id_line + 1, 0, 0, id_key_col, 0, indent_only=True)


def _new_lines(arm: CommentedMap, end: int, segment: _Segment) -> None:
    if arm.fa.flow_style():
        segment.new_start, segment.new_end, segment.new_col = arm.lc.line, end, arm.lc.col
    else:
        k_line, k_col, v_line, _ = arm.lc.data["weight"]
        segment.new_start, segment.new_end, segment.new_col = k_line, v_line + 1, k_col


def _set_weight(arm: CommentedMap, weight: int) -> None:
    if "weight" in arm:
        arm["weight"] = weight
    else:
        arm.insert(list(arm.keys()).index("id") + 1, "weight", weight)


def _rewrite(text: str, shown: str, index: int, name: str, weights: tuple[ArmWeight, ...]) -> str:
    """The file's text with the changed weights, every other line exactly as it was."""
    try:
        indent = _guess_indent(text)
        rt, data = _round_trip(text, indent)
        arms = _arms(data, index, shown, name)
        if [str(a.get("id")) for a in arms] != [w.arm for w in weights]:
            raise PromoteError(f"{shown}: the arms of step '{name}' read differently as YAML 1.2; promote them by hand")
        changed = [(j, w) for j, w in enumerate(weights) if w.changed]
        ends = _arm_ends(text, index)
        segments = {j: _old_segment(arms[j], ends[j]) for j, _ in changed}
        for j, w in changed:
            _set_weight(arms[j], w.new)
        dumped = _dump(rt, data)
        new_arms = _arms(_yaml(indent).load(dumped), index, shown, name)
        new_ends = _arm_ends(dumped, index)
    except (YAMLError, yaml.YAMLError) as exc:
        raise PromoteError(f"{shown}: cannot rewrite the file's YAML: {str(exc).splitlines()[0]}") from None
    except (LookupError, StopIteration):
        raise PromoteError(f"{shown}: cannot find the arms of step '{name}' in the file's YAML") from None
    for j, _ in changed:
        _new_lines(new_arms[j], new_ends[j], segments[j])
    return _splice(_split_lines(text), _split_lines(dumped), _merge(list(segments.values()), shown))


def _merge(segments: list[_Segment], shown: str) -> list[_Segment]:
    """Join segments that share lines (arms of a one-line flow list), in file order."""
    merged: list[_Segment] = []
    for seg in sorted(segments, key=lambda s: (s.old_start, s.old_col)):
        last = merged[-1] if merged else None
        overlaps_old = last is not None and seg.old_start < last.old_end
        overlaps_new = last is not None and seg.new_start < last.new_end
        if last is not None and (overlaps_old or overlaps_new):
            last.old_end = max(last.old_end, seg.old_end)
            last.new_end = max(last.new_end, seg.new_end)
            continue
        if last is not None and seg.new_start < last.new_start:
            raise PromoteError(f"{shown}: cannot match the rewritten weights to the file's lines; promote by hand")
        merged.append(seg)
    return merged


def _splice(old: list[str], new: list[str], segments: list[_Segment]) -> str:
    newline = next((m.group() for m in map(_LINE_BREAK.search, old) if m), "\n")
    out: list[str] = []
    at = 0
    for seg in segments:
        out.extend(old[at : seg.old_start])
        at = seg.old_end
        body = [_body(line) for line in new[seg.new_start : seg.new_end]]
        if seg.indent_only:
            prefix = " " * seg.old_col
            end = newline
            if out and not _LINE_BREAK.search(out[-1]):  # inserting after a last line without a break
                out[-1] += newline
                end = ""
        else:
            prefix = _body(old[seg.old_start])[: seg.old_col]
            last = old[seg.old_end - 1]
            end = last[len(_body(last)) :]
        body[0] = prefix + body[0][seg.new_col :]
        out.extend(line + newline for line in body[:-1])
        out.append(body[-1] + end)
    out.extend(old[at:])
    return "".join(out)


# -- checking and writing -------------------------------------------------------------------------


def _check(loaded: LoadedPlaybook, new_text: str, shown: str, index: int, weights: tuple[ArmWeight, ...]) -> None:
    """The rewritten text must be a valid playbook that differs from the old one only in the weights."""
    try:
        located = parse_yaml(new_text, shown)
        Playbook.model_validate(located.data)
    except ProblemsFound as exc:
        problem = exc.problems[0].format()
        raise PromoteError(
            f"{shown}: promoting would make the playbook invalid, so nothing was written: {problem}"
        ) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise PromoteError(
            f"{shown}: promoting would make the playbook invalid, so nothing was written: {where}: {error['msg']}"
        ) from None
    expected = copy.deepcopy(loaded.located.data)
    for arm, w in zip(expected["steps"][index]["email"]["experiment"]["arms"], weights, strict=True):
        if w.changed:
            arm["weight"] = w.new
    if located.data != expected:
        raise PromoteError(
            f"{shown}: rewriting the weights would change more than the weights (unusual YAML in the file?), "
            "so nothing was written; change the weights by hand"
        )


def _write_atomic(path: Path, before: bytes, after: bytes, shown: str) -> None:
    """Replace the file's content in one step: a temporary file beside it, then os.replace."""
    target = path.resolve()  # a symlink keeps pointing at the playbook
    tmp: str | None = None
    try:
        if target.read_bytes() != before:
            raise PromoteError(f"{shown}: the file changed while promoting; nothing was written, run the command again")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".promote.tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(after)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))  # mkstemp makes 0600 files
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise PromoteError(f"{shown}: cannot write the file: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
