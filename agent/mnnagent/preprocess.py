"""The board-side preprocessing of the parity check: the board's own libraries decode and resize the images."""

import os

from .contract import JobError
from .files import read_npz, resolve, sha256_file, write_atomically, write_npz


def board_preprocess(job_dir, job, np, MNN):
    """Preprocess the raw images on the board, as the app there would, for the host to compare.

    The board's own libraries do it: OpenCV where the board has it, else MNN's
    image functions (MNN.cv). The tensors go to preprocessed.npz; inference
    still runs on the host's tensors, so the two kinds of drift stay apart.
    Returns the facts for result.json; a failure here is reported, not fatal.
    """
    spec = job["preprocess"]
    facts = {"status": "error", "backend": None, "error": None}
    try:
        try:
            import cv2
            backend = "opencv %s" % cv2.__version__
        except ImportError:
            cv2 = None
            import MNN.cv as mnn_cv
            import MNN.expr as F
            backend = "MNN.cv %s" % MNN.version()
        facts["backend"] = backend
        images_path = resolve(job_dir, spec["images"])
        if spec.get("images_sha256") and sha256_file(images_path) != spec["images_sha256"]:
            raise JobError("bad-inputs", "images.npz does not match the SHA-256 the host sent")
        flags = {"nearest": 0, "linear": 1, "cubic": 2, "area": 3}  # same numbers in OpenCV and MNN.cv
        tensors = []
        images = read_npz(images_path, np)
        for key in sorted(images, key=lambda k: int(k[3:])):
            bgr = images[key]
            size = (int(spec["width"]), int(spec["height"]))
            if cv2 is not None:
                image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if spec["color"] == "rgb" else bgr
                image = cv2.resize(image, size, interpolation=flags[spec["interpolation"]])
            else:
                var = F.const(bgr, list(bgr.shape), F.NHWC, F.uint8)
                if spec["color"] == "rgb":
                    var = mnn_cv.cvtColor(var, mnn_cv.COLOR_BGR2RGB)
                var = mnn_cv.resize(var, size, 0, 0, flags[spec["interpolation"]])
                image = np.array(var.read(), dtype=np.uint8).reshape(size[1], size[0], 3)
            tensor = image.astype(np.float32) * np.float32(spec["scale"])
            tensor = (tensor - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
            if spec["layout"] == "NCHW":
                tensor = tensor.transpose(2, 0, 1)
            tensors.append(np.ascontiguousarray(tensor[np.newaxis], dtype=np.float32))
        stacked = np.stack(tensors)
        name = spec.get("input") or job["input_names"][0]
        write_atomically(os.path.join(job_dir, "preprocessed.npz"), lambda f: write_npz(f, np, {name: stacked}))
        facts["status"] = "ok"
        facts["sha256"] = sha256_file(os.path.join(job_dir, "preprocessed.npz"))
    except Exception as error:  # the preprocessing check must not cost the inference result
        facts["error"] = "%s: %s" % (type(error).__name__, error)
    return facts
