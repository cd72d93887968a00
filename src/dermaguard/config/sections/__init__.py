"""The configuration's sections, grouped by concern; :mod:`dermaguard.config.schema` joins them."""
