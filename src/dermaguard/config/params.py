"""From a config to the core's parameters: the one mapping between the two vocabularies.

The core takes plain parameter objects and never sees the YAML; the config schema is where the
values and their defaults live. Everything that builds an engine (the daemon, the benchmarks,
the tests) goes through here, so a key cannot mean one thing to the config and another to the
core.
"""

from __future__ import annotations

from dermaguard.config.load import Config
from dermaguard.core.case import CaseParams
from dermaguard.core.engine import EngineParams
from dermaguard.core.pressure import PressureParams
from dermaguard.core.session import SessionParams
from dermaguard.core.zones import ZoneThresholds


def pressure_params(config: Config) -> PressureParams:
    z = config.pressure.zones
    return PressureParams(
        zones=ZoneThresholds(
            contact_n=z.contact_n,
            ok_n=z.ok_n,
            high_n=z.high_n,
            over_n=z.over_n,
            hysteresis_n=z.hysteresis_n,
            dwell_samples=z.dwell_samples,
        ),
        capacity_n=config.load_cell.capacity_n,
        invalid_samples_for_fault=config.pressure.invalid_samples_for_fault,
        valid_samples_for_recovery=config.pressure.valid_samples_for_recovery,
        negative_margin_n=config.pressure.negative_margin_n,
        negative_samples_for_fault=config.pressure.negative_samples_for_fault,
    )


def case_params(config: Config) -> CaseParams:
    c = config.case
    return CaseParams(
        cycle_s=c.cycle_s,
        auto_start=c.auto_start,
        validity_after_undock_s=c.validity_after_undock_s,
        uv_sensor=config.pins.uv_sensor is not None,
        uv_confirm_s=c.uv_confirm_s,
        irradiance_mw_cm2=c.irradiance_mw_cm2,
        dose_mj_cm2=c.dose_target_mj_cm2,
    )


def session_params(config: Config) -> SessionParams:
    return SessionParams(
        idle_timeout_s=config.session.idle_timeout_s,
        rest_s=config.care.rest_s,
        replace_after_uses=config.care.replace_after_uses,
    )


def engine_params(config: Config) -> EngineParams:
    return EngineParams(
        pressure_params(config),
        case_params(config),
        session_params(config),
        silence_s=config.alarm.silence_s,
    )
