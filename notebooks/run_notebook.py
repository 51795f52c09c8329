#!/usr/bin/env python3
"""Execute the code cells of a Jupyter notebook in order, headless, without Jupyter.

Usage: python notebooks/run_notebook.py [NOTEBOOK]

NOTEBOOK defaults to explore.ipynb beside this script. The cells share one
namespace and run with the notebook's folder as the working directory, as in
Jupyter, and with MPLBACKEND=Agg so matplotlib needs no display. Outputs are
printed, not stored in the notebook.

Exit status: 0 when every cell ran, 1 when a cell raised (the traceback names
the cell), 2 for an unreadable notebook, 3 when polars, matplotlib or numpy
is not importable.
"""

import json
import os
import sys
import traceback
from pathlib import Path

REQUIRED_MODULES = ("polars", "matplotlib", "numpy")
INSTALL_HINT = "pip install -r notebooks/requirements.txt"


def missing_modules():
    """Return the required modules that fail to import."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def load_code_cells(path):
    """Return the sources of the code cells of an nbformat 4 notebook, in order."""
    with open(path, encoding="utf-8") as handle:
        notebook = json.load(handle)
    if notebook.get("nbformat") != 4:
        raise ValueError(f"{path} is nbformat {notebook.get('nbformat')!r}, expected 4")
    sources = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        sources.append("".join(source) if isinstance(source, list) else source)
    return sources


def reject_magics(sources, path):
    """Raise ValueError for IPython magics and shell escapes, which plain Python cannot run."""
    for number, source in enumerate(sources, start=1):
        for line in source.splitlines():
            if line.lstrip().startswith(("%", "!")):
                raise ValueError(
                    f"code cell {number} of {path} uses IPython syntax ({line.strip()!r}): "
                    "run it in Jupyter or remove the line"
                )


def run_cells(sources, path):
    """Execute the cells in one namespace and return the 1-based number of the failed cell, or 0."""
    namespace = {"__name__": "__main__", "__file__": str(path)}
    for number, source in enumerate(sources, start=1):
        try:
            code = compile(source, f"<{path.name} code cell {number}>", "exec")
            exec(code, namespace)
        except Exception:
            traceback.print_exc()
            return number
    return 0


def main(argv):
    default = Path(__file__).resolve().parent / "explore.ipynb"
    path = Path(argv[1]).resolve() if len(argv) > 1 else default

    # matplotlib reads MPLBACKEND when it is first imported, here by missing_modules.
    os.environ["MPLBACKEND"] = "Agg"
    missing = missing_modules()
    if missing:
        print(
            f"missing Python modules {', '.join(missing)} for {sys.executable}: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 3

    try:
        sources = load_code_cells(path)
        reject_magics(sources, path)
    except (OSError, ValueError) as error:
        print(f"cannot run notebook {path}: {error}", file=sys.stderr)
        return 2

    os.chdir(path.parent)
    failed = run_cells(sources, path)
    if failed:
        print(f"code cell {failed} of {len(sources)} in {path} raised", file=sys.stderr)
        return 1
    print(f"ran {len(sources)} code cells of {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
