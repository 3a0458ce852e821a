# The two commands the README promises on a fresh machine.
PYTHON ?= python3

.PHONY: example test install

install:
	$(PYTHON) -m pip install -q -e '.[test]'

# Build the bundled digits CNN for a Cortex-M4 (no data of yours needed).
example: install
	$(PYTHON) -m edgekit build examples/digits/model.keras --target cortex-m4 \
		--calib examples/digits/calib.npz --eval examples/digits/eval.npz \
		--out edgekit-out/digits-cortex-m4

# Install the cross-compiler and QEMU (Debian packages; needs root), the Python
# dependencies, then run the whole suite. Under CI a missing tool, or missing
# third-party models in ../shared, is a failure.
test: install
	bash docker/install-toolchain.sh
	EDGEKIT_REQUIRE_TOOLCHAIN=$${EDGEKIT_REQUIRE_TOOLCHAIN:-$${CI:+1}} \
	EDGEKIT_REQUIRE_SHARED_MODELS=$${EDGEKIT_REQUIRE_SHARED_MODELS:-$${CI:+1}} \
	$(PYTHON) -m pytest -q
