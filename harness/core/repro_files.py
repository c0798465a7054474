"""What a reproduction bundle holds for MNN's maintainers: its files, its standalone script and its C++ snippet.

A bundle (`harness repro`) is a folder a maintainer can run with nothing but
MNN: the op cut out of the deployed model (cut.mnn), the board's own inputs
to it with the reference's and the board's outputs (tensors.npz, and as raw
.bin files for C++), a Python script that uses only MNN and numpy
(repro.py), the same as C++ with MNN's Interpreter/Session/Tensor API
(repro.cpp), and ISSUE.md. The script is also what the harness runs on the
board and on the reference to verify the bundle (the agent's `script` job),
so its command line is a contract: --model, --tensors and --save, with the
settings it failed with as defaults.
"""

import json
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

MODEL_FILE = "cut.mnn"
TENSORS_FILE = "tensors.npz"
SCRIPT_FILE = "repro.py"
CPP_FILE = "repro.cpp"
ISSUE_FILE = "ISSUE.md"
MANIFEST_FILE = "repro.json"
SOURCE_FILE = "source.onnx"
"""The ONNX sub-graph of the cut, where the op maps back to the source exactly."""

MNN_PRECISIONS = {"low": "low", "normal": "normal", "high": "high", "low_bf16": "Low_BF16"}
"""The harness's precision names as MNN's Python API takes them: createSession knows "low", "high" and
"Low_BF16" (exactly so; anything else, "normal" too, is Precision_Normal)."""
CPP_PRECISIONS = {"low": "Precision_Low", "normal": "Precision_Normal", "high": "Precision_High",
                  "low_bf16": "Precision_Low_BF16"}
MNN_BACKENDS = {"cpu": "CPU", "opencl": "OPENCL", "vulkan": "VULKAN", "auto": "AUTO"}
CPP_BACKENDS = {"cpu": "MNN_FORWARD_CPU", "opencl": "MNN_FORWARD_OPENCL", "vulkan": "MNN_FORWARD_VULKAN",
                "auto": "MNN_FORWARD_AUTO"}
CPP_TYPES = {"float32": "float", "int32": "int32_t", "int64": "int64_t", "uint8": "uint8_t"}
"""The dtypes a bundle's tensors may have (what MNN's host tensors take), as C++ types."""


def input_key(tensor: str) -> str:
    return "input/" + tensor


def reference_key(tensor: str) -> str:
    return "reference/" + tensor


def board_key(tensor: str) -> str:
    return "board/" + tensor


def script_args(settings: dict) -> List[str]:
    """The script's options for a side's settings (precision, threads, backend), as the harness runs it."""
    return ["--precision", MNN_PRECISIONS[str(settings.get("precision", "normal"))],
            "--threads", str(int(settings.get("threads", 1))),
            "--backend", MNN_BACKENDS[str(settings.get("backend", "cpu")).lower()]]


def shell_args(settings: dict) -> str:
    return " ".join(script_args(settings))


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the cut model as the bundle stores it."""

    name: str
    shape: List[int]
    dtype: str

    @property
    def count(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


_SCRIPT = '''\
#!/usr/bin/env python3
"""{title}

