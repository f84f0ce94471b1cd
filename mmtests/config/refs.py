"""Kinds of values that name other entries of the matrix: checked against what the matrix defines so far."""

from __future__ import annotations

from dataclasses import dataclass

from .values import Context, Kind, unknown


@dataclass(frozen=True)
class Ref(Kind):
    """The name of another entry, e.g. Ref('prompt set', 'prompt_sets'); an undefined name is kept (and noted)."""

    kind: str
    section: str
    required = True
    types = (str,)

    def read(self, value, key: str, where: str, ctx: Context):
        name = value if isinstance(value, str) else str(value)
        known = getattr(ctx.matrix, self.section)
        if name not in known:
            ctx.problems.append(f"{where}: {unknown(self.kind, name, known, key)}")
        return name


def _vlms(names: list[str], key: str, where: str, ctx: Context) -> list[str]:
    models = ctx.matrix.models
    vlms = {n: m for n, m in models.items() if m.is_vlm}
    for n in names:
        if n in models and n not in vlms:
            ctx.problems.append(f"{where}: model {n!r} has backend {models[n].backend!r}; {key} needs backend 'llava'")
        elif n not in models:
            ctx.problems.append(f"{where}: {unknown('model', n, vlms, key)}")
    return [n for n in names if n in vlms]


@dataclass(frozen=True)
class Models(Kind):
    """The models a check runs on: those named, or else every model of its family (LLaVA when `vlm`, else the
    dual encoders). `need` says what a check of the other family needs."""

    vlm: bool
    need: str = ""
    required = True
    types = (list,)

    def read(self, value, key: str, where: str, ctx: Context) -> list[str]:
        models = ctx.matrix.models
        if value is None:
            value = [n for n, m in models.items() if m.is_vlm == self.vlm]
        elif not (isinstance(value, list) and all(isinstance(n, str) for n in value)):
            ctx.problems.append(f"{where}: models = {value!r} must be a list of model names, e.g. [\"m1\"]")
            return []
        if self.vlm:
            return _vlms(value, key, where, ctx)
        for n in value:
            if n not in models:
                ctx.problems.append(f"{where}: {unknown('model', n, models, key)}")
            elif models[n].is_vlm:
                ctx.problems.append(f"{where}: model {n!r} is a vision-language model (backend 'llava'); {self.need}")
        return [n for n in value if n in models and not models[n].is_vlm]


@dataclass(frozen=True)
class Vlm(Kind):
    """One LLaVA model of the matrix, e.g. the control of an attention check."""

    types = (str,)

    def read(self, value, key: str, where: str, ctx: Context) -> str | None:
        name = value if isinstance(value, str) else str(value)
        found = _vlms([name] if name else [], key, where, ctx)
        return found[0] if found else None
