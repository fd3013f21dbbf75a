"""The light layers: spec, config, kinds and the serving client import without TensorFlow, and the
client works in a process where TensorFlow cannot be imported at all (as after ``pip install mtkeras``)."""

import subprocess
import sys
import textwrap

HEAVY = ("tensorflow", "tf_keras", "transformers", "tensorflow_text", "keras")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_light_modules_load_no_tensorflow():
    result = _run(f"""
        import sys
        import mtkeras, mtkeras.spec, mtkeras.config, mtkeras.serving, mtkeras.kinds, mtkeras.defaults, mtkeras.cli
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_client_without_tensorflow_installed(tmp_path):
    # An import hook refuses TensorFlow and friends: what a client service without the [tf] extra sees.
    result = _run(f"""
        import importlib.abc, json, sys, threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {HEAVY!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Refuse())

        import mtkeras as mtk
        spec = mtk.TaskSpec("unused", [mtk.LabelGroup("section", "multiclass", labels=["net", "utils"]),
                                       mtk.LabelGroup("n", "regression", labels=["n"])])
        config = mtk.load_config  # the config layer too

        class Serving(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rows = [{{"section_labels": "utils", "section_probabilities": [0.2, 0.8], "n_values": [2.5]}}
                        for _ in body["instances"]]
                data = json.dumps({{"predictions": rows}}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Serving)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        client = mtk.ServingClient(f"http://127.0.0.1:{{server.server_address[1]}}", "m", spec)
        print(json.dumps(client.predict(["a", "b"])))
        try:
            mtk.build_model
        except ImportError as error:
            print(error)
        server.shutdown()
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == '[{"section": "utils", "n": 2.5}, {"section": "utils", "n": 2.5}]'
    assert "mtkeras.build_model needs TensorFlow" in lines[1] and "pip install 'mtkeras[tf]'" in lines[1]


def test_cli_help_is_fast_and_light():
    result = _run(f"""
        import sys
        from mtkeras.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert "usage: mtkeras" in result.stdout and result.stdout.strip().endswith("[]")


def test_moved_names_say_where_they_went():
    import pytest

    import mtkeras

    with pytest.raises(AttributeError, match=r"no attribute 'BestCheckpoint'; it moved to mtkeras.training"):
        mtkeras.BestCheckpoint  # noqa: B018
    assert len(mtkeras.__all__) <= 30
    import mtkeras.evaluation  # a submodule import must not shadow the function of the same public name

    assert callable(mtkeras.evaluate) and mtkeras.evaluate.__module__ == "mtkeras.evaluation"


def test_every_public_submodule_is_an_attribute():
    """``mtkeras.calibration.fit_temperatures`` works in a fresh process, as for every public module."""
    import os

    import mtkeras

    folder = os.path.dirname(mtkeras.__file__)
    names = sorted(n.removesuffix(".py") for n in os.listdir(folder)
                   if not n.startswith("_") and (n.endswith(".py") or os.path.isdir(os.path.join(folder, n, ""))
                                                 and os.path.exists(os.path.join(folder, n, "__init__.py"))))
    names.remove("cli")  # the command line: `python -m mtkeras` / the `mtkeras` script, not an API module
    result = _run(f"""
        import mtkeras
        print([name for name in {names!r} if not hasattr(mtkeras, name)])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
