"""Acceptance: the head trained as `env lora finetune --epochs 5 --rank 8` flies the listed goals
within 5 points of the scripted planner on the same sites, and plans missions for goal paraphrases
nobody trained on about as well as for the listed goals (at least 85% of their success), while the
scripted planner refuses those paraphrases. Real MiniLM, real proxy missions (perturbation 0,
the project's base), the same sites for both goal sets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from cadenza.errors import CadenzaError  # noqa: E402
from cadenza.lora.finetune import Finetuned, FinetuneOptions, finetune, project_base  # noqa: E402
from cadenza.lora.missions import MissionSpec, expert, run_batch  # noqa: E402
from cadenza.lora.planner import LoraPlanner  # noqa: E402
from cadenza.mission.planners import make_planner  # noqa: E402
from cadenza.mission.runner import mission_vocabulary  # noqa: E402
from cadenza.project.config import load_project  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

# Written by hand, in no example and no generated paraphrase (benchmarks/lora_missions.py reads the same file).
PARAPHRASES: dict[str, list[str]] = json.loads(
    (ROOT / "examples" / "rescue-dog" / "heldout_paraphrases.json").read_text(encoding="utf-8"))["paraphrases"]
SITES = 12  # per paraphrase: 144 missions for the paraphrases, 144 for the listed goals


@pytest.mark.slow
def test_paraphrases_never_trained_on_do_almost_as_well_as_the_listed_goals(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_NUM_THREADS", "1")  # the acceleration layer would pick by the load average
    root = tmp_path / "dog"
    shutil.copytree(ROOT / "examples" / "rescue-dog", root,
                    ignore=shutil.ignore_patterns(".cadenza", ".cadenza-env", "residual", "student"))
    proj = load_project(root)
    torch.set_num_threads(1)
    res = finetune(proj, FinetuneOptions(epochs=5, rank=8))
    assert isinstance(res, Finetuned)
    head = res.fit.head
    trained = set(head.train_texts)
    assert not any(t in trained for v in PARAPHRASES.values() for t in v)
    vocab, _ = mission_vocabulary(proj)
    base = project_base(proj)
    listed = {o: g for g, o in proj.config.mission.objectives.items()}
    par, lst = [], []
    for obj, texts in PARAPHRASES.items():
        for i, text in enumerate(texts):
            seeds = [900_000 + 100 * i + s for s in range(SITES)]
            par += [MissionSpec(s, obj, text) for s in seeds]
            lst += [MissionSpec(s, obj, listed[obj]) for s in seeds]
    k_par = sum(o.success for o in run_batch(par, [LoraPlanner(head) for _ in par], vocab, base, max_steps=40)[0])
    k_lst = sum(o.success for o in run_batch(lst, [LoraPlanner(head) for _ in lst], vocab, base, max_steps=40)[0])
    k_exp = sum(o.success for o in run_batch(lst, [expert(vocab, s.objective) for s in lst], vocab, base,
                                             max_steps=40)[0])
    # near the scripted expert: the 5-point goal is judged on 400 missions by the scorecard and on
    # `env run` (docs/results.md); one training on 144 missions varies by a few points (91-97% measured), so the
    # guard here is 8 points, which the head before state augmentation (88.5% vs 100%) failed
    assert k_lst >= k_exp - 0.08 * len(lst), (k_lst, k_exp, len(lst))
    assert k_par >= 0.85 * k_lst, (k_par, k_lst, len(par))
    scripted = make_planner("scripted", proj, vocab)
    refused = 0
    for texts in PARAPHRASES.values():
        for text in texts:
            with pytest.raises(CadenzaError, match="knows only the project's goals"):
                scripted.reset(text, 0)
            refused += 1
    assert refused == 12
