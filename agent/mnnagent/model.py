"""What a .mnn file holds, read without running it, and the API it must run with."""

CONTROL_FLOW_OPS = ("If", "While", "Loop")
"""Op types MNN's Session API cannot run ("please use MNN::Express::Module to run it")."""


def model_facts(F, model_path):
    """Op types and declared input types of a .mnn file, read without running it.

    Returns (set of op types, {input name: dtype name}). Empty when MNN cannot
    list the graph: the run still tries, and MNN says what is wrong.
    """
    try:
        variables = F.load_as_list(model_path)
    except Exception:  # noqa: BLE001  a listing is a hint; running the model is the test
        return set(), {}
    op_types, input_types = set(), {}
    for var in variables:
        try:
            op_types.add(var.op_type)
            if var.op_type == "Input":
                input_types[var.name] = dtype_name(var.dtype)
        except Exception:  # noqa: BLE001  a variable MNN cannot describe
            continue
    return op_types, input_types


def dtype_name(dtype):
    """MNN.expr's dtype (dtype.float, dtype.int, ...) as a numpy name."""
    text = str(dtype).split(".")[-1]
    return {"float": "float32", "int": "int32", "int64": "int64", "uint8": "uint8", "int8": "int8",
            "double": "float64"}.get(text, text)


def choose_api(settings, op_types):
    """The API to run with, and why when the agent chose it over the job's."""
    asked = settings.get("api", "session")
    flow = sorted(op_types & set(CONTROL_FLOW_OPS))
    if asked == "session" and flow:
        return "module", ("the model has control flow (%s), which MNN's Session API cannot run: "
                          "ran it with the Module API" % ", ".join(flow))
    return asked, None
