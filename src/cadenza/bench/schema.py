"""The JSON schema of ``report.json`` (also printed in docs/bench.md) and a small validator for it.

The validator implements the part of JSON Schema this schema uses (``type``, ``properties``,
``required``, ``additionalProperties: false``, ``items``, ``enum``, ``const``, ``minimum``,
``maximum``, ``minItems``, ``maxItems``), so validating a report needs no extra package; the tests
also check the schema and the reports with the ``jsonschema`` package.
"""

from __future__ import annotations

from typing import Any

NUM = {"type": "number"}
NUM0 = {"type": "number", "minimum": 0}
INT0 = {"type": "integer", "minimum": 0}
RATE = {"type": "number", "minimum": 0, "maximum": 1}
INTERVAL = {"type": "array", "items": RATE, "minItems": 2, "maxItems": 2}
STR = {"type": "string"}


def _obj(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": [k for k in props if k not in optional],
            "additionalProperties": False}


POINT = _obj({"env_steps": INT0, "episodes": INT0, "successes": INT0, "collisions": INT0, "success_rate": RATE,
              "collision_rate": RATE, "mean_return": NUM, "success_ci": INTERVAL}, optional=("success_ci",))
COST = _obj({"device_hours": NUM0, "unit": {"enum": ["GPU-hours", "CPU core-hours"]}, "rate_per_hour": NUM0,
             "dollars": NUM0})
KIND = {"enum": ["residual", "residual-sac", "full", "sb3", "sb3-sac", "sb3-sac-utd1"]}
RUN = _obj({
    "arm": STR, "kind": KIND, "reward": {"enum": ["sparse", "dense"]},
    "seed": {"type": "integer"}, "device": STR, "threads": {"type": "integer", "minimum": 1},
    "env_steps": INT0, "wall_s": NUM0, "cpu_s": NUM0, "eval_wall_s": NUM0, "eval_cpu_s": NUM0,
    "stop_reason": STR, "rounds": INT0, "cost": COST, "final": POINT,
    "steps_to_threshold": {"type": ["integer", "null"], "minimum": 0},
    "curve": {"type": "array", "items": POINT, "minItems": 1},
    "hyperparameters": {"type": "object"}, "curriculum": {"type": "array"}, "architecture": {"type": "object"},
    "accel": {"type": "object"},
})
SUMMARY = _obj({
    "seeds": {"type": "integer", "minimum": 1}, "env_steps": NUM0, "wall_s": NUM0, "cpu_s": NUM0,
    "device_hours": NUM0, "device_hours_unit": {"enum": ["GPU-hours", "CPU core-hours"]}, "dollars": NUM0,
    "dollars_all_seeds": NUM0, "final_episodes": INT0, "final_successes": INT0, "success_rate": RATE,
    "success_ci": INTERVAL, "collision_rate": RATE, "mean_return": NUM,
    "steps_to_threshold": {"type": "array", "items": {"type": ["integer", "null"], "minimum": 0}},
    "steps_to_threshold_median": {"type": ["number", "null"], "minimum": 0},
    "seeds_reaching_threshold": INT0, "cost_to_threshold": {"type": ["number", "null"], "minimum": 0},
})
ARM = _obj({
    "id": STR, "kind": KIND, "label": STR, "reward": {"enum": ["sparse", "dense"]},
    "skipped": {"type": "boolean"}, "note": STR, "runs": {"type": "array", "items": RUN},
    "summary": {"oneOf": [SUMMARY, {"type": "null"}]},
})
RATIO = _obj({"value": {"type": ["number", "null"], "minimum": 0}, "lower_bound": {"type": "boolean"}, "text": STR})
COMPARISON = _obj({
    "vs": STR, "samples": {"enum": ["win", "lose", "tie", "none"]}, "sample_ratio": RATIO, "cost_ratio": RATIO,
    "success_diff": NUM, "diff_low": NUM, "diff_high": NUM,
    "accuracy": {"enum": ["better", "non-inferior", "worse", "undecided"]},
})
VERDICT = _obj({
    "outcome": {"enum": ["RESIDUAL_WINS", "RESIDUAL_LOSES", "UNDECIDED", "NEEDS_DATA"]}, "line": STR,
    "threshold": RATE, "comparisons": {"type": "array", "items": COMPARISON},
    "reasons": {"type": "array", "items": STR},
    "headline_sample_ratio": {"oneOf": [RATIO, {"type": "null"}]},
    "headline_cost_ratio": {"oneOf": [RATIO, {"type": "null"}]},
})
BASE = _obj({"label": STR, "task": STR, "episodes": INT0, "successes": INT0, "success_rate": RATE,
             "success_ci": INTERVAL, "collisions": INT0, "collision_rate": RATE, "mean_return": NUM,
             "curve_point": POINT})
