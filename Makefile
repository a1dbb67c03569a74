# Entry points shared by people, .ci/run and the Jenkinsfile. Run as root.
.PHONY: setup lab test down bench lint

setup:
	./scripts/setup

# The main job: the virtual lab up, every deploy, every check; the lab stays up to look at.
lab: setup
	mkdir -p reports
	.venv/bin/edgefaas lab build
	.venv/bin/edgefaas lab up
	.venv/bin/pyinfra -y inventories/lab.py deploys/site.py
	.venv/bin/pytest -m lab tests/integration -q --junitxml=reports/integration.xml
	@echo
	@.venv/bin/edgefaas lab status
	@echo
	@echo "Devices:   .venv/bin/edgefaas lab ssh sonic-1   (or sonic-2, jetson-1)"
	@echo "K3S:       kubeconfig at $$(.venv/bin/edgefaas lab kubeconfig)"
	@echo "Gateway:   $$(.venv/bin/edgefaas lab gateway-url)   (admin password: sudo cat /var/lib/edgefaas/gateway/admin-password on sonic-1)"
	@echo "Reports:   reports/integration.xml"
	@echo "Tear down: make down"

test: setup
	./scripts/test

down:
	.venv/bin/edgefaas lab down

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench: setup
	.venv/bin/python -m tests.perf.lab_bench
	.venv/bin/python -m tests.perf.parsec_bench
