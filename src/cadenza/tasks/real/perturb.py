"""Perturbations of a MuJoCo robot, drawn per episode from one curriculum level in [0, 1].

Two families, one interface (:class:`Perturbation`):

* model parameters, written into the env's ``MjModel`` at every episode start and restored from a
  snapshot of the nominal values first: body ``mass`` (and inertia), contact ``friction``,
  ``actuator_gain`` (gear), joint ``damping`` and ``joint_friction`` (frictionloss);
* forces and signal paths, applied around every step the way a Gymnasium wrapper would:
  a constant ``bias_torque`` on joints, ``push`` forces on a body, ``latency`` of the action and
  ``obs_noise`` on the observation.

Every episode draws a magnitude ``level * U(0.5, 1) * scale`` per perturbation (latency: a whole
number of steps, ``round(level * U(0, 1) * scale)``), from the env's own ``numpy`` Generator, so a
seed fixes the whole sequence. At level 0 nothing changes: the robot is the nominal one.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cadenza.project.config import PerturbationSpec

PUSH_DURATION_S = 0.1  # each push lasts this long
PUSH_INTERVAL_S = 1.0  # pushes start at random, on average this often


class PerturbationTargetError(ValueError):
    """A perturbation that does not fit the model (e.g. its ``target`` names nothing there)."""

    def __init__(self, message: str, index: int | None = None, key: str = "target") -> None:
        super().__init__(message)
        self.index = index
        self.key = key


@dataclass
class ModelView:
    """What the perturbations need from an env: its MuJoCo model and data, and its control period."""

    model: Any  # mujoco.MjModel
    data: Any  # mujoco.MjData
    dt: float


def _names(model: Any, kind: str, count: int) -> list[str]:
    import mujoco

    obj = {"body": mujoco.mjtObj.mjOBJ_BODY, "joint": mujoco.mjtObj.mjOBJ_JOINT, "geom": mujoco.mjtObj.mjOBJ_GEOM,
           "actuator": mujoco.mjtObj.mjOBJ_ACTUATOR}[kind]
    return [mujoco.mj_id2name(model, obj, i) or "" for i in range(count)]


def _match(patterns: str, names: Sequence[str], what: str, candidates: Sequence[int] | None = None) -> list[int]:
    """Indices whose name matches one of the comma-separated patterns (all candidates when empty)."""
    pool = list(range(len(names))) if candidates is None else list(candidates)
    if not patterns.strip():
        return pool
    out: list[int] = []
    for pat in (p.strip() for p in patterns.split(",")):
        hits = [i for i in pool if names[i] and fnmatch.fnmatchcase(names[i], pat)]
        if not hits:
            known = ", ".join(n for n in (names[i] for i in pool) if n) or "(none has a name)"
            raise PerturbationTargetError(f"{pat!r} matches no {what}; the model has: {known}")
        out.extend(i for i in hits if i not in out)
    return out


def _hinge_or_slide_joints(model: Any) -> list[int]:
    import mujoco

    keep = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    return [j for j in range(model.njnt) if int(model.jnt_type[j]) in keep]


def _root_body(model: Any) -> int:
    import mujoco

    for j in range(model.njnt):
        if int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_FREE):
            return int(model.jnt_bodyid[j])
    return 1 if model.nbody > 1 else 0


def parse_index_spec(spec: str, width: int) -> np.ndarray:
    """``"0:4,8"`` -> indices 0, 1, 2, 3, 8 (empty: all ``width`` indices)."""
    if not spec.strip():
        return np.arange(width)
    out: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        try:
            if ":" in part:
                lo, _, hi = part.partition(":")
                out.extend(range(int(lo or 0), int(hi or width)))
            else:
                out.append(int(part))
        except ValueError:
            raise PerturbationTargetError(f"{part!r} is not an index or a start:stop range") from None
    idx = np.array(sorted(set(out)), dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= width):
        raise PerturbationTargetError(f"observation indices {spec!r} fall outside 0..{width - 1}")
    return idx


class Perturbation:
    """Base class: ``draw`` at episode start, then hooks around every step. All no-ops by default."""

    needs_model = True

    def __init__(self, spec: PerturbationSpec) -> None:
        self.spec = spec
        self.magnitude = 0.0

    def draw(self, rng: np.random.Generator, level: float) -> None:
        self.magnitude = level * rng.uniform(0.5, 1.0) * self.spec.scale

    def apply_model(self) -> None:
        """Write this episode's parameters into the model (after the nominal ones were restored)."""

    def before_step(self, action: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return action

    def after_obs(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return obs


class _ModelParam(Perturbation):
    """A perturbation that rewrites one column of model parameters at every episode start."""

    def __init__(self, spec: PerturbationSpec, view: ModelView) -> None:
        super().__init__(spec)
        self.view = view


class Mass(_ModelParam):
    """Extra mass: ``mass *= 1 + m`` (inertia too, as if the bodies were denser)."""

    def __init__(self, spec: PerturbationSpec, view: ModelView) -> None:
        super().__init__(spec, view)
        m = view.model
        self.ids = _match(spec.target, _names(m, "body", m.nbody), "body", range(1, m.nbody))

    def apply_model(self) -> None:
        m = self.view.model
        m.body_mass[self.ids] *= 1.0 + self.magnitude
        m.body_inertia[self.ids] *= 1.0 + self.magnitude


class Friction(_ModelParam):
    """Slippery contacts: sliding friction ``*= 1 - m`` on the target geoms."""

    def __init__(self, spec: PerturbationSpec, view: ModelView) -> None:
        super().__init__(spec, view)
        m = view.model
        self.ids = _match(spec.target, _names(m, "geom", m.ngeom), "geom")

    def apply_model(self) -> None:
        self.view.model.geom_friction[self.ids, 0] *= 1.0 - self.magnitude


class ActuatorGain(_ModelParam):
    """Weaker motors: gear ``*= 1 - m`` (the same command gives less torque)."""

    def __init__(self, spec: PerturbationSpec, view: ModelView) -> None:
        super().__init__(spec, view)
        m = view.model
        joints = _names(m, "joint", m.njnt)
        # an actuator matches by its own name or by the name of the joint it drives
        names = [n or (joints[m.actuator_trnid[i, 0]] if int(m.actuator_trntype[i]) == 0 else "")
                 for i, n in enumerate(_names(m, "actuator", m.nu))]
        self.ids = _match(spec.target, names, "actuator (or joint it drives)")

    def apply_model(self) -> None:
        self.view.model.actuator_gear[self.ids, 0] *= 1.0 - self.magnitude


class _JointParam(_ModelParam):
    def __init__(self, spec: PerturbationSpec, view: ModelView) -> None:
        super().__init__(spec, view)
        m = view.model
        joints = _match(spec.target, _names(m, "joint", m.njnt), "hinge or slide joint", _hinge_or_slide_joints(m))
        self.dofs = np.array([m.jnt_dofadr[j] for j in joints], dtype=np.int64)


class Damping(_JointParam):
    """Extra viscous joint damping: ``damping += m`` (N m s / rad)."""

    def apply_model(self) -> None:
        self.view.model.dof_damping[self.dofs] += self.magnitude


class JointFriction(_JointParam):
    """Extra dry joint friction: ``frictionloss += m`` (N m)."""

    def apply_model(self) -> None:
        self.view.model.dof_frictionloss[self.dofs] += self.magnitude


class BiasTorque(_JointParam):
    """A constant generalised force ``+/- m`` (N m) on each target joint, its sign drawn per episode."""

    def draw(self, rng: np.random.Generator, level: float) -> None:
        super().draw(rng, level)
        self.force = self.magnitude * rng.choice([-1.0, 1.0], size=self.dofs.size)

    def before_step(self, action: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        self.view.data.qfrc_applied[self.dofs] = self.force
        return action


class Push(_ModelParam):
    """Shoves: a horizontal force of ``m`` newtons on a body for 0.1 s, at random times (about 1/s)."""

    def __init__(self, spec: PerturbationSpec, view: ModelView) -> None:
        super().__init__(spec, view)
        m = view.model
        if spec.target.strip():
            ids = _match(spec.target, _names(m, "body", m.nbody), "body", range(1, m.nbody))
            self.body = ids[0]
        else:
            self.body = _root_body(m)
        self.steps = max(1, round(PUSH_DURATION_S / view.dt))
        self.p_start = min(1.0, view.dt / PUSH_INTERVAL_S)
        self.left = 0
        self.force = np.zeros(3)

    def draw(self, rng: np.random.Generator, level: float) -> None:
        super().draw(rng, level)
        self.left = 0

    def before_step(self, action: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        start = rng.uniform() < self.p_start  # always drawn, so the stream does not depend on the level
        ang = rng.uniform(-np.pi, np.pi)
        if self.left == 0 and start and self.magnitude > 0.0:
            self.left = self.steps
            self.force = self.magnitude * np.array([np.cos(ang), np.sin(ang), 0.0])
        xfrc = self.view.data.xfrc_applied
        if self.left > 0:
            xfrc[self.body, :3] = self.force
            self.left -= 1
        else:
            xfrc[self.body, :3] = 0.0
        return action


class Latency(Perturbation):
    """The robot acts on the command sent ``k`` steps ago (zeros at the start of an episode)."""

    needs_model = False

    def __init__(self, spec: PerturbationSpec, view: ModelView | None = None) -> None:
        super().__init__(spec)
        self.k = 0
        self.buf: deque[np.ndarray] = deque()

    def draw(self, rng: np.random.Generator, level: float) -> None:
        self.k = int(np.floor(level * rng.uniform(0.0, 1.0) * self.spec.scale + 0.5))
        self.magnitude = float(self.k)
        self.buf = deque()

    def before_step(self, action: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.k == 0:
            return action
        if not self.buf:
            self.buf.extend(np.zeros_like(action) for _ in range(self.k))
        self.buf.append(action)
        return self.buf.popleft()


class ObsNoise(Perturbation):
    """Sensor noise: Gaussian, standard deviation ``m`` (observation units), on the target indices."""

    needs_model = False

    def __init__(self, spec: PerturbationSpec, view: ModelView | None = None, obs_dim: int = 0) -> None:
        super().__init__(spec)
        self.idx = parse_index_spec(spec.target, obs_dim)

    def after_obs(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal(self.idx.size)  # always drawn: the stream does not depend on the level
        if self.magnitude > 0.0:
            obs = obs.copy()
            obs[self.idx] += self.magnitude * noise
        return obs


KINDS: dict[str, type[Perturbation]] = {
    "mass": Mass, "friction": Friction, "actuator_gain": ActuatorGain, "damping": Damping,
    "joint_friction": JointFriction, "bias_torque": BiasTorque, "push": Push,
    "latency": Latency, "obs_noise": ObsNoise,
}


class NominalModel:
    """A snapshot of the model parameters the perturbations touch, restored before every draw."""

    FIELDS = ("body_mass", "body_inertia", "geom_friction", "actuator_gear", "dof_damping", "dof_frictionloss")

    def __init__(self, model: Any) -> None:
        self.model = model
        self.saved = {f: getattr(model, f).copy() for f in self.FIELDS}

    def restore(self) -> None:
        for f, v in self.saved.items():
            getattr(self.model, f)[:] = v


def build(specs: Sequence[PerturbationSpec], view: ModelView | None, obs_dim: int) -> list[Perturbation]:
    """Instantiate the perturbations for one env; errors name the offending entry's index."""
    out: list[Perturbation] = []
    for i, spec in enumerate(specs):
        cls = KINDS[spec.kind]
        if cls.needs_model and view is None:
            raise PerturbationTargetError(
                f"{spec.kind!r} changes MuJoCo model parameters, but this env exposes no MuJoCo model "
                "(env.unwrapped.model and .data)", index=i, key="kind")
        try:
            if cls is ObsNoise:
                out.append(ObsNoise(spec, view, obs_dim))
            elif cls is Latency:
                out.append(Latency(spec, view))
            else:
                out.append(cls(spec, view))  # type: ignore[call-arg]
        except PerturbationTargetError as e:
            raise PerturbationTargetError(str(e), index=i, key="target") from None
    return out