SETTINGS = _obj({
    "steps": {"type": "integer", "minimum": 1}, "seeds": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
    "arms": {"type": "array", "items": STR}, "residual_reward": {"enum": ["sparse", "dense"]},
    "full_reward": {"enum": ["sparse", "dense", "both"]},
    "device": STR, "workers": {"type": "integer", "minimum": 1},
    "cost_per_gpu_hour": NUM0, "cost_per_cpu_core_hour": NUM0,
    "eval_episodes": {"type": "integer", "minimum": 1}, "final_episodes": {"type": "integer", "minimum": 1},
    "eval_seed": {"type": "integer"}, "eval_targets": {"type": "array", "items": INT0}, "level": RATE,
    "num_envs": {"type": "integer", "minimum": 1}, "success_threshold": RATE, "regression_margin": RATE,
    "confidence": RATE, "base": STR, "config_sha256": STR, "residual_spec": {"type": ["object", "null"]},
    # an arm kind's own budget where it is not `steps` (benchmarks/sample_efficiency.py --residual-steps)
    "arm_steps": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
}, optional=("arm_steps",))

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://cadenza.dev/schemas/bench-report-1.json",
    "title": "cadenza bench report",
    **_obj({
        "kind": {"const": "cadenza.bench.report"}, "schema_version": {"const": 1}, "created": STR,
        "project": STR, "project_root": STR, "task": STR, "real": {"type": "boolean"}, "command": STR,
        "settings": SETTINGS, "base": BASE, "arms": {"type": "array", "items": ARM, "minItems": 1},
        "verdict": VERDICT,
        "timing": _obj({"bench_wall_s": NUM0, "train_wall_s": NUM0, "train_cpu_s": NUM0, "eval_wall_s": NUM0}),
        "machine": {"type": "object"}, "versions": {"type": "object"},
        "files": _obj({"report_md": STR, "report_json": STR, "curves_png": STR}),
        "scale": _obj({"backend": {"enum": ["local", "ray"]}, "ray_address": {"type": ["string", "null"]},
                       "nodes": INT0, "cpus": INT0, "nodes_used": INT0, "retries": INT0}),
    }, optional=("scale",)),
}

_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}


def _is(value: Any, t: str) -> bool:
    if t in ("integer", "number") and isinstance(value, bool):
        return False
    if t == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[t])


def errors(value: Any, schema: dict[str, Any] = REPORT_SCHEMA, path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty when it validates), as ``path: message`` lines."""
    out: list[str] = []
    if "oneOf" in schema:
        ok = [s for s in schema["oneOf"] if not errors(value, s, path)]
        if len(ok) != 1:
            out.append(f"{path}: matches {len(ok)} of the allowed forms, expected exactly one")
        return out
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: expected one of {schema['enum']}, got {value!r}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            return [*out, f"{path}: expected {' or '.join(types)}, got {type(value).__name__}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"{path}: missing key {k!r}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            out += [f"{path}: unexpected key {k!r}" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                out += errors(value[k], sub, f"{path}.{k}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{path}: {len(value)} items, expected at least {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: {len(value)} items, expected at most {schema['maxItems']}")
        if "items" in schema:
            for i, v in enumerate(value):
                out += errors(v, schema["items"], f"{path}[{i}]")
    return out
