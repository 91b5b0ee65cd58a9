"""A quick start: the package and the CLI's quick commands import no heavy library, and
``df.netmind`` is still registered whichever is imported first (each case in a fresh process).

No timed assertion: what is imported is checked instead (benchmarks/bench_startup.py times it).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
#: What makes a start slow: about a second together (server: the optional extra [local]).
HEAVY = ("pandas", "pyarrow", "numpy", "openai", "httpx2", "starlette", "uvicorn")


def run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (warnings are errors); its stdout."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def heavy_after(code: str) -> list[str]:
    """The heavy libraries imported once ``code`` has run."""
    check = f"import json, sys\nprint(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    out = run(textwrap.dedent(code) + "\n" + check)
    return list(json.loads(out.strip().splitlines()[-1]))


def test_importing_the_package_imports_no_heavy_library():
    assert heavy_after("import netmind_frames") == []


@pytest.mark.parametrize(
    "argv", [["--help"], ["list"], ["complete", "--help"], ["status", "--help"]]
)
def test_quick_cli_commands_import_no_heavy_library(argv, tmp_path):
    code = f"""
        import os
        os.environ["NETMIND_FRAMES_HOME"] = {str(tmp_path)!r}
        from netmind_frames.cli import main
        try:
            main({argv!r})
        except SystemExit as exc:
            assert exc.code == 0, exc.code
    """
    assert heavy_after(code) == []


@pytest.mark.parametrize("dialect", ["netmind", "openai"])
def test_status_of_a_job_imports_no_heavy_library(server, dialect, tmp_path, monkeypatch):
    """``status JOB`` reads the batches with the standard library's http.client: no openai,
    no httpx2, no pandas, no pyarrow."""
    import pandas as pd

    import netmind_frames

    home = tmp_path / "home"
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(home))
    base_url = server.base_url if dialect == "netmind" else server.openai_base_url
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(5)]})
    job = netmind_frames.submit(
        frame, "{text}", model=MODEL, max_requests=2, max_concurrent_batches=2,
        base_url=base_url, api_key=server.api_key, progress=False,
    )  # fmt: skip
    job.wait(timeout=60)  # two shards done; the third waits for no slot but is submitted
    code = f"""
        import contextlib, io, json, os
        os.environ["NETMIND_FRAMES_HOME"] = {str(home)!r}
        os.environ["NETMIND_API_KEY"] = {server.api_key!r}
        from netmind_frames.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["status", {job.id!r}]) == 0
        print(out.getvalue().count("completed"), "completed")
    """
    check = f"import sys; print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    counted, imported = run(textwrap.dedent(code) + check).strip().splitlines()[-2:]
    assert counted == "3 completed"
    assert json.loads(imported) == []


def test_serve_imports_the_server_only_when_it_runs(capsys):
    from netmind_frames.cli import main

    assert heavy_after("from netmind_frames.cli import build_parser; build_parser()") == []
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "not-a-port"])  # the server's own parser says what is wrong
    assert info.value.code == 2
    assert "netmind-frames serve: error: argument --port" in capsys.readouterr().err


CHECK_ACCESSOR = """
    frame = pd.DataFrame({"text": ["x"]})
    from netmind_frames.frames._accessor import NetmindAccessor
    assert isinstance(frame.netmind, NetmindAccessor), type(frame.netmind)
    assert callable(frame.netmind.batch_complete)
    print("ok")
"""


@pytest.mark.parametrize(
    "imports",
    [
        "import netmind_frames\nimport pandas as pd",
        "import pandas as pd\nimport netmind_frames",
        # a module of the package imports pandas half-way through its own import
        "import netmind_frames.jobs._status\nimport pandas as pd",
        "from netmind_frames import submit\nimport pandas as pd",
    ],
)
def test_df_netmind_is_registered_in_any_import_order(imports):
    assert run(imports + textwrap.dedent(CHECK_ACCESSOR)).strip() == "ok"


def test_df_netmind_is_registered_on_polars_imported_after_the_package():
    pytest.importorskip("polars")
    code = """
        import netmind_frames
        import polars as pl
        from netmind_frames.frames._polars import PolarsNetmind
        assert isinstance(pl.DataFrame({"text": ["x"]}).netmind, PolarsNetmind)
        print("ok")
    """
    assert run(code).strip() == "ok"


def test_public_names_resolve_on_first_use_and_dir_lists_them():
    code = """
        import sys, netmind_frames
        assert set(netmind_frames.__all__) <= set(dir(netmind_frames))
        assert "pandas" not in sys.modules
        from netmind_frames import BatchJob, batch_complete
        from netmind_frames.jobs._job import BatchJob as Job
        assert BatchJob is Job and callable(batch_complete)
        try:
            netmind_frames.no_such_name
        except AttributeError as exc:
            assert "no_such_name" in str(exc)
        else:
            raise AssertionError("no AttributeError")
        print("ok")
    """
    assert run(code).strip() == "ok"


JEMALLOC_WHEELS = sys.platform == "linux" and platform.machine() == "x86_64"


@pytest.mark.skipif(not JEMALLOC_WHEELS, reason="pyarrow's wheels ship jemalloc on x86-64 Linux")
@pytest.mark.parametrize(("user_choice", "pool"), [(None, "jemalloc"), ("system", "system")])
def test_the_console_script_has_arrow_allocate_with_jemalloc_unless_the_user_chose(
    user_choice, pool, tmp_path
):
    code = f"""
        import atexit, os
        os.environ.pop("ARROW_DEFAULT_MEMORY_POOL", None)
        if {user_choice!r}:
            os.environ["ARROW_DEFAULT_MEMORY_POOL"] = {user_choice!r}
        os.environ["NETMIND_FRAMES_HOME"] = {str(tmp_path)!r}

        def pool_at_exit():  # run() ends the process: ask Arrow on the way out
            import pyarrow as pa
            print(pa.default_memory_pool().backend_name)

        atexit.register(pool_at_exit)
        import sys
        sys.argv = ["netmind-frames", "list"]
        from netmind_frames.cli import run
        run()
    """
    assert run(code).strip().splitlines()[-1] == pool


def test_a_program_calling_main_or_the_library_keeps_its_allocator(tmp_path):
    code = f"""
        import os
        os.environ.pop("ARROW_DEFAULT_MEMORY_POOL", None)
        os.environ["NETMIND_FRAMES_HOME"] = {str(tmp_path)!r}
        from netmind_frames.cli import main
        assert main(["list"]) == 0
        import netmind_frames, pandas as pd, pyarrow as pa
        pd.DataFrame({{"t": ["a"]}}).netmind  # the accessor, registered
        print(pa.default_memory_pool().backend_name, "ARROW_DEFAULT_MEMORY_POOL" in os.environ)
    """
    default = run("import pyarrow as pa; print(pa.default_memory_pool().backend_name)").strip()
    assert run(code).split() == [default, "False"]


def test_a_server_worker_process_imports_no_http_server():
    """Worker processes start as big batches wait: they load the answering code alone."""
    code = """
        import json, sys
        import netmind_frames.server._worker
        names = ["uvicorn", "pandas", "openai", "netmind_frames.server._app"]
        print(json.dumps([name for name in names if name in sys.modules]))
    """
    assert json.loads(run(code).strip().splitlines()[-1]) == []
