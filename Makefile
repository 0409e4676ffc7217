# Two commands do all set-up on a fresh machine:
#   make demo   -> creates .venv, installs deepprior, restores a noisy copy of a bundled photo
#   make test   -> creates .venv, installs deepprior with its test tools, runs the test suite
# TORCH pins the PyTorch wheel installed into the venv (the CPU wheel 2.13.0 on our machines);
# the package itself only asks for torch>=2.1.  Override: make test TORCH="torch==2.5.1"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: demo test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/deepprior demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) deepprior-demo .pytest_cache
