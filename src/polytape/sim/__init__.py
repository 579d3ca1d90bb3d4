"""The Polymarket simulator: a seeded world served over real HTTP and WebSocket sockets.

``async with SimServer(seed=7) as sim:`` then point clients at ``sim.gamma_url``,
``sim.data_api_url``, ``sim.clob_url`` and ``sim.clob_ws_url``; read the truth from
``sim.world``; inject faults with ``sim.inject(...)`` (``after=N`` lets N matching
requests through first). It stands in for the outside world, so it imports nothing of
polytape outside ``sim/``.
"""

from polytape.sim.faults import FaultProfile
from polytape.sim.server import RequestRecord, SimServer, run_simulator
from polytape.sim.world import World
from polytape.sim.ws import WsSettings

__all__ = ["FaultProfile", "RequestRecord", "SimServer", "World", "WsSettings", "run_simulator"]
