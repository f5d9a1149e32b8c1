"""README pointers, LICENSE and CITATION.cff agree with the code and pyproject.toml."""
from __future__ import annotations

import os
import re
import sys

import pytest

import vgcore as vg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def text(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def pyproject():
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_every_test_the_readme_names_exists():
    readme = text("README.md")
    pointers = re.findall(r"(tests/test_\w+\.py)::(test_\w+)", readme)
    assert len(pointers) >= 15
    for path, name in pointers:
        source = text(path)
        assert re.search(rf"^def {name}\(", source, re.M), f"README names {path}::{name}"


def test_the_references_cover_the_papers():
    refs = text("README.md").split("## References", 1)[1]
    for who in ("Hochreiter 1991", "Bengio, Simard & Frasconi 1994", "Glorot & Bengio 2010",
                "Saxe", "He, Zhang", "Ioffe & Szegedy 2015", "Poole", "Schoenholz",
                "Pennington", "Klambauer", "Yang"):
        assert who in refs, who


def test_license_and_citation_match_pyproject():
    meta = pyproject()["project"]
    assert meta["license"]["text"] == "BSD-3-Clause"
    assert text("LICENSE").startswith("BSD 3-Clause License\n")
    cff = text("CITATION.cff")
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M)
    assert re.search(rf"^version: {re.escape(meta['version'])}$", cff, re.M)
    assert re.search(r"^license: BSD-3-Clause$", cff, re.M)
    assert meta["version"] == vg.__version__
    assert cff.count("  - type: ") == 11          # the papers of the References


def test_the_readme_pytorch_example_runs():
    pytest.importorskip("torch")
    section = text("README.md").split("### Profile the gradient flow of an existing PyTorch "
                                      "MLP", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)      # noqa: S102 - our own README
    assert namespace["model"][0].weight.shape == (64, 32)
    assert namespace["net"].gradient_flow().n_layers == 3


# ------------------------------------------------------------------ the suite's own rules
def _pytest_in(folder, module_text, *env_set):
    """Run pytest on one module under this suite's conftest.py, in a subprocess."""
    import shutil
    import subprocess
    shutil.copy(os.path.join(ROOT, "tests", "conftest.py"), folder / "conftest.py")
    (folder / "test_probe.py").write_text(module_text)
    (folder / "test_other.py").write_text(PASSING)       # so "no tests collected" is not it
    env = {k: v for k, v in os.environ.items() if k != "VGCORE_NO_SKIPS"}
    env.update(env_set)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", str(folder)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


PASSING = "def test_a():\n    assert True\n\n\ndef test_b():\n    assert True\n"


def test_a_module_skipped_as_a_whole_fails_the_run(tmp_path):
    """tests/conftest.py: a module-level skip (a renamed parameter, a missing package) must not
    drop a module's tests with a zero exit status."""
    r = _pytest_in(tmp_path, "import pytest\npytest.importorskip('no_such_package_vgcore')\n"
                   + PASSING)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "the whole module was skipped at import" in r.stdout
    ok = _pytest_in(tmp_path, PASSING)                 # the same module without the skip
    assert ok.returncode == 0 and "4 passed" in ok.stdout, ok.stdout + ok.stderr


def test_a_skipped_test_fails_the_run_only_under_vgcore_no_skips(tmp_path):
    module = "import pytest\n\n\n@pytest.mark.skip(reason='probe')\n" + PASSING
    assert _pytest_in(tmp_path, module).returncode == 0
    r = _pytest_in(tmp_path, module, ("VGCORE_NO_SKIPS", "1"))
    assert r.returncode != 0 and "1 test(s) were skipped" in r.stderr, r.stdout + r.stderr


