"""Seed blocks: which episodes train, validate and judge a policy (pure functions).

Every scoring of a version draws its episodes from one *held-out block* of seeds that no earlier
scoring of that version used: the scorecard written by ``train`` uses block 0, each later ``eval``
the next block, and the registry's ledger records the block of every verdict (``--seed K`` on an
eval reuses block ``K`` on purpose). Episodes inside a block come in chunks of parallel envs: chunk
``c`` of block ``k`` resets with seed ``heldout_seed(k) + CHUNK_STRIDE * c``.

Training resets its envs with the run's seed (``residual.seed``, below :data:`TRAIN_SEED_LIMIT`)
and the governor's validation card, which decides when training stops and which checkpoint is kept,
uses the *validation block* (:data:`VALIDATION_SEED`). The three ranges never meet, so no episode a
verdict is computed on was seen in training or used to pick the checkpoint.
"""

from __future__ import annotations

from cadenza.errors import CadenzaError

TRAIN_SEED_LIMIT = 1_000_000  # training seeds are 0 .. 999,999
HELDOUT_SEED = 1_000_003  # block 0 (the historical EVAL_SEED)
BLOCK_STRIDE = 100_000_000  # seeds between two held-out blocks
CHUNK_STRIDE = 7919  # seeds between two chunks of one block
MAX_BLOCKS = 40  # held-out blocks 0 .. 39
MAX_CHUNKS = BLOCK_STRIDE // CHUNK_STRIDE  # chunks one block holds before it would reach the next
VALIDATION_SEED = HELDOUT_SEED + MAX_BLOCKS * BLOCK_STRIDE  # above every held-out block


def heldout_seed(block: int) -> int:
    """First seed of held-out block ``block``."""
    if not 0 <= block < MAX_BLOCKS:
        raise CadenzaError(f"held-out block {block} does not exist: blocks are 0 to {MAX_BLOCKS - 1} "
                           "(each scoring of a version uses the next one; see cadenza env history)")
    return HELDOUT_SEED + block * BLOCK_STRIDE


def chunk_seed(first_seed: int, chunk: int) -> int:
    """Reset seed of chunk ``chunk`` of the block starting at ``first_seed``."""
    if not 0 <= chunk < MAX_CHUNKS:
        raise CadenzaError(f"a seed block holds at most {MAX_CHUNKS} chunks of parallel envs, asked for chunk "
                           f"{chunk}; lower governance.max_eval_episodes or raise task.num_envs")
    return first_seed + CHUNK_STRIDE * chunk


def block_of_seed(seed: int) -> int | None:
    """The held-out block a first seed belongs to (None for the validation block or another seed)."""
    k, rest = divmod(seed - HELDOUT_SEED, BLOCK_STRIDE)
    return k if rest == 0 and 0 <= k < MAX_BLOCKS else None
