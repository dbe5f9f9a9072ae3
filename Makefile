# The user interface of t4p. A fresh machine needs `make demo` or `make test`, nothing else.
.PHONY: setup setup-core minkowski demo test bench lint clean

# Everything, MinkowskiEngine included (built once, ~10 min on 2 cores, then cached outside the clone).
setup:
	@scripts/setup.sh

# Without building MinkowskiEngine: the demo's recipes run the pure-PyTorch sparse backend.
setup-core:
	@scripts/setup.sh --no-minkowski

minkowski: setup-core
	@scripts/build_minkowski.sh .venv/bin/python

demo: setup-core
	.venv/bin/python sweeps/ablation.py --demo

test: setup
	@scripts/run_tests.sh

# Each benchmark prints one JSON object; results go to bench-results/ as well.
bench: setup
	@mkdir -p bench-results
	@for b in bench/*.py; do echo "== $$b"; out=bench-results/$$(basename $$b .py).json; .venv/bin/python $$b > $$out || exit 1; cat $$out; done

lint: setup
	@scripts/lint.sh

clean:
	rm -rf runs mlruns ray_results t4p_stages .pytest_cache bench-results
