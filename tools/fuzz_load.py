"""Coverage-guided fuzzing of ``nnexposed.load`` with atheris (pip install atheris).

    python tools/fuzz_load.py [-max_total_time=60] [libFuzzer options]

Starts from a copy of tests/reliability/load_corpus/ (libFuzzer adds the inputs it finds to
the copy, never to the repository). Every input must end in a loaded model or a ValueError; anything
else (another exception, a crash) stops the run with the input written to
``$NNEXPOSED_FUZZ_ARTIFACTS/crash-*`` (default: the current folder): add it to
tests/reliability/load_corpus/ as a regression. Exits 0 with a message when atheris is
missing. Its files go to a temporary folder, removed at the end.
"""

import os
import shutil
import subprocess
import sys
import tempfile

try:
    import atheris
except ImportError:
    print("fuzz_load.py: atheris is not installed; skipped")
    sys.exit(0)

with atheris.instrument_imports():
    import nnexposed

WORK_OPTION = "--work-folder="
PATH = ""  # the file that target() writes each input to


def target(data):
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        model = nnexposed.load(PATH)
    except ValueError:
        return
    if not isinstance(model, nnexposed.Network):
        raise AssertionError(f"load returned {type(model).__name__}")


def fuzz(work, args):
    """Fuzz in ``work`` with libFuzzer's ``args``; does not return."""
    global PATH
    PATH = os.path.join(work, "model.bin")
    if not any(arg.startswith("-max_total_time") for arg in args):
        args.append("-max_total_time=60")
    artifacts = os.environ.get("NNEXPOSED_FUZZ_ARTIFACTS", os.getcwd())
    args.append(f"-artifact_prefix={os.path.join(os.path.abspath(artifacts), '')}")
    corpus = os.path.join(work, "corpus")
    seeds = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "tests", "reliability", "load_corpus")
    shutil.copytree(seeds, corpus, ignore=shutil.ignore_patterns("*.md"))
    args.append(corpus)
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith(WORK_OPTION):
        fuzz(sys.argv[1][len(WORK_OPTION):], [sys.argv[0], *sys.argv[2:]])
    # libFuzzer ends its process with C's exit(), past Python's clean-up: it runs in a child
    # interpreter, and this one removes the child's files.
    with tempfile.TemporaryDirectory(prefix="nnexposed-fuzz-load-") as work:
        status = subprocess.call([sys.executable, os.path.abspath(__file__),
                                  WORK_OPTION + work, *sys.argv[1:]])
    sys.exit(status)
