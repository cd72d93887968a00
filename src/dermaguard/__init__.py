"""dermaguard: a Raspberry Pi daemon that makes at-home microneedling safer."""

__version__ = "0.1.0"
