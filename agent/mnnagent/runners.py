"""One loaded model that runs feeds into outputs: MNN's Session API and its Module (expression) API.

MNN and numpy arrive as parameters: they are imported when a job runs.
"""

from .backends import FORWARD_TYPES, SESSION_BACKENDS, backend_facts, fallback_lines, session_backend
from .contract import JobError
from .inputs import feed_array
from .native import CapturedStdout

HALIDE = {"float32": "Halide_Type_Float", "int32": "Halide_Type_Int", "int64": "Halide_Type_Int64",
          "uint8": "Halide_Type_Uint8"}


def check_names(what, wanted, known):
    missing = [name for name in wanted if name not in known]
    if missing:
        raise JobError("missing-" + what, "the model has no %s named %s; its %ss are %s"
                       % (what, ", ".join(repr(m) for m in missing), what, ", ".join(sorted(known))))


SESSION_PRECISIONS = {"normal": 0, "high": 1, "low": 2, "low_bf16": 3}
"""BackendConfig::PrecisionMode as the number createSession takes as it is (MNN 3.0 to 3.6). By name, pymnn's
createSession knows only "low", "high" and "Low_BF16", and leaves any other string at Normal without a word: asked
"low_bf16", a session ran FP32 while the job said BF16."""


def session_config(precision, threads, backend):
    """createSession's dict for the harness's setting names."""
    return {"precision": SESSION_PRECISIONS[str(precision).lower()], "numThread": int(threads),
            "backend": SESSION_BACKENDS[str(backend).lower()]}


class Runner(object):
    """One loaded model that runs feeds ({input name: array}) into outputs ({output name: array}).

    Subclasses fill input_types ({name: dtype the model takes}) and backend
    (the backend_facts dict) when they load; run() may be called many times.
    """

    api = None

    def __init__(self, MNN, np, model_path, settings, input_names, output_names, layout, input_types):
        self.MNN, self.np = MNN, np
        self.model_path = model_path
        self.settings = settings
        self.input_names, self.output_names = input_names, output_names
        self.layout = layout
        self.input_types = dict(input_types)
        self.precision = settings.get("precision", "normal")
        self.threads = int(settings.get("threads", 1))
        self.asked_backend = str(settings.get("backend", "cpu")).lower()
        self.backend = None

    def use(self, settings, layout):
        """Take a job's settings that do not reach MNN's loading (io, layout): a cached runner serves any."""
        self.settings = settings
        self.layout = layout

    def release(self):
        """Drop what MNN holds for this model (a resident agent evicting it from its cache)."""

    def feeds(self, feeds):
        return dict((name, feed_array(self.np, name, feeds[name], self.input_types.get(name)))
                    for name in self.input_names)

    def run(self, feeds):
        return self.run_impl(self.feeds(feeds))

    def run_impl(self, feeds):
        raise NotImplementedError


class SessionRunner(Runner):
    """MNN's Session API, with the copies that convert layout and precision to host format.

    io "copy" is the right way (the Python face of map/unmap): Caffe-layout host
    tensors filled with copyFrom, outputs read back with copyToHostTensor.
    io "host" reads the session output's own buffer (getNumpyData on the session
    tensor): the classic bug, kept so a user can see what it does on their board.
    """

    api = "session"

    def __init__(self, *args):
        Runner.__init__(self, *args)
        MNN = self.MNN
        self.io = self.settings.get("io", "copy")
        self.interpreter = MNN.Interpreter(self.model_path)
        config = session_config(self.precision, self.threads, self.asked_backend)
        with CapturedStdout() as said:
            self.session = self.interpreter.createSession(config)
        self.backend = backend_facts(self.asked_backend, session_backend(self.interpreter, self.session),
                                     "getSessionInfo(session, BACKENDS)", said.text)
        inputs = self.interpreter.getSessionInputAll(self.session)
        check_names("input", self.input_names, inputs)
        check_names("output", self.output_names, self.interpreter.getSessionOutputAll(self.session))
        for name in self.input_names:
            self.input_types.setdefault(name, self.dtype_of(inputs[name]))
        self.shapes = {}

    def use(self, settings, layout):
        Runner.use(self, settings, layout)
        self.io = settings.get("io", "copy")

    def release(self):
        try:
            self.interpreter.releaseSession(self.session)
        except Exception:  # noqa: BLE001  an MNN without releaseSession frees it with the interpreter
            pass
        self.session = self.interpreter = None

    def dtype_of(self, tensor):
        kind = tensor.getDataType()
        for dtype, halide in HALIDE.items():
            if kind is getattr(self.MNN, halide):
                return dtype
        return "float32"

    def dimension_type(self, rank):
        # A model laid out NHWC (converted from TFLite) is NHWC in every tensor, whatever its rank.
        if self.layout == "NHWC":
            return self.MNN.Tensor_DimensionType_Tensorflow
        return self.MNN.Tensor_DimensionType_Caffe

    def run_impl(self, feeds):
        MNN, np = self.MNN, self.np
        fill_session(MNN, self.interpreter, self.session, feeds, self.input_names, self.dimension_type, self.shapes)
        code = self.interpreter.runSession(self.session)
        if code != 0:
            raise JobError("run-failed", "runSession returned %d (0 is success; 3 usually means "
                           "an input shape was not resized)" % code)
        outputs = {}
        for name in self.output_names:
            tensor = self.interpreter.getSessionOutput(self.session, name)
            shape = tuple(tensor.getShape())
            if any(dim <= 0 for dim in shape):
                raise JobError("empty-output", "output %r has shape %s" % (name, list(shape)))
            dtype = self.dtype_of(tensor)
            if self.io == "host":
                data = np.array(tensor.getNumpyData(), copy=True).reshape(-1)
                count = int(np.prod(shape))
                data = data[:count] if data.size >= count else np.resize(data, count)
                outputs[name] = data.reshape(shape).astype(dtype)
            else:
                host = MNN.Tensor(shape, getattr(MNN, HALIDE[dtype]), np.zeros(shape, dtype=dtype),
                                  self.dimension_type(len(shape)))
                tensor.copyToHostTensor(host)
                outputs[name] = np.array(host.getNumpyData(), dtype=dtype, copy=True).reshape(shape)
        return outputs