Runs {model}, the op cut out of the deployed model, on the board's own inputs ({tensors}) and
prints how far its outputs are from the reference's. Only numpy and MNN are needed
(pip install MNN=={version}); the defaults are the settings it failed with. See ISSUE.md.
"""
import argparse

import MNN
import numpy as np

TYPES = {{"float32": MNN.Halide_Type_Float, "int32": MNN.Halide_Type_Int, "int64": MNN.Halide_Type_Int64,
         "uint8": MNN.Halide_Type_Uint8}}
NHWC = {nhwc}  # inputs given in TensorFlow's layout, as the model takes them; the others are NCHW
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="{model}")
parser.add_argument("--tensors", default="{tensors}")
parser.add_argument("--precision", default="{precision}", help="low, normal, high or Low_BF16")
parser.add_argument("--threads", type=int, default={threads})
parser.add_argument("--backend", default="{backend}", help="CPU, OPENCL, VULKAN or AUTO")
parser.add_argument("--save", help="also write the outputs to this .npz")
args = parser.parse_args()
tensors = np.load(args.tensors)
net = MNN.Interpreter(args.model)
session = net.createSession({{"precision": args.precision, "numThread": args.threads, "backend": args.backend}})
for name, tensor in net.getSessionInputAll(session).items():
    net.resizeTensor(tensor, tensors["input/" + name].shape)
net.resizeSession(session)
for name, tensor in net.getSessionInputAll(session).items():  # copyFrom converts layout and precision
    x = tensors["input/" + name]
    layout = MNN.Tensor_DimensionType_Tensorflow if name in NHWC else MNN.Tensor_DimensionType_Caffe
    tensor.copyFrom(MNN.Tensor(x.shape, TYPES[str(x.dtype)], x, layout))
assert net.runSession(session) == 0, "runSession failed"
outputs = {{}}
for name, tensor in net.getSessionOutputAll(session).items():
    dtype = {{halide: np.dtype(kind) for kind, halide in TYPES.items()}}[tensor.getDataType()]
    host = MNN.Tensor(tensor.getShape(), tensor.getDataType(), np.zeros(tensor.getShape(), dtype),
                      MNN.Tensor_DimensionType_Caffe)
    tensor.copyToHostTensor(host)  # as the session's output is read right: converted to float32 NCHW
    y = outputs[name] = np.array(host.getNumpyData(), dtype=dtype).reshape(tensor.getShape())
    if "reference/" + name not in tensors.files:
        print("%s: %s %s, no reference to compare with" % (name, list(y.shape), y.dtype))
        continue
    ref, here = tensors["reference/" + name].astype(np.float64), y.astype(np.float64)
    new = ~np.isfinite(here) & np.isfinite(ref)
    if new.any():
        at = np.unravel_index(np.argmax(new), y.shape)
        print("%s: %d of %d values are NaN/Inf here and finite in the reference (first at %s: here %s, "
              "reference %.7g)" % (name, new.sum(), y.size, tuple(int(i) for i in at), here[at], ref[at]))
        continue
    diff = np.where(np.isfinite(ref), np.abs(here - ref), 0.0)
    at = np.unravel_index(np.argmax(diff), y.shape)
    scale = np.abs(ref[np.isfinite(ref)]).max(initial=0.0)
    steps = ("%.3g FP16 steps there" % (diff[at] / np.spacing(np.float16(abs(ref[at])))) if abs(ref[at]) < 32768
             else "beyond FP16's range" if abs(ref[at]) > 65504 else "%.3g FP16 steps there" % (diff[at] / 32))
    print("%s: max |here - reference| %.3g at %s (here %.7g, reference %.7g: %s) = %.3g of max |reference| %.4g"
          % (name, diff[at], tuple(int(i) for i in at), here[at], ref[at], steps, diff[at] / max(scale, 1e-30),
             scale))
if args.save:
    np.savez(args.save, **outputs)
'''


def python_script(title: str, settings: dict, mnn_version: str, nhwc: Sequence[str] = ()) -> str:
    """repro.py: the standalone script (MNN's Python API and numpy only), defaulting to the board's settings.

    nhwc: inputs whose values are in TensorFlow's layout (a model input of an NHWC model, as the agent feeds it);
    the others are as MNN's copyToHostTensor gave them, NCHW (Caffe)."""
    return _SCRIPT.format(title=title, model=MODEL_FILE, tensors=TENSORS_FILE,
                          nhwc="{" + ", ".join(json.dumps(name) for name in sorted(nhwc)) + "}" if nhwc else "set()",
                          precision=MNN_PRECISIONS[str(settings.get("precision", "normal"))],
                          threads=int(settings.get("threads", 1)),
                          backend=MNN_BACKENDS[str(settings.get("backend", "cpu")).lower()],
                          version=mnn_version or "3.6.1")


_CPP_HEAD = '''\
// {title}
// Runs {model} (the op cut out of the deployed model) with MNN's C++ API on the board's own inputs
// (input-N.bin) and prints how far its outputs are from the reference's (reference-N.bin). The .bin files
// are the arrays of {tensors}: raw, little-endian, C order, in the shapes below (NCHW as MNN's CAFFE, but
// where an input is fed as TENSORFLOW: NHWC).
// Build it where MNN is (MNN {version}, its include/ and libMNN.so):
//   g++ -std=c++11 -O2 {cpp} -I MNN/include -L MNN/build -lMNN -o repro && ./repro
#include <MNN/Interpreter.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <vector>

template <typename T>
static std::vector<T> load(const char* path, size_t count) {{
    std::vector<T> data(count);
    std::ifstream file(path, std::ios::binary);
    if (!file.read(reinterpret_cast<char*>(data.data()), count * sizeof(T))) {{
        fprintf(stderr, "cannot read %zu values from %s\\n", count, path);
        exit(2);
    }}
    return data;
}}

// map/unmap convert between the host's NCHW (CAFFE) and the backend's layout and precision (NC4HW4, FP16).
template <typename T>
static void feed(MNN::Tensor* tensor, const char* path, size_t count, MNN::Tensor::DimensionType layout) {{
    std::vector<T> data = load<T>(path, count);
    T* mapped = static_cast<T*>(tensor->map(MNN::Tensor::MAP_TENSOR_WRITE, layout));
    std::copy(data.begin(), data.end(), mapped);
    tensor->unmap(MNN::Tensor::MAP_TENSOR_WRITE, layout, mapped);
}}

template <typename T>
static void compare(const char* name, MNN::Tensor* tensor, const char* path, size_t count) {{
    std::vector<T> reference = load<T>(path, count);
    T* here = static_cast<T*>(tensor->map(MNN::Tensor::MAP_TENSOR_READ, MNN::Tensor::CAFFE));
    size_t fresh = 0, at = 0;
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < count; ++i) {{
        double mine = static_cast<double>(here[i]), theirs = static_cast<double>(reference[i]);
        if (!std::isfinite(theirs)) continue;
        scale = std::max(scale, std::fabs(theirs));
        if (!std::isfinite(mine)) {{
            if (fresh++ == 0) at = i;
        }} else if (fresh == 0 && std::fabs(mine - theirs) > worst) {{
            worst = std::fabs(mine - theirs);
            at = i;
        }}
    }}
    if (fresh) worst = INFINITY;
    printf("%s: %zu of %zu values NaN/Inf here and finite in the reference; max |here - reference| %.3g at flat "
           "index %zu (here %.7g, reference %.7g), %.3g of max |reference| %.4g\\n", name, fresh, count, worst, at,
           static_cast<double>(here[at]), static_cast<double>(reference[at]), worst / std::max(scale, 1e-30), scale);
    tensor->unmap(MNN::Tensor::MAP_TENSOR_READ, MNN::Tensor::CAFFE, here);
}}

int main() {{
    std::shared_ptr<MNN::Interpreter> net(MNN::Interpreter::createFromFile("{model}"), MNN::Interpreter::destroy);
    if (!net) {{
        fprintf(stderr, "cannot load {model}\\n");
        return 1;
    }}
    MNN::ScheduleConfig config;
    config.type = {backend};
    config.numThread = {threads};
    MNN::BackendConfig backend;
    backend.precision = MNN::BackendConfig::{precision};
    config.backendConfig = &backend;
    MNN::Session* session = net->createSession(config);
'''


def cpp_snippet(title: str, settings: dict, mnn_version: str, inputs: Sequence[TensorSpec],
                outputs: Sequence[TensorSpec], nhwc: Sequence[str] = ()) -> str:
    """repro.cpp: the same run with MNN's C++ API (Interpreter, Session, Tensor map/unmap), as users on boards
    write it."""
    lines = [_CPP_HEAD.format(title=title.replace("\n", " "), model=MODEL_FILE, tensors=TENSORS_FILE,
                              cpp=CPP_FILE, version=mnn_version or "3.6.1",
                              backend=CPP_BACKENDS[str(settings.get("backend", "cpu")).lower()],
                              threads=int(settings.get("threads", 1)),
                              precision=CPP_PRECISIONS[str(settings.get("precision", "normal"))])]
    for index, spec in enumerate(inputs):
        dims = ", ".join(str(int(d)) for d in spec.shape)
        lines.append(f"    MNN::Tensor* input{index} = net->getSessionInput(session, {json.dumps(spec.name)});\n"
                     f"    net->resizeTensor(input{index}, {{{dims}}});\n")
    lines.append("    net->resizeSession(session);\n")
    for index, spec in enumerate(inputs):
        layout = "MNN::Tensor::TENSORFLOW" if spec.name in set(nhwc) else "MNN::Tensor::CAFFE"
        lines.append(f"    feed<{CPP_TYPES[spec.dtype]}>(input{index}, \"input-{index}.bin\", {spec.count},\n"
                     f"                {layout});\n")
    lines.append("    if (net->runSession(session) != MNN::NO_ERROR) {\n"
                 "        fprintf(stderr, \"runSession failed\\n\");\n"
                 "        return 1;\n"
                 "    }\n")
    for index, spec in enumerate(outputs):
        name = json.dumps(spec.name)
        lines.append(f"    compare<{CPP_TYPES[spec.dtype]}>({name}, net->getSessionOutput(session, {name}), "
                     f"\"reference-{index}.bin\", {spec.count});\n")
    lines.append("    return 0;\n}\n")
    return "".join(lines)


def raw_files(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
              tensors: Dict[str, np.ndarray]) -> Dict[str, bytes]:
    """input-N.bin and reference-N.bin for the C++ snippet: each array's bytes, little-endian, C order."""
    files = {}
    for prefix, key, specs in (("input", input_key, inputs), ("reference", reference_key, outputs)):
        for index, spec in enumerate(specs):
            array = np.ascontiguousarray(tensors[key(spec.name)], dtype=np.dtype(spec.dtype).newbyteorder("<"))
            files[f"{prefix}-{index}.bin"] = array.tobytes()
    return files
