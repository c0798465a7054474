"""Real runs of the scenarios whose records the tests keep, with every view of each: the maker of the stored
records (tests/data/summaries/) and the before/after check of a change to the record or its views.

    MNN_HARNESS_CACHE=... python -m tests.record_corpus OUT [CASE...]
        every case (or those named) with this checkout's harness: OUT/<case>/ gets what `harness run` printed
        (live.txt), its exit code (rc), and per run folder its summary.json, junit.xml, report.html (and
        matrix.json, layers.json, bisect.json) and `harness report` of it at 80 and 100 columns
    ... --checkout DIR    run the harness of another checkout (a `git archive` of main, say) the same way
    ... --store           then copy the stored records' runs to tests/data/summaries/<name>.json

Compare two OUT folders (before and after a change) with `diff -r` once timings and ids are masked: the words
must not change. The cases run on x86 and emulated boards: the shipped scenarios as shipped (arm-a76 of the
default inventory; SegFormer at 128x128), the shipped decoded scenarios at FP16, and the stored records' runs
on an emulated farm of four (`harness farm up --size 4 --farm farm-lab7`: a53, a76, max and a76-old, an A76
with MNN 3.4.1) and an SSH board that cannot be reached. A matrix, a layer search, a bisect and two nights
complete it.

A stored record is the run's summary.json with this machine's paths made neutral (the cache as
~/.cache/mnn-harness, site-packages and the checkout cut off, the scenario by its file name): the record
round-trips byte for byte (tests/test_record.py) and names nothing of the machine that made it.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
SUMMARIES = REPO / "tests" / "data" / "summaries"
FARM = "farm-lab7"
A53, A76, MAX, OLD = f"{FARM}-a53", f"{FARM}-a76", f"{FARM}-max", f"{FARM}-a76-old"
UNREACHABLE = "lab-rk3588-unreachable"

QUICK = """name: {name}
model:
  build: {checkout}/scenarios/models/tiny_segnet.py
  build_args: {{height: 64, width: 64, num_classes: 8, seed: 0}}
  converter_args: {converter}
inputs:
  images: [skimage:astronaut]
preprocess:
  color: rgb
  resize: {{height: 64, width: 64, interpolation: {interpolation}}}
  scale: 1/255
  mean: [0.485, 0.456, 0.406]
  std: [0.229, 0.224, 0.225]
run:
  precision: {precision}
  backend: {backend}
targets: {targets}
outputs:
  logits:
    kind: class_logits
    tolerance: {{min_argmax_agreement: 0.999}}
"""
Text = Callable[[Path], str]
"""A scenario's text for a checkout (its models' paths are the checkout's)."""


def quick(name: str, targets: List[str], precision: str = "normal", backend: str = "cpu",
          converter: str = '[--useGeluApproximation, "0"]', interpolation: str = "area", extra: str = "") -> Text:
    return lambda checkout: QUICK.format(name=name, checkout=checkout, targets="[" + ", ".join(targets) + "]",
                                         precision=precision, backend=backend, converter=converter,
                                         interpolation=interpolation) + extra


def shipped(file: str, replace: Tuple[Tuple[str, str], ...] = (), extra: str = "") -> Text:
    def text(checkout: Path) -> str:
        body = (checkout / "scenarios" / file).read_text()
        body = body.replace(": models/", f": {checkout}/scenarios/models/")
        for old, new in replace:
            assert old in body, (file, old)
            body = body.replace(old, new)
        return body + extra
    return text


FP16 = "run: {precision: low}\n"
SEGFORMER_128 = (("height: 512, width: 512, num_classes", "height: 128, width: 128, num_classes"),
                 ("{height: 512, width: 512, interpolation", "{height: 128, width: 128, interpolation"))