# ------------------------------------------------------------------ import paths kept by splits
@pytest.mark.parametrize("old, new, names", [
    ("vgcore.theory.profile", "vgcore.theory.critical",
     ["CriticalPoint", "critical_point", "critical_sigma_w2", "GradientGrowth",
      "gradient_growth"]),
    ("vgcore.theory.spectrum", "vgcore.theory.measured_jacobian",
     ["jacobian", "jacobian_singular_values", "JacobianSpectrum"]),
    ("vgcore.theory", "vgcore.measure.theory.spectrum",
     ["SpectrumPrediction", "predicted_jacobian_spectrum", "jacobian"]),
])
def test_a_split_module_s_names_keep_their_old_import_path(old, new, names):
    """The same objects (one module loaded once) under the path they had before the split."""
    import importlib
    a, b = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(a, name) is getattr(b, name), name
    assert sys.modules["vgcore.theory.critical"] is sys.modules["vgcore.measure.theory.critical"]


@pytest.mark.parametrize("module, names", [
    ("vgcore.interop.files", ["DataFile", "load", "from_arrays", "sha256_of", "FORMATS",
                              "experiment_data"]),
    ("vgcore.measure.recorder", ["Recorder", "SCALARS", "log_schedule", "JSON_FORMAT",
                                 "JSON_VERSION"]),
    ("vgcore.recorder", ["Recorder", "SCALARS"]),
    ("vgcore.core.network", ["MLP", "Dense"]),
    ("vgcore.commands.theory", ["HELP", "EXAMPLES", "register", "run", "BATCHES",
                                "SPECTRUM_INPUTS"]),
])
def test_the_names_of_split_files_keep_their_import_path(module, names):
    """interop/files.py, measure/recorder.py, core/network.py and commands/theory.py were split
    (issue #12): what they exported is still there, the methods moved into mixins are still
    the classes' own."""
    import importlib
    m = importlib.import_module(module)
    for name in names:
        assert getattr(m, name, None) is not None, f"{module}.{name}"
    for cls, methods in ((vg.MLP, ("sgd_step", "apply_update", "train_step", "nonfinite",
                                   "memory_usage", "norm_buffers")),
                         (vg.Recorder, ("start_epoch", "end_epoch", "epoch_dead_fraction",
                                        "epoch_steps", "to_arrays", "to_dict", "to_csv",
                                        "to_json_object", "to_json", "from_json"))):
        for name in methods:
            assert hasattr(cls, name), f"{cls.__name__}.{name}"


MAX_LINES = 600


def test_no_source_file_is_over_600_lines():
    """CONTRIBUTING.md: no file over about 600 lines (the C kernels, one table, excepted):
    every .py under vgcore/, and src/_engine.pyx with the .pxi sections it includes."""
    import glob
    paths = glob.glob(os.path.join(ROOT, "vgcore", "**", "*.py"), recursive=True)
    paths += glob.glob(os.path.join(ROOT, "src", "*.pyx"))
    paths += glob.glob(os.path.join(ROOT, "src", "*.pxi"))
    assert len(paths) > 50 and any(p.endswith("_engine.pyx") for p in paths)
    long = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            long[os.path.relpath(path, ROOT)] = n
    assert long == {}, f"over {MAX_LINES} lines (split by job, see CONTRIBUTING.md): {long}"


def test_every_file_contributing_md_names_exists():
    """The module map and the recipes name real files (a split or a rename must update them)."""
    import glob
    body = text("CONTRIBUTING.md")
    missing = []
    for row in re.findall(r"^\| `([^`]+)` \|", body, flags=re.M):           # the module map
        for path in re.sub(r"\{([^}]*)\}", lambda m: "{" + m.group(1) + "}", row).split():
            names = [path]
            brace = re.match(r"(.*)\{([^}]*)\}(.*)", path)
            if brace:
                names = [brace.group(1) + n + brace.group(3) for n in brace.group(2).split(",")]
            for name in names:
                where = name if name.startswith(("src/", "tests/", "vgcore/")) \
                    else "vgcore/" + name
                if not os.path.exists(os.path.join(ROOT, where)):
                    missing.append(where)
    for path in set(re.findall(r"`((?:src|vgcore|tests)/[\w/.]+\.(?:pyx|pyi|py|h))\b", body)):
        if "NAME" not in path and not glob.glob(os.path.join(ROOT, path)):
            missing.append(path)
    assert missing == []
