"""Built-in deterministic proxy tasks (pure numpy, vectorised)."""

from cadenza.tasks.proxy.rescue_dog import RescueDogEnv, RescueDogProxy

__all__ = ["RescueDogEnv", "RescueDogProxy"]