def fill_session(MNN, interpreter, session, feeds, names, dimension_type, shapes):
    """Resize where a shape changed (else runSession returns 3 on shape (0,0,0,0)), then copy every input in.

    Inputs are re-fed before every run: MNN reuses the input buffer during a run.
    """
    resized = False
    for name in names:
        shape = list(feeds[name].shape)
        if shapes.get(name) != shape:
            interpreter.resizeTensor(interpreter.getSessionInput(session, name), tuple(shape))
            shapes[name] = shape
            resized = True
    if resized:
        interpreter.resizeSession(session)
    for name in names:
        array = feeds[name]
        host = MNN.Tensor(tuple(array.shape), getattr(MNN, HALIDE[str(array.dtype)]), array,
                          dimension_type(array.ndim))
        interpreter.getSessionInput(session, name).copyFrom(host)


class ModuleRunner(Runner):
    """MNN's Module (expression) API: load_module_from_file, forward, convert back to NCHW.

    The Module API has no Python call that names its backend (Module.get_info
    and RuntimeManager carry none): the backend that ran is read from MNN's own
    fallback line, printed while the module is created, and confirmed with a
    session of the same configuration on the same MNN.
    """

    api = "module"
    PRECISION = {"normal": "Normal", "high": "High", "low": "Low", "low_bf16": "Low_BF16"}

    def __init__(self, *args):
        Runner.__init__(self, *args)
        self.F = F = self.MNN.expr
        precision = getattr(F.PrecisionMode, self.PRECISION[self.precision])
        asked = self.asked_backend
        probed = self.probe_backend() if asked == "auto" else None
        # F.Backend has no AUTO: ask a session what auto gives on this MNN, and create the module for that.
        chosen = FORWARD_TYPES.get(probed[0], "cpu") if probed else asked
        options = {"precision_mode": precision, "thread_num": self.threads,
                   "backend": getattr(F.Backend, chosen.upper(), F.Backend.CPU)}
        with CapturedStdout() as said:
            self.module = self.MNN.nn.load_module_from_file(self.model_path, self.input_names, self.output_names,
                                                            **options)
        if asked == "cpu":
            code, evidence = 0, "the module was created for the CPU, as asked"
        elif fallback_lines(said.text):
            code, evidence = None, None  # MNN said it fell back: backend_facts reads its line
        elif probed:
            code, evidence = probed[0], "auto: " + probed[1]
        else:
            code, evidence = self.probe_backend()
        self.backend = backend_facts(asked, code, evidence, said.text)

    def release(self):
        self.module = None

    def probe_backend(self):
        """The backend a session of the same configuration gets on this MNN (the module's runtime is alike)."""
        with CapturedStdout():
            interpreter = self.MNN.Interpreter(self.model_path)
            session = interpreter.createSession(session_config(self.precision, self.threads, self.asked_backend))
        return session_backend(interpreter, session), "a session with the same configuration"

    def variable(self, array):
        F = self.F
        layout = F.NHWC if self.layout == "NHWC" else F.NCHW
        dtype = {"float32": F.float, "int32": F.int, "uint8": F.uint8, "int64": F.int64}[str(array.dtype)]
        return F.const(array, list(array.shape), layout, dtype)

    def run_impl(self, feeds):
        F, np = self.F, self.np
        results = self.module.forward([self.variable(feeds[name]) for name in self.input_names])
        if not isinstance(results, (list, tuple)):
            results = [results]
        outputs = {}
        for name, value in zip(self.output_names, results):
            value = F.convert(value, F.NHWC if self.layout == "NHWC" else F.NCHW)  # unpacks NC4HW4
            array = np.array(value.read(), copy=True)
            if array.dtype.kind == "f":
                array = array.astype(np.float32)
            if array.size == 0:
                raise JobError("empty-output", "output %r is empty" % name)
            outputs[name] = array
        return outputs


def runner_key(model_sha, api, settings, job):
    """What reaches MNN when a model is loaded: a loaded runner serves every job with the same key."""
    return (model_sha, api, str(settings.get("precision", "normal")), int(settings.get("threads", 1)),
            str(settings.get("backend", "cpu")).lower(), tuple(job["input_names"]), tuple(job["output_names"]))
