# The user interface of t4p. A fresh machine needs `make demo` or `make test`, nothing else.
.PHONY: setup demo test bench lint clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/python sweeps/ablation.py --demo

test: setup
	@scripts/run_tests.sh

bench: setup
	@for b in bench/*.py; do echo "== $$b"; .venv/bin/python $$b --quick || exit 1; done

lint: setup
	.venv/bin/ruff check t4p sweeps bench scripts tests

clean:
	rm -rf runs mlruns ray_results t4p_stages .pytest_cache
