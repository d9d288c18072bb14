"""The runner of the Python suites that are plain scripts (Tests/acp, Tests/claude): each
test run in order, named and timed, its traceback printed when it fails; `-k PATTERN` picks
the tests whose name contains it. Exits 1 when any failed."""
import sys
import time
import traceback


def collect_tests(namespace):
    """The module's `test_*` functions, in the order they are defined."""
    return [(name, function) for name, function in list(namespace.items()) if name.startswith("test_") and callable(function)]


def run_tests(tests, argv=None):
    argv = sys.argv if argv is None else argv
    pattern = argv[argv.index("-k") + 1] if "-k" in argv else ""
    tests = [(name, function) for name, function in tests if pattern in name]
    failures = 0
    for name, function in tests:
        started = time.monotonic()
        try:
            function()
            print(f"ok    {name} ({time.monotonic() - started:.1f} s)", flush=True)
        except Exception:
            failures += 1
            print(f"FAIL  {name}\n{traceback.format_exc()}", flush=True)
    print(f"{len(tests) - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)
