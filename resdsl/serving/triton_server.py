"""Start the ``tritonserver`` that the ``nvidia-pytriton`` wheel bundles, for local use and tests.

The bundle (``pytriton/tritonserver``) holds the server, Triton's Python backend and one
backend stub per Python version. The stub is a separate program with an embedded
interpreter: it links ``libpython3.X.so`` and ignores PYTHONPATH, so the server is given
a private backend directory with the stub for *this* interpreter, LD_LIBRARY_PATH to this
interpreter's libpython and to the bundle's libraries, and RESDSL_SITE_PACKAGES, which the
exported ``model.py`` puts first on its ``sys.path`` (numpy, onnxruntime, tvm, resdsl of
this environment). Metrics are off, so nothing listens beyond the two endpoints asked for.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from resdsl.errors import ResdslError

TRITON_CONTAINER = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51, the bundle's version


@dataclass(frozen=True)
class Bundle:
    root: str  # .../pytriton/tritonserver
    libs: str  # .../nvidia_pytriton.libs

    @property
    def binary(self) -> str:
        return os.path.join(self.root, "bin", "tritonserver")

    def stub(self) -> str:
        return os.path.join(
            self.root,
            "python_backend_stubs",
            f"{sys.version_info[0]}.{sys.version_info[1]}",
            "triton_python_backend_stub",
        )


def container_hint(repo: str = "models") -> str:
    return (
        f"or run the repository in NVIDIA's Triton container on a GPU node: docker run --gpus all --rm "
        f"-p 8000:8000 -p 8001:8001 -v $PWD/{repo}:/models {TRITON_CONTAINER} "
        "tritonserver --model-repository=/models (pip install resdsl in it for --backend python models)"
    )


def find_bundle(repo: str = "models") -> Bundle:
    """The tritonserver of the installed nvidia-pytriton, or one ResdslError saying how to get one."""
    spec = importlib.util.find_spec("pytriton")
    root = os.path.join(os.path.dirname(spec.origin), "tritonserver") if spec and spec.origin else ""
    if not root or not os.path.exists(os.path.join(root, "bin", "tritonserver")):
        raise ResdslError(
            "Triton Inference Server is not installed here: pip install 'resdsl[serve]' "
            "(its nvidia-pytriton wheel bundles tritonserver; Linux x86-64, glibc >= 2.35)",
            hint=container_hint(repo),
        )
    bundle = Bundle(root, os.path.join(os.path.dirname(os.path.dirname(root)), "nvidia_pytriton.libs"))
    if not os.path.exists(bundle.stub()):
        raise ResdslError(
            f"the Triton bundle has no Python backend stub for Python {sys.version_info[0]}.{sys.version_info[1]}",
            hint=container_hint(repo),
        )
    return bundle


def free_port() -> int:
    """A TCP port free on the loopback interface now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the parent dies, so no server outlives a killed test."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class TritonServer:
    """One tritonserver process; ``start`` returns once its HTTP endpoint answers, ``stop`` reaps it."""

    def __init__(
        self,
        repo: str,
        http_port: int = 8000,
        grpc_port: int = 8001,
        host: str = "127.0.0.1",
        poll_secs: int | None = None,
        log_path: str | None = None,
    ) -> None:
        self.repo = os.path.abspath(repo)
        if not os.path.isdir(self.repo):
            raise ResdslError(f"model repository {repo!r} does not exist", hint="write one with 'resdsl export triton'")
        self.bundle = find_bundle(repo)
        self.host, self.http_port, self.grpc_port, self.poll_secs = host, http_port, grpc_port, poll_secs
        self.workdir = tempfile.mkdtemp(prefix="resdsl-triton-")
        self.log_path = log_path or os.path.join(self.workdir, "tritonserver.log")
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def _backends(self) -> str:
        """A private backend directory: the bundle's Python backend plus the stub for this interpreter."""
        backends = os.path.join(self.workdir, "backends")
        python = os.path.join(backends, "python")
        shutil.copytree(
            os.path.join(self.bundle.root, "backends", "python"), python, ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy2(self.bundle.stub(), os.path.join(python, "triton_python_backend_stub"))
        return backends

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        ldlib = sysconfig.get_config_var("INSTSONAME") or ""
        paths = [libdir] if libdir and ldlib and os.path.exists(os.path.join(libdir, ldlib)) else []
        if paths:  # this interpreter's own libpython, and the standard library that goes with it
            env["PYTHONHOME"] = sys.base_prefix
        paths.append(self.bundle.libs)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths + [p for p in [env.get("LD_LIBRARY_PATH", "")] if p])
        dirs = list(site.getsitepackages())
        user = site.getusersitepackages()
        if site.ENABLE_USER_SITE and os.path.isdir(user):
            dirs.append(user)
        env["RESDSL_SITE_PACKAGES"] = os.pathsep.join(dirs)
        return env

    def command(self) -> list[str]:
        cmd = [
            self.bundle.binary,
            f"--model-repository={self.repo}",
            f"--backend-directory={self._backends()}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-on-error=false",  # one model that fails to load must not take the others down
        ]
        if self.poll_secs is not None:
            cmd += ["--model-control-mode=poll", f"--repository-poll-secs={self.poll_secs}"]
        return cmd

    def start(self, timeout: float = 180.0) -> TritonServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches resdsl, which forwards it: one clean shutdown
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise ResdslError(f"tritonserver exited with status {code} while starting: {self.log_tail(1)}")
            if self._get("/v2/health/live") is not None:
                return self
            time.sleep(0.3)
        self.stop()
        raise ResdslError(f"tritonserver did not answer on {self.http_url} within {timeout:.0f} s: {self.log_tail(1)}")

    def _get(self, path: str, data: bytes | None = None) -> bytes | None:
        try:
            with urllib.request.urlopen(urllib.request.Request(self.http_url + path, data=data), timeout=5) as r:
                return r.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def models(self) -> list[dict]:
        """The repository index: name, version, state (READY, UNAVAILABLE...) and reason of each model."""
        body = self._get("/v2/repository/index", data=b"{}")
        return json.loads(body) if body else []

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                text = [line.rstrip() for line in f if line.strip()]
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL after ``timeout``; always reaps."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
        clean = code == 0 and os.path.dirname(self.log_path) == self.workdir  # keep the log of a failure
        shutil.rmtree(self.workdir if clean else os.path.join(self.workdir, "backends"), ignore_errors=True)
        return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
