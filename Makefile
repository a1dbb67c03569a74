# Entry points shared by people, .ci/run and the Jenkinsfile. Run as root.
# One SoW task at a time: ./scripts/task <platform|k3s|parsec|nodeauth|edgefaas|triton|monitoring|console|scan|perf> [--inventory INV]
.PHONY: setup lab test down bench lint jenkinsfile-test

setup:
	./scripts/setup

# The main job: the virtual lab up, every deploy, every check; the lab stays up to look at.
lab: setup
	mkdir -p reports
	.venv/bin/edgefaas lab build
	.venv/bin/edgefaas lab up
	for task in platform sonic sdwan k3s parsec nodeauth edgefaas registry triton monitoring console scan faults; do ./scripts/task $$task --inventory inventories/lab.py || exit 1; done
	@echo
	@.venv/bin/edgefaas lab status
	@echo
	@echo "Devices:   .venv/bin/edgefaas lab ssh sonic-1   (or sonic-2, jetson-1, wan-1, cloud-1)"
	@echo "K3S:       kubeconfig at $$(.venv/bin/edgefaas lab kubeconfig)"
	@echo "Console:   $$(.venv/bin/edgefaas lab gateway-url)/   in a browser: user admin, password from"
	@echo "           .venv/bin/edgefaas lab ssh sonic-1 -- sudo cat /var/lib/edgefaas/gateway/admin-password"
	@echo "           (HTTPS: trust the blueprint's CA, .venv/bin/edgefaas lab ca --out ca.pem)"
	@echo "WAN:       .venv/bin/edgefaas lab ssh wan-1 -- sudo vtysh -c 'show bgp ipv4 unicast'"
	@echo "Cloud:     the cloud site's own cluster, gateway and CA: add --cloud to kubeconfig, gateway-url, ca"
	@echo "Reports:   reports/<task>.xml (platform sonic sdwan k3s parsec nodeauth edgefaas triton monitoring console scan),"
	@echo "           reports/console/*.png (the console, page by page)"
	@echo "Tear down: make down"

test: setup
	./scripts/test

down:
	.venv/bin/edgefaas lab down

lint: setup
	./scripts/task lint

# The Jenkinsfile's own tests (tests/jenkins/: our DeclarativePipelineHarness); scripts/test runs them too.
jenkinsfile-test: setup
	mvn -q -B -f tests/jenkins/pom.xml test -Dmaven.repo.local=$${EDGEFAAS_CACHE:-/var/cache/edgefaas}/m2

bench: setup
	.venv/bin/python -m tests.perf.lab_bench
	.venv/bin/python -m edgefaas.perf.parsec
