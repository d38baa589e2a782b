"""`vidgen-serve` whose model calls a test can hold: a request in flight in another process.

Run as `python -m tests.serving.gated_serve start ...` (the arguments of `vidgen-serve`)
with VIDGEN_TEST_GATE naming a folder. Once GATE/hold exists, every model call creates
GATE/entered and waits for GATE/release before it runs; until then calls (the warm-up
included) run at once. Only `Servable.run` is wrapped: the command line, the signal
handling and the drain are those of `serving.cli`.
"""

import os
import sys
import time

from serving import servable
from serving.cli import main

# A held call that is never released fails instead of hanging the test.
RELEASE_TIMEOUT = 120.0


def _gated(run, gate: str):
    def gated_run(self, *args, **kwargs):
        if os.path.exists(os.path.join(gate, "hold")):
            open(os.path.join(gate, "entered"), "w").close()
            end = time.monotonic() + RELEASE_TIMEOUT
            while not os.path.exists(os.path.join(gate, "release")):
                if time.monotonic() > end:
                    raise RuntimeError(f"{gate}/release never appeared")
                time.sleep(0.01)
        return run(self, *args, **kwargs)

    return gated_run


if __name__ == "__main__":
    servable.Servable.run = _gated(servable.Servable.run, os.environ["VIDGEN_TEST_GATE"])
    sys.exit(main())
