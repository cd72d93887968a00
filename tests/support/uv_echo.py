"""A working shell's UV reports, for tests of the pure core.

The case counts UV time only from the shell's ``UvOutput`` reports of what it really drove
(docs/SAFETY.md, H17). Tests of the core that are not about that report stand in for a shell
whose output works: after each input, the level the core commands is reported back as driven,
at the same time. Tests about a failing output feed the reports (or refusals) themselves.

Likewise the lid: it has two channels (the reed switch, ``LidChanged``, and the microswitch's
normally-closed contact, ``LidContactChanged``) that a working lid moves together. Tests not
about the two disagreeing send ``LidChanged`` alone and get the contact's report with it.
"""

from __future__ import annotations

from dermaguard.core.case import (
    CaseInput,
    CaseMachine,
    CaseUpdate,
    LidChanged,
    LidContactChanged,
)
from dermaguard.core.engine import Engine, EngineInput
from dermaguard.core.events import Effect, SetUv, UvOutput


class EchoingCase(CaseMachine):
    """A case machine whose every UV command is reported back as driven."""

    driven = False

    def handle(self, inp: CaseInput) -> CaseUpdate:
        out = CaseUpdate()
        if isinstance(inp, LidChanged) and self.params.lid_contact:
            out = self._echoed(LidContactChanged(inp.t, inp.closed))
        more = self._echoed(inp)
        out.events.extend(more.events)
        out.uv_on, out.refused = more.uv_on, more.refused
        return out

    def _echoed(self, inp: CaseInput) -> CaseUpdate:
        out = super().handle(inp)
        while out.uv_on != self.driven:
            self.driven = out.uv_on
            more = super().handle(UvOutput(inp.t, out.uv_on))
            out.events.extend(more.events)
            out.uv_on = more.uv_on
        return out


class EchoingEngine(Engine):
    """An engine whose every ``SetUv`` is reported back as driven, as a working shell does."""

    driven = False

    def handle(self, inp: EngineInput, wall: float | None = None) -> list[Effect]:
        effects: list[Effect] = []
        if isinstance(inp, LidChanged) and self.case.params.lid_contact:
            effects = self._echoed(LidContactChanged(inp.t, inp.closed), wall)
        return [*effects, *self._echoed(inp, wall)]

    def _echoed(self, inp: EngineInput, wall: float | None) -> list[Effect]:
        effects = super().handle(inp, wall)
        while True:
            levels = [e.on for e in effects if isinstance(e, SetUv)]
            if not levels or levels[-1] == self.driven:
                return effects
            self.driven = levels[-1]
            effects = [*effects, *super().handle(UvOutput(inp.t, self.driven), wall)]
