"""mpgen.sim: cocotb simulation of mpgen's generated RTL.

Kept light on purpose: importing :mod:`mpgen.sim` imports neither cocotb nor a
simulator.  The pieces are

* :mod:`mpgen.sim.runner` – build/run glue around ``cocotb_tools.runner``
  (simulator discovery, a content-addressed build cache, per-run test folders);
* :mod:`mpgen.sim.stream` – cocotb helpers shared by every testbench (stream
  driver/sink with random gaps and back-pressure, reset, parameter/result I/O).

The two environment variables below are the contract between
:func:`mpgen.sim.runner.run_cocotb` (host side) and a cocotb test module
(simulator side).
"""

#: Environment variable holding the JSON-encoded ``params`` dict for the testbench.
PARAMS_ENV = "MPGEN_TB_PARAMS"
#: Environment variable holding the path the testbench writes its JSON result dict to.
RESULT_ENV = "MPGEN_TB_RESULT"
#: Environment variable that overrides the simulation build-cache folder.
BUILD_DIR_ENV = "MPGEN_BUILD_DIR"

__all__ = ["PARAMS_ENV", "RESULT_ENV", "BUILD_DIR_ENV"]
