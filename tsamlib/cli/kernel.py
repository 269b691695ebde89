"""The Jupyter kernel the notebooks run on: ipykernel, minus one warning that does not apply to it.

ipykernel 7 warns "Kernel is running over TCP without encryption" on every start. Jupyter and papermill start
this kernel on the loopback interface of the same machine, where nothing else can listen in, so the warning is
dropped there, and only there: a kernel bound to any other address keeps it. At shutdown, a closed socket can make
tornado log a ZMQError (ENOTSOCK) traceback after the notebook finished; that one record is dropped too. Everything
else ipykernel logs is unchanged.

    python -m tsamlib.cli.kernel install    # the "python3" kernel of this environment (scripts/setup.sh runs it)
"""
from __future__ import annotations

import json
import logging
import sys

from ..runs.notebook import KERNEL_DISPLAY_NAME, KERNEL_NAME

__all__ = ["LoopbackTCPFilter", "ShutdownSocketFilter", "install", "main"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class LoopbackTCPFilter(logging.Filter):
    """Drop ipykernel's plain-TCP warning when the kernel's sockets are bound to loopback."""

    def __init__(self, app):
        super().__init__()
        self.app = app

    def filter(self, record: logging.LogRecord) -> bool:
        plain_tcp = record.getMessage().startswith("Kernel is running over TCP without encryption")
        return not (plain_tcp and getattr(self.app, "ip", None) in LOOPBACK)


class ShutdownSocketFilter(logging.Filter):
    """Drop tornado's "Uncaught exception in ZMQStream callback" for a socket already closed (ENOTSOCK): a race
    between ipykernel's sockets and their event loop while the kernel shuts down, after the notebook finished."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        import zmq

        return not (isinstance(err, zmq.ZMQError) and err.errno == zmq.ENOTSOCK)


def install(name: str = KERNEL_NAME, display_name: str = KERNEL_DISPLAY_NAME) -> str:
    """Install the kernelspec into this environment (``sys.prefix``), launching this module."""
    from ipykernel.kernelspec import install as ipk_install

    path = ipk_install(kernel_name=name, display_name=display_name, prefix=sys.prefix)
    spec_file = f"{path}/kernel.json"
    with open(spec_file) as f:
        spec = json.load(f)
    spec["argv"] = [sys.executable, "-m", "tsamlib.cli.kernel", "-f", "{connection_file}"]
    with open(spec_file, "w") as f:
        json.dump(spec, f, indent=1)
    return path


def main() -> None:
    if sys.argv[1:2] == ["install"]:
        print(f"kernel installed in {install()}")
        return
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.log.addFilter(LoopbackTCPFilter(app))
    logging.getLogger("tornado.general").addFilter(ShutdownSocketFilter())
    app.initialize()
    app.start()


if __name__ == "__main__":
    main()
