"""What the tests and benchmarks build on and the package does not ship: a real ``ferkit serve``
on a loopback port (:mod:`.launch`), media made from one real photo (:mod:`.synthetic`) and
hostile requests (:mod:`.malformed`). Benchmarks import it through ``benchmarks/repo_support.py``."""
