"""The residual: the control law, the residual network, PPO and governed training.

Modules: ``control_law`` (the one place base action and residual meet), ``combine`` (base + residual,
the one combinator), ``network`` (the residual head), ``policy`` (saving and loading it,
``weights_only``), ``loop`` (the round loop every trainer shares), ``ppo`` (rollouts and the PPO
update), ``sac`` (the off-policy learner, not wired yet), ``train`` (``env residual train`` on the
loop), ``checkpoint`` (resume), ``finalise``
(register, score, report), ``plot`` (the learning curve), ``validation`` (the validation card),
``evaluate`` and ``scoring`` (held-out episodes, the scorecard), ``profile`` and ``scaffold``
(``env residual init``).

This package's ``__init__`` imports nothing, so importing ``cadenza.residual.control_law`` never pulls torch.
"""