CASES: Dict[str, Tuple[str, Text, bool]] = {
    # case: (scenario file name, its text, on the farm's inventory)
    # every shipped scenario as shipped, on x86 and the default inventory's emulated A76
    "quick": ("quick.yaml", shipped("quick.yaml"), False),
    "deployed_mnn": ("deployed_mnn.yaml", shipped("deployed_mnn.yaml"), False),
    "face_tflite": ("face_tflite.yaml", shipped("face_tflite.yaml"), False),
    "ppocr_det": ("ppocr_det.yaml", shipped("ppocr_det.yaml"), False),
    "segformer": ("segformer.yaml", shipped("segformer.yaml", SEGFORMER_128), False),
    "silero_vad": ("silero_vad.yaml", shipped("silero_vad.yaml"), False),
    "farm": ("farm.yaml", shipped("farm.yaml"), False),
    "crnn_text": ("crnn_text.yaml", shipped("crnn_text.yaml"), False),
    "text_orientation": ("text_orientation.yaml", shipped("text_orientation.yaml"), False),
    # the decoded scenarios at FP16 on the A76: a CRNN that misreads some lines, faces and orientations that hold
    "crnn-text-fp16": ("crnn_text.yaml", shipped("crnn_text.yaml", extra=FP16), False),
    "face-tflite-faces-fp16": ("face_tflite.yaml", shipped("face_tflite.yaml", extra=FP16), False),
    "text-orientation-fp16": ("text_orientation.yaml", shipped("text_orientation.yaml", extra=FP16), False),
    # the stored records' runs, on the farm: a failure of every kind among them
    "quick-fp16": ("quick.yaml", quick("quick", ["x86", A53, A76], precision="low"), True),
    "quick-require-same-mnn": ("quick-version.yaml", quick("quick-version", ["x86", A76, OLD],
                                                           extra="require_same_mnn: true\n"), True),
    "quick-conversion-fails": ("quick-w4.yaml", quick("quick-w4", ["x86", MAX], converter='[--weightQuantBits, "4"]'),
                               True),
    "quick-parity-fails": ("quick-parity.yaml", quick("quick-parity", ["x86", A53], interpolation="linear",
                                                      extra="preprocess_parity: {board: {color: bgr}}\n"), True),
    "quick-board-unreachable": ("quick-unreachable.yaml", quick("quick-unreachable", ["x86", A76, UNREACHABLE]),
                                True),
    "quick-backend-falls-back": ("quick-opencl.yaml", quick("quick-opencl", ["x86", A76], backend="opencl"), True),
    "deployed-mnn": ("deployed_mnn.yaml", shipped("deployed_mnn.yaml", (("targets: [x86, arm-a76]",
                                                                         f"targets: [x86, {MAX}]"),)), True),
    "face-tflite": ("face_tflite.yaml", shipped("face_tflite.yaml", (("targets: [x86, arm-a76]",
                                                                      f"targets: [x86, {MAX}]"),)), True),
    "farm-stored": ("farm.yaml", shipped("farm.yaml"), True),
    "ppocr-det": ("ppocr_det.yaml", shipped("ppocr_det.yaml", (("targets: [x86, arm-a76]", f"targets: [x86, {A76}]"),)),
                  True),
    "segformer-stored": ("segformer.yaml", shipped("segformer.yaml", (("targets: [x86, arm-a76]",
                                                                       f"targets: [x86, {OLD}]"),)), True),
    "silero-vad": ("silero_vad.yaml", shipped("silero_vad.yaml", (("targets: [x86, arm-a76]", f"targets: [x86, {OLD}]"),
                                                                   ("precision: normal", "precision: low"))), True),
    # a matrix (its table, and each setting's run)
    "matrix": ("quick.yaml", shipped("quick.yaml", (("run:\n  precision: normal\n",
                                                      "matrix:\n  precision: [normal, low]\n"),)), False),
}
STORED = {"crnn-text-fp16": "crnn-text-fp16", "face-tflite-faces-fp16": "face-tflite-faces-fp16",
          "text-orientation-fp16": "text-orientation-fp16", "quick-fp16": "quick-fp16",
          "quick-require-same-mnn": "quick-require-same-mnn", "quick-conversion-fails": "quick-conversion-fails",
          "quick-parity-fails": "quick-parity-fails", "quick-board-unreachable": "quick-board-unreachable",
          "quick-backend-falls-back": "quick-backend-falls-back", "deployed-mnn": "deployed-mnn",
          "face-tflite": "face-tflite", "farm-stored": "farm", "ppocr-det": "ppocr-det",
          "segformer-stored": "segformer", "silero-vad": "silero-vad"}
"""Case -> the name of its stored record (tests/data/summaries/<name>.json)."""
COMMANDS = {
    "layers": ["layers", "SCENARIO", "--board", "arm-a76", "--precision", "low"],
    "bisect": ["bisect", "SCENARIO", "--board", "arm-a76", "--mnn", "3.4.1,3.6.1", "--converter"],
    "nightly": ["nightly", "NIGHTLY"],
}
"""The other commands, each on the shipped quick scenario."""
VIEWS = ("summary.json", "junit.xml", "report.html", "matrix.json", "layers.json", "bisect.json")


def cache() -> Path:
    value = os.environ.get("MNN_HARNESS_CACHE")
    if not value:
        sys.exit("set MNN_HARNESS_CACHE (the cache whose emulated farm the cases run on)")
    return Path(value)


