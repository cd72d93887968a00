"""From a config to the core's parameters: the one mapping between the two vocabularies.

The core takes plain parameter objects and never sees the YAML; the config schema is the one
place the values' defaults live (the core's parameter classes have none). Everything that
builds an engine goes through here: the daemon with its config, the benchmarks and the tests
with ``default_*_params(**overrides)``, the schema's defaults with a few values changed. So a
key cannot mean one thing to the config and another to the core, nor default to two values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dermaguard.config.load import Config, default_config
from dermaguard.core.case import CaseParams
from dermaguard.core.engine import EngineParams
from dermaguard.core.filters import Filter, build_filter
from dermaguard.core.passes import PassParams
from dermaguard.core.pressure import PressureParams
from dermaguard.core.session import SessionParams
from dermaguard.core.zero_tracking import ZeroTrackingParams
from dermaguard.core.zones import ZoneThresholds


def zone_thresholds(config: Config) -> ZoneThresholds:
    z = config.pressure.zones
    return ZoneThresholds(
        contact_n=z.contact_n,
        ok_n=z.ok_n,
        high_n=z.high_n,
        over_n=z.over_n,
        hysteresis_n=z.hysteresis_n,
        dwell_samples=z.dwell_samples,
    )


def pressure_params(config: Config) -> PressureParams:
    return PressureParams(
        zones=zone_thresholds(config),
        capacity_n=config.load_cell.capacity_n,
        invalid_samples_for_fault=config.pressure.invalid_samples_for_fault,
        valid_samples_for_recovery=config.pressure.valid_samples_for_recovery,
        negative_margin_n=config.pressure.negative_margin_n,
        negative_samples_for_fault=config.pressure.negative_samples_for_fault,
    )


def zero_tracking_params(config: Config) -> ZeroTrackingParams:
    z = config.pressure.zero_tracking
    return ZeroTrackingParams(
        enabled=z.enabled,
        band_n=z.band_n,
        steady_n=z.steady_n,
        window_s=z.window_s,
        max_rate_n_per_min=z.max_rate_n_per_min,
        max_total_n=z.max_total_n,
        record_interval_s=z.record_interval_s,
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
        lid_contact=config.pins.lid_contact is not None,
        lid_mismatch_s=c.lid_mismatch_s,
    )


def session_params(config: Config) -> SessionParams:
    return SessionParams(
        idle_timeout_s=config.session.idle_timeout_s,
        rest_s=config.care.rest_s,
        replace_after_uses=config.care.replace_after_uses,
        passes=pass_params(config),
    )


def pass_params(config: Config) -> PassParams:
    p = config.session.passes
    return PassParams(
        lift_n=p.lift_threshold(config.pressure.zones.contact_n),
        hysteresis_n=p.hysteresis_n,
        min_lift_s=p.min_lift_s,
        min_pass_s=p.min_pass_s,
    )


def engine_params(config: Config) -> EngineParams:
    return EngineParams(
        pressure_params(config),
        case_params(config),
        session_params(config),
        silence_s=config.alarm.silence_s,
        zero_tracking=zero_tracking_params(config),
    )


# --- the schema's defaults, for code that runs the core without a config file -------------
# Each takes field names of its parameter class; validation runs as for any construction.


def default_zone_thresholds(**overrides: Any) -> ZoneThresholds:
    return dataclasses.replace(zone_thresholds(default_config()), **overrides)


def default_pressure_params(**overrides: Any) -> PressureParams:
    return dataclasses.replace(pressure_params(default_config()), **overrides)


def default_zero_tracking_params(**overrides: Any) -> ZeroTrackingParams:
    return dataclasses.replace(zero_tracking_params(default_config()), **overrides)


def default_case_params(**overrides: Any) -> CaseParams:
    return dataclasses.replace(case_params(default_config()), **overrides)


def default_session_params(**overrides: Any) -> SessionParams:
    return dataclasses.replace(session_params(default_config()), **overrides)


def default_pass_params(**overrides: Any) -> PassParams:
    return dataclasses.replace(pass_params(default_config()), **overrides)


def default_engine_params(**overrides: Any) -> EngineParams:
    return dataclasses.replace(engine_params(default_config()), **overrides)


def filter_chains(config: Config) -> tuple[tuple[Filter, ...], tuple[Filter, ...]]:
    """The spike-rejection and smoothing chains, in the order the config lists them."""
    pressure = config.pressure
    spike = tuple(build_filter(f.kind, f.window, f.alpha) for f in pressure.spike_filters)
    smoothing = tuple(build_filter(f.kind, f.window, f.alpha) for f in pressure.smoothing_filters)
    return spike, smoothing
