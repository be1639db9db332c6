"""Coverage-guided fuzzing of ``nnexposed.load`` with atheris (pip install atheris).

    python tools/fuzz_load.py [-max_total_time=60] [libFuzzer options]

Starts from a copy of tests/load_corpus/ (libFuzzer adds the inputs it finds to the copy,
never to the repository). Every input must end in a loaded model or a ValueError; anything
else (another exception, a crash) stops the run with the input written to
``$NNEXPOSED_FUZZ_ARTIFACTS/crash-*`` (default: the current folder): add it to
tests/load_corpus/ as a regression. Exits 0 with a message when atheris or
``nnexposed.load`` is missing.
"""

import os
import shutil
import sys
import tempfile

try:
    import atheris
except ImportError:
    print("fuzz_load.py: atheris is not installed; skipped")
    sys.exit(0)

with atheris.instrument_imports():
    import nnexposed

if not hasattr(nnexposed, "load"):
    print("fuzz_load.py: nnexposed.load does not exist; skipped")
    sys.exit(0)

PATH = os.path.join(tempfile.mkdtemp(prefix="nnexposed-fuzz-load-"), "model.bin")


def target(data):
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        model = nnexposed.load(PATH)
    except ValueError:
        return
    if not isinstance(model, nnexposed.Network):
        raise AssertionError(f"load returned {type(model).__name__}")


if __name__ == "__main__":
    args = list(sys.argv)
    if not any(arg.startswith("-max_total_time") for arg in args):
        args.append("-max_total_time=60")
    artifacts = os.environ.get("NNEXPOSED_FUZZ_ARTIFACTS", os.getcwd())
    args.append(f"-artifact_prefix={os.path.join(os.path.abspath(artifacts), '')}")
    corpus = os.path.join(tempfile.mkdtemp(prefix="nnexposed-load-corpus-"), "corpus")
    seeds = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "tests", "load_corpus")
    shutil.copytree(seeds, corpus, ignore=shutil.ignore_patterns("*.md"))
    args.append(corpus)
    atheris.Setup(args, target)
    atheris.Fuzz()