def farm_inventory(out: Path) -> Path:
    """The farm's inventory and a board nothing answers on."""
    farm = cache() / "farm" / f"{FARM}-inventory.yaml"
    if not farm.is_file():
        sys.exit(f"no farm {FARM}: run `harness farm up --size 4 --farm {FARM}` first")
    path = out / "lab-inventory.yaml"
    path.write_text(farm.read_text() + f"  {UNREACHABLE}:\n    kind: ssh\n    host: 127.0.0.1\n    port: 9\n"
                    "    user: root\n    connect_timeout: 2\n")
    return path


def harness(checkout: Path, args: List[str], columns: int, out_file: Path) -> int:
    env = dict(os.environ, COLUMNS=str(columns), PYTHONDONTWRITEBYTECODE="1")
    env.pop("MNN_HARNESS_INVENTORY", None)
    with open(out_file, "w") as out:
        return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=checkout, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=3600).returncode


def run_case(checkout: Path, out: Path, case: str) -> None:
    folder = out / case
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    reports = folder / "reports"
    inventory: List[str] = []
    if case in COMMANDS:
        scenario = folder / "quick.yaml"
        scenario.write_text(shipped("quick.yaml")(checkout))
        nightly = folder / "nightly.yaml"
        nightly.write_text("runs:\n  - scenario: quick.yaml\n")
        named = {"SCENARIO": str(scenario), "NIGHTLY": str(nightly)}
        args = [named.get(arg, arg) for arg in COMMANDS[case]] + ["--reports", str(reports)]
    else:
        name, text, on_farm = CASES[case]
        scenario = folder / name
        scenario.write_text(text(checkout))
        inventory = ["--inventory", str(farm_inventory(out))] if on_farm else []
        args = ["run", str(scenario), "--reports", str(reports)]
    (folder / "rc").write_text(f"{harness(checkout, inventory + args, 100, folder / 'live.txt')}\n")
    if case == "nightly":  # a second night, compared with the first; then the history
        (folder / "rc2").write_text(f"{harness(checkout, args, 100, folder / 'live2.txt')}\n")
        for columns in (80, 100):
            harness(checkout, ["history", "--reports", str(reports)], columns, folder / f"history-{columns}.txt")
        if (reports / "index.html").is_file():
            shutil.copy(reports / "index.html", folder / "index.html")
    runs = sorted({path.parent for view in VIEWS for path in reports.glob(f"**/{view}")}) if reports.is_dir() else []
    for run in runs:
        label = str(run.relative_to(reports)).replace("/", "+")
        for view in VIEWS:
            if (run / view).is_file():
                shutil.copy(run / view, folder / f"{label}.{view}")
        if (run / "summary.json").is_file() or (run / "matrix.json").is_file():
            for columns in (80, 100):
                harness(checkout, inventory + ["report", str(run)], columns, folder / f"{label}.report-{columns}.txt")


def neutral(text: str, checkout: Path, folder: Path) -> str:
    """A record's text with this machine's paths made neutral (JSON-escaped paths are plain here: no quote or
    backslash in them)."""
    site = sysconfig.get_paths()["purelib"]
    for path, instead in ((str(cache()), "~/.cache/mnn-harness"), (site + "/", ""), (str(folder) + "/", ""),
                          (str(checkout) + "/", "")):
        text = text.replace(path, instead)
    return text


def store(checkout: Path, out: Path, case: str) -> None:
    """The case's run, as the stored record tests/data/summaries/<name>.json."""
    folder = out / case
    (summary,) = sorted(folder.glob("*.summary.json"))
    data = json.loads(neutral(summary.read_text(), checkout, folder))
    data["scenario"]["path"] = Path(data["scenario"]["path"]).name
    (SUMMARIES / f"{STORED[case]}.json").write_text(json.dumps(data, indent=1, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("cases", nargs="*", help=f"of {', '.join([*CASES, *COMMANDS])} (default: all)")
    parser.add_argument("--checkout", type=Path, default=REPO, help="the harness to run (default: this one)")
    parser.add_argument("--store", action="store_true", help="copy the stored records' runs to tests/data/")
    args = parser.parse_intermixed_args()
    out, checkout = args.out.resolve(), args.checkout.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for case in args.cases or [*CASES, *COMMANDS]:
        if case not in CASES and case not in COMMANDS:
            sys.exit(f"no case {case!r}: pick from {', '.join([*CASES, *COMMANDS])}")
        print(case, flush=True)
        run_case(checkout, out, case)
        if args.store and case in STORED:
            store(checkout, out, case)


if __name__ == "__main__":
    main()
