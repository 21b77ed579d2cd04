"""The registry on an MLflow model registry: ``[registry] backend = "mlflow"`` (docs/tracking.md).

The same interface as the local :class:`~cadenza.governance.registry.Registry`, with the MLflow server
as the one source of truth a team shares, and the project's ``.cadenza/registry/`` folder (the local
registry's layout) as this machine's cache: publishing to the well-known paths, ``verify()`` and
``path()`` read the cache, which is filled from the server when a version is first needed.

On the server, for a project named ``P`` and a kind ``K`` (residual, student, lora, prompt):

* the registered model ``P-K``; cadenza's version ``vNNNN`` is its model version ``NNNN`` (the server
  numbers them, so two machines never pick the same name);
* a version's files and its ``manifest.json`` are the artefacts (folder ``artefact/``) of an MLflow run
  ``registry-K`` in the project's experiment (``[tracking] experiment``, default ``P``); the model
  version's source is that folder;
* model-version tags: ``cadenza.version``, ``cadenza.kind``, ``cadenza.sha256.<file>`` for each file,
  ``cadenza.manifest_sha256``, ``cadenza.metadata`` (JSON); a verdict sets ``verdict``, ``action``,
  ``reasons`` (JSON), ``block``, ``episodes`` (the last verdict; the ledger keeps them all);
* the baseline pointer: the registered-model tag ``cadenza.pointer``, ``{"baseline": "v0002", "previous":
  ["v0001"]}`` (the earlier baselines, so a rollback without ``--to`` works from any machine), written in
  one call; the aliases ``baseline`` (moved by promote and rollback, just before the pointer) and
  ``candidate`` (the newest registered version) show the same in MLflow (``models:/P-K@baseline``);
* the ledger: one tag per event on the version the event is about, ``cadenza.ledger.<time ns>.<random>``
  = the event's JSON. Tags are set one at a time, so two machines appending never overwrite each
  other's events; reading them back in key order gives the history (ordered by the writers' clocks).

A version is downloaded into a temporary folder, and every file's sha256 (and the manifest's) is
checked against the tags before the folder is moved into the cache: a mismatch is an ArtefactError
and nothing is loaded or published. A cached version is checked against the tags again each time it
is verified, so a tag changed on the server is refused too.

Every server call fails fast (no retries, a 15 s timeout) and becomes one line naming the server.
Writes go to the server before the local cache changes, so a server that goes down leaves the local
files as they were.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cadenza.errors import ArtefactError, CadenzaError, ConfigError
from cadenza.governance.registry import KINDS, Registry, _now, _user
from cadenza.utils.io import sha256_file

T = TypeVar("T")

TRACK_EXTRA = 'pip install -e ".[track]"'
ARTEFACT_DIR = "artefact"  # the run's artefact folder holding a version's files
SHA_TAG = "cadenza.sha256."
LEDGER_TAG = "cadenza.ledger."
POINTER_TAG = "cadenza.pointer"
MANIFEST_TAG = "cadenza.manifest_sha256"
METADATA_TAG = "cadenza.metadata"
TAG_VALUE_MAX = 100_000  # MLflow's limit on a model-version tag value
_VERSION = re.compile(r"^v(\d{1,9})$")


class _Missing(ArtefactError):
    """The server answered: no such registered model or version."""


def registry_uri(project_root: Path, uri: str | None, tracking_uri: str | None) -> str:
    """``[registry] uri`` over ``[tracking] uri`` over ``MLFLOW_TRACKING_URI``; one line when none is set."""
    found = uri or tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not found:
        raise ConfigError(f"{Path(project_root) / 'cadenza.toml'}: key 'registry.backend': \"mlflow\" needs a "
                          "server; set [registry] uri (or [tracking] uri, or MLFLOW_TRACKING_URI), e.g. "
                          "http://127.0.0.1:5000")
    return found


def _number(version: str) -> str | None:
    m = _VERSION.match(version) if isinstance(version, str) else None
    return str(int(m.group(1))) if m else None


def _name_of(number: str | int) -> str:
    return f"v{int(number):04d}"


class MlflowRegistry(Registry):
    """The project's registry on the MLflow server at ``uri``; raises a one-line CadenzaError when the
    server does not answer (or mlflow is not installed) before anything else happens."""

    backend = "mlflow"

    def __init__(self, project_root: str | Path, uri: str, *, model_prefix: str, experiment: str) -> None:
        super().__init__(project_root)
        self.uri, self.prefix, self.experiment = uri, model_prefix, experiment
        # fail fast: the client's default is 7 retries with backoff, minutes before an error
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # "View run ..." on every register
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise CadenzaError(f'[registry] backend = "mlflow" needs mlflow: {TRACK_EXTRA}') from None
        # "Waiting up to 300 seconds for model version to finish creation" on every register
        logging.getLogger("mlflow.store.model_registry.abstract_store").setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self._call("list the registered models", lambda: self.client.search_registered_models(max_results=1))

    # ------------------------------------------------------------------ the server
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one client call; its failure becomes one line (``_Missing`` for "does not exist")."""
        try:
            return fn()
        except CadenzaError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            if getattr(e, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                raise _Missing(first[:200]) from None
            if type(e).__name__ == "RestException":  # the server answered with an error
                raise CadenzaError(f"registry: the MLflow server at {self.uri} refused to {what} ({first[:200]})") \
                    from None
            text = str(e)
            why = next((w.lower() for w in ("Connection refused", "Read timed out", "Name or service not known")
                        if w in text), f"{type(e).__name__}: {first[:120]}")
            raise CadenzaError(f"registry: cannot reach the MLflow server at {self.uri} ({what}: {why}); start it, "
                               'or set [registry] backend = "local"') from None

    def model_name(self, kind: str) -> str:
        return f"{self.prefix}-{kind}"

    def location(self, kind: str) -> str:
        return f"registered model {self.model_name(kind)!r} on the MLflow server at {self.uri}"

    def _model(self, kind: str) -> Any | None:
        """The registered model of ``kind`` (aliases, tags) or None."""
        try:
            return self._call("read the registered model",
                              lambda: self.client.get_registered_model(self.model_name(kind)))
        except _Missing:
            return None

    def _model_versions(self, kind: str) -> list[Any]:
        name, out, token = self.model_name(kind), [], None
        while True:
            page = self._call("list the versions", lambda t=token: self.client.search_model_versions(
                f"name='{name}'", max_results=1000, page_token=t))
            out += list(page)
            token = getattr(page, "token", None)
            if not token:
                return out

    def _version(self, kind: str, version: str) -> Any:
        """The model version behind ``version`` (``v0003`` -> model version 3)."""
        n = _number(version)
        if n is not None:
            try:
                return self._call("read the version", lambda: self.client.get_model_version(self.model_name(kind), n))
            except _Missing:
                pass
        raise ArtefactError(f"{kind} version {version!r} not found in {self.location(kind)}")

    def _ensure_model(self, kind: str) -> None:
        if self._model(kind) is not None:
            return
        try:
            self._call("create the registered model", lambda: self.client.create_registered_model(
                self.model_name(kind), tags={"cadenza.kind": kind},
                description=f"cadenza {kind} versions of project {self.prefix}"))
        except CadenzaError:
            if self._model(kind) is None:  # not a race with another machine creating it
                raise

    def _experiment_id(self) -> str:
        exp = self._call("read the experiment", lambda: self.client.get_experiment_by_name(self.experiment))
        if exp is not None:
            return exp.experiment_id
        try:
            return self._call("create the experiment", lambda: self.client.create_experiment(self.experiment))
        except CadenzaError:
            exp = self._call("read the experiment", lambda: self.client.get_experiment_by_name(self.experiment))
            if exp is None:
                raise
            return exp.experiment_id

    # ------------------------------------------------------------------ versions
    def versions(self, kind: str) -> list[str]:
        self.check_kind(kind)
        return [_name_of(n) for n in sorted(int(mv.version) for mv in self._model_versions(kind))]

    def register(self, kind: str, files: dict[str, Path | bytes], metadata: dict[str, Any] | None = None) -> str:
        """Upload ``files`` as a new model version, then keep them in the cache; returns ``vNNNN``."""
        self.check_kind(kind)
        kdir = self.root / kind
        on_server = set(self.versions(kind))
        stray = sorted(p.name for p in kdir.iterdir() if p.is_dir() and _number(p.name) and p.name not in on_server) \
            if kdir.is_dir() else []
        if stray:
            raise CadenzaError(f"{kdir}: holds {kind} versions the MLflow server at {self.uri} does not know "
                               f"({', '.join(stray[:5])}{' ...' if len(stray) > 5 else ''}), made with [registry] "
                               'backend = "local"; move .cadenza/registry aside (or go back to the local backend) '
                               "before registering to the server")
        kdir.mkdir(parents=True, exist_ok=True)
        tmp, manifest = self._stage(kdir, kind, files, metadata)
        try:
            version = self._upload(kind, tmp, manifest)
            os.rename(tmp, kdir / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._ledger({"event": "register", "kind": kind, "version": version,
                      "files": manifest["files"], "metadata": metadata or {}})
        return version

    def _upload(self, kind: str, folder: Path, manifest: dict[str, Any]) -> str:
        name = self.model_name(kind)
        exp_id = self._experiment_id()
        run_id = self._call("start a registry run", lambda: self.client.create_run(
            exp_id, run_name=f"registry-{kind}", tags={"cadenza.registry": kind}).info.run_id)
        try:
            self._call("upload the files", lambda: self.client.log_artifacts(run_id, str(folder), ARTEFACT_DIR))
            self._ensure_model(kind)
            tags = {"cadenza.kind": kind, MANIFEST_TAG: sha256_file(folder / "manifest.json"),
                    **{SHA_TAG + f: digest for f, digest in manifest["files"].items()}}
            meta = json.dumps(manifest["metadata"], default=str)
            if len(meta) <= TAG_VALUE_MAX:  # else it is in the manifest only
                tags[METADATA_TAG] = meta
            mv = self._call("register the version", lambda: self.client.create_model_version(
                name, f"runs:/{run_id}/{ARTEFACT_DIR}", run_id=run_id, tags=tags))
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.set_terminated(run_id, "FAILED")
            raise
        version = _name_of(mv.version)
        self._call("tag the version", lambda: self.client.set_model_version_tag(name, mv.version, "cadenza.version",
                                                                                version))
        self._call("move the candidate alias",
                   lambda: self.client.set_registered_model_alias(name, "candidate", mv.version))
        self._call("finish the registry run", lambda: self.client.set_tag(run_id, "cadenza.version", version))
        self._call("finish the registry run", lambda: self.client.set_terminated(run_id, "FINISHED"))
        return version

    def _cached(self, kind: str, version: str) -> Path:
        """The cache folder of ``version``, downloaded and checked against the server's tags if missing."""
        self.check_kind(kind)
        if _number(version) is None:
            raise ArtefactError(f"{kind} version {version!r} not found in {self.location(kind)}")
        vdir = self.root / kind / version
        if (vdir / "manifest.json").is_file():
            return vdir
        mv = self._version(kind, version)
        if not mv.run_id:
            raise ArtefactError(f"{kind} {version} in {self.location(kind)} has no run holding its files; "
                                "refusing to load it")
        kdir = self.root / kind
        kdir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".get-", dir=kdir))
        try:
            got = Path(self._call("download the files", lambda: self.client.download_artifacts(
                mv.run_id, ARTEFACT_DIR, str(tmp))))
            if not (got / "manifest.json").is_file():
                raise ArtefactError(f"{kind} {version} in {self.location(kind)}: no manifest.json among its files; "
                                    "refusing to load it")
            digests = {p.name: sha256_file(p) for p in got.iterdir() if p.is_file() and p.name != "manifest.json"}
            self._check_tags(kind, version, mv, digests, sha256_file(got / "manifest.json"))
            try:
                listed = json.loads((got / "manifest.json").read_text())["files"]
            except (ValueError, KeyError, TypeError):
                listed = None
            if listed != digests:
                raise ArtefactError(f"{kind} {version} in {self.location(kind)}: its manifest does not list its "
                                    "files (corrupt or tampered); refusing to load it")
            try:
                os.rename(got, vdir)
            except OSError:
                if not (vdir / "manifest.json").is_file():  # not another process caching it at the same time
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return vdir

    def _check_tags(self, kind: str, version: str, mv: Any, digests: dict[str, str], manifest_digest: str) -> None:
        """``digests`` (file -> sha256) and the manifest's sha256 against the version's tags on the server."""
        tags = dict(mv.tags or {})
        expected = {k[len(SHA_TAG):]: v for k, v in tags.items() if k.startswith(SHA_TAG)}
        where = f"{kind} {version} in {self.location(kind)}"
        if not expected:
            raise ArtefactError(f"{where}: no content hashes among its tags; refusing to load it")
        if set(digests) != set(expected):
            raise ArtefactError(f"{where}: files {sorted(digests)} differ from those its tags name "
                                f"{sorted(expected)} (corrupt or tampered); refusing to load it")
        for name, digest in sorted(digests.items()):
            if digest != expected[name]:
                raise ArtefactError(f"{where}: {name}: content hash does not match its tag (corrupt or tampered); "
                                    "refusing to load it")
        if manifest_digest != tags.get(MANIFEST_TAG):
            raise ArtefactError(f"{where}: manifest.json: content hash does not match its tag (corrupt or "
                                "tampered); refusing to load it")

    def manifest(self, kind: str, version: str) -> dict[str, Any]:
        self._cached(kind, version)
        return super().manifest(kind, version)

    def verify(self, kind: str, version: str) -> dict[str, Any]:
        """The cached files against their manifest, and the manifest against the server's tags."""
        man = super().verify(kind, version)  # through manifest(): downloads (and checks) a missing version
        self._check_tags(kind, version, self._version(kind, version), dict(man["files"]),
                         sha256_file(self.root / kind / version / "manifest.json"))
        return man

    # ------------------------------------------------------------------ pointers
    def _pointer(self, kind: str) -> dict[str, Any]:
        self.check_kind(kind)
        rm = self._model(kind)
        text = dict(rm.tags or {}).get(POINTER_TAG) if rm is not None else None
        if text is None:
            return {"baseline": None, "previous": []}
        try:
            ptr = json.loads(text)
            ok = isinstance(ptr, dict) and all(_number(v) for v in ptr["previous"]) and \
                (ptr["baseline"] is None or _number(ptr["baseline"]))
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise ArtefactError(f"{self.location(kind)}: tag {POINTER_TAG} is not a baseline pointer (corrupt)")
        return {"baseline": ptr["baseline"], "previous": list(ptr["previous"])}

    def _move_baseline(self, kind: str, version: str, previous: list[str]) -> None:
        """The server first (the alias, then the pointer in one write), then publish into this project: a
        failure on the way leaves the baseline where it was, here and on the server."""
        name = self.model_name(kind)
        self._call("move the baseline alias", lambda: self.client.set_registered_model_alias(
            name, "baseline", str(_number(version))))
        self._call("move the baseline", lambda: self.client.set_registered_model_tag(
            name, POINTER_TAG, json.dumps({"baseline": version, "previous": previous})))
        super()._move_baseline(kind, version, previous)  # publish; pointers.json mirrors the server

    # ------------------------------------------------------------------ ledger
    def record_verdict(self, kind: str, version: str, verdict: str, reasons: list[str],
                       metrics: dict[str, Any], action: str, evidence: dict[str, Any] | None = None) -> None:
        name, n = self.model_name(kind), _number(version)
        if n is None:
            raise ArtefactError(f"{kind} version {version!r} not found in {self.location(kind)}")
        tags = {"verdict": verdict, "action": action, "reasons": json.dumps(reasons)}
        tags.update({k: str((evidence or {})[k]) for k in ("block", "episodes") if (evidence or {}).get(k) is not None})
        for key, value in tags.items():
            self._call("tag the verdict", lambda k=key, v=value: self.client.set_model_version_tag(name, n, k, v))
        super().record_verdict(kind, version, verdict, reasons, metrics, action, evidence)

    def _ledger(self, entry: dict[str, Any]) -> None:
        """One event as a tag of the version it is about (append-only: a new key per event)."""
        entry = {"time": _now(), "user": _user(), **entry}
        n = _number(str(entry.get("version")))
        if n is None:
            raise ArtefactError(f"ledger event without a version: {entry.get('event')}")
        text = json.dumps(entry, default=str)
        if len(text) > TAG_VALUE_MAX:  # a huge metadata: it stays in the version's manifest
            entry["metadata"] = {"note": "too large for a tag; see the version's manifest.json"}
            text = json.dumps(entry, default=str)
        key = f"{LEDGER_TAG}{time.time_ns():020d}.{secrets.token_hex(4)}"
        self._call("append to the ledger", lambda: self.client.set_model_version_tag(
            self.model_name(entry["kind"]), n, key, text))

    def ledger(self, kind: str | None = None) -> list[dict[str, Any]]:
        if kind is not None and kind not in KINDS:
            return []
        rows: list[tuple[str, dict[str, Any]]] = []
        for k in [kind] if kind else KINDS:
            for mv in self._model_versions(k):
                for key, value in dict(mv.tags or {}).items():
                    if not key.startswith(LEDGER_TAG):
                        continue
                    try:
                        event = json.loads(value)
                        assert isinstance(event, dict)
                    except (ValueError, AssertionError):
                        raise ArtefactError(f"{self.location(k)}: version {mv.version} tag {key}: corrupt ledger "
                                            "event (not a JSON object)") from None
                    rows.append((key[len(LEDGER_TAG):], event))
        return [e for _, e in sorted(rows, key=lambda r: r[0])]
