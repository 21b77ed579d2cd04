"""Frozen base policies: ``obs[N, d] -> a_base[N, k]``. Never trained, never written."""

from cadenza.base.loader import BasePolicy, BasePolicyError, load_base

__all__ = ["BasePolicy", "BasePolicyError", "load_base"]
